"""Adaptive attention (``attention: adaptive``): a Q-learning span refiner,
adaptive-focus sliding window and node-importance routing on top of standard
multi-head attention.

Three independent parts, each switched on in the YAML ``conf`` with ``true``
(defaults), a mapping of options, or ``false``/``null`` (off); by default
``span`` and ``focus`` are on and ``importance`` is off (see the costs below):

* ``span`` (:mod:`~echo_plugin.nn.attention.span_refiner`): a band of half-width
  ``w`` frames around each query in self-attention, ``w`` adjusted during
  training by a tabular Q-learner rewarded with the decrease of the training loss
  (needs ``model: echo``, which hands it the loss); frozen in eval.
* ``focus`` (:mod:`~echo_plugin.nn.attention.focus_window`): a per-query, per-head
  soft window predicted from content, hard-limited at ``w_max``.
* ``importance`` (:mod:`~echo_plugin.nn.attention.node_importance`): per-token
  scores route the important queries to the main path and the rest to a cheap
  local / mean path; gathered and scattered, so the cheap queries skip it.

The main path is standard attention restricted to the band
``|i - j| <= min(span, ceil(w_max))`` with the focus penalty inside it; span
and focus apply to self-attention only (a frame distance between a text token
and an audio frame means nothing), importance routing to both. Without a cache
and without a rotary score bias, self-attention in a band narrower than a third
of the sequence runs chunked: O(T (C + 2 w)) scores, no T x T tensor
(:func:`~echo_plugin.nn.attention.local.chunked_band_attend`). Routed queries
and cached decoding steps gather each query's own 2 w + 1 keys
(:func:`~echo_plugin.nn.attention.local.gathered_band_attend`), O(K w). With a
rotary score bias (pitch-aware rotary), or a band wider than the keys, one dense
(T, S) band mask on the fused kernel.

Measured on this shared 2-core CPU (one thread; B = 2, D = 144, H = 4; one layer,
eval forward / train forward + backward, ms):

    =================================  ===========  =============
    T                                  300          2000
    standard                           12 / 33      269 / 887
    span 16                            18 / 32       65 / 200
    focus w in [2, 16]                 12 / 33       64 / 194
    importance 0.25 (topk, local 4)    14 / 41      123 / 386
    span 32 + focus 16 + importance    37 / 115     184 / 878
    defaults (span 32, focus 4..64)    20 / 50      126 / 263
    =================================  ===========  =============

Routing pays off over a global main path; over a banded one, the gathered
key windows of the routed queries (row copies of 2 w + 1 keys each) cost
about as much as they save on CPU, which is why ``importance`` is off by default.

Limits (tested): a span and window covering the sequence (``w >= T - 1``) and
``importance.fraction: 1`` each give exactly standard attention, so with all
three at their limits the module equals ``standard`` with the same weights
(its state-dict keys are a superset of ``standard``'s).

Multi-GPU: a part can leave its parameters without gradient in a step (focus on
a sequence its narrowest window already covers, routing with no important token,
span/focus in a cross-attention spec, where they are ignored: set them false
there), so DDP needs ESPnet's ``--unused_parameters true``.

Causality: band distances are bottom-right aligned like the causal mask, widths
depend on a query's own input, and routing in causal calls uses a token's own
score against a fixed threshold, so the decoder's self-attention never sees later
tokens and cached incremental decoding equals the full pass.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from echo_plugin.nn.attention.focus_window import FocusWindow
from echo_plugin.nn.attention.kernel import attend
from echo_plugin.nn.attention.local import (
    chunked_band_attend,
    dense_band_attend,
    gathered_band_attend,
    mean_attend,
)
from echo_plugin.nn.attention.node_importance import NodeImportance, gather_rows, routed_indices
from echo_plugin.nn.attention.span_refiner import SpanRefiner, span_statistics
from echo_plugin.nn.attention.standard import AttentionCall, MultiHeadAttention

Part = Union[None, bool, Mapping[str, Any]]
"""A part's YAML switch: true = on with defaults, a mapping = on with options, false/null = off."""


def build_part(cls: Callable[..., nn.Module], part: Part, name: str, **context: Any) -> Optional[nn.Module]:
    """``cls(**context, **options)`` or None when the part is off."""
    if part is None or part is False:
        return None
    if not isinstance(part, (bool, Mapping)):
        raise ValueError(f"adaptive attention: '{name}' must be true, false or a mapping of options, got {part!r}")
    options: Dict[str, Any] = {} if part is True else dict(part)
    return cls(**context, **options)


