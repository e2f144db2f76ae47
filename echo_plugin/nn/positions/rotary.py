"""Relative positions only: embeddings pass unchanged, the self-attention rotates q and k."""
from __future__ import annotations

from torch import Tensor, nn

from echo_plugin.registry import Spec


class RotaryPositions(nn.Module):
    """No absolute position; ``self_rotary`` (a ROTARY spec, default ``standard``) goes to self-attention.

    Args:
        d_model: width D (unused; the decoder passes it to every position type).
        rotary: ROTARY spec for the decoder's self-attention.
    """

    def __init__(self, d_model: int, rotary: Spec = "standard") -> None:
        super().__init__()
        self.self_rotary = rotary

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """x (B, L, D) -> x."""
        return x
