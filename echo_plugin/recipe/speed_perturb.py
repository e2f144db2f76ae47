"""Speed perturbation of a training data dir, as ESPnet's asr.sh does with Kaldi's scripts.

    python -m echo_plugin.recipe.speed_perturb --src data/train --dst data/train_sp \
        --factors 0.9 1.0 1.1 [--nj 2]

For each factor ``f`` other than 1 every utterance ``u`` of speaker ``s`` becomes
``sp<f>-u`` of speaker ``sp<f>-s``, its audio played ``f`` times faster (the
duration scales by ``1/f`` and the pitch by ``f``, like ``sox speed f``): the
samples are resampled from a nominal rate ``f * fs`` to ``fs``. Factor 1 keeps
the original ids and audio files, as ESPnet does (``utils/combine_data.sh`` of
``data/<train>`` with the ``_sp<f>`` dirs). Transcripts are unchanged.

Perturbed audio is written as 16-bit FLAC under ``<dst>/audio/`` (soundfile
reads it in place at stage 2); ``wav.scp`` holds absolute paths. ``--dst`` is
built in a temporary sibling and renamed into place; the output is the same
bytes on every run. A ``--dst`` that is newer than every file of ``--src`` and
was made with the same factors is left as it is.
"""
from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from echo_plugin.inference.audio import AudioError, load_audio
from echo_plugin.recipe.data_dir import DataDirError, fault, report_faults, spk2utt, write_table
from echo_plugin.recipe.format_data import read_source
from echo_plugin.recipe.io import atomic_dir

FACTORS_FILE = "speed_perturb_factors"


@dataclass(frozen=True)
class PerturbJob:
    """One utterance's audio to speed up by ``factor`` into ``out``."""

    uttid: str
    src: Path
    factor: str
    out: Path


def parse_factor(text: str) -> Fraction:
    """A speed factor as an exact ratio of small integers; ValueError unless positive."""
    try:
        value = Fraction(text).limit_denominator(1000)
    except (ValueError, ZeroDivisionError) as e:
        raise ValueError(f"speed factor '{text}' is not a number") from e
    if value <= 0:
        raise ValueError(f"speed factor '{text}' must be positive")
    return value


def change_speed(samples: np.ndarray, factor: Fraction) -> np.ndarray:
    """(T,) float samples -> (about T / factor,) samples, played ``factor`` times faster.

    Band-limited sinc resampling (torchaudio) from ``factor.numerator`` to
    ``factor.denominator`` nominal rates."""
    if factor == 1:
        return samples
    import torch
    import torchaudio.functional as F

    torch.set_num_threads(1)
    wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    return F.resample(wave, factor.numerator, factor.denominator).numpy()


def perturb_one(job: PerturbJob) -> str | None:
    """Write one perturbed utterance; a fault line when its audio is unusable."""
    try:
        data, rate = load_audio(job.src)
    except AudioError as e:
        return fault(job.src, job.uttid, str(e))
    fast = change_speed(data.mean(axis=1), parse_factor(job.factor))
    job.out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(job.out, np.clip(fast, -1.0, 1.0), rate, subtype="PCM_16", format="FLAC")
    return None


def prefixed(factor: str, key: str) -> str:
    """``sp<factor>-<key>``, ESPnet/Kaldi's id of a perturbed copy."""
    return f"sp{factor}-{key}"


def is_current(src: Path, dst: Path, factors: list[str]) -> bool:
    """Whether ``dst`` was made from ``src``'s current files with ``factors``."""
    stamp = dst / FACTORS_FILE
    if not (stamp.is_file() and (dst / "wav.scp").is_file()) or stamp.read_text().split() != factors:
        return False
    made = (dst / "wav.scp").stat().st_mtime
    return all(p.stat().st_mtime <= made for p in src.iterdir() if p.is_file())


def speed_perturb(src: Path, dst: Path, factors: list[str], nj: int = 1) -> bool:
    """Write the perturbed copy of data dir ``src`` to ``dst``; False when it was current already.

    DataDirError lists the faults (of the source dir or its audio)."""
    for factor in factors:
        parse_factor(factor)
    if len(set(factors)) != len(factors):
        raise ValueError(f"speed factors repeat: {factors}")
    if is_current(src, dst, factors):
        return False
    source = read_source(src)
    if source.faults:
        raise DataDirError(source.faults)
    dst = dst.absolute()
    wav_scp: dict[str, object] = {}
    text: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    with atomic_dir(dst) as tmp:
        jobs = []
        for factor in factors:
            same = parse_factor(factor) == 1
            for uttid, path in sorted(source.wav_scp.items()):
                new = uttid if same else prefixed(factor, uttid)
                text[new] = source.text[uttid]
                utt2spk[new] = source.utt2spk[uttid] if same else prefixed(factor, source.utt2spk[uttid])
                if same:
                    wav_scp[new] = Path(path).absolute()
                else:
                    jobs.append(PerturbJob(new, Path(path).absolute(), factor, tmp / "audio" / f"{new}.flac"))
                    wav_scp[new] = dst / "audio" / f"{new}.flac"
        with ProcessPoolExecutor(max_workers=max(1, min(nj, len(jobs) or 1))) as pool:
            faults = [f for f in pool.map(perturb_one, jobs, chunksize=max(1, len(jobs) // (4 * max(1, nj)))) if f]
        if faults:
            raise DataDirError(faults)
        write_table(tmp / "wav.scp", wav_scp)
        write_table(tmp / "text", text)
        write_table(tmp / "utt2spk", utt2spk)
        write_table(tmp / "spk2utt", spk2utt(utt2spk))
        (tmp / FACTORS_FILE).write_text(" ".join(factors) + "\n")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="Kaldi data dir to perturb")
    parser.add_argument("--dst", type=Path, required=True, help="data dir to write (ESPnet: <src>_sp)")
    parser.add_argument("--factors", nargs="+", required=True, help='speed factors, e.g. "0.9 1.0 1.1"')
    parser.add_argument("--nj", type=int, default=1, help="parallel processes")
    args = parser.parse_args(argv)
    try:
        made = speed_perturb(args.src, args.dst, args.factors, args.nj)
    except ValueError as e:
        print(f"speed_perturb: error: {e}", file=sys.stderr)
        return 1
    except DataDirError as e:
        return report_faults("speed_perturb", e.faults)
    print(f"speed_perturb: {'wrote' if made else 'up to date:'} {args.dst} (factors {' '.join(args.factors)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
