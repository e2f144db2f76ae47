"""Curiosity attention (seed 04): standard attention plus a gated auxiliary stream.

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
along the head axis, each (B, 2H, S, dh), so decoders cache it like any other.

YAML: ``attention: {type: curiosity, conf: {score: rbf, gate_init: 0.0}}``,
``score: {type: cosine, conf: {temperature: 10.0}}``, ``score: {type: rbf, conf: {sigma: 2.0}}``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from echo_plugin.nn.attention.kernel import KVCache, attend
from echo_plugin.nn.attention.curiosity_scores import SCORE
from echo_plugin.nn.attention.standard import MultiHeadAttention
from echo_plugin.nn.registries import ATTENTION
from echo_plugin.nn.rotary.pitch import F0Track
from echo_plugin.registry import Spec


@ATTENTION.register("curiosity")
class CuriosityAttention(MultiHeadAttention):
    """Multi-head attention with a per-head gated auxiliary stream.

    Args:
        d_model, n_heads, dropout, rotary, rotary_k, masking: as :class:`MultiHeadAttention`.
        score: SCORE spec of the auxiliary stream (``dot``, ``cosine``, ``rbf``).
        gate_init: initial gate logit of every head (seed: 0.0, i.e. an even mix).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        rotary: Spec = None,
        rotary_k: Spec = None,
        masking: Spec = None,
        score: Spec = "dot",
        gate_init: float = 0.0,
    ) -> None:
        super().__init__(d_model, n_heads, dropout, rotary, rotary_k, masking)
        self.aux_key = nn.Linear(d_model, d_model)
        self.aux_value = nn.Linear(d_model, d_model)
        self.gate = nn.Parameter(torch.full((n_heads,), float(gate_init)))
        self.score = SCORE.build(score, n_heads=n_heads, head_dim=self.head_dim)

    def forward(
        self,
        query: Tensor,
        key_value: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
        causal: bool = False,
        q_positions: Optional[Tensor] = None,
        k_positions: Optional[Tensor] = None,
        cache: Optional[KVCache] = None,
        f0: Optional[F0Track] = None,
        k_f0: Optional[F0Track] = None,
        zero_keys: Optional[Tensor] = None,
    ) -> Tuple[Tensor, KVCache]:
        """Same arguments and shapes as :meth:`MultiHeadAttention.forward`, except the cache.

        ``cache``/``new_cache``: (k, v), each (B, 2H, S, dh): heads ``:H`` main, ``H:`` auxiliary.
        """
        source = query if key_value is None else key_value
        past = 0 if cache is None else cache[0].shape[-2]
        if q_positions is None:
            q_positions = torch.arange(past, past + query.shape[1], device=query.device)
        if k_positions is None:
            k_positions = (
                q_positions if key_value is None else torch.arange(past, past + source.shape[1], device=query.device)
            )
        if k_f0 is None and key_value is None:
            k_f0 = f0
        q = self.rotary.rotate(self._split_heads(self.query(query)), q_positions, f0)
        k = self.key_rotary.rotate(self._split_heads(self.key(source)), k_positions, k_f0)
        v = self._split_heads(self.value(source))
        k_aux = self.key_rotary.rotate(self._split_heads(self.aux_key(source)), k_positions, k_f0)
        v_aux = self._split_heads(self.aux_value(source))
        if cache is not None:
            (k_past, k_aux_past), (v_past, v_aux_past) = (c.split(self.n_heads, dim=1) for c in cache)
            k, k_aux = torch.cat([k_past, k], dim=2), torch.cat([k_aux_past, k_aux], dim=2)
            v, v_aux = torch.cat([v_past, v], dim=2), torch.cat([v_aux_past, v_aux], dim=2)

        bias = self.score_bias(f0, k_f0, k.shape[-2])
        dropout = self.dropout if self.training else 0.0
        main = attend(q, k, v, key_padding_mask, causal, dropout, bias=bias, masking=self.masking, zero_keys=zero_keys)
        aux = self._aux_stream(q, k_aux, v_aux, key_padding_mask, causal, dropout, bias, zero_keys)
        gate = torch.sigmoid(self.gate).to(main.dtype)[:, None, None]  # (H, 1, 1)
        heads = main * (1.0 - gate) + aux * gate
        new_cache = (torch.cat([k, k_aux], dim=1), torch.cat([v, v_aux], dim=1))
        return self.out(heads.transpose(1, 2).flatten(2)), new_cache

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
