"""SNR-stratified copies of a test set (asr.sh --snr_test_sets).

    python -m echo_plugin.recipe.snr_sets --src dump/raw/test --name test --out_dir data --fs 8000 \
        --bands "clean 20 10 5 0" [--noise colored|white|pink|brown|babble|DIR] \
        [--babble_src dump/raw/train] [--seed 0]

For each band writes the Kaldi data dir ``<out_dir>/<name>_snr<band>`` (wav.scp,
text, utt2spk, spk2utt; 16-bit mono wavs at ``--fs`` under ``wav/``) whose every
utterance is the source utterance plus noise at exactly ``band`` dB SNR (as
ESPnet's ``--noise_db_range`` measures it: see ``noise_audio``); a mixture
louder than 0.99 is scaled down as a whole, which leaves its SNR unchanged.
``clean`` writes ``<out_dir>/<name>_clean`` with the source's own audio.

The noise of an utterance is seeded by ``--seed`` and its id alone: a rerun
writes byte-identical files, and all bands of one utterance share one noise
segment (only its level differs). Noise never comes from the test speakers:

- ``white``, ``pink``, ``brown``: generated noise; ``colored``: one of the three per utterance;
- ``babble``: 3-5 talkers of ``--babble_src`` (the training set), speakers of the test
  set (its utt2spk) excluded;
- a directory: a random segment of a random .wav/.flac below it (recursive).

A missing or unreadable wav, a rate other than ``--fs`` or a silent utterance
is an error naming the utterance and file; nothing is written then. A band
dir whose options and source are unchanged is not rewritten.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from echo_plugin.inference.audio import AudioError, load_audio
from echo_plugin.recipe.data_dir import (
    MAX_FAULTS,
    DataDirError,
    fault,
    read_table,
    run_reporting_faults,
    spk2utt,
    write_table,
)
from echo_plugin.recipe.format_data import write_wav
from echo_plugin.recipe.io import atomic_dir, is_current, write_stamp
from echo_plugin.recipe.noise import load_speakers, scan_audio
from echo_plugin.recipe.noise_audio import (
    COLOR_EXPONENTS,
    babble,
    colored_noise,
    mix_at_snr,
    read_mono,
    utt_rng,
    wrap_segment,
)

# A noise source: (generator seeded for the utterance, number of samples) -> noise (samples,).
NoiseSource = Callable[[np.random.Generator, int], np.ndarray]


@dataclass(frozen=True)
class SourceSet:
    """The tables of the test set to stratify."""

    wav_scp: dict[str, str]
    text: dict[str, str]
    utt2spk: dict[str, str]


def colored_source(colors: list[str]) -> NoiseSource:
    """Generated noise of a seeded choice among ``colors``."""
    def segment(rng: np.random.Generator, n: int) -> np.ndarray:
        return colored_noise(colors[int(rng.integers(len(colors)))], n, rng)
    return segment


def dir_source(root: Path, fs: int) -> NoiseSource:
    """A random segment (wrapped when short) of a random file below ``root``."""
    files = scan_audio(root)
    load = functools.lru_cache(maxsize=16)(lambda path: read_mono(path, fs))

    def segment(rng: np.random.Generator, n: int) -> np.ndarray:
        return wrap_segment(load(files[int(rng.integers(len(files)))]), n, rng)
    return segment


def _babble_segment(by_speaker: dict[str, list[np.ndarray]], rng: np.random.Generator, n: int) -> np.ndarray:
    return babble(by_speaker, n, rng)[0]


def babble_of(by_speaker: dict[str, list[np.ndarray]]) -> NoiseSource:
    """Babble of these talkers (speaker -> their utterances' samples); the partial's ``args[0]`` names them."""
    return functools.partial(_babble_segment, by_speaker)


def babble_source(babble_src: Path, test_speakers: set[str], fs: int, seed: int) -> NoiseSource:
    """Babble of the speakers of ``babble_src`` that are not test speakers."""
    by_speaker = {spk: utts for spk, utts in load_speakers(babble_src, fs, seed).items()
                  if spk not in test_speakers}
    if not by_speaker:
        raise ValueError(f"--babble_src {babble_src} has no speaker outside the test set")
    return babble_of(by_speaker)


def build_source(args: argparse.Namespace, test_speakers: set[str]) -> NoiseSource:
    """The noise source named by ``--noise`` (a color, colored, babble, or a directory)."""
    builders: dict[str, Callable[[], NoiseSource]] = {
        **{color: functools.partial(colored_source, [color]) for color in COLOR_EXPONENTS},
        "colored": functools.partial(colored_source, sorted(COLOR_EXPONENTS)),
        "babble": lambda: babble_source(_required(args.babble_src, "--babble_src"), test_speakers,
                                        args.fs, args.seed),
    }
    if args.noise in builders:
        return builders[args.noise]()
    return dir_source(Path(args.noise), args.fs)


def _required(value: Path | None, option: str) -> Path:
    if value is None:
        raise ValueError(f"{option} is required for --noise babble")
    return value


def read_source(src: Path) -> SourceSet:
    """wav.scp and text (required), utt2spk (else each utterance its own speaker)."""
    wav_scp, text = read_table(src / "wav.scp"), read_table(src / "text")
    utt2spk = read_table(src / "utt2spk") if (src / "utt2spk").is_file() else {u: u for u in wav_scp}
    missing = [fault(src / "text", u, "has no transcript") for u in sorted(set(wav_scp) - set(text))]
    if missing:
        raise DataDirError(missing[:MAX_FAULTS])
    return SourceSet(wav_scp, {u: text[u] for u in wav_scp}, {u: utt2spk.get(u, u) for u in wav_scp})


def read_utterance(scp: Path, uttid: str, path: str, fs: int) -> np.ndarray:
    """Mono float64 samples of one utterance; AudioError naming it on bad input."""
    try:
        data, rate = load_audio(Path(path))
    except AudioError as e:
        raise AudioError(fault(scp, uttid, str(e))) from e
    if rate != fs:
        raise AudioError(fault(scp, uttid, f"sample rate {rate} Hz of {path} is not --fs {fs}"))
    speech = data.mean(axis=1).astype(np.float64)
    if not np.any(speech):
        raise AudioError(fault(scp, uttid, f"audio {path} is silent: no SNR can be set"))
    return speech


def readable_utterances(scp: Path, wav_scp: dict[str, str], fs: int,
                        faults: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """(uttid, samples) of ``wav_scp``'s utterances in sorted order (read by :func:`read_utterance`) while all read;
    each one that does not is added to ``faults`` and from then on the rest are only checked (nothing more is
    yielded), up to MAX_FAULTS, so that the caller writes nothing and raises them all at once."""
    for uttid in sorted(wav_scp):
        try:
            speech = read_utterance(scp, uttid, wav_scp[uttid], fs)
        except AudioError as e:
            faults.append(str(e))
            if len(faults) >= MAX_FAULTS:
                return
            continue
        if not faults:
            yield uttid, speech


def band_name(name: str, band: str) -> str:
    """``<name>_clean`` or ``<name>_snr<band>``; ValueError for a band that is not a number."""
    if band == "clean":
        return f"{name}_clean"
    float(band)
    return f"{name}_snr{band}"


def write_tables(out: Path, source: SourceSet, wav_scp: dict[str, str]) -> None:
    """The Kaldi tables of one band dir."""
    write_table(out / "wav.scp", wav_scp)
    write_table(out / "text", source.text)
    write_table(out / "utt2spk", source.utt2spk)
    write_table(out / "spk2utt", spk2utt(source.utt2spk))


def options_stamp(args: argparse.Namespace, skip: tuple[str, ...]) -> dict[str, str]:
    """What a dir made from ``args.src`` was made from: the options (but ``skip``) and the source tables'
    modification times (for is_current)."""
    stamp = {k: str(v) for k, v in sorted(vars(args).items()) if k not in skip}
    for table in ("wav.scp", "text", "utt2spk"):
        path = args.src / table
        stamp[table] = str(path.stat().st_mtime_ns) if path.is_file() else "-"
    return stamp


def stamp_of(args: argparse.Namespace, band: str) -> dict[str, str]:
    """Options and source mtimes a band dir was made from."""
    return {**options_stamp(args, ("bands", "out_dir")), "band": band}


def make_snr_sets(args: argparse.Namespace) -> list[Path]:
    """Write every band dir that is not up to date; the band dirs."""
    source = read_source(args.src)
    dsts = {band: args.out_dir / band_name(args.name, band) for band in args.bands}
    stamps = {band: stamp_of(args, band) for band in args.bands}
    todo = [b for b in args.bands if not is_current(dsts[b] / "snr_info.json", stamps[b])]
    if not todo:
        print(f"SNR sets of {args.name} are up to date")
        return list(dsts.values())
    noisy = [b for b in todo if b != "clean"]
    noise = build_source(args, set(source.utt2spk.values())) if noisy else None
    scp = args.src / "wav.scp"
    with contextlib.ExitStack() as stack:
        tmps = {b: stack.enter_context(atomic_dir(dsts[b])) for b in todo}
        wav_scps: dict[str, dict[str, str]] = {b: {} for b in todo}
        faults: list[str] = []
        for uttid, speech in readable_utterances(scp, source.wav_scp, args.fs, faults):
            segment = noise(utt_rng(args.seed, uttid), len(speech)) if noise is not None else None
            for band in noisy:
                write_wav(mix_at_snr(speech, segment, float(band)), args.fs, tmps[band] / "wav" / f"{uttid}.wav")
                wav_scps[band][uttid] = str((dsts[band] / "wav" / f"{uttid}.wav").absolute())
        if faults:
            raise DataDirError(faults)
        for band in todo:
            scp_table = source.wav_scp if band == "clean" else wav_scps[band]
            write_tables(tmps[band], source, scp_table)
            write_stamp(tmps[band] / "snr_info.json", stamps[band])
    for band in todo:
        print(f"wrote {dsts[band]} ({len(source.wav_scp)} utterances)")
    return list(dsts.values())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="test data dir (wavs at --fs)")
    parser.add_argument("--name", required=True, help="name of the test set; dirs are <name>_snr<band>")
    parser.add_argument("--out_dir", type=Path, required=True, help="where the band dirs go")
    parser.add_argument("--fs", type=int, required=True, help="sample rate of the test audio (Hz)")
    parser.add_argument("--bands", type=str.split, required=True, help="'clean' and/or SNRs in dB, e.g. 'clean 20 10'")
    parser.add_argument("--noise", default="colored", help="white|pink|brown|colored|babble or a noise dir")
    parser.add_argument("--babble_src", type=Path, default=None, help="training data dir for --noise babble")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.src = args.src.absolute()
    for band in args.bands:
        try:
            band_name(args.name, band)
        except ValueError:
            parser.error(f"--bands: '{band}' is neither 'clean' nor a number of dB")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_reporting_faults("snr_sets", lambda: make_snr_sets(args), (AudioError, FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
