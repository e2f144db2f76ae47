"""Mel-spaced rotary: pair frequencies evenly spaced in mel.

The design document spaces its rotary frequencies on the mel scale (``2595 * log10(1 + f / 700)``)
up to 8 kHz. Here pair ``i`` of ``F`` gets the Hz value

    f_i = mel^-1( mel(min_hz) + i / (F - 1) * (mel(max_hz) - mel(min_hz)) )

and turns by the angular frequency, in radians per frame,

    w_i = pi * f_i / max_hz,

so the top of the ladder sits at the frame sequence's Nyquist rate (pi per frame)
and every pair keeps its mel ratio to it: with the defaults (20 Hz .. 8 kHz) the
slowest pair turns by 0.008 rad per frame (a wavelength of 800 frames), most pairs
are slow and few are fast, as the mel scale spends its resolution low. The
absolute Hz values only shape the curve; ``rot_scale`` stretches the whole ladder.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from echo_plugin.nn.rotary.base import LadderRotary, pair_count


def hz_to_mel(hz: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_ladder(count: int, min_hz: float, max_hz: float) -> Tensor:
    """(count,) angular frequencies per frame ``pi * f_i / max_hz`` for mel-spaced ``f_i`` (ascending)."""
    if not 0.0 <= min_hz < max_hz:
        raise ValueError(f"need 0 <= min_hz < max_hz, got min_hz={min_hz}, max_hz={max_hz}")
    edges = hz_to_mel(torch.tensor([min_hz, max_hz], dtype=torch.float64))
    hz = mel_to_hz(torch.linspace(float(edges[0]), float(edges[1]), count, dtype=torch.float64))
    return (math.pi * hz / max_hz).to(torch.float32)


class MelRotary(LadderRotary):
    """Positions times a mel-spaced ladder of angular frequencies (see the module doc).

    YAML: ``rotary: {type: mel, conf: {min_hz: 20.0, max_hz: 8000.0}}``

    Args:
        head_dim: channels per attention head (set by the model).
        min_hz, max_hz: the ladder's ends in Hz (max_hz maps to pi radians per frame).
        rot_dim, rot_count, rot_scale: as for ``standard`` (a negative rot_scale reverses).
    """

    def __init__(
        self,
        head_dim: int,
        min_hz: float = 20.0,
        max_hz: float = 8000.0,
        rot_dim: Optional[int] = None,
        rot_count: Optional[int] = None,
        rot_scale: float = 1.0,
    ) -> None:
        n_pairs = pair_count(head_dim, rot_dim, rot_count)
        super().__init__(head_dim, mel_ladder(n_pairs, min_hz, max_hz), rot_scale)
        self.min_hz, self.max_hz = min_hz, max_hz

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, min_hz={self.min_hz}, max_hz={self.max_hz}"
