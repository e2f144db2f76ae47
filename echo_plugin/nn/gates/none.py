"""No gate: the residual update passes unchanged (the default)."""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from echo_plugin.nn.gates.base import Gate


class NoGate(Gate):
    """Identity, ``gate(x, update) = update``, with no parameters. YAML: ``gate: none``.

    ``forward`` returns ``update`` itself (no multiplication by one), so a layer
    with this gate computes bit for bit what an ungated layer does and has the
    same state-dict keys.

    Args:
        d_model: width D (set by the model; unused).
    """

    def __init__(self, d_model: int = 1) -> None:
        super().__init__(d_model)

    def value(self, x: Tensor, aux: Optional[Tensor] = None) -> Tensor:
        return x.new_ones(x.shape[:-1] + (1,))

    def forward(self, x: Tensor, update: Tensor, aux: Optional[Tensor] = None) -> Tensor:
        return update
