"""Noise (and RIR) lists for ESPnet's on-the-fly augmentation (asr.sh --noise_dir/--babble/--colored_noise).

    python -m echo_plugin.recipe.noise --train_dir dump/raw/train --out_dir data/train --fs 8000 \
        [--noise_dir DIR] [--babble true] [--colored_noise "white pink brown"] [--rir_dir DIR] \
        [--seed 0] [--n_babble 20] [--babble_seconds 10] [--colored_seconds 30]

Writes ``<out_dir>/noise.scp`` (``key path`` lines; ESPnet's ``--noise_scp``) when
there is a noise source and, with ``--rir_dir``, ``<out_dir>/rir.scp`` (``--rir_scp``). Every listed file is a
mono wav at ``--fs``: ESPnet's ASR preprocessor neither resamples nor downmixes
noise, so other files are converted under ``<out_dir>/noise/``:

- ``--noise_dir``: every .wav/.flac below DIR (MUSAN style, recursive); mono files
  at ``--fs`` are listed in place, others are downmixed (channel mean) and resampled.
- ``--babble true``: ``--n_babble`` clips, each 3-5 talkers of distinct speakers of
  ``--train_dir`` (fewer speakers: some talk twice); keys name the speakers. ESPnet
  picks a noise file without knowing the utterance, so a clip may hold the
  utterance's own speaker when the training set has few speakers.
- ``--colored_noise``: one clip per color (white, pink, brown), seeded.
- ``--rir_dir``: every .wav/.flac below DIR, first channel, resampled.

Generated audio is deterministic in ``--seed`` and the training data; a rerun
with the same options and an unchanged ``--train_dir`` does nothing.
A missing or unreadable file is an error naming it.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf
from espnet2.utils.types import str2bool

from echo_plugin.inference.audio import AudioError, load_audio
from echo_plugin.recipe.data_dir import DataDirError, fault, read_table, run_reporting_faults
from echo_plugin.recipe.format_data import resample, write_wav
from echo_plugin.recipe.io import atomic_write_text, is_current, write_stamp
from echo_plugin.recipe.noise_audio import COLOR_EXPONENTS, babble, colored_noise, read_mono, utt_rng

AUDIO_SUFFIXES = {".wav", ".flac"}
MAX_UTTS_PER_SPEAKER = 10  # babble sources: a seeded sample per speaker
MAX_SPEAKERS = 50
WRITE_PEAK = 0.5  # generated clips are written at this peak (ESPnet rescales noise to the SNR)


def scan_audio(root: Path) -> list[Path]:
    """Every .wav/.flac file below ``root``, sorted; an error when there is none."""
    if not root.is_dir():
        raise FileNotFoundError(f"no such noise/RIR dir: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no .wav or .flac file below {root}")
    return files


def key_of(prefix: str, rel: Path) -> str:
    """A whitespace-free scp key for a file at ``rel`` below its root."""
    return prefix + "-" + "_".join(rel.with_suffix("").parts).replace(" ", "_")


def at_rate(files: Iterable[Path], root: Path, fs: int, out: Path, prefix: str,
            channel_mean: bool) -> dict[str, str]:
    """scp entries for ``files``: in place when mono at ``fs``, else converted under ``out``."""
    entries = {}
    for path in files:
        rel = path.relative_to(root)
        try:
            info = sf.info(str(path))
        except (sf.SoundFileError, RuntimeError, OSError) as e:
            raise AudioError(f"unreadable audio file {path}: {e}") from e
        if info.samplerate == fs and info.channels == 1 and info.frames > 0:
            entries[key_of(prefix, rel)] = str(path.absolute())  # used as it is: not read here
            continue
        data, rate = load_audio(path)
        mono = data.mean(axis=1) if channel_mean else data[:, 0]
        target = out / rel.with_suffix(".wav")
        write_wav(resample(mono, rate, fs), fs, target)
        entries[key_of(prefix, rel)] = str(target.absolute())
    return entries


def write_clip(x: np.ndarray, fs: int, path: Path) -> str:
    """Write ``x`` at peak WRITE_PEAK as 16-bit wav; its absolute path."""
    write_wav(x * (WRITE_PEAK / max(float(np.max(np.abs(x))), 1e-20)), fs, path)
    return str(path.absolute())


def load_speakers(train_dir: Path, fs: int, seed: int) -> dict[str, list[np.ndarray]]:
    """A seeded sample of each speaker's utterances (at most 10 each, 50 speakers) from a data dir."""
    wav_scp = read_table(train_dir / "wav.scp")
    utt2spk_path = train_dir / "utt2spk"
    utt2spk = read_table(utt2spk_path) if utt2spk_path.is_file() else {u: u for u in wav_scp}
    by_speaker: dict[str, list[str]] = {}
    for utt in sorted(wav_scp):
        by_speaker.setdefault(utt2spk.get(utt, utt), []).append(utt)
    rng = utt_rng(seed, "babble-sources")
    speakers = sorted(by_speaker)
    speakers = [speakers[i] for i in sorted(rng.permutation(len(speakers))[:MAX_SPEAKERS])]
    audio: dict[str, list[np.ndarray]] = {}
    for spk in speakers:
        utts = by_speaker[spk]
        picked = [utts[i] for i in sorted(rng.permutation(len(utts))[:MAX_UTTS_PER_SPEAKER])]
        audio[spk] = []
        for utt in picked:
            try:
                audio[spk].append(read_mono(Path(wav_scp[utt]), fs))
            except AudioError as e:
                raise DataDirError([fault(train_dir / "wav.scp", utt, str(e))]) from e
    return audio


