"""Pitch (f0) helpers shared by every pitch-aware part: the track type, resampling, phase.

f0 is in Hz per frame with 0 meaning unvoiced (no pitch). A model computes it at
its input frame rate; a layer after subsampling has fewer frames, so the encoder
brings it to that layer's frame count with :func:`resample_f0` once and hands
every layer an :class:`F0Track` (values plus the layer's frame period).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class F0Track:
    """Pitch on one layer's frames.

    Attributes:
        hz: (B, T) f0 in Hz, 0 = unvoiced, aligned with the layer's T frames.
        frame_period: seconds between two of those frames (input frame shift x subsampling).
        valid: (B, T) bool, True = a real frame (False = batch padding), or None = every
            frame real. Padding is unvoiced in ``hz`` too; only statistics over an
            utterance's frames (``pitch_aware_doc``'s z-normalised f0) need to tell them apart.
    """

    hz: Tensor
    frame_period: float
    valid: Optional[Tensor] = None

    def on_frames(self, length: int, user: str) -> Tensor:
        """``hz`` as float32 after checking it covers ``length`` frames; ``user`` names the caller in errors."""
        if self.hz.dim() != 2 or self.hz.shape[-1] != length:
            raise ValueError(
                f"{user}: f0 has shape {tuple(self.hz.shape)} but the layer has {length} frames; "
                "bring f0 to the layer's frame rate with resample_f0 first"
            )
        return self.hz.to(torch.float32)


def resample_f0(f0: Tensor, length: int) -> Tensor:
    """Linearly interpolate f0 (B, T_in) to (B, length) frames spanning the same time.

    Voiced and unvoiced frames are interpolated apart, so a voiced/unvoiced
    boundary never invents a half-way pitch: with ``v = (f0 > 0)``,

        out = interp(f0) / interp(v)   where interp(v) >= 0.5,   else 0 (unvoiced).

    A constant voiced track stays constant; frame centres are aligned as in
    ``F.interpolate(..., align_corners=False)``.
    """
    if f0.dim() != 2:
        raise ValueError(f"f0 must be (B, T), got shape {tuple(f0.shape)}")
    f0 = f0.to(torch.float32).clamp_min(0.0)
    if f0.shape[-1] == length:
        return f0
    if f0.shape[-1] == 0:
        return f0.new_zeros(f0.shape[0], length)
    voiced = (f0 > 0).to(torch.float32)
    both = F.interpolate(torch.stack([f0, voiced], dim=1), size=length, mode="linear", align_corners=False)
    total, weight = both[:, 0], both[:, 1]
    return torch.where(weight >= 0.5, total / weight.clamp_min(1e-6), torch.zeros_like(total))


def accumulate_phase(f0: Tensor, frame_period: float, phase0: float = 0.0) -> Tensor:
    """Pitch phase ``phi_t = phi_{t-1} + 2 * pi * f0_t * frame_period`` with ``phi_{-1} = phase0``.

    f0 (B, T) Hz -> (B, T) radians in float64 (not wrapped: callers scale it before
    taking it modulo 2 pi). Unvoiced frames (f0 = 0) hold the phase.
    """
    step = (2 * math.pi * frame_period) * f0.to(torch.float64)
    return phase0 + torch.cumsum(step, dim=-1)
