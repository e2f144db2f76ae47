"""Pseudo-speakers from WORLD resynthesis of real recordings (training data only).

Three real training speakers are too few for a model to learn what a digit sounds like
apart from who says it. This module makes new voices from the real ones: each
pseudo-speaker is a real speaker whose recordings are analysed with WORLD (pyworld:
DIO + StoneMask f0, CheapTrick spectral envelope, D4C aperiodicity) and resynthesised
with

* f0 scaled by the voice's factor (larynx: pitch), and
* the spectral envelope warped along frequency by the voice's factor (vocal tract
  length: formants move up for a factor > 1),

two properties that speed perturbation can only change together (and with tempo).
Each voice keeps its factors over all its takes, up to a small per-take jitter, so it
behaves like one consistent speaker (its own ``speaker_mvn`` statistics). The words,
timing and accent are the real speaker's.

The corpus is laid out like FSDD, ``root/recordings/{digit}_{speaker}_{take}.wav``
(8 kHz mono int16), speaker ``<source>w<k>`` (e.g. ``georgew0``), plus ``root/voices.json``
describing each voice; ``echo_plugin.data.fsdd --extra_train_root`` adds it to the
training split only. Same arguments, same bytes; a complete identical corpus is not
rebuilt, and a corpus is written into a temporary folder and renamed into place.

Run ``python -m echo_plugin.data.world_voices --help`` for the command line.
"""
from __future__ import annotations

import argparse
import logging
import math
import random
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyworld
import soundfile as sf
import torch
import torchaudio

from echo_plugin.data.cli import run_corpus_cli
from echo_plugin.data.extra_corpus import is_complete, write_corpus
from echo_plugin.data.fsdd import SAMPLE_RATE, PrepConfig, Recording, download_fsdd, find_recordings, read_recording

log = logging.getLogger(__name__)

STAMP_FILE = "voices.json"
STAMP_VERSION = 1
FRAME_PERIOD_MS = 5.0
ANALYSIS_RATE = 16000


@dataclass(frozen=True)
class WorldVoice:
    """A pseudo-speaker: ``source``'s recordings with f0 x ``f0_scale`` and formants x ``warp``."""

    speaker: str
    source: str
    f0_scale: float
    warp: float


@dataclass(frozen=True)
class WorldVoiceConfig:
    """Everything that decides the corpus. Ranges are sampled log-uniformly."""

    speakers: tuple[str, ...] = PrepConfig().train_speakers
    n_voices: int = 4
    seed: int = 0
    f0_range: tuple[float, float] = (0.7, 1.45)
    warp_range: tuple[float, float] = (0.87, 1.15)
    jitter: float = 0.03
    f0_floor: float = 60.0
    f0_ceil: float = 400.0
    max_takes: int | None = None

    def __post_init__(self) -> None:
        if self.n_voices < 1 or not self.speakers:
            raise ValueError(f"need n_voices >= 1 and at least one speaker, got {self.n_voices}, {self.speakers}")
        if self.max_takes is not None and self.max_takes < 1:
            raise ValueError(f"max_takes must be >= 1, got {self.max_takes}")
        for name, (lo, hi) in (("f0_range", self.f0_range), ("warp_range", self.warp_range)):
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be 0 < low <= high, got {(lo, hi)}")


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def plan_voices(cfg: WorldVoiceConfig) -> list[WorldVoice]:
    """``cfg.n_voices`` voices per source speaker, each with its own f0 scale and warp."""
    rng = random.Random(f"world-voices:{cfg.seed}")
    return [
        WorldVoice(f"{source}w{k}", source, round(_log_uniform(rng, *cfg.f0_range), 4),
                   round(_log_uniform(rng, *cfg.warp_range), 4))
        for source in cfg.speakers for k in range(cfg.n_voices)
    ]


def warp_envelope(envelope: np.ndarray, warp: float) -> np.ndarray:
    """(frames, bins) power envelope with frequency f taking the value at f / ``warp``.

    Interpolated in the log domain; above the source's Nyquist (warp < 1) the top bin repeats.
    """
    bins = np.arange(envelope.shape[1], dtype=np.float64)
    source = np.clip(bins / warp, 0.0, bins[-1])
    log_env = np.log(np.maximum(envelope, 1e-30))
    lo = np.floor(source).astype(int)
    hi = np.minimum(lo + 1, len(bins) - 1)
    frac = source - lo
    return np.ascontiguousarray(np.exp(log_env[:, lo] * (1.0 - frac) + log_env[:, hi] * frac))


def resynthesize(audio: np.ndarray, fs: int, f0_scale: float, warp: float,
                 f0_floor: float = 60.0, f0_ceil: float = 400.0) -> np.ndarray:
    """(samples,) float64 in, (samples,) float64 out: WORLD analysis, f0 x ``f0_scale``, warped envelope.

    Below 16 kHz the audio is analysed and resynthesised at 16 kHz: WORLD's D4C measures
    aperiodicity in 3 kHz bands starting at 3 kHz and decides voicing from the power up to
    7.9 kHz, so at 8 kHz it has no band and calls every frame aperiodic (the resynthesis
    would be a whisper without f0).
    """
    rate = max(fs, ANALYSIS_RATE)
    x = np.ascontiguousarray(_resample(audio, fs, rate), dtype=np.float64)
    f0, t = pyworld.dio(x, rate, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=FRAME_PERIOD_MS)
    f0 = pyworld.stonemask(x, f0, t, rate)
    envelope = pyworld.cheaptrick(x, f0, t, rate)
    aperiodicity = pyworld.d4c(x, f0, t, rate)
    y = pyworld.synthesize(f0 * f0_scale, warp_envelope(envelope, warp), aperiodicity, rate, FRAME_PERIOD_MS)
    y = _resample(y, rate, fs)
    return y[: len(audio)] if len(y) >= len(audio) else np.pad(y, (0, len(audio) - len(y)))