def babble_clips(train_dir: Path, fs: int, seed: int, n_clips: int, seconds: float, out: Path) -> dict[str, str]:
    """``n_clips`` babble wavs under ``out``; keys name their speakers."""
    by_speaker = load_speakers(train_dir, fs, seed)
    entries = {}
    for i in range(n_clips):
        clip, speakers = babble(by_speaker, int(seconds * fs), utt_rng(seed, f"babble-{i}"))
        key = f"babble-{i:04d}-" + "-".join(speakers)
        entries[key] = write_clip(clip, fs, out / f"babble-{i:04d}.wav")
    return entries


def colored_clips(colors: list[str], fs: int, seed: int, seconds: float, out: Path) -> dict[str, str]:
    """One seeded clip per color under ``out``."""
    return {f"colored-{c}": write_clip(colored_noise(c, int(seconds * fs), utt_rng(seed, f"colored-{c}")),
                                       fs, out / f"colored-{c}.wav")
            for c in colors}


def options_stamp(args: argparse.Namespace) -> dict[str, str]:
    """The options and source stamps a previous run must match to be reused."""
    stamp = {k: str(v) for k, v in sorted(vars(args).items())}
    scp = args.train_dir / "wav.scp"
    stamp["train_wav_scp_mtime"] = str(scp.stat().st_mtime_ns) if scp.is_file() else "-"
    return stamp


def make_noise_lists(args: argparse.Namespace) -> None:
    """Write noise.scp (and rir.scp) under args.out_dir; skip when a previous run matches."""
    out = args.out_dir / "noise"
    stamp_file = out / "options.json"
    noise_scp, rir_scp = args.out_dir / "noise.scp", args.out_dir / "rir.scp"
    stamp = options_stamp(args)
    if is_current(stamp_file, stamp):
        print(f"{args.out_dir}/{{noise,rir}}.scp are up to date")
        return
    colors = args.colored_noise.split()
    unknown = [c for c in colors if c not in COLOR_EXPONENTS]
    if unknown:
        raise ValueError(f"--colored_noise: unknown color(s) {unknown} (expected {sorted(COLOR_EXPONENTS)})")
    entries: dict[str, str] = {}
    if args.noise_dir is not None:
        entries.update(at_rate(scan_audio(args.noise_dir), args.noise_dir, args.fs, out / "dir", "dir", True))
    if args.babble:
        entries.update(babble_clips(args.train_dir, args.fs, args.seed, args.n_babble, args.babble_seconds,
                                    out / "babble"))
    if colors:
        entries.update(colored_clips(colors, args.fs, args.seed, args.colored_seconds, out / "colored"))
    if not entries and args.rir_dir is None:
        raise ValueError("no noise source: give --noise_dir, --babble true, --colored_noise or --rir_dir")
    if entries:
        atomic_write_text(noise_scp, "".join(f"{k} {v}\n" for k, v in sorted(entries.items())))
    elif noise_scp.exists():
        noise_scp.unlink()
    if args.rir_dir is not None:
        rirs = at_rate(scan_audio(args.rir_dir), args.rir_dir, args.fs, out / "rir", "rir", False)
        atomic_write_text(rir_scp, "".join(f"{k} {v}\n" for k, v in sorted(rirs.items())))
    elif rir_scp.exists():
        rir_scp.unlink()
    write_stamp(stamp_file, stamp)
    print(f"wrote {args.out_dir}/{{noise,rir}}.scp ({len(entries)} noise files)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_dir", type=Path, required=True, help="formatted training data dir (babble source)")
    parser.add_argument("--out_dir", type=Path, required=True, help="where noise.scp / rir.scp go")
    parser.add_argument("--fs", type=int, required=True, help="sample rate of the listed files (Hz)")
    parser.add_argument("--noise_dir", type=Path, default=None, help="dir of noise recordings (recursive)")
    parser.add_argument("--babble", type=str2bool, default=False, help="babble clips from --train_dir")
    parser.add_argument("--colored_noise", default="", help="colors of generated noise, e.g. 'white pink brown'")
    parser.add_argument("--rir_dir", type=Path, default=None, help="dir of room impulse responses (recursive)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n_babble", type=int, default=20)
    parser.add_argument("--babble_seconds", type=float, default=10.0)
    parser.add_argument("--colored_seconds", type=float, default=30.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_reporting_faults("noise", lambda: make_noise_lists(args), (AudioError, FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
