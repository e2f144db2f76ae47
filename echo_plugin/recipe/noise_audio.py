"""Noise signals and SNR mixing shared by noise augmentation and SNR test sets.

SNR follows ESPnet's CommonPreprocessor (``--noise_db_range``): speech power is
the mean power of the speech samples in *active* frames (frames of 1024 samples,
hop 512, whose power exceeds 1% of the mean frame power; everything is active
in a signal shorter than one frame), noise power is the mean power of the whole
noise segment. ``SNR = 10 log10(P_speech / P_noise)``.

All signals are 1-D float64 arrays (samples,) at one rate.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from echo_plugin.inference.audio import load_audio
from echo_plugin.recipe.format_data import resample

FRAME = 1024
HOP = 512
ACTIVE_THRESHOLD = 0.01
# Power spectral density ~ 1 / f**exponent.
COLOR_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
PEAK = 0.99  # mixtures louder than this are scaled down as a whole (SNR unchanged)


def utt_rng(seed: int, key: str) -> np.random.Generator:
    """A generator seeded from ``seed`` and a string key (stable across runs and machines)."""
    digest = hashlib.sha256(f"{seed}\t{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def active_mask(x: np.ndarray) -> np.ndarray:
    """Boolean (samples,): samples in frames above 1% of the mean frame power."""
    n = len(x)
    if n < FRAME:
        return np.ones(n, dtype=bool)
    n_frames = -(-(n - FRAME) // HOP) + 1  # frames covering x, the last one zero padded
    padded = np.zeros((n_frames - 1) * HOP + FRAME)
    padded[:n] = x
    power = np.mean(np.lib.stride_tricks.sliding_window_view(padded, FRAME)[::HOP] ** 2, axis=1)
    mean = power.mean()
    if mean == 0:
        return np.ones(n, dtype=bool)
    active = np.repeat(power / mean > ACTIVE_THRESHOLD, HOP)[:n]
    return np.pad(active, (0, n - len(active)), mode="edge")


def speech_power(x: np.ndarray) -> float:
    """Mean power of the active samples of ``x``."""
    return float(np.mean(x[active_mask(x)] ** 2))


def noise_gain(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> float:
    """The factor g with SNR(speech, g * noise) = snr_db; ValueError on silent input."""
    p_s, p_n = speech_power(speech), float(np.mean(noise ** 2))
    if p_s <= 0 or p_n <= 0:
        raise ValueError("silent speech or noise: no SNR can be set")
    return float(np.sqrt(p_s / (p_n * 10.0 ** (snr_db / 10.0))))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech + g * noise`` at ``snr_db``, scaled as a whole to peak <= 0.99 when louder."""
    mixture = speech + noise_gain(speech, noise, snr_db) * noise
    peak = float(np.max(np.abs(mixture)))
    return mixture * (PEAK / peak) if peak > PEAK else mixture


def colored_noise(color: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of white/pink/brown Gaussian noise with unit power."""
    if color not in COLOR_EXPONENTS:
        raise ValueError(f"unknown noise color '{color}' (expected one of {sorted(COLOR_EXPONENTS)})")
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0  # keep DC finite; it is removed below
    spectrum *= freqs ** (-COLOR_EXPONENTS[color] / 2.0)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n)
    return noise / np.sqrt(np.mean(noise ** 2))


def read_mono(path: Path, fs: int) -> np.ndarray:
    """Mono float64 samples of ``path`` at ``fs`` (channel mean, resampled); AudioError when unusable."""
    data, rate = load_audio(path)
    return resample(data.mean(axis=1), rate, fs).astype(np.float64)


def wrap_segment(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of ``x`` from a random offset, wrapping around (x repeated when short)."""
    offset = int(rng.integers(len(x)))
    return np.take(x, np.arange(offset, offset + n), mode="wrap")


def talker_track(utterances: Sequence[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of one talker: its utterances in random order, end to end, unit active power."""
    pieces, total = [], 0
    while total < n:
        x = utterances[int(rng.integers(len(utterances)))]
        pieces.append(x / np.sqrt(max(speech_power(x), 1e-20)))
        total += len(x)
    return np.concatenate(pieces)[:n]


def babble(by_speaker: dict[str, list[np.ndarray]], n: int, rng: np.random.Generator,
           talkers: tuple[int, int] = (3, 5)) -> tuple[np.ndarray, list[str]]:
    """Babble of 3-5 talkers, distinct speakers while there are enough; unit power.

    Returns the (n,) signal and the speakers in it.
    """
    speakers = sorted(by_speaker)
    if not speakers:
        raise ValueError("babble needs speech of at least one speaker")
    k = int(rng.integers(talkers[0], talkers[1] + 1))
    chosen = [speakers[i] for i in rng.permutation(len(speakers))[:k]]
    while len(chosen) < k:  # fewer speakers than talkers: some speak twice
        chosen.append(speakers[int(rng.integers(len(speakers)))])
    mixture = sum(talker_track(by_speaker[spk], n, rng) for spk in chosen)
    return mixture / np.sqrt(np.mean(mixture ** 2)), chosen


__all__ = ["active_mask", "babble", "colored_noise", "mix_at_snr", "noise_gain",
           "read_mono", "speech_power", "utt_rng", "wrap_segment"]