class AdaptiveAttention(MultiHeadAttention):
    """Multi-head attention with span refiner, focus window and node-importance routing.

    Args:
        d_model, n_heads, and by keyword dropout, rotary, rotary_k, masking: as :class:`MultiHeadAttention`.
        span: SpanRefiner options (``init``, ``min_span``, ``max_span``, ``factor``, ``epsilon``,
            ``alpha``, ``gamma``, ``interval``, ...) or true/false.
        focus: FocusWindow options (``w_min``, ``w_max``, ``init``, ``tau``) or true/false.
        importance: NodeImportance options (``fraction``, ``select``, ``cheap``, ``cheap_window``,
            ``received_weight``) or true/false (default off).
        chunk: queries per chunk of the chunked band kernel; default ``max(16, w)``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        span: Part = True,
        focus: Part = True,
        importance: Part = False,
        chunk: Optional[int] = None,
        **common: Any,
    ) -> None:
        super().__init__(d_model, n_heads, **common)
        self.span_refiner = build_part(SpanRefiner, span, "span")
        self.focus = build_part(FocusWindow, focus, "focus", d_model=d_model, n_heads=n_heads)
        self.importance = build_part(NodeImportance, importance, "importance", d_model=d_model)
        self.chunk = chunk

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], bias: Optional[Tensor], call: AttentionCall
    ) -> Tensor:
        """Span/focus band and importance routing around the fused kernel: (B, H, T, dh)."""
        if bias is not None and bias.dim() < 4:
            bias = bias.reshape((1,) * (4 - bias.dim()) + tuple(bias.shape))
        k_att, keep = self.masking(k, mask, call.zero_keys)
        self_attn, causal = call.self_attention, call.causal
        s_len = k.shape[-2]
        band = self.band(s_len) if self_attn else None
        widths = None
        if self_attn and self.focus is not None and not self.focus.covers(s_len):
            widths = self.focus(call.query)
        if self.span_refiner is not None and self_attn and self.training:
            stats = span_statistics(
                q, k_att, keep, causal, self.span_refiner.half_width,
                self.span_refiner.edge_fraction, self.span_refiner.stat_queries,
            )  # fmt: skip
            self.span_refiner.record(*stats)
        path = dict(k=k_att, v=v, keep=keep, causal=causal, band=band, dropout=call.dropout, self_attn=self_attn)
        if self.importance is not None and self.importance.routes:
            return self._routed(call.query, q, widths, bias, **path)
        return self._main(q, None, widths, bias, **path)

    def band(self, k_len: int) -> Optional[int]:
        """Hard band half-width of the main path for ``k_len`` keys; None = no band (covers every key)."""
        width = k_len
        if self.span_refiner is not None:
            width = min(width, self.span_refiner.half_width)
        if self.focus is not None:
            width = min(width, self.focus.hard_limit)
        return None if width >= k_len - 1 else width

    def _main(
        self,
        q: Tensor,
        q_index: Optional[Tensor],
        widths: Optional[Tensor],
        bias: Optional[Tensor],
        *,
        k: Tensor,
        v: Tensor,
        keep: Optional[Tensor],
        causal: bool,
        band: Optional[int],
        dropout: float,
        self_attn: bool,
    ) -> Tensor:
        """Main path for queries q (B, H, T', dh) at key indices q_index (B, T') (None = the last T')."""
        t_len, s_len = q.shape[-2], k.shape[-2]
        if band is None and widths is None and (q_index is None or not causal):
            return attend(q, k, v, keep, causal and q_index is None, dropout, bias=bias)
        if q_index is None:
            if self_attn and bias is None and t_len == s_len and band is not None and 3 * band < s_len:
                tau = 1.0 if self.focus is None else self.focus.tau
                return chunked_band_attend(q, k, v, band, keep, causal, dropout, widths, tau, self.chunk)
            q_index = torch.arange(s_len - t_len, s_len, device=q.device)
        tau = 1.0 if self.focus is None else self.focus.tau
        if band is not None and bias is None and 2 * band + 1 < s_len:
            q_index = q_index.expand(q.shape[0], -1) if q_index.dim() == 1 else q_index
            return gathered_band_attend(q, q_index, k, v, keep, causal, band, dropout, widths, tau)
        return dense_band_attend(q, k, v, q_index, keep, causal, band, dropout, bias, widths, tau)

    def _routed(
        self, query: Tensor, q: Tensor, widths: Optional[Tensor], bias: Optional[Tensor], **path: Any
    ) -> Tensor:
        """Important queries through the main path, the rest through the cheap path: (B, H, T, dh)."""
        importance = self.importance
        k, keep, self_attn = path["k"], path["keep"], path["self_attn"]
        t_len, s_len = q.shape[-2], k.shape[-2]
        q_keep = keep[:, s_len - t_len:] if self_attn and keep is not None else None
        score = importance.scores(query, q, k, q_keep, keep) if self_attn else importance.scorer(query).squeeze(-1)
        # cross-attention queries are decoder targets: rank them as a causal sequence (refuses topk)
        important = importance.select(score, q_keep, path["causal"] or not self_attn)
        importance.track(score, q_keep)
        cheap_name = importance.cheap if self_attn else "mean"
        cheap = getattr(self, f"_cheap_{cheap_name}")(q, **path)  # names checked by NodeImportance
        index, valid = routed_indices(important)
        if index.shape[1] == 0:
            return cheap
        full = self._main(
            gather_rows(q, index),
            index + (s_len - t_len),
            None if widths is None else gather_rows(widths, index),
            None if bias is None else gather_rows(bias, index),
            **path,
        )
        cheap_rows = gather_rows(cheap, index)
        gate = torch.sigmoid(score).gather(1, index)[:, None, :, None]
        full = full + (full - cheap_rows) * (gate - gate.detach())  # straight-through: value = full
        chosen = torch.where(valid[:, None, :, None], full, cheap_rows)
        return cheap.scatter(2, index[:, None, :, None].expand_as(chosen), chosen)

    def _cheap_local(self, q: Tensor, *, k: Tensor, v: Tensor, keep: Optional[Tensor], causal: bool,
                     dropout: float, **_: Any) -> Tensor:
        """Band of ``cheap_window`` keys around every query: (B, H, T, dh)."""
        window = self.importance.cheap_window
        t_len, s_len = q.shape[-2], k.shape[-2]
        if t_len == s_len and 3 * window < s_len:
            return chunked_band_attend(q, k, v, window, keep, causal, dropout, chunk=self.chunk)
        q_index = torch.arange(s_len - t_len, s_len, device=q.device)
        return dense_band_attend(q, k, v, q_index, keep, causal, window, dropout)

    def _cheap_mean(self, q: Tensor, *, v: Tensor, keep: Optional[Tensor], causal: bool, **_: Any) -> Tensor:
        """Uniform attention over the visible keys: (B, H, T, dh)."""
        return mean_attend(v, keep, causal, q.shape[-2])
