"""Phase features: where, in frequency and in time, each mel band's energy really sits.

Raw STFT phase is not a usable feature: it wraps, and it depends on where the
frame happens to start. Its derivatives are meaningful. With the reassignment
operators (Auger & Flandrin 1995), each bin k of frame t gives, from three STFTs
with the window h, its time derivative h' and its time-ramped version t*h:

- the instantaneous frequency ``f_k - Im(X_h' / X_h) * fs / 2pi`` (Hz), the
  phase's time derivative: the frequency the bin's energy belongs to;
- the group delay ``Re(X_th / X_h)`` (samples), minus the phase's frequency
  derivative: how far from the frame centre the bin's energy sits in time.

Both are exact per frame: no unwrapping, no differences between frames. Per mel
band b, with the band's triangle w_bk and the bins' power |X_hk|^2 as weights
(which silences the ill-defined values of near-empty bins; the per-bin
division cancels):

- frequency: power-weighted mean instantaneous frequency minus the band's
  centre, in half band widths. A sine inside the band gives exactly its
  offset from the centre, whichever bins it falls between (the magnitude
  spectrum only gives a centroid blurred by the window);
- group delay: power-weighted mean, in half windows. A click gives exactly
  its offset from the frame centre.

Both are clipped to [-1, 1]; silence gives 0.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from echo_plugin.features.bands import band_matrix, mel_band_edges
from echo_plugin.features.grid import FrameGrid

POWER_FLOOR = 1e-10


class PhaseFeatures(nn.Module):
    """(B, N) waveform -> (B, N // hop + 1, 2 * n_bands): [frequency offset per band, group delay per band].

    Frames and zero edge padding as :class:`LogMelSpectrogram`, so the frames match.
    """

    def __init__(self, grid: FrameGrid, n_bands: int = 16) -> None:
        super().__init__()
        self.grid = grid
        self.n_bands = n_bands
        width = grid.win_length
        n = torch.arange(width, dtype=torch.float64)
        hann = 0.5 - 0.5 * torch.cos(2 * math.pi * n / width)  # periodic Hann, as torch.hann_window
        d_hann = (math.pi / width) * torch.sin(2 * math.pi * n / width)  # d/dn per sample
        t_hann = (n - width / 2) * hann  # time from the window centre, samples
        self.register_buffer("windows", torch.stack([self._pad(w) for w in (hann, d_hann, t_hann)]).float(), False)
        bands = torch.from_numpy(band_matrix(grid.n_freqs, grid.fs, n_bands).copy()).float()
        self.register_buffer("bands", bands, persistent=False)  # (n_bands, F)
        edges = mel_band_edges(grid.fs, n_bands)
        self.register_buffer("centres", torch.from_numpy(edges[:, 1]).float(), persistent=False)
        half_widths = np.maximum((edges[:, 2] - edges[:, 0]) / 2, grid.fs / grid.n_fft)
        self.register_buffer("half_widths", torch.from_numpy(half_widths).float(), persistent=False)
        bins = torch.linspace(0, grid.fs / 2, grid.n_freqs)
        self.register_buffer("bin_hz", bins, persistent=False)
        self.hz_per_radian = grid.fs / (2 * math.pi)  # rad/sample -> Hz
        self.half_window = width / 2

    def _pad(self, window: Tensor) -> Tensor:
        """Centre a ``win_length`` window in ``n_fft`` samples, as torch.stft does."""
        left = (self.grid.n_fft - len(window)) // 2
        return nn.functional.pad(window, (left, self.grid.n_fft - len(window) - left))

    def _stft(self, wave: Tensor, window: Tensor) -> Tensor:
        g = self.grid
        return torch.stft(
            wave, g.n_fft, g.hop_length, g.n_fft, window, center=True, pad_mode="constant", return_complex=True
        )  # (B, F, T)

    def forward(self, wave: Tensor) -> Tensor:
        wave = wave.float()
        x_h, x_dh, x_th = (self._stft(wave, w) for w in self.windows)
        power = x_h.real**2 + x_h.imag**2  # (B, F, T)
        # power x instantaneous frequency, power x group delay: no division per bin
        power_freq = power * self.bin_hz[:, None] - (x_dh * x_h.conj()).imag * self.hz_per_radian
        power_delay = (x_th * x_h.conj()).real
        denom = torch.einsum("bf,nft->nbt", self.bands, power) + POWER_FLOOR
        freq = torch.einsum("bf,nft->nbt", self.bands, power_freq) / denom
        offset = (freq - self.centres[:, None] * (denom - POWER_FLOOR) / denom) / self.half_widths[:, None]
        delay = torch.einsum("bf,nft->nbt", self.bands, power_delay) / denom / self.half_window
        return torch.cat([offset.clamp(-1, 1), delay.clamp(-1, 1)], dim=1).transpose(1, 2)
