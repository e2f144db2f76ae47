"""Mel-spaced triangular bands that compress linear-frequency spectra (WORLD, phase)."""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np

_F_SP = 200.0 / 3  # slaney mel scale: linear below 1 kHz, logarithmic above
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    log_part = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return np.where(hz < _MIN_LOG_HZ, hz / _F_SP, log_part)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_part = _MIN_LOG_HZ * np.exp(_LOG_STEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mel < _MIN_LOG_MEL, mel * _F_SP, log_part)


def mel_band_edges(fs: int, n_bands: int, fmin: float = 0.0, fmax: Optional[float] = None) -> np.ndarray:
    """(n_bands, 3) lower edge, centre and upper edge (Hz) of each triangular slaney-mel band."""
    fmax = fs / 2 if fmax is None else float(fmax)
    if not 0 <= fmin < fmax <= fs / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= fs/2, got fmin={fmin}, fmax={fmax}, fs={fs}")
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_bands + 2))
    return np.stack([edges[:-2], edges[1:-1], edges[2:]], axis=1)


def mel_band_response(
    freqs: np.ndarray, fs: int, n_bands: int, fmin: float = 0.0, fmax: Optional[float] = None
) -> np.ndarray:
    """(n_bands, len(freqs)) triangular slaney-mel band responses at ``freqs`` (Hz), peak 1.

    A band narrower than the spacing of ``freqs`` gets weight 1 on the
    frequency nearest its centre, so no row is empty.
    """
    freqs = np.asarray(freqs, dtype=np.float64)
    edges = mel_band_edges(fs, n_bands, fmin, fmax)
    lower, centre, upper = edges[:, 0:1], edges[:, 1:2], edges[:, 2:3]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    for band in np.flatnonzero(weights.sum(axis=1) <= 0):
        weights[band, np.argmin(np.abs(freqs - centre[band, 0]))] = 1.0
    return weights


def mel_bands(n_freqs: int, fs: int, n_bands: int, fmin: float = 0.0, fmax: Optional[float] = None) -> np.ndarray:
    """(n_bands, n_freqs) weights over the bins 0..fs/2 of a one-sided spectrum, each row summing to 1.

    Rows have unit sum, so ``bands @ spectrum`` is a weighted band *mean*: the
    right coding for ratios and phase-derived quantities, and only a constant
    per-band offset after ``log`` for a power envelope.
    """
    weights = mel_band_response(np.linspace(0.0, fs / 2, n_freqs), fs, n_bands, fmin, fmax)
    return weights / weights.sum(axis=1, keepdims=True)


@lru_cache(maxsize=32)
def band_matrix(n_freqs: int, fs: int, n_bands: int) -> np.ndarray:
    """Cached, read-only :func:`mel_bands` over the full band 0..fs/2."""
    weights = mel_bands(n_freqs, fs, n_bands)
    weights.setflags(write=False)
    return weights
