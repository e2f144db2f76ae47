"""Compute expensive features once (data preparation) and store them as Kaldi ark/scp.

    python -m echo_plugin.features.cache --wav_scp dump/raw/train/wav.scp \\
        --out_dir dump/features/train --features pitch harmonic aperiodic \\
        --config conf/tuning/train_asr_echo_pitch.yaml --nj 2

Settings come from the training config's ``frontend_conf`` (``--config``), so
the cache cannot drift from the frontend, and/or from flags (``--fs 8000
--hop_length 80 ...``, which win). Writes ``<out_dir>/<feature>.scp`` (arks under
``<out_dir>/data/``) and ``<out_dir>/feature_conf.yaml``; the directory is
replaced atomically, so an interrupted run leaves the previous cache intact.

Training reads the cache through ESPnet's data loader, one entry per feature
(the data name must be the feature name)::

    --train_data_path_and_name_and_type dump/features/train/pitch.scp,pitch,kaldi_ark
    --valid_data_path_and_name_and_type dump/features/dev/pitch.scp,pitch,kaldi_ark
    --allow_variable_data_keys true

``model: echo`` hands them to the frontend (see ``asr/espnet_model.py``);
decoding computes the features from the audio with the same code. A cache
describes the stored audio: with on-the-fly waveform augmentation (ESPnet's
``--rir_scp``/``--noise_scp``) the cached features would no longer match the
augmented speech, so leave the cache out there. Speed-perturbed sets are
separate data dirs: cache each one.
Stored arrays per utterance are float32: ``pitch`` (T,) f0 Hz; the others
(T, C); see ``features/extractor.py``.
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import kaldiio
import numpy as np
import yaml

from echo_plugin.features.extractor import STORED_FEATURES, FeatureConfig
from echo_plugin.inference.audio import AudioError, load_audio
from echo_plugin.recipe.data_dir import read_table
from echo_plugin.recipe.io import atomic_dir
from echo_plugin.recipe.overlay import ConfigError, load_config

CONF_FILE = "feature_conf.yaml"
SETTINGS = ("fs", "n_fft", "hop_length", "win_length", "n_mels", "fmin", "fmax", "f0",
            "world_bands", "aperiodic_method", "phase_bands")  # fmt: skip


def feature_config(frontend_conf: Optional[Mapping[str, Any]] = None, **overrides: Any) -> FeatureConfig:
    """A :class:`FeatureConfig` from an Echo ``frontend_conf`` plus overrides (None = not given)."""
    conf = {key: value for key, value in (frontend_conf or {}).items() if key in SETTINGS}
    conf.update({key: value for key, value in overrides.items() if value is not None})
    if isinstance(conf.get("fs"), str):
        import humanfriendly

        conf["fs"] = int(humanfriendly.parse_size(conf["fs"]))
    return FeatureConfig.from_dict(conf)


def read_feature_conf(cache_dir: Path | str) -> Tuple[FeatureConfig, List[str]]:
    """The settings and feature names a cache was written with."""
    data = yaml.safe_load((Path(cache_dir) / CONF_FILE).read_text(encoding="utf-8"))
    return FeatureConfig.from_dict(data["feature_conf"]), list(data["features"])


def load_feature(cache_dir: Path | str, feature: str) -> Dict[str, np.ndarray]:
    """utterance id -> stored array, read back through kaldiio as ESPnet's ``kaldi_ark`` loader does."""
    return dict(kaldiio.load_scp(str(Path(cache_dir) / f"{feature}.scp")).items())


def read_audio(path: str, fs: int) -> np.ndarray:
    """float32 mono samples as ESPnet's ``sound`` loader gives them; AudioError (a ValueError) naming the
    file when it is a pipe, unusable (``load_audio``), not at ``fs`` or not mono."""
    if path.rstrip().endswith("|"):
        raise AudioError(f"pipe entries are not supported in wav.scp: {path}")
    samples, rate = load_audio(path)
    if rate != fs:
        raise AudioError(f"{path}: sample rate {rate} Hz, but the features are configured for fs={fs}")
    if samples.shape[1] != 1:
        raise AudioError(f"{path}: {samples.shape[1]} channels; the Echo frontend takes mono audio")
    return samples[:, 0]


def _work(job: Tuple[int, List[Tuple[str, str]], Dict[str, Any], List[str], str]) -> int:
    """One job: extract ``features`` for ``items`` into ``<tmp>/data/<feature>.<job>.{ark,scp}``."""
    index, items, conf_dict, features, tmp = job
    import torch

    from echo_plugin.features.extractor import FeatureExtractor

    torch.set_num_threads(1)
    conf = FeatureConfig.from_dict(conf_dict)
    extractor = FeatureExtractor(conf, features)
    data = Path(tmp) / "data"
    writers = {
        name: kaldiio.WriteHelper(f"ark,scp:{data / f'{name}.{index}.ark'},{data / f'{name}.{index}.scp'}")
        for name in features
    }
    try:
        for key, path in items:
            try:
                samples = read_audio(path, conf.fs)
            except AudioError as err:
                raise AudioError(f"utterance {key}: {err}") from None
            arrays = extractor.utterance(samples)
            for name in features:
                writers[name](key, arrays[name])
    finally:
        for writer in writers.values():
            writer.close()
    return len(items)


