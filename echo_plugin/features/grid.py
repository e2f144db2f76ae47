"""The one frame grid every Echo feature is computed on.

Frame ``t`` is centred on sample ``t * hop_length`` (STFT with ``center=True``);
an utterance of ``N`` samples has ``N // hop_length + 1`` frames. The WORLD
analyses use ``frame_period = 1000 * hop_length / fs`` ms, whose frame ``t`` sits
at time ``t * hop_length / fs``: the same centres.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class FrameGrid:
    """Sample rate and STFT geometry shared by all features.

    Args:
        fs: sample rate (Hz).
        n_fft: FFT size of the STFT-based features.
        hop_length: frame shift in samples.
        win_length: analysis window in samples (defaults to ``n_fft``).
    """

    fs: int
    n_fft: int
    hop_length: int
    win_length: Optional[int] = None

    def __post_init__(self) -> None:
        if self.win_length is None:
            object.__setattr__(self, "win_length", self.n_fft)
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"win_length must be in (0, n_fft={self.n_fft}], got {self.win_length}")
        if self.hop_length <= 0 or self.fs <= 0:
            raise ValueError(f"fs and hop_length must be positive, got fs={self.fs}, hop={self.hop_length}")

    @property
    def frame_period_ms(self) -> float:
        """WORLD's frame period for this hop."""
        return 1000.0 * self.hop_length / self.fs

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop_length + 1

    def frame_lengths(self, sample_lengths: Tensor) -> Tensor:
        """(B,) samples -> (B,) frames."""
        return torch.div(sample_lengths, self.hop_length, rounding_mode="floor") + 1


def fit_frames(array: np.ndarray, num_frames: int) -> np.ndarray:
    """Cut or edge-pad ``array`` (T, ...) to ``num_frames`` rows.

    WORLD computes its frame count as ``int(1000 * N / fs / frame_period) + 1``
    in floating point, which can fall one short of ``N // hop + 1``.
    """
    if len(array) >= num_frames:
        return array[:num_frames]
    if len(array) == 0:
        return np.zeros((num_frames,) + array.shape[1:], dtype=array.dtype)
    pad = [(0, num_frames - len(array))] + [(0, 0)] * (array.ndim - 1)
    return np.pad(array, pad, mode="edge")


def frame_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths -> (B, max_len) bool, True on real frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
