"""WORLD spectral envelope ("harmonic"), compressed to mel bands, in log power."""
from __future__ import annotations

import numpy as np
import pyworld

from echo_plugin.features.bands import band_matrix
from echo_plugin.features.grid import FrameGrid

LOG_FLOOR = 1e-10


def world_fft_size(grid: FrameGrid, f0_floor: float) -> int:
    """The FFT size CheapTrick and D4C use: long enough for a period at ``f0_floor``."""
    return int(pyworld.get_cheaptrick_fft_size(grid.fs, f0_floor))


def envelope_bands(
    x: np.ndarray, f0: np.ndarray, times: np.ndarray, grid: FrameGrid, n_bands: int, f0_floor: float
) -> np.ndarray:
    """One utterance -> (T, n_bands) float32: log of the CheapTrick envelope's mel-band means.

    CheapTrick gives the pitch-adaptive (harmonic-smoothed) power envelope,
    free of the f0 ripple a plain spectrogram shows; unvoiced frames are
    analysed at ``f0_floor``'s window. ``f0``/``times`` come from
    :func:`echo_plugin.features.pitch.world_f0` for the same utterance.
    """
    if len(x) == 0 or not np.any(x):
        return np.full((len(f0), n_bands), np.log(LOG_FLOOR), dtype=np.float32)
    fft_size = world_fft_size(grid, f0_floor)
    envelope = pyworld.cheaptrick(np.ascontiguousarray(x, dtype=np.float64), f0, times, grid.fs, fft_size=fft_size)
    bands = envelope @ band_matrix(fft_size // 2 + 1, grid.fs, n_bands).T
    return np.log(np.maximum(bands, LOG_FLOOR)).astype(np.float32)
