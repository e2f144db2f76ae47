"""ESPnet's absolute sinusoidal positions: x * sqrt(D) + pe[position], sin/cos interleaved."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def interleaved_sinusoids(positions: Tensor, d_model: int) -> Tensor:
    """(L,) positions -> (L, D) with pe[:, 0::2] = sin(p w_i), pe[:, 1::2] = cos(p w_i), w_i = 10000^(-2i/D)."""
    even = torch.arange(0, d_model, 2, dtype=torch.float32, device=positions.device)
    freqs = torch.exp(even * (-math.log(10000.0) / d_model))
    angles = positions.to(torch.float32)[:, None] * freqs[None, :]
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)[:, :d_model]


class SinusoidalPositions(nn.Module):
    """ESPnet ``PositionalEncoding`` (no parameters): embeddings scaled by sqrt(D), then sinusoids added.

    Args:
        d_model: width D (even).
    """

    self_rotary = "none"

    def __init__(self, d_model: int) -> None:
        super().__init__()
        if d_model % 2:
            raise ValueError(f"sinusoidal positions need an even width, got {d_model}")
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """x (B, L, D), positions (L,) -> (B, L, D)."""
        return x * self.xscale + interleaved_sinusoids(positions, self.d_model).to(x.dtype)