def _resample(audio: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst:
        return np.asarray(audio, dtype=np.float64)
    return torchaudio.functional.resample(torch.from_numpy(np.asarray(audio, dtype=np.float64)), src, dst).numpy()


def render_take(rec: Recording, voice: WorldVoice, cfg: WorldVoiceConfig, seed: str) -> np.ndarray:
    """(samples,) int16: ``rec`` spoken by ``voice``, factors jittered per take, peak as the source's."""
    audio, fs = read_recording(rec.path, rec.utt_id).astype(np.float64), SAMPLE_RATE
    rng = random.Random(seed)
    jitter = lambda: math.exp(rng.uniform(-cfg.jitter, cfg.jitter))  # noqa: E731
    y = resynthesize(audio, fs, voice.f0_scale * jitter(), voice.warp * jitter(), cfg.f0_floor, cfg.f0_ceil)
    y = y / (np.abs(y).max() + 1e-9) * np.abs(audio).max()
    return (np.clip(y, -1.0, 1.0) * 32767).astype(np.int16)


def _render_voice(args: tuple[WorldVoice, list[Recording], WorldVoiceConfig, Path]) -> int:
    voice, recordings, cfg, out = args
    for rec in recordings:
        path = out / f"{rec.digit}_{voice.speaker}_{rec.index}.wav"
        take = render_take(rec, voice, cfg, f"world-take:{cfg.seed}:{voice.speaker}:{rec.digit}:{rec.index}")
        sf.write(str(path), take, SAMPLE_RATE, subtype="PCM_16")
    return len(recordings)


def _stamp(cfg: WorldVoiceConfig, voices: Sequence[WorldVoice], n_recordings: int) -> dict:
    """What ``voices.json`` records."""
    return {"version": STAMP_VERSION, "config": asdict(cfg), "voices": [asdict(v) for v in voices],
            "n_recordings": n_recordings}


def write_world_voices(fsdd_root: Path, root: Path, cfg: WorldVoiceConfig = WorldVoiceConfig(),
                       nj: int = 1) -> list[WorldVoice]:
    """Write the pseudo-speakers of ``cfg.speakers`` (recordings under ``fsdd_root``) into ``root``.

    Takes with index ``>= cfg.max_takes`` are skipped, as ``echo_plugin.data.fsdd --max_takes`` skips them.
    """
    root = Path(root).resolve()
    by_speaker: dict[str, list[Recording]] = {}
    for rec in find_recordings(Path(fsdd_root)):
        if cfg.max_takes is None or rec.index < cfg.max_takes:
            by_speaker.setdefault(rec.speaker, []).append(rec)
    missing = [s for s in cfg.speakers if s not in by_speaker]
    if missing:
        raise ValueError(f"no recordings of speaker(s) {missing} under {fsdd_root}")
    voices = plan_voices(cfg)
    n_recordings = sum(len(by_speaker[v.source]) for v in voices)
    stamp = _stamp(cfg, voices, n_recordings)
    if is_complete(root, STAMP_FILE, stamp, n_recordings):
        log.info("WORLD voices in %s are complete and up to date; nothing to do", root)
        return voices

    def fill(recordings: Path) -> None:
        jobs = [(v, by_speaker[v.source], cfg, recordings) for v in voices]
        with ProcessPoolExecutor(max_workers=max(1, nj)) as pool:
            list(pool.map(_render_voice, jobs))

    write_corpus(root, STAMP_FILE, stamp, fill)
    log.info("wrote %d WORLD voices (%d recordings) to %s", len(voices), n_recordings, root)
    return voices


def build_parser() -> argparse.ArgumentParser:
    d = WorldVoiceConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fsdd_root", type=Path, help="folder holding the real recordings/")
    src.add_argument("--download_dir", type=Path, help="download the pinned FSDD commit here first (as fsdd)")
    p.add_argument("--out_dir", type=Path, required=True, help="corpus root (recordings/ goes inside)")
    p.add_argument("--speakers", nargs="+", default=list(d.speakers),
                   help="source speakers: the training speakers (%(default)s)")
    p.add_argument("--n_voices", type=int, default=d.n_voices, help="voices per source speaker (%(default)s)")
    p.add_argument("--f0_range", type=float, nargs=2, default=d.f0_range, help="f0 scale range (%(default)s)")
    p.add_argument("--warp_range", type=float, nargs=2, default=d.warp_range,
                   help="formant (envelope) warp range (%(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="(%(default)s)")
    p.add_argument("--max_takes", type=int, help="only takes with index < N (all)")
    p.add_argument("--nj", type=int, default=1, help="parallel processes (%(default)s)")
    return p


def corpus_from_args(args: argparse.Namespace) -> list[WorldVoice]:
    """Write the corpus the options describe (downloading FSDD first with --download_dir); its voices."""
    cfg = WorldVoiceConfig(tuple(args.speakers), args.n_voices, args.seed, tuple(args.f0_range),
                           tuple(args.warp_range), max_takes=args.max_takes)
    fsdd_root = args.fsdd_root if args.fsdd_root is not None else download_fsdd(args.download_dir)
    return write_world_voices(fsdd_root, args.out_dir, cfg, args.nj)


def summary(args: argparse.Namespace, voices: list[WorldVoice]) -> list[str]:
    """The corpus root with its voice count."""
    return [f"{args.out_dir}\t{len(voices)} voices"]


def main(argv: Sequence[str] | None = None) -> int:
    """Write the corpus and print its voice count."""
    return run_corpus_cli(build_parser(), argv, corpus_from_args, summary, (ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
