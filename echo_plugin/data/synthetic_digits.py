"""Synthetic spoken digits from espeak-ng voices, laid out like FSDD (training data only).

FSDD has three training speakers, too few for a model to learn what a digit sounds like
apart from who says it. This module renders the ten digit words with many espeak-ng
voices (English accents x voice variants x pitch x rate) and writes them as an
FSDD-style corpus, ``root/recordings/{digit}_{speaker}_{take}.wav`` (8 kHz mono int16),
plus ``root/voices.json`` describing each synthetic speaker. ``echo_plugin.data.fsdd``
adds such a corpus to the training split only (``--extra_train_root``): dev and test
stay real, unseen speakers.

Each take is the voice's word at a jittered pitch and rate, resampled to 8 kHz
(torchaudio), trimmed to its speech like FSDD's recordings, given a random peak level
and a faint white-noise floor. Everything comes from a seeded RNG, so the same
arguments give the same corpus; a complete corpus with the same arguments is not
rebuilt, and a corpus is written into a temporary folder and renamed into place.

Run ``python -m echo_plugin.data.synthetic_digits --help`` for the command line.
"""
from __future__ import annotations

import argparse
import io
import itertools
import logging
import random
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from echo_plugin.data.cli import run_corpus_cli
from echo_plugin.data.extra_corpus import is_complete, write_corpus
from echo_plugin.data.fsdd import DIGIT_WORDS, SAMPLE_RATE

log = logging.getLogger(__name__)

ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
            "klatt3", "croak", "andy", "annie", "david", "linda", "max", "paul")
