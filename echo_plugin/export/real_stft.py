"""``torch.stft``'s power spectrum in real arithmetic, so that it exports to ONNX.

``torch.stft`` returns a complex tensor and ONNX has no complex type (the TorchScript-based
exporter stops with "STFT does not currently support complex types"). Here each frame's
one-sided DFT is a strided ``conv1d`` whose kernels are the windowed DFT basis
``w[n] cos(2 pi k n / n_fft)`` and ``-w[n] sin(2 pi k n / n_fft)`` (computed in float64,
stored in float32): the same numbers as the FFT up to float rounding.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def dft_basis(n_fft: int, window: Optional[Tensor], normalized: bool = False) -> Tensor:
    """(2K, 1, n_fft) float32 kernels, K = n_fft // 2 + 1: the cosines then the negated sines.

    ``window`` (win_length,), None for a rectangular one, is zero-padded to ``n_fft`` around its
    centre as ``torch.stft`` pads it; ``normalized`` divides by sqrt(n_fft) as ``torch.stft`` does.
    """
    window = torch.ones(n_fft, dtype=torch.float64) if window is None else window.to(torch.float64)
    left = (n_fft - window.numel()) // 2
    window = F.pad(window, (left, n_fft - window.numel() - left))
    bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    angle = 2 * math.pi * bins[:, None] * torch.arange(n_fft, dtype=torch.float64)[None, :] / n_fft
    basis = torch.cat([angle.cos() * window, -angle.sin() * window], dim=0)
    if normalized:
        basis = basis / math.sqrt(n_fft)
    return basis.to(torch.float32).unsqueeze(1)


def power_spectrum(speech: Tensor, basis: Tensor, hop: int, center: bool = True) -> Tensor:
    """speech (B, N) -> |STFT|^2 (B, T, K), as ``torch.stft(..., center, pad_mode="reflect").abs() ** 2``
    transposed; ``basis`` from :func:`dft_basis`. With ``center`` T = N // hop + 1."""
    x = speech.unsqueeze(1)
    n_fft = basis.shape[-1]
    if center:
        x = F.pad(x, (n_fft // 2, n_fft // 2), mode="reflect")
    spec = F.conv1d(x, basis, stride=hop)  # (B, 2K, T)
    bins = basis.shape[0] // 2
    real, imag = spec[:, :bins], spec[:, bins:]
    return (real * real + imag * imag).transpose(1, 2)
