"""The attention kernel, apart from any projection: fused SDPA plus a plain reference.

Masks are boolean with True = may attend. Causal masking is aligned to the
bottom right: with ``T`` queries and ``S >= T`` keys (a KV cache holding
``S - T`` earlier steps), query ``i`` sees keys ``0 .. S - T + i``.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

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
) -> Tensor:
    """Scaled dot-product attention on the fused kernel.

    Args:
        q: (B, H, T, dh).  k, v: (B, H, S, dh).
        key_padding_mask: (B, S) bool, True = keep, or None.
        causal: hide future keys (bottom-right aligned, see module doc).
        dropout_p: attention-weight dropout (pass 0.0 outside training).

    Returns:
        (B, H, T, dh); rows with no visible key are zeros, never NaN.
    """
    q_len, k_len = q.shape[-2], k.shape[-2]
    if key_padding_mask is None and causal and q_len == k_len:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    mask = attention_mask(key_padding_mask, causal, q_len, k_len, q.device)
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    alive = mask.any(dim=-1, keepdim=True)  # (B|1, 1, T, 1): rows with at least one key
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~alive, dropout_p=dropout_p)
    return out.masked_fill(~alive, 0.0)


def attend_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Optional[Tensor] = None,
    causal: bool = False,
) -> Tensor:
    """Explicit ``softmax(q k^T / sqrt(dh)) v`` (no dropout), for tests.

    Shapes as in :func:`attend`. Fully masked rows give zeros.
    """
    q_len, k_len = q.shape[-2], k.shape[-2]
    scores = q.float() @ k.float().transpose(-1, -2) / math.sqrt(q.shape[-1])
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