STAMP_FILE = "voices.json"
STAMP_VERSION = 1


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an espeak-ng voice at a base pitch (0-99) and rate (words/min)."""

    speaker: str
    accent: str
    variant: str
    pitch: int
    rate: int

    @property
    def espeak_voice(self) -> str:
        """espeak-ng's ``-v`` argument, e.g. ``en-gb-scotland+f3``."""
        return f"{self.accent}+{self.variant}"


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides the synthetic corpus."""

    n_voices: int = 40
    n_takes: int = 5
    seed: int = 0
    pitch_range: tuple[int, int] = (25, 75)
    rate_range: tuple[int, int] = (120, 200)
    jitter_pitch: int = 8
    jitter_rate: int = 15
    noise_snr_db: tuple[float, float] = (25.0, 45.0)
    trim_db: float = 35.0

    def __post_init__(self) -> None:
        if self.n_voices < 1 or self.n_takes < 1:
            raise ValueError(f"n_voices and n_takes must be >= 1, got {self.n_voices}, {self.n_takes}")
        if self.n_voices > len(ACCENTS) * len(VARIANTS):
            pairs = len(ACCENTS) * len(VARIANTS)
            raise ValueError(f"n_voices={self.n_voices} exceeds the {pairs} accent x variant pairs")


def plan_voices(cfg: SynthConfig) -> list[Voice]:
    """``cfg.n_voices`` distinct accent x variant pairs, each with its own base pitch and rate."""
    rng = random.Random(f"synthetic-voices:{cfg.seed}")
    pairs = list(itertools.product(ACCENTS, VARIANTS))
    rng.shuffle(pairs)
    return [
        Voice(f"synth{k:03d}", accent, variant, rng.randint(*cfg.pitch_range), rng.randint(*cfg.rate_range))
        for k, (accent, variant) in enumerate(pairs[: cfg.n_voices])
    ]


def espeak(text: str, voice: str, pitch: int, rate: int) -> tuple[np.ndarray, int]:
    """Float samples and rate of espeak-ng saying ``text``; RuntimeError naming the voice on failure."""
    cmd = ["espeak-ng", "--stdout", "-v", voice, "-p", str(pitch), "-s", str(rate), text]
    try:
        out = subprocess.run(cmd, capture_output=True, check=True).stdout
    except FileNotFoundError as err:
        raise RuntimeError("espeak-ng is not installed (Debian: apt install espeak-ng)") from err
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {err.stderr.decode(errors='replace')}") from err
    audio, sr = sf.read(io.BytesIO(out), dtype="float32")
    if audio.size == 0:
        raise RuntimeError(f"espeak-ng gave no audio for voice {voice!r}, text {text!r}")
    return audio, sr


def trim(audio: np.ndarray, top_db: float, frame: int = 80) -> np.ndarray:
    """Cut leading/trailing frames whose RMS is more than ``top_db`` below the loudest frame."""
    n = len(audio) // frame
    rms = np.sqrt((audio[: n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > -top_db)
    return audio[loud[0] * frame: (loud[-1] + 1) * frame]


def render_take(voice: Voice, digit: int, cfg: SynthConfig, rng: random.Random) -> np.ndarray:
    """(samples,) int16 at 8 kHz: one take of ``digit`` by ``voice`` with jittered pitch and rate."""
    pitch = min(99, max(0, voice.pitch + rng.randint(-cfg.jitter_pitch, cfg.jitter_pitch)))
    rate = max(80, voice.rate + rng.randint(-cfg.jitter_rate, cfg.jitter_rate))
    audio, sr = espeak(DIGIT_WORDS[digit].lower(), voice.espeak_voice, pitch, rate)
    audio = torchaudio.functional.resample(torch.from_numpy(audio), sr, SAMPLE_RATE).numpy()
    audio = trim(audio, cfg.trim_db)
    audio = audio / (np.abs(audio).max() + 1e-9) * rng.uniform(0.3, 0.9)
    snr = rng.uniform(*cfg.noise_snr_db)
    noise_rms = np.sqrt((audio**2).mean()) * 10 ** (-snr / 20)
    audio = audio + np.random.default_rng(rng.getrandbits(32)).normal(0.0, noise_rms, audio.shape)
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


def _stamp(cfg: SynthConfig, voices: Sequence[Voice]) -> dict:
    """What ``voices.json`` records: the config and the voices."""
    return {"version": STAMP_VERSION, "config": asdict(cfg), "voices": [asdict(v) for v in voices]}


def write_synthetic_corpus(root: Path, cfg: SynthConfig = SynthConfig()) -> list[Voice]:
    """Write the corpus into ``root`` (replacing a different one); a complete identical one is kept."""
    root = Path(root).resolve()
    voices = plan_voices(cfg)
    stamp = _stamp(cfg, voices)
    n_recordings = len(voices) * len(DIGIT_WORDS) * cfg.n_takes
    if is_complete(root, STAMP_FILE, stamp, n_recordings):
        log.info("synthetic corpus in %s is complete and up to date; nothing to do", root)
        return voices

    def fill(recordings: Path) -> None:
        for voice in voices:
            rng = random.Random(f"synthetic-takes:{cfg.seed}:{voice.speaker}")
            for digit, take in itertools.product(range(len(DIGIT_WORDS)), range(cfg.n_takes)):
                path = recordings / f"{digit}_{voice.speaker}_{take}.wav"
                sf.write(str(path), render_take(voice, digit, cfg, rng), SAMPLE_RATE, subtype="PCM_16")

    write_corpus(root, STAMP_FILE, stamp, fill)
    log.info("wrote %d synthetic voices x %d digits x %d takes to %s", len(voices), len(DIGIT_WORDS), cfg.n_takes, root)
    return voices


def build_parser() -> argparse.ArgumentParser:
    d = SynthConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out_dir", type=Path, required=True, help="corpus root (recordings/ goes inside)")
    p.add_argument("--n_voices", type=int, default=d.n_voices, help="synthetic speakers (%(default)s)")
    p.add_argument("--n_takes", type=int, default=d.n_takes, help="takes per voice and digit (%(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="(%(default)s)")
    return p


def corpus_from_args(args: argparse.Namespace) -> list[Voice]:
    """Write the corpus the options describe; its voices."""
    return write_synthetic_corpus(args.out_dir, SynthConfig(args.n_voices, args.n_takes, args.seed))


def summary(args: argparse.Namespace, voices: list[Voice]) -> list[str]:
    """The corpus root with its voice and recording counts."""
    return [f"{args.out_dir}\t{len(voices)} voices\t{len(voices) * len(DIGIT_WORDS) * args.n_takes} recordings"]


def main(argv: Sequence[str] | None = None) -> int:
    """Write the corpus and print its voice and recording counts."""
    return run_corpus_cli(build_parser(), argv, corpus_from_args, summary, (ValueError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())
