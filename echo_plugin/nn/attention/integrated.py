"""Integrated attention: a local windowed branch and a global branch, blended per head
and token by a learned gate that reads each branch's attention entropy.

Branches (both on the same rotated queries/keys and values of one projection set):

* local: query ``i`` sees keys ``j`` with ``|i - j| <= window`` (causal:
  ``0 <= i - j <= window``). Without a KV cache it is computed blockwise: queries
  in blocks of ``C = window`` frames, each block against its ``C + 2 window``
  neighbouring keys (one ``unfold`` view), so scores cost O(T * 3 window) and no
  T x T tensor is built. With a cache (decoding) or a rotary score bias it falls
  back to one dense banded mask over the keys.
* global: every key (``global_stride: 1``), or keys and values mean-pooled over
  blocks of ``global_stride`` frames (padding excluded), O(T S / stride). Pooled
  blocks are absolute (frames ``[b r, (b + 1) r)``); with ``causal`` a query sees a
  block only once all ``global_stride`` of its frames are in its past (the local
  branch covers the most recent ones), which a decoder step reproduces exactly
  from its cache. ``global_keys: G`` caps the pooled keys at G by widening the
  stride to ``ceil(S / G)`` (O(T G): linear in T; not with ``causal``, where a
  decoder step would pool differently from the full pass).

Quality loop: each branch's softmax weights are formed explicitly (the scores
are needed anyway for the entropy) and give, per head and query, the normalised
entropy ``e = -sum_j p_j log p_j / log(n_visible)`` in [0, 1] (0 = one sharp key,
1 = uniform). The gate is

    g[b, h, t] = sigmoid(W_x x[b, t] + a_h e_local + c_h e_global + b_h),
    out_h = g * global_h + (1 - g) * local_h,

so a diffuse (uncertain) branch can be handed less weight; ``a_h`` starts at +1
and ``c_h`` at -1 (that reading), all of it is learned.

Training: end to end by the ASR loss alone (gate, entropy weights and both
branches get its gradients, the entropies included); no auxiliary term is added.

Limits: ``fixed_gate: 1`` with ``global_stride: 1`` is standard attention;
``fixed_gate: 0`` with ``window >= T - 1`` is standard attention too (the band
covers every key). ``fixed_gate`` (bench/tests) replaces the learned gate.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import torch
from torch import Tensor, nn

from echo_plugin.nn.attention.standard import AttentionCall, MultiHeadAttention

HIDDEN = -1e9  # score of a hidden key: exp underflows to 0 exactly, log stays finite (no NaN gradients)


def explicit_attend(
    q: Tensor, k: Tensor, v: Tensor, visible: Tensor, bias: Optional[Tensor] = None, dropout_p: float = 0.0
) -> Tuple[Tensor, Tensor]:
    """Softmax attention with its weights' normalised entropy.

    Args:
        q: (..., T, dh).  k, v: (..., S, dh).  visible: bool broadcastable to (..., T, S).
        bias: additive scores broadcastable to (..., T, S), or None.
        dropout_p: dropout on the weights (after the entropy is taken).

    Returns:
        out (..., T, dh) and entropy (..., T) in [0, 1]; both 0 for a row that sees no key.
    """
    scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(q.shape[-1])  # softmax in float32 (also under AMP)
    if bias is not None:
        scores = scores + bias.float()
    scores = scores.masked_fill(~visible, HIDDEN)
    logp = scores.log_softmax(dim=-1)
    p = logp.exp()
    count = visible.sum(dim=-1).to(scores.dtype)
    alive = (count > 0).to(scores.dtype)
    entropy = -(p * logp).sum(dim=-1) / torch.log(count.clamp(min=2.0)) * alive
    if dropout_p > 0:
        p = nn.functional.dropout(p, dropout_p)
    return (p.to(v.dtype) @ v) * alive[..., None].to(v.dtype), entropy.expand(q.shape[:-1])


def pool_blocks(x: Tensor, keep: Optional[Tensor], stride: int) -> Tuple[Tensor, Tensor]:
    """Masked mean over blocks of ``stride`` frames: x (B, H, S, dh), keep (B, S) or None
    -> pooled (B, H, N, dh), has_real (B, N) bool, N = ceil(S / stride)."""
    batch, heads, frames, dim = x.shape
    blocks = -(-frames // stride)
    weight = x.new_ones(batch, frames) if keep is None else keep.to(x.dtype)
    weight = nn.functional.pad(weight, (0, blocks * stride - frames)).view(batch, 1, blocks, stride, 1)
    x = nn.functional.pad(x, (0, 0, 0, blocks * stride - frames)).view(batch, heads, blocks, stride, dim)
    total = weight.sum(dim=3)
    return (x * weight).sum(dim=3) / total.clamp(min=1.0), total[:, 0, :, 0] > 0


class IntegratedAttention(MultiHeadAttention):
    """Local windowed + global attention, gated per head/token from branch entropies (self-attention only).

    Args (beyond :class:`MultiHeadAttention`'s, which go by keyword):
        window: half-width w of the local band (frames).
        global_stride: 1 = global branch over every key; r > 1 = over keys mean-pooled
            in blocks of r frames (sub-quadratic by a factor r).
        global_keys: None, or G = at most G pooled global keys (stride ``max(r, ceil(S / G))``);
            non-causal use only.
        fixed_gate: None = learned gate; g in [0, 1] = constant share of the global branch.
    """

    kind = "integrated"
    self_attention_only = True

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        window: int = 16,
        global_stride: int = 4,
        global_keys: Optional[int] = None,
        fixed_gate: Optional[float] = None,
        **common: Any,
    ) -> None:
        super().__init__(d_model, n_heads, **common)
        if window < 0 or global_stride < 1:
            raise ValueError(f"integrated: need window >= 0 and global_stride >= 1, got {window}, {global_stride}")
        self.window = window
        if global_keys is not None and global_keys < 1:
            raise ValueError(f"integrated: global_keys must be >= 1 or None, got {global_keys}")
        self.global_stride = global_stride
        self.global_keys = global_keys
        self.fixed_gate = fixed_gate
        self.gate_x = nn.Linear(d_model, n_heads)
        nn.init.zeros_(self.gate_x.weight)
        nn.init.zeros_(self.gate_x.bias)
        self.gate_quality = nn.Parameter(torch.tensor([[1.0, -1.0]]).repeat(n_heads, 1))  # (H, 2): a_h, c_h
        self.last_gate: Optional[Tensor] = None  # mean global share of the last forward, detached

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], bias: Optional[Tensor], call: AttentionCall
    ) -> Tensor:
        """Local and global branches on the masked keys, blended by the gate: (B, H, T, dh)
        (the local band is over key indices, the query at index ``S - T + i``)."""
        scaled_k, keep = self.masking(k, mask, call.zero_keys)
        causal, past, dropout = call.causal, call.past, call.dropout
        if call.cache is None and bias is None:
            local, local_entropy = self._local_blocked(q, scaled_k, v, keep, causal, dropout)
        else:
            local, local_entropy = self._local_dense(q, scaled_k, v, keep, causal, bias, past, dropout)
        glob, global_entropy = self._global(q, scaled_k, v, keep, causal, bias, past, dropout)

        if self.fixed_gate is not None:
            gate = torch.full_like(local_entropy, float(self.fixed_gate))
        else:
            quality = torch.stack([local_entropy, global_entropy], dim=-1)  # (B, H, T, 2)
            logits = self.gate_x(call.query).transpose(1, 2) + (quality * self.gate_quality[:, None, :]).sum(-1)
            gate = torch.sigmoid(logits)
        self.last_gate = gate.detach().mean()
        return gate[..., None] * glob + (1.0 - gate[..., None]) * local

    def _local_blocked(
        self, q: Tensor, k: Tensor, v: Tensor, keep: Optional[Tensor], causal: bool, dropout: float
    ) -> Tuple[Tensor, Tensor]:
        """Band attention without cache, by blocks: q, k, v (B, H, T, dh) -> (B, H, T, dh), entropy (B, H, T)."""
        batch, heads, frames, dim = q.shape
        w = min(self.window, frames - 1)
        size = max(w, 1)  # query block C
        blocks = -(-frames // size)
        span = size + 2 * w
        right = blocks * size - frames + w

        def windows(x: Tensor) -> Tensor:  # (B, H, T, dh) -> (B, H, blocks, span, dh)
            x = nn.functional.pad(x, (0, 0, w, right))
            return x.unfold(2, span, size).transpose(-1, -2)

        qb = nn.functional.pad(q, (0, 0, 0, blocks * size - frames)).view(batch, heads, blocks, size, dim)
        valid = torch.ones(batch, frames, dtype=torch.bool, device=q.device) if keep is None else keep.to(q.device)
        kb_keep = nn.functional.pad(valid, (w, right)).unfold(1, span, size)  # (B, blocks, span)
        a = torch.arange(size, device=q.device)[:, None]
        e = torch.arange(span, device=q.device)[None, :]
        distance = a - e + w  # query index minus key index, the same for every block
        band = distance.abs() <= w
        if causal:  # combined only when causal: tensor & True does not trace for export
            band = band & (distance >= 0)
        visible = band[None, None, None] & kb_keep[:, None, :, None, :]
        out, entropy = explicit_attend(qb, windows(k), windows(v), visible, dropout_p=dropout)
        out = out.reshape(batch, heads, blocks * size, dim)[:, :, :frames]
        return out, entropy.reshape(batch, heads, blocks * size)[:, :, :frames]

    def _local_dense(self, q: Tensor, k: Tensor, v: Tensor, keep: Optional[Tensor], causal: bool,
                     bias: Optional[Tensor], past: int, dropout: float) -> Tuple[Tensor, Tensor]:
        """Band attention with one (T, S) mask (decoding with a cache, or with a score bias)."""
        total = k.shape[2]
        q_index = torch.arange(past, past + q.shape[2], device=q.device)[:, None]
        distance = q_index - torch.arange(total, device=q.device)[None, :]
        visible = distance.abs() <= self.window
        if causal:  # combined only when causal: tensor & True does not trace for export
            visible = visible & (distance >= 0)
        visible = visible[None, None]
        if keep is not None:
            visible = visible & keep[:, None, None, :].to(q.device)
        return explicit_attend(q, k, v, visible, bias, dropout)

    def _global(self, q: Tensor, k: Tensor, v: Tensor, keep: Optional[Tensor], causal: bool,
                bias: Optional[Tensor], past: int, dropout: float) -> Tuple[Tensor, Tensor]:
        """Attention to every key, or to blocks of ``global_stride`` pooled keys."""
        stride, total = self.global_stride, k.shape[2]
        if self.global_keys is not None:
            if causal:
                raise ValueError("integrated: global_keys pools by sequence length, not causal; use global_stride")
            stride = max(stride, -(-total // self.global_keys))
        q_index = torch.arange(past, past + q.shape[2], device=q.device)[:, None]
        if stride == 1:
            visible = torch.ones(1, 1, 1, total, dtype=torch.bool, device=q.device)
            if keep is not None:
                visible = visible & keep[:, None, None, :].to(q.device)
            if causal:
                visible = visible & (torch.arange(total, device=q.device)[None, :] <= q_index)[None, None]
            return explicit_attend(q, k, v, visible, bias, dropout)
        if bias is not None:
            raise ValueError("integrated: a rotary score bias (e.g. pitch_aware) needs global_stride 1")
        pooled_k, real = pool_blocks(k, keep, stride)
        pooled_v, _ = pool_blocks(v, keep, stride)
        visible = real[:, None, None, :].to(q.device)
        if causal:
            # a block's nominal last frame, so a decoder step (fewer keys) hides what a full pass hides
            block_end = (torch.arange(real.shape[1], device=q.device) + 1) * stride - 1
            visible = visible & (block_end[None, :] <= q_index)[None, None]
        return explicit_attend(q, pooled_k, pooled_v, visible, dropout_p=dropout)
