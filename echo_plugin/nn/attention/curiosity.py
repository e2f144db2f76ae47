"""Curiosity attention: standard attention plus a gated auxiliary stream.

Both streams share the (rotated) queries. The auxiliary stream has its own key
and value projections and a selectable score (:mod:`echo_plugin.nn.attention.curiosity_scores`:
``dot``, ``cosine``, ``rbf``). Per head ``h`` with gate ``g_h = sigmoid(gate_h)``::

    main_h = softmax(q k^T / sqrt(dh) + bias) v                  (exactly MultiHeadAttention)
    aux_h  = softmax(c_j * score(q, k_aux) + bias) v_aux
    out    = W_out concat_h((1 - g_h) main_h + g_h aux_h) + b_out

``bias`` is the rotaries' score bias, masks and causality are the same for both
streams; the auxiliary keys are rotated like the main keys. ``c_j`` is the
masking strategy's per-key score scale (1 for ``hard``), applied to the score's
fused-kernel form ``q'.k'/sqrt(dh) + key_bias_j`` (for ``rbf`` that is the
distance score plus the per-query constant ``|q_i|^2 / (2 sigma^2)``, which
cancels in softmax only where ``c_j = 1``). With every gate closed
(``gate_h -> -inf``) the output is bit-identical to :class:`MultiHeadAttention`
with the same weights; the state dict adds ``aux_key``, ``aux_value``, ``gate``
and the score's parameters.

KV cache: ``(k, v)`` with the auxiliary keys/values stacked after the main ones
along the head axis, each (B, 2H, S, dh) (:meth:`CuriosityAttention.project_keys`),
so the base concatenates it and decoders cache it like any other.

YAML: ``attention: {type: curiosity, conf: {score: rbf, gate_init: 0.0}}``,
``score: {type: cosine, conf: {temperature: 10.0}}``, ``score: {type: rbf, conf: {sigma: 2.0}}``.

Auxiliary source (``aux_source``). ``self`` (the default, our reading): the auxiliary
keys/values come from the same input as the main ones. ``features``: they come from a
different input, as the design document writes its ``curiosity`` module::

    def forward(self, x, xa, mask=None):
        q, k, v   = self.qkv(x).chunk(3, -1)
        qa, ka, va = self.qkv_aux(xa).chunk(3, -1)
        ...
        dots_aux  = (q @ ka.transpose(-2, -1)) / self.dh**0.5

The document builds it in ``Residual`` but never calls it, so which ``xa`` it gets is read
from the document's convention for that name: every ``forward(x, xa, ...)`` of the document takes
``xa`` as the *other* stream, the acoustic one (``MultiheadA``: ``z = default(xa, x)``;
``theBridge``: ``b(x, xa=xa, ...)`` with ``xa`` the audio after ``FEncoder`` / ``PEncoder``,
conv front ends ending in an RMSNorm). In an Echo encoder layer the counterpart is the
layer's auxiliary stream: EchoEncoder hands every layer its input layer's output, the
subsampled acoustic features at width D, the same for every layer (what ``c_gate`` reads).
Here it is layer-normalised (no affine weights) before the auxiliary projections, as the
document's ``xa`` always leaves an RMSNorm (ours leaves ESPnet's positional encoding, scaled
by sqrt(D)). Kept from our reading: the queries are shared and rotated, the auxiliary
keys are rotated at the key positions (the features are on the same frames), padding is
hidden in both streams (the document masks only ``dots``, at batch size 1), ``score`` may be
``dot`` (the document's) or another. The layer must hand the stream (``aux_stream``):
EchoEncoder layers do; decoders and the whisper_style encoder do not, and an
``aux_source: features`` module refuses to run without it, and with a KV cache.
YAML: ``attention: {type: curiosity, conf: {score: dot, aux_source: features}}``.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor, nn

from echo_plugin.catalog import CURIOSITY_SCORE
from echo_plugin.nn.attention.kernel import attend
from echo_plugin.nn.attention.standard import AttentionCall, MultiHeadAttention
from echo_plugin.nn.rotary.pitch import F0Track
from echo_plugin.registry import Spec

AUX_SOURCES = ("self", "features")

class CuriosityAttention(MultiHeadAttention):
    """Multi-head attention with a per-head gated auxiliary stream.

    ``cache``/``new_cache`` of ``forward``: (k, v), each (B, 2H, S, dh): heads ``:H`` main, ``H:`` auxiliary.

    Args:
        d_model, n_heads, and by keyword dropout, rotary, rotary_k, masking: as :class:`MultiHeadAttention`.
        score: CURIOSITY_SCORE spec of the auxiliary stream (``dot``, ``cosine``, ``rbf``).
        gate_init: initial gate logit of every head (seed: 0.0, i.e. an even mix).
        aux_source: ``self`` (auxiliary keys/values from the attention's own input) or
            ``features`` (from the layer's auxiliary stream, the design document's ``xa``; see the module doc).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        score: Spec = "dot",
        gate_init: float = 0.0,
        aux_source: str = "self",
        **common: Any,
    ) -> None:
        if aux_source not in AUX_SOURCES:
            raise ValueError(f"curiosity: aux_source must be one of {AUX_SOURCES}, got '{aux_source}'")
        super().__init__(d_model, n_heads, **common)
        self.aux_key = nn.Linear(d_model, d_model)
        self.aux_value = nn.Linear(d_model, d_model)
        self.gate = nn.Parameter(torch.full((n_heads,), float(gate_init)))
        self.score = CURIOSITY_SCORE.build(score, n_heads=n_heads, head_dim=self.head_dim)
        self.aux_source = aux_source
        self.aux_norm = nn.LayerNorm(d_model, elementwise_affine=False) if aux_source == "features" else None

    @property
    def uses_aux_stream(self) -> bool:
        """True with ``aux_source: features``: the layer must hand its auxiliary stream."""
        return self.aux_source == "features"

    def project_keys(self, source: Tensor, positions: Tensor, f0: Optional[F0Track]) -> Tensor:
        """Main then auxiliary keys along the head axis, both rotated: (B, 2H, S_new, dh);
        main keys only (B, H, S_new, dh) with ``aux_source: features`` (see :meth:`attend`)."""
        main = super().project_keys(source, positions, f0)
        if self.uses_aux_stream:
            return main
        aux = self.key_rotary.rotate(self._split_heads(self.aux_key(source)), positions, f0)
        return torch.cat([main, aux], dim=1)

    def project_values(self, source: Tensor) -> Tensor:
        """Main then auxiliary values along the head axis: (B, 2H, S_new, dh) (main only with
        ``aux_source: features``)."""
        main = super().project_values(source)
        if self.uses_aux_stream:
            return main
        return torch.cat([main, self._split_heads(self.aux_value(source))], dim=1)

    def stream_keys_values(self, call: AttentionCall) -> Tuple[Tensor, Tensor]:
        """``aux_source: features``: rotated auxiliary keys and values (B, H, S, dh) from
        ``LN(call.aux_stream)`` (B, S, D), on the key frames."""
        stream = call.aux_stream
        if stream is None:
            raise ValueError(
                "curiosity with aux_source 'features' needs the layer's auxiliary stream (aux_stream): "
                "EchoEncoder layers hand their input layer's output; decoders and whisper_style layers "
                "hand none, use aux_source 'self' there"
            )
        if call.cache is not None:
            raise ValueError("curiosity with aux_source 'features' keeps no KV cache (use it in encoder layers)")
        if stream.shape != call.source.shape:
            raise ValueError(
                f"curiosity: aux_stream must be on the key frames, {tuple(call.source.shape)}, "
                f"got {tuple(stream.shape)}"
            )
        stream = self.aux_norm(stream)
        keys = self.key_rotary.rotate(self._split_heads(self.aux_key(stream)), call.k_positions, call.k_f0)
        return keys, self._split_heads(self.aux_value(stream))

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], bias: Optional[Tensor], call: AttentionCall
    ) -> Tensor:
        """Both streams on the shared queries, mixed per head: k, v (B, 2H, S, dh) -> (B, H, T, dh)
        (k, v (B, H, S, dh) with ``aux_source: features``, the auxiliary ones from ``call.aux_stream``)."""
        if self.uses_aux_stream:
            k_aux, v_aux = self.stream_keys_values(call)
        else:
            (k, k_aux), (v, v_aux) = k.split(self.n_heads, dim=1), v.split(self.n_heads, dim=1)
        main = super().attend(q, k, v, mask, bias, call)
        aux = self._aux_stream(q, k_aux, v_aux, mask, call.causal, call.dropout, bias, call.zero_keys)
        gate = torch.sigmoid(self.gate).to(main.dtype)[:, None, None]  # (H, 1, 1)
        return main * (1.0 - gate) + aux * gate

    def _aux_stream(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        key_padding_mask: Optional[Tensor],
        causal: bool,
        dropout: float,
        bias: Optional[Tensor],
        zero_keys: Optional[Tensor],
    ) -> Tensor:
        """The auxiliary heads (B, H, T, dh): score inputs, the masking's per-key scale, the fused kernel."""
        q, k, key_bias = self.score(q, k)
        scale, keep = self.masking.key_scale(key_padding_mask, zero_keys, k.dtype)
        if scale is not None:
            scale = scale.to(k.device)[:, None, :]  # (B, 1, S)
            k = k * scale[..., None]
            key_bias = None if key_bias is None else key_bias * scale[:, :, None, :]
        if key_bias is not None:
            bias = key_bias if bias is None else bias + key_bias
        return attend(q, k, v, keep, causal, dropout, bias=bias)
