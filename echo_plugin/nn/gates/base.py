"""What a gate is: a learned multiplier on a block's residual update.

Every GATE module is called as ``gate(x, update, aux=None) -> gated update``:

* ``x``: (B, T, D), the input the update was computed from (in Echo's layers the
  normalised feed-forward input ``ff_norm(h)``);
* ``update``: (B, T, D), the residual branch's output (the feed-forward output);
* ``aux``: optional (B, T, D) auxiliary stream, read only by gates that use one
  (``c_gate``); the others ignore it.

The layer adds the result to its residual stream: ``h + dropout(gate(x, ff(x)))``.
A gate value ``g = value(x, aux)`` is (B, T, 1) (one scalar per frame, the design documents'
``Linear(dims, 1)`` gates, the default) or (B, T, D) (``per_channel: true``), and
``forward`` returns ``g * update``. Each ``g`` lies in (0, 1), so a gate can only
shrink the update of a frame (or channel), never amplify or flip it. The one
exception is ``additive`` (the design document's form), whose ``forward`` returns ``update + g``.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn


def check_counts(gate: str, **counts: int) -> None:
    """ValueError naming ``gate`` and the first of ``counts`` (slots, types, ...) below 1."""
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{gate}: {name} must be >= 1, got {value}")


class Gate(nn.Module):
    """Base class of the GATE table (``echo_plugin.catalog``; see the module doc).

    Args (of every gate):
        d_model: width D (set by the model).
        per_channel: one gate per channel (B, T, D) instead of one per frame (B, T, 1).
    """

    def __init__(self, d_model: int, per_channel: bool = False) -> None:
        super().__init__()
        if d_model <= 0:
            raise ValueError(f"d_model must be positive, got {d_model}")
        self.d_model = d_model
        self.gate_dim = d_model if per_channel else 1

    def value(self, x: Tensor, aux: Optional[Tensor] = None) -> Tensor:
        """The gate g in (0, 1): (B, T, 1) or (B, T, D)."""
        raise NotImplementedError

    def forward(self, x: Tensor, update: Tensor, aux: Optional[Tensor] = None) -> Tensor:
        """x (B, T, D), update (B, T, D), aux (B, T, D) or None -> g * update (B, T, D)."""
        return self.value(x, aux) * update
