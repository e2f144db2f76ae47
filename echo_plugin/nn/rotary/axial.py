"""Axial (2-D) rotary for spectrogram patches: half the pairs follow time, half follow frequency.

Positions are (time index, frequency index) per token, shape (T, 2) or (B, T, 2).
Of the ``F`` rotated pairs, the first ``ceil(F/2)`` turn by ``t * w_k`` and the rest by
``f * v_k`` (``w``, ``v``: standard ladders with ``theta`` and ``freq_theta``), so q.k
depends only on the (time, frequency) offset. :func:`grid_positions` numbers a
patch grid time-major.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from echo_plugin.nn.rotary.base import PairRotary, geometric_ladder, pair_count
from echo_plugin.nn.rotary.pitch import F0Track


def grid_positions(n_time: int, n_freq: int, device: Optional[torch.device] = None) -> Tensor:
    """(n_time * n_freq, 2) long positions; row ``t * n_freq + f`` is ``(t, f)``."""
    t = torch.arange(n_time, device=device).repeat_interleave(n_freq)
    f = torch.arange(n_freq, device=device).repeat(n_time)
    return torch.stack([t, f], dim=-1)


class AxialRotary(PairRotary):
    """Time x frequency rotary (see the module doc).

    YAML: ``rotary: {type: axial, conf: {theta: 50.0, freq_theta: 100.0}}``

    Args:
        head_dim: channels per attention head (set by the model).
        theta: ladder base of the time pairs; negative reverses.
        freq_theta: ladder base of the frequency pairs (default ``theta``).
        rot_dim, rot_count, rot_scale: as for ``standard`` (rot_count >= 2).
    """

    def __init__(
        self,
        head_dim: int,
        theta: float = 10000.0,
        freq_theta: Optional[float] = None,
        rot_dim: Optional[int] = None,
        rot_count: Optional[int] = None,
        rot_scale: float = 1.0,
    ) -> None:
        n_pairs = pair_count(head_dim, rot_dim, rot_count)
        if n_pairs < 2:
            raise ValueError("axial rotary needs at least 2 rotated pairs (one per axis)")
        super().__init__(head_dim, n_pairs, rot_scale)
        self.theta = theta
        self.freq_theta = theta if freq_theta is None else freq_theta
        n_time = (n_pairs + 1) // 2
        self.register_buffer("time_freq", geometric_ladder(self.theta, n_time), persistent=False)
        self.register_buffer("freq_freq", geometric_ladder(self.freq_theta, n_pairs - n_time), persistent=False)

    def raw_angles(self, positions: Tensor, f0: Optional[F0Track] = None) -> Tensor:
        """(T, 2) or (B, T, 2) (time, frequency) indices -> (T, F) or (B, T, F)."""
        if positions.dim() < 2 or positions.shape[-1] != 2:
            raise ValueError(
                f"axial rotary needs (T, 2) or (B, T, 2) positions, got shape {tuple(positions.shape)}"
            )
        p = positions.to(torch.float32)
        return torch.cat([p[..., :1] * self.time_freq, p[..., 1:] * self.freq_freq], dim=-1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, theta={self.theta}, freq_theta={self.freq_theta}"
