"""The attention kernel, apart from any projection: fused SDPA (:func:`attend`, and
:func:`masked_attend` under an explicit mask) plus a plain reference.

Masks are boolean with True = may attend. Causal masking is aligned to the
bottom right: with ``T`` queries and ``S >= T`` keys (a KV cache holding
``S - T`` earlier steps), query ``i`` sees keys ``0 .. S - T + i``.

The scores both kernels compute, for query ``i`` and key ``j``::

    s_ij = c_j * (q_i . k_j) / sqrt(dh) + bias_ij,   or -inf where key j is hidden

``c_j`` and which keys are hidden come from a masking strategy
(:mod:`echo_plugin.nn.masking`; default: padding hidden, ``c_j = 1``); future keys
are always hidden exactly when ``causal``. The fused path applies ``c_j`` as
``k_j -> c_j * k_j`` (the score is linear in ``k_j``), the reference literally.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from echo_plugin.nn.masking.base import KeyMasking

KVCache = Tuple[Tensor, Tensor]
"""Keys and values of the steps attended so far, each (B, H, S, dh)."""


def attention_mask(
    key_padding_mask: Optional[Tensor], causal: bool, q_len: int, k_len: int, device: torch.device
) -> Optional[Tensor]:
    """Bool (B or 1, 1, T, S) mask, True = attend; None when every key is visible.

    Args:
        key_padding_mask: (B, S) bool, True = real key, or None.
        causal: hide keys later than each query (bottom-right aligned).
        q_len: T.  k_len: S.
        device: where to build the mask.
    """
    mask = None
    if causal and q_len > 1:
        mask = torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)[None, None]
    if key_padding_mask is not None:
        keep = key_padding_mask.to(device)[:, None, None, :]
        mask = keep if mask is None else mask & keep
    return mask


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Optional[Tensor] = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    *,
    masking: Optional[KeyMasking] = None,
    zero_keys: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
) -> Tensor:
    """Scaled dot-product attention on the fused kernel.

    Args:
        q: (B, H, T, dh).  k, v: (B, H, S, dh).
        key_padding_mask: (B, S) bool, True = keep, or None.
        causal: hide future keys (bottom-right aligned, see module doc); always exact.
        dropout_p: attention-weight dropout (pass 0.0 outside training).
        masking: a MASKING strategy turning (k, key_padding_mask, zero_keys) into
            (scaled k, hard keep mask); None = hard masking (padding hidden).
        zero_keys: (B, S) bool, True = a real key carrying no signal (silence), or None;
            only a strategy uses it.
        bias: additive score bias broadcastable to (B, H, T, S), or None.

    Returns:
        (B, H, T, dh); rows with no visible key are zeros, never NaN.
    """
    if masking is not None:
        k, key_padding_mask = masking(k, key_padding_mask, zero_keys)
    q_len, k_len = q.shape[-2], k.shape[-2]
    if bias is None and key_padding_mask is None and causal and q_len == k_len:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    mask = attention_mask(key_padding_mask, causal, q_len, k_len, q.device)
    if mask is None:
        attn_mask = None if bias is None else bias.to(q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
    return masked_attend(q, k, v, mask, bias, dropout_p)


def masked_attend(
    q: Tensor, k: Tensor, v: Tensor, visible: Tensor, bias: Optional[Tensor] = None, dropout_p: float = 0.0
) -> Tensor:
    """``softmax(q k^T / sqrt(dh) + bias, hidden keys -inf) v`` on the fused kernel, under an explicit mask.

    For queries that are not one contiguous block (gathered rows, local windows), where
    a ``causal`` flag cannot say which keys each query sees; :func:`attend` ends here too.

    Args:
        q: (..., T, dh).  k, v: (..., S, dh); leading dims broadcast as in SDPA.
        visible: bool broadcastable to (..., T, S), True = the query may see the key.
        bias: additive float scores broadcastable to (..., T, S), or None.
        dropout_p: attention-weight dropout (0.0 outside training).

    Returns:
        (..., T, dh); a row that sees no key is zeros, never NaN.
    """
    alive = visible.any(dim=-1, keepdim=True)  # rows with at least one key
    visible = visible | ~alive  # an empty row attends everywhere (finite), then is zeroed
    if bias is None:
        attn_mask = visible
    else:
        bias = bias.to(q.dtype)
        attn_mask = torch.where(visible, bias, torch.full((), float("-inf"), dtype=q.dtype, device=q.device))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
    return out.masked_fill(~alive, 0.0)


def attend_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Optional[Tensor] = None,
    causal: bool = False,
    *,
    masking: Optional[KeyMasking] = None,
    zero_keys: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
) -> Tensor:
    """Explicit ``softmax(c_j q k^T / sqrt(dh) + bias) v`` (no dropout), for tests.

    Shapes and arguments as in :func:`attend`; the masking strategy's per-key
    scale multiplies the scores here, not the keys. Fully masked rows give zeros.
    """
    q_len, k_len = q.shape[-2], k.shape[-2]
    scores = q.float() @ k.float().transpose(-1, -2) / math.sqrt(q.shape[-1])
    if masking is not None:
        scale, key_padding_mask = masking.key_scale(key_padding_mask, zero_keys, torch.float32)
        if scale is not None:
            scores = scores * scale[:, None, None, :].to(q.device)
    if bias is not None:
        scores = scores + bias.float()
    allowed = torch.ones(q.shape[0], 1, q_len, k_len, dtype=torch.bool, device=q.device)
    if causal:
        q_pos = torch.arange(q_len, device=q.device) + (k_len - q_len)
        k_pos = torch.arange(k_len, device=q.device)
        allowed = allowed & (k_pos[None, :] <= q_pos[:, None])
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask[:, None, None, :].to(q.device)
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    weights = weights.masked_fill(~allowed, 0.0)
    return (weights @ v.float()).to(q.dtype)
