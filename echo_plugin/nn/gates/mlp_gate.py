"""``mlp_gate``: a sigmoid of a linear map of the input gates the feed-forward update."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from echo_plugin.nn.gates.base import Gate


class MLPGate(Gate):
    """g = sigmoid(W x + b);  out = g * update.

    W is (1, D) (one gate per frame) or (D, D) with
    ``per_channel: true`` (a GLU-style channel gate).
    YAML: ``gate: mlp_gate`` or ``gate: {type: mlp_gate, conf: {per_channel: true}}``.

    Args:
        d_model, per_channel: as :class:`~echo_plugin.nn.gates.base.Gate`.
    """

    def __init__(self, d_model: int, per_channel: bool = False) -> None:
        super().__init__(d_model, per_channel)
        self.proj = nn.Linear(d_model, self.gate_dim)

    def value(self, x: Tensor, aux: Optional[Tensor] = None) -> Tensor:
        return torch.sigmoid(self.proj(x))