def _chunks(items: Sequence[Tuple[str, str]], n: int) -> List[List[Tuple[str, str]]]:
    size = -(-len(items) // n)
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def write_cache(
    wav_scp: Path | str, out_dir: Path | str, features: Sequence[str], conf: FeatureConfig, nj: int = 1
) -> Dict[str, Path]:
    """Extract ``features`` for every utterance of ``wav_scp``; return feature -> its scp path."""
    features = list(dict.fromkeys(features))
    bad = set(features) - set(STORED_FEATURES)
    if bad or not features:
        raise ValueError(f"cacheable features are {', '.join(STORED_FEATURES)}; got {features}")
    items = list(read_table(Path(wav_scp)).items())  # wav.scp's order: ESPnet's iterable loader needs it
    if not items:
        raise ValueError(f"{wav_scp} lists no utterances")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        (tmp / "data").mkdir()
        jobs = [(i, chunk, conf.to_dict(), features, str(tmp)) for i, chunk in enumerate(_chunks(items, max(1, nj)))]
        if len(jobs) == 1:
            done = [_work(jobs[0])]
        else:
            with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
                done = pool.map(_work, jobs)
        assert sum(done) == len(items)
        for name in features:
            lines = []
            for index in range(len(jobs)):
                for line in (tmp / "data" / f"{name}.{index}.scp").read_text(encoding="utf-8").splitlines():
                    key, location = line.split(maxsplit=1)
                    ark = Path(location.rsplit(":", 1)[0]).name
                    lines.append(f"{key} {out_dir / 'data' / ark}:{location.rsplit(':', 1)[1]}\n")
                (tmp / "data" / f"{name}.{index}.scp").unlink()
            (tmp / f"{name}.scp").write_text("".join(lines), encoding="utf-8")
        meta = {"features": features, "feature_conf": conf.to_dict(), "wav_scp": str(wav_scp)}
        (tmp / CONF_FILE).write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    return {name: out_dir / f"{name}.scp" for name in features}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Compute Echo frontend features once and store them as Kaldi ark/scp.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--wav_scp", required=True, help="Kaldi wav.scp of the set")
    parser.add_argument("--out_dir", required=True, help="output directory (replaced atomically)")
    parser.add_argument("--features", nargs="+", default=["pitch", "harmonic", "aperiodic"],
                        choices=STORED_FEATURES, help="features to store")  # fmt: skip
    parser.add_argument("--config", help="training YAML: settings are read from its frontend_conf")
    parser.add_argument("--nj", type=int, default=1, help="parallel jobs")
    parser.add_argument("--fs", type=int, help="sample rate (Hz)")
    for name in ("n_fft", "hop_length", "win_length", "n_mels", "world_bands", "phase_bands"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--aperiodic_method", choices=("periodicity", "d4c"))
    parser.add_argument("--f0_method", choices=("dio", "harvest"))
    parser.add_argument("--f0_floor", type=float)
    parser.add_argument("--f0_ceil", type=float)
    return parser


def main(argv: Optional[Iterable[str]] = None) -> int:
    args = get_parser().parse_args(None if argv is None else list(argv))
    frontend_conf: Dict[str, Any] = {}
    if args.config:
        try:
            train_conf = load_config(args.config)  # an overlay (base:) merged
        except ConfigError as err:
            print(err, file=sys.stderr)
            return 1
        if train_conf.get("frontend") != "echo":
            print(f"{args.config}: frontend is '{train_conf.get('frontend')}', not 'echo'", file=sys.stderr)
            return 1
        frontend_conf = dict(train_conf.get("frontend_conf") or {})
    f0 = dict(frontend_conf.get("f0") or {})
    flags = {"method": args.f0_method, "floor": args.f0_floor, "ceil": args.f0_ceil}
    f0.update({key: value for key, value in flags.items() if value is not None})
    conf = feature_config(
        frontend_conf,
        fs=args.fs, n_fft=args.n_fft, hop_length=args.hop_length, win_length=args.win_length, n_mels=args.n_mels,
        world_bands=args.world_bands, phase_bands=args.phase_bands, aperiodic_method=args.aperiodic_method,
        f0=f0 or None,
    )  # fmt: skip
    try:
        scps = write_cache(args.wav_scp, args.out_dir, args.features, conf, args.nj)
    except AudioError as err:  # one line naming the utterance and its file, nothing half-written kept
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, scp in scps.items():
        print(f"{name}: {scp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
