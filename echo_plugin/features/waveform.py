"""Raw-waveform input prepared for a strided conv stack whose frames land on the shared grid.

A stack of unpadded convolutions with strides s_i (product = hop) and kernels
k_i reads, for output frame t, the samples ``[t*hop + off, t*hop + off + R)``
of its input, R being its receptive field. Padding the waveform with
``R // 2`` zeros in front centres that window on sample ``t * hop`` of the
utterance, the centre of STFT frame t; enough zeros behind give exactly
``N // hop + 1`` frames.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import Tensor

from echo_plugin.features.grid import frame_mask


def split_hop(hop_length: int) -> List[int]:
    """Strides (largest first, each <= 5 where possible) whose product is ``hop_length``: 80 -> [5, 4, 4]."""
    strides, rest = [], hop_length
    for factor in (5, 4, 3, 2):
        while rest % factor == 0 and rest > 1:
            strides.append(factor)
            rest //= factor
    if rest > 1:  # a prime factor above 5
        strides.append(rest)
    return sorted(strides, reverse=True) or [1]


def receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Input samples one output frame of an unpadded conv stack sees."""
    field, jump = 1, 1
    for kernel, stride in zip(kernels, strides):
        field += (kernel - 1) * jump
        jump *= stride
    return field


def normalise_rms(wave: Tensor, lengths: Tensor, eps: float = 1e-5) -> Tensor:
    """(B, N) -> each utterance scaled to unit RMS over its own samples; padding set to 0."""
    valid = frame_mask(lengths, wave.size(1)).to(wave.dtype)
    wave = wave * valid
    power = (wave**2).sum(dim=1, keepdim=True) / lengths.clamp(min=1)[:, None].to(wave.dtype)
    return wave / torch.sqrt(power + eps**2)


def pad_for_frames(wave: Tensor, lengths: Tensor, receptive: int, hop_length: int) -> Tensor:
    """(B, N) -> (B, R//2 + N + right): zero-padded so an unpadded conv stack gives N // hop + 1 frames.

    Samples past each utterance's length are zeroed, so a batch member sees
    exactly the zeros it would see alone.
    """
    num_frames = wave.size(1) // hop_length + 1
    left = receptive // 2
    total = (num_frames - 1) * hop_length + receptive
    wave = wave * frame_mask(lengths, wave.size(1)).to(wave.dtype)
    return torch.nn.functional.pad(wave, (left, total - left - wave.size(1)))
