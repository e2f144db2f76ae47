"""No rotary position embedding: an ablation that leaves queries and keys as they are."""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from echo_plugin.nn.rotary.base import Rotary
from echo_plugin.nn.rotary.pitch import F0Track


class NoRotary(Rotary):
    """Identity: ``rotate`` returns x unchanged. YAML: ``rotary: none``.

    Args:
        head_dim: channels per attention head (set by the model; unused).
    """

    def rotate(self, x: Tensor, positions: Tensor, f0: Optional[F0Track] = None) -> Tensor:
        return x
