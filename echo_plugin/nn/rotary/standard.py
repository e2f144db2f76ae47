"""Standard RoPE: angle ``position * theta ** (-2i / rot_dim)``, unit radius."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from echo_plugin.nn.registries import ROTARY


@ROTARY.register("standard")
class StandardRotary(nn.Module):
    """Positions -> unit-modulus complex rotations for the first ``rot_dim`` channels.

    Args:
        head_dim: channels per attention head (set by the model).
        theta: base of the geometric frequency ladder.
        rot_dim: rotated channels (even, <= head_dim); the rest pass through.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0, rot_dim: Optional[int] = None) -> None:
        super().__init__()
        rot_dim = head_dim if rot_dim is None else rot_dim
        if rot_dim % 2 or not 0 < rot_dim <= head_dim:
            raise ValueError(f"rot_dim must be even and in (0, head_dim={head_dim}], got {rot_dim}")
        self.head_dim = head_dim
        self.rot_dim = rot_dim
        self.theta = theta
        inv_freq = theta ** (-torch.arange(0, rot_dim, 2, dtype=torch.float32) / rot_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def angles(self, positions: Tensor) -> Tensor:
        """(T,) or (B, T) integer positions -> (T, F) or (B, T, F) float32 angles."""
        return positions.to(torch.float32).unsqueeze(-1) * self.inv_freq

    def forward(self, positions: Tensor) -> Tensor:
        """(T,) -> complex (T, F); (B, T) -> complex (B, 1, T, F) (broadcast over heads)."""
        angles = self.angles(positions)
        freqs = torch.polar(torch.ones_like(angles), angles)
        return freqs if positions.dim() == 1 else freqs.unsqueeze(1)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, rot_dim={self.rot_dim}, theta={self.theta}"
