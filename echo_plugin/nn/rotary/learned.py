"""Learned rotary: trained inverse frequencies plus a trained per-position angle bias.

    angle_{t,i} = rot_scale * (p_t * w_i + b_{p_t, i})

``w`` starts as standard RoPE's ladder, ``b`` (max_positions, F) at zero, so at
initialisation the variant equals ``standard``. The bias makes scores depend on
absolute positions as well as offsets; ``position_bias: false`` drops it.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from echo_plugin.nn.rotary.base import LadderRotary, geometric_ladder, pair_count
from echo_plugin.nn.rotary.pitch import F0Track


class LearnedRotary(LadderRotary):
    """RoPE with learned frequencies and a learned angle offset per position.

    YAML: ``rotary: {type: learned, conf: {theta: 10000.0, max_positions: 2048}}``

    Args:
        head_dim: channels per attention head (set by the model).
        theta: base of the initial frequency ladder; negative reverses the rotation.
        max_positions: positions the bias table covers (positions must lie in [0, max_positions)).
        position_bias: learn the per-position angle bias.
        rot_dim, rot_count, rot_scale: as for ``standard``.
    """

    continuous = False  # the bias is looked up by integer position

    def __init__(
        self,
        head_dim: int,
        theta: float = 10000.0,
        max_positions: int = 4096,
        position_bias: bool = True,
        rot_dim: Optional[int] = None,
        rot_count: Optional[int] = None,
        rot_scale: float = 1.0,
    ) -> None:
        n_pairs = pair_count(head_dim, rot_dim, rot_count)
        super().__init__(head_dim, geometric_ladder(theta, n_pairs), rot_scale, learn=True)
        if max_positions < 1:
            raise ValueError(f"max_positions must be positive, got {max_positions}")
        self.theta = theta
        self.max_positions = max_positions
        self.bias = nn.Parameter(torch.zeros(max_positions, n_pairs)) if position_bias else None

    def raw_angles(self, positions: Tensor, f0: Optional[F0Track] = None) -> Tensor:
        if positions.is_floating_point():
            raise ValueError("learned rotary needs integer positions (its bias is a per-position table)")
        angles = super().raw_angles(positions)
        if self.bias is None:
            return angles
        if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= self.max_positions):
            raise ValueError(
                f"learned rotary: positions {int(positions.min())}..{int(positions.max())} fall outside "
                f"[0, max_positions={self.max_positions}); raise max_positions in its conf"
            )
        return angles + self.bias[positions]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, theta={self.theta}, max_positions={self.max_positions}"
