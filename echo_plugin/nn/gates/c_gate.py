"""``c_gate``: a context gate from the input and, when the layer gives one, an auxiliary stream."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from echo_plugin.nn.gates.base import Gate


class ContextGate(Gate):
    """Gate the update by the frame's input and an auxiliary feature stream ``aux``.

        g   = sigmoid(W_x x + W_a LN(aux) + b)     when aux is given (and ``use_aux``)
        g   = sigmoid(W_x x + b)                   otherwise
        out = g * update

    ``aux`` is what the layer hands over: in EchoEncoder the input layer's output
    (the subsampled acoustic features at width D, the same for every layer), in
    EchoDecoder the cross-attention output of the layer (the acoustic context of
    each token). This is the design document's ``c_gate`` reduced to its gating: there, sigmoid
    gates of x weighted feature streams (spectrogram, pitch, ...) that defaulted to
    x when absent; here the feature stream steers the gate of the update instead of
    being added to it (the frontend's ``gated`` FUSION already merges feature
    streams). LN (a LayerNorm without affine weights) keeps a large-scale ``aux``
    (e.g. after absolute positional encoding, scaled by sqrt(D)) from saturating the
    sigmoid. W_a has no bias; the one bias b is in W_x's Linear.
    YAML: ``gate: c_gate`` or ``gate: {type: c_gate, conf: {use_aux: false}}``.

    Args:
        d_model, per_channel: as :class:`~echo_plugin.nn.gates.base.Gate`.
        use_aux: read ``aux`` when given; False = always the x-only gate (and no W_a).
    """

    def __init__(self, d_model: int, use_aux: bool = True, per_channel: bool = False) -> None:
        super().__init__(d_model, per_channel)
        self.from_x = nn.Linear(d_model, self.gate_dim)
        self.aux_norm = nn.LayerNorm(d_model, elementwise_affine=False) if use_aux else None
        self.from_aux = nn.Linear(d_model, self.gate_dim, bias=False) if use_aux else None

    def value(self, x: Tensor, aux: Optional[Tensor] = None) -> Tensor:
        logits = self.from_x(x)
        if aux is not None and self.from_aux is not None:
            if aux.shape != x.shape:
                raise ValueError(f"c_gate: aux must be {tuple(x.shape)} like x, got {tuple(aux.shape)}")
            logits = logits + self.from_aux(self.aux_norm(aux))
        return torch.sigmoid(logits)
