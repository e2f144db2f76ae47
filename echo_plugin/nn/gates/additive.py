"""``additive``: a gate as the design document uses it, its value added to the residual beside the feed-forward update.

Our gates multiply the feed-forward update (``h + g(x) * FF(x)``). The design document
(``04_pitch_aware_rotary.md``, class ``Residual``) adds the gate's value instead::

    cx = self.lnb(bx)
    dx = self.mlp(cx)
    ex = self.t_gate(cx) if not None else self.default(self.m_gate(cx), self.mlp_gate(cx))
    fx = x + ex + dx

so the block's update is ``FF(cx) + g(cx)``: the feed-forward output is not gated at
all, and the gate value ``g`` (the document's ``t_gate``: (B, T, 1), one scalar per frame,
broadcast over the channels) is a second additive residual term. This gate returns
exactly that, ``update + g(x, aux)``, so Echo's layers compute
``h + dropout(FF(norm(h)) + g(norm(h)))``.

What was followed, and what not:

* the inner gate: ``ex = self.t_gate(cx) if not None else ...``: ``if not None`` is
  always true, so the document's ``Residual`` always takes ``t_gate``, built with
  ``num_types=4*2``; the ``m_gate`` / ``mlp_gate`` alternative is never reached (and
  ``self.default`` does not exist). Default here: ``{type: t_gate, conf: {num_types: 8}}``;
  any GATE with a value may be named instead (``none`` is refused: it has none).
* the residual it is added to: the document adds ``ex + dx`` to ``x``, the block's input
  *before* attention (its attention output ``ax`` reaches ``fx`` only through
  ``cx = lnb(b * ax + (1 - b) * x)``), then post-normalises (``gx = self.lnc(fx)``).
  Echo's pre-norm layers keep their attention residual; only the gate's use changes.
  The document applies no dropout to ``ex + dx``; Echo's residual dropout applies to the sum.

YAML: ``gate: additive`` or ``gate: {type: additive, conf: {gate: {type: m_gate, conf: {mem_size: 64}}}}``.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from echo_plugin.catalog import GATE
from echo_plugin.nn.gates.base import Gate
from echo_plugin.nn.gates.none import NoGate
from echo_plugin.registry import Spec

SEED_GATE = {"type": "t_gate", "conf": {"num_types": 8}}
"""The gate the document's ``Residual`` always runs: ``t_gate(dims, num_types=4*2)``."""


class AdditiveGate(Gate):
    """``forward(x, update, aux) = update + g(x, aux)`` with ``g`` the inner gate's value (see the module doc).

    Args:
        d_model: width D (set by the model).
        gate: GATE spec of the inner gate whose value is added (default: the document's t_gate with 8 types).
    """

    def __init__(self, d_model: int, gate: Spec = None) -> None:
        inner = GATE.build(SEED_GATE if gate is None else gate, d_model=d_model)
        if isinstance(inner, (NoGate, AdditiveGate)):
            raise ValueError(f"additive: the inner gate must be a gate with a value, not {type(inner).__name__}")
        super().__init__(d_model, per_channel=inner.gate_dim == d_model and d_model > 1)
        self.inner = inner

    def value(self, x: Tensor, aux: Optional[Tensor] = None) -> Tensor:
        return self.inner.value(x, aux)

    def forward(self, x: Tensor, update: Tensor, aux: Optional[Tensor] = None) -> Tensor:
        """x (B, T, D), update (B, T, D), aux or None -> update + g (B, T, D)."""
        return update + self.value(x, aux)
