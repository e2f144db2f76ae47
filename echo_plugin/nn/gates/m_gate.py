"""``m_gate``: a gate read from a learned memory by attention, averaged with a direct gate."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from echo_plugin.nn.gates.base import Gate, check_counts


class MemoryGate(Gate):
    """A memory gate: each frame attends over ``mem_size`` learned (key, value) slots.

        a   = softmax(x K^T / sqrt(D))                    (B, T, M)   K: (M, D) memory keys
        g_m = sigmoid(a V)                                (B, T, G)   V: (M, G) memory values
        g_d = sigmoid(W_2 SiLU(W_1 x + b_1) + b_2)        (B, T, G)   direct gate, hidden D // 2
        g   = (g_m + g_d) / 2
        out = g * update

    G = 1 (seed) or D with ``per_channel: true``. K and V start as N(0, 1), so for
    a normalised x the scores x.k / sqrt(D) start at unit scale.
    YAML: ``gate: {type: m_gate, conf: {mem_size: 64}}``.

    Args:
        d_model, per_channel: as :class:`~echo_plugin.nn.gates.base.Gate`.
        mem_size: M, the number of memory slots (seed: 64; its Residual used 512).
    """

    def __init__(self, d_model: int, mem_size: int = 64, per_channel: bool = False) -> None:
        super().__init__(d_model, per_channel)
        check_counts("m_gate", mem_size=mem_size)
        self.mem_key = nn.Parameter(torch.randn(mem_size, d_model))
        self.mem_value = nn.Parameter(torch.randn(mem_size, self.gate_dim))
        hidden = max(1, d_model // 2)
        self.direct = nn.Sequential(nn.Linear(d_model, hidden), nn.SiLU(), nn.Linear(hidden, self.gate_dim))

    def memory_attention(self, x: Tensor) -> Tensor:
        """a: (B, T, M), each frame's softmax weights over the memory slots."""
        return torch.softmax(x @ self.mem_key.t() / math.sqrt(self.d_model), dim=-1)

    def value(self, x: Tensor, aux: Optional[Tensor] = None) -> Tensor:
        from_memory = torch.sigmoid(self.memory_attention(x) @ self.mem_value)
        direct = torch.sigmoid(self.direct(x))
        return 0.5 * (from_memory + direct)
