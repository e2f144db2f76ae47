"""Aperiodicity per mel band, in dB of the aperiodic-to-total power ratio (0 dB = noise).

Two methods:

- ``periodicity`` (default; any sample rate): bandpass voicing strengths in
  the manner of the MELP coder. Each band's signal (zero-phase FFT filter with
  the band's triangle) and its Hilbert envelope are correlated with themselves
  one pitch period later, over a ``win_length`` window centred on the frame,
  at the integer lags nearest ``fs / f0`` (+-1). The strength ``r`` is the
  largest normalised correlation (envelope with its mean removed: it catches
  high bands where an integer lag cannot follow the carrier's phase), clipped
  to [0, 1]. For periodic + noise power P, N, ``r ~ P / (P + N)``, so the
  aperiodic power ratio is ``1 - r``; coded as ``10 log10`` and floored at
  -30 dB. Unvoiced frames (f0 = 0) are 0 dB.
- ``d4c``: WORLD's D4C averaged over the mel bands, in dB (floored at -60). D4C
  estimates aperiodicity only in 3 kHz-wide bands centred from 3 kHz up and
  interpolates between them, so it has *no* band at all below 12 kHz sampling
  (at 8 kHz it returns the same fixed ramp for every voiced frame, measured)
  and a single band at 16 kHz. Refused below 12 kHz; worth it from ~32 kHz.
"""
from __future__ import annotations

import numpy as np
import pyworld

from echo_plugin.features.bands import band_matrix, mel_band_response
from echo_plugin.features.grid import FrameGrid
from echo_plugin.features.harmonic import world_fft_size

APERIODIC_METHODS = ("periodicity", "d4c")
PERIODICITY_DB_FLOOR = -30.0
D4C_DB_FLOOR = -60.0


def check_method(method: str, fs: int) -> None:
    if method not in APERIODIC_METHODS:
        raise ValueError(f"unknown aperiodic method '{method}'; known: {', '.join(APERIODIC_METHODS)}")
    if method == "d4c" and pyworld.get_num_aperiodicities(fs) == 0:
        raise ValueError(
            f"D4C measures aperiodicity only in 3 kHz bands from 3 kHz up: at fs={fs} it has none and returns a "
            "fixed ramp; use aperiodic method 'periodicity'"
        )


def aperiodicity_bands(
    x: np.ndarray,
    f0: np.ndarray,
    times: np.ndarray,
    grid: FrameGrid,
    n_bands: int,
    f0_floor: float,
    method: str = "periodicity",
) -> np.ndarray:
    """One utterance (N,), its f0 (T,) Hz and frame times (T,) s -> (T, n_bands) float32 dB."""
    check_method(method, grid.fs)
    x = np.ascontiguousarray(x, dtype=np.float64)
    if method == "d4c":
        if len(x) == 0 or not np.any(x):
            return np.zeros((len(f0), n_bands), dtype=np.float32)
        fft_size = world_fft_size(grid, f0_floor)
        ap = pyworld.d4c(x, f0, times, grid.fs, fft_size=fft_size)
        bands = ap @ band_matrix(fft_size // 2 + 1, grid.fs, n_bands).T
        return np.clip(20.0 * np.log10(np.maximum(bands, 1e-12)), D4C_DB_FLOOR, 0.0).astype(np.float32)
    strength = band_periodicity(x, f0, grid, n_bands)
    ratio = np.maximum(1.0 - strength, 10.0 ** (PERIODICITY_DB_FLOOR / 10))
    return (10.0 * np.log10(ratio)).astype(np.float32)


def band_periodicity(x: np.ndarray, f0: np.ndarray, grid: FrameGrid, n_bands: int) -> np.ndarray:
    """(N,) waveform, (T,) f0 -> (T, n_bands) voicing strength in [0, 1] (0 where f0 = 0)."""
    num_frames = len(f0)
    strength = np.zeros((num_frames, n_bands))
    voiced = np.flatnonzero(f0 > 0)
    if len(voiced) == 0 or not np.any(x):
        return strength
    n_fft = 1 << int(np.ceil(np.log2(2 * len(x))))  # no circular wrap of the zero-phase filters
    spectrum = np.fft.rfft(x, n_fft)
    response = mel_band_response(np.fft.rfftfreq(n_fft, 1.0 / grid.fs), grid.fs, n_bands)  # (n_bands, F)
    analytic_spec = np.zeros((n_bands, n_fft), dtype=np.complex128)
    analytic_spec[:, : n_fft // 2 + 1] = spectrum[None, :] * response
    analytic_spec[:, 1 : (n_fft + 1) // 2] *= 2.0  # one-sided spectrum -> analytic signal
    analytic = np.fft.ifft(analytic_spec, axis=1)[:, : len(x)]
    signals = {"band": analytic.real, "envelope": np.abs(analytic)}

    window = grid.win_length
    lags = np.rint(grid.fs / f0[voiced]).astype(int)[:, None] + np.array([-1, 0, 1])[None, :]  # (V, 3)
    lags = np.maximum(lags, 1)
    reach = window // 2 + int(lags.max()) + 1
    centres = voiced * grid.hop_length + reach  # in the padded signal
    offsets = np.arange(window) - window // 2
    best = np.zeros((n_bands, len(voiced)))
    for name, signal in signals.items():
        padded = np.pad(signal, ((0, 0), (reach, reach)))
        for j in range(lags.shape[1]):
            half = lags[:, j] // 2
            first = padded[:, (centres - half)[:, None] + offsets[None, :]]  # (n_bands, V, window)
            second = padded[:, (centres - half + lags[:, j])[:, None] + offsets[None, :]]
            if name == "envelope":
                first = first - first.mean(axis=-1, keepdims=True)
                second = second - second.mean(axis=-1, keepdims=True)
            num = (first * second).sum(-1)
            den = np.sqrt((first**2).sum(-1) * (second**2).sum(-1))
            corr = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
            best = np.maximum(best, corr)
    strength[voiced] = np.clip(best, 0.0, 1.0).T
    return strength
