"""Learned absolute positions (Whisper's decoder): x + table[position]."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class LearnedPositions(nn.Module):
    """A (max_positions, D) table added to the token embeddings.

    Args:
        d_model: width D.  max_positions: longest target sequence (Whisper: ``n_text_ctx``).
    """

    self_rotary = "none"

    def __init__(self, d_model: int, max_positions: int = 448) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(max_positions, d_model) * 0.02)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """x (B, L, D), positions (L,) -> (B, L, D)."""
        if positions.numel() and int(positions.max()) >= self.table.shape[0]:
            raise ValueError(
                f"target position {int(positions.max())} is beyond max_positions={self.table.shape[0]} "
                "of the learned position table (raise max_positions or shorten the targets)"
            )
        return x + self.table[positions].to(x.dtype)
