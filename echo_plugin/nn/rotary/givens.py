"""Givens rotary (no learned projection): one plane rotation per channel pair, in real arithmetic.

For pair ``k = (i_k, j_k)`` and frame ``t``, with ``a = rot_scale * p_t * w_k`` and the
standard ladder ``w_k = sign(theta) |theta|^(-k/F)``:

    x'_i = x_i cos a - x_j sin a,    x'_j = x_i sin a + x_j cos a

i.e. the product of ``F`` Givens rotations ``G(i_k, j_k, a)`` acting on disjoint planes.
``pairing: interleaved`` uses planes (2k, 2k+1) and equals ``standard``;
``pairing: half`` uses (k, k + F), the GPT-NeoX layout.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from echo_plugin.nn.rotary.base import AngleRotary, geometric_ladder, pair_count
from echo_plugin.nn.rotary.pitch import F0Track

PAIRINGS: Dict[str, Callable[[int], Tuple[Tensor, Tensor]]] = {
    "interleaved": lambda n: (torch.arange(n) * 2, torch.arange(n) * 2 + 1),
    "half": lambda n: (torch.arange(n), torch.arange(n) + n),
}


class GivensRotary(AngleRotary):
    """Position-angle plane rotations of channel pairs (see the module doc).

    YAML: ``rotary: {type: givens, conf: {theta: -6000.0, rot_count: 4, pairing: half}}``

    Args:
        head_dim: channels per attention head (set by the model).
        theta: ladder base; negative reverses the rotation.
        pairing: ``interleaved`` or ``half`` (which channels form each plane).
        rot_dim, rot_count, rot_scale: as for ``standard``.
    """

    def __init__(
        self,
        head_dim: int,
        theta: float = 10000.0,
        pairing: str = "interleaved",
        rot_dim: Optional[int] = None,
        rot_count: Optional[int] = None,
        rot_scale: float = 1.0,
    ) -> None:
        super().__init__(head_dim, rot_scale)
        if pairing not in PAIRINGS:
            raise ValueError(f"givens: unknown pairing '{pairing}'; known: {', '.join(sorted(PAIRINGS))}")
        n_pairs = pair_count(head_dim, rot_dim, rot_count)
        first, second = PAIRINGS[pairing](n_pairs)
        self.theta, self.pairing, self.n_pairs = theta, pairing, n_pairs
        self.register_buffer("inv_freq", geometric_ladder(theta, n_pairs), persistent=False)
        self.register_buffer("first", first, persistent=False)
        self.register_buffer("second", second, persistent=False)

    def raw_angles(self, positions: Tensor, f0: Optional[F0Track] = None) -> Tensor:
        return positions.to(torch.float32).unsqueeze(-1) * self.inv_freq

    def rotate(self, x: Tensor, positions: Tensor, f0: Optional[F0Track] = None) -> Tensor:
        angles = self.angles(positions)  # (T, F) or (B, T, F)
        if angles.dim() == 3:
            angles = angles.unsqueeze(-3)  # (B, 1, T, F): the same for every head
        cos, sin = angles.cos(), angles.sin()
        xf = x.float()
        a, b = xf[..., self.first], xf[..., self.second]
        out = xf.index_copy(-1, self.first, a * cos - b * sin).index_copy(-1, self.second, a * sin + b * cos)
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, pairs={self.n_pairs}, pairing={self.pairing}, theta={self.theta}"
