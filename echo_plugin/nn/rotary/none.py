"""No rotary position embedding: an ablation that leaves queries and keys as they are."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from echo_plugin.nn.registries import ROTARY


@ROTARY.register("none")
class NoRotary(nn.Module):
    """Returns zero rotated pairs, so ``apply_rotary`` passes every channel through.

    Args:
        head_dim: channels per attention head (set by the model; unused).
    """

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.head_dim = head_dim

    def forward(self, positions: Tensor) -> Tensor:
        """(T,) -> complex (T, 0); (B, T) -> complex (B, 1, T, 0)."""
        shape = (*positions.shape, 0) if positions.dim() == 1 else (positions.shape[0], 1, positions.shape[1], 0)
        return torch.ones(shape, dtype=torch.complex64, device=positions.device)
