"""``t_gate``: a soft mixture of per-type sigmoid gates, the type chosen by a softmax classifier."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from echo_plugin.nn.gates.base import Gate, check_counts


class TypeGate(Gate):
    """Each frame is softly classified into ``num_types`` types; each type has its own gate.

        p   = softmax(W_c x + b_c)              (B, T, K)   type probabilities
        g_k = sigmoid(W_k x + b_k)              (B, T, G)   gate of type k, k = 1..K
        g   = sum_k p_k g_k                     (B, T, G)   in (0, 1): a convex mix of gates
        out = g * update

    G = 1 (one scalar gate per type) or D with ``per_channel: true``.
    The K gate projections are one Linear(D, K * G).
    YAML: ``gate: {type: t_gate, conf: {num_types: 4}}``.

    Args:
        d_model, per_channel: as :class:`~echo_plugin.nn.gates.base.Gate`.
        num_types: K, the number of token types (seed: 4; its Residual used 8).
    """

    def __init__(self, d_model: int, num_types: int = 4, per_channel: bool = False) -> None:
        super().__init__(d_model, per_channel)
        check_counts("t_gate", num_types=num_types)
        self.num_types = num_types
        self.classifier = nn.Linear(d_model, num_types)
        self.gates = nn.Linear(d_model, num_types * self.gate_dim)

    def type_probs(self, x: Tensor) -> Tensor:
        """p: (B, T, K), softmax over types."""
        return torch.softmax(self.classifier(x), dim=-1)

    def value(self, x: Tensor, aux: Optional[Tensor] = None) -> Tensor:
        gates = torch.sigmoid(self.gates(x)).unflatten(-1, (self.num_types, self.gate_dim))  # (B, T, K, G)
        return (self.type_probs(x).unsqueeze(-1) * gates).sum(dim=-2)
