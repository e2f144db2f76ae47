"""Banded (local) attention kernels for the adaptive attention variant.

Distances are key-index distances ``d_ij = p_i - j`` where ``p_i`` is query
``i``'s index among the keys, aligned bottom right as the causal mask is (with
``T`` queries and ``S`` keys, query ``i`` sits at key index ``S - T + i``; in
self-attention without a cache that is ``i``). A band of half-width ``w`` keeps
keys with ``|d_ij| <= w``; causal attention further keeps ``d_ij >= 0``.

An optional soft band per query, ``width`` ``w_i`` (continuous, differentiable),
adds the score penalty ``-max(0, |d_ij| - w_i) / tau``: zero inside the window,
falling linearly (in log-weight) outside it. It is exactly zero when every
distance is within ``w_i``, so a window that covers the sequence gives standard
attention.

Two ways to compute the same thing:

* :func:`dense_band_attend`: one (T, S) boolean mask (plus a float bias) on the
  fused kernel; O(T S) time and memory. Used with a KV cache, gathered queries,
  or an extra score bias.
* :func:`chunked_band_attend`: self-attention without cache, T = S. Queries are
  cut into chunks of ``C``; each chunk attends to its ``C + 2 w`` neighbouring
  keys only, so the scores cost O(T (C + 2 w)) instead of O(T^2) (about
  ``3 T w`` with ``C = w``) and no T x T tensor is ever built. The band mask is
  the same (C, C + 2 w) pattern for every chunk, since ``d = a - b + w`` for
  query ``a`` and key ``b`` of a chunk.

Masks are True = may attend; every path ends in
:func:`~echo_plugin.nn.attention.kernel.masked_attend`, so rows with no visible
key give zeros, never NaN.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from echo_plugin.nn.attention.kernel import masked_attend


def key_distance(q_index: Tensor, k_len: int) -> Tensor:
    """q_index (..., T) key-index of each query -> (..., T, S) distances ``q_index - j``."""
    return q_index[..., :, None] - torch.arange(k_len, device=q_index.device)


def band_mask(distance: Tensor, half_width: Optional[int], causal: bool) -> Tensor:
    """(..., T, S) distances -> bool band mask (True = attend); ``half_width`` None = no band."""
    allowed = torch.ones_like(distance, dtype=torch.bool)
    if half_width is not None:
        allowed = distance.abs() <= half_width
    if causal:
        allowed = allowed & (distance >= 0)
    return allowed


def window_penalty(distance: Tensor, width: Tensor, tau: float) -> Tensor:
    """Soft-band score penalty ``-max(0, |d| - w) / tau``.

    Args:
        distance: (B|1, T, S) or (T, S) key distances.  width: (B, H, T) per-query half-width.
        tau: frames per unit of log-weight beyond the window.

    Returns:
        (B, H, T, S) penalty (<= 0).
    """
    dist = distance.abs().to(width.dtype)
    if dist.dim() == 3:
        dist = dist[:, None]
    return -(dist - width[..., None]).clamp(min=0.0) / tau


def dense_band_attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_index: Tensor,
    keep: Optional[Tensor],
    causal: bool,
    half_width: Optional[int],
    dropout_p: float = 0.0,
    bias: Optional[Tensor] = None,
    width: Optional[Tensor] = None,
    tau: float = 1.0,
) -> Tensor:
    """Banded attention through one (T, S) mask.

    Args:
        q: (B, H, T, dh).  k, v: (B, H, S, dh).
        q_index: (T,) or (B, T) key index of each query (see the module doc).
        keep: (B, S) bool, True = real key, or None.
        causal: hide keys after each query.
        half_width: band half-width in keys, or None = no band.
        dropout_p: attention-weight dropout.
        bias: extra additive scores broadcastable to (B, H, T, S), or None.
        width: (B, H, T) soft-band half-width per query (see :func:`window_penalty`), or None.
        tau: soft-band temperature.

    Returns:
        (B, H, T, dh).
    """
    distance = key_distance(q_index if q_index.dim() == 2 else q_index[None], k.shape[-2])  # (B|1, T, S)
    allowed = band_mask(distance, half_width, causal)
    if keep is not None:
        allowed = allowed & keep[:, None, :].to(q.device)
    if width is not None:
        penalty = window_penalty(distance, width, tau)
        bias = penalty if bias is None else bias + penalty
    return masked_attend(q, k, v, allowed[:, None], bias, dropout_p)


def chunked_band_attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    half_width: int,
    keep: Optional[Tensor],
    causal: bool,
    dropout_p: float = 0.0,
    width: Optional[Tensor] = None,
    tau: float = 1.0,
    chunk: Optional[int] = None,
) -> Tensor:
    """Self-attention in a band of half-width ``w`` without any T x T tensor (T = S).

    Args:
        q, k, v: (B, H, T, dh), the same T (self-attention, no cache).
        half_width: w >= 0.
        keep: (B, T) bool, True = real frame, or None.
        causal: hide later keys.
        dropout_p: attention-weight dropout.
        width: (B, H, T) soft-band half-width per query, or None.
        tau: soft-band temperature.
        chunk: queries per chunk C; default ``max(16, w)``.

    Returns:
        (B, H, T, dh), equal to :func:`dense_band_attend` with ``q_index = arange(T)``.
    """
    batch, heads, t_len, dh = q.shape
    if k.shape[-2] != t_len:
        raise ValueError(f"chunked band attention needs as many keys as queries, got {k.shape[-2]} vs {t_len}")
    w = int(half_width)
    size = max(1, min(chunk or max(16, w), t_len))
    n_chunks = math.ceil(t_len / size)
    extra = n_chunks * size - t_len
    span = size + 2 * w
    if keep is None:
        keep = torch.ones(batch, t_len, dtype=torch.bool, device=q.device)

    def windows(x: Tensor) -> Tensor:  # (B, H, T, dh) -> (B * n, H, C + 2w, dh)
        padded = F.pad(x, (0, 0, w, extra + w))
        win = padded.unfold(2, span, size).transpose(-1, -2)  # (B, H, n, C + 2w, dh)
        return win.transpose(1, 2).reshape(batch * n_chunks, heads, span, dh)

    q_chunks = F.pad(q, (0, 0, 0, extra)).view(batch, heads, n_chunks, size, dh)
    q_chunks = q_chunks.transpose(1, 2).reshape(batch * n_chunks, heads, size, dh)
    distance = torch.arange(size, device=q.device)[:, None] - torch.arange(span, device=q.device) + w  # (C, C + 2w)
    keep_win = F.pad(keep.to(q.device), (w, extra + w), value=False).unfold(1, span, size)  # (B, n, C + 2w)
    allowed = band_mask(distance, w, causal)[None] & keep_win.reshape(batch * n_chunks, 1, span)
    bias = None
    if width is not None:
        width_chunks = F.pad(width, (0, extra)).view(batch, heads, n_chunks, size).transpose(1, 2)
        width_chunks = width_chunks.reshape(batch * n_chunks, heads, size)
        bias = window_penalty(distance[None], width_chunks, tau)  # (B * n, H, C, C + 2w)
    out = masked_attend(q_chunks, windows(k), windows(v), allowed[:, None], bias, dropout_p)
    out = out.view(batch, n_chunks, heads, size, dh).transpose(1, 2).reshape(batch, heads, n_chunks * size, dh)
    return out[:, :, :t_len]


def mean_attend(v: Tensor, keep: Optional[Tensor], causal: bool, q_len: int) -> Tensor:
    """Uniform attention over the visible keys (the cheapest path): O(S) per head.

    Args:
        v: (B, H, S, dh).  keep: (B, S) bool or None.  causal: prefix means (bottom-right aligned).
        q_len: T, the number of queries (the last T key indices when causal).

    Returns:
        (B, H, T, dh); a query with no visible key gets zeros.
    """
    weight = torch.ones(v.shape[0], v.shape[-2], dtype=v.dtype, device=v.device)
    if keep is not None:
        weight = weight * keep.to(v.device, v.dtype)
    weighted = v * weight[:, None, :, None]
    if causal:
        total = weighted.cumsum(dim=2)[:, :, -q_len:]
        count = weight.cumsum(dim=1)[:, -q_len:]
    else:
        total = weighted.sum(dim=2, keepdim=True).expand(-1, -1, q_len, -1)
        count = weight.sum(dim=1, keepdim=True).expand(-1, q_len)
    return total / count.clamp(min=1.0)[:, None, :, None]


def gathered_band_attend(
    q: Tensor,
    q_index: Tensor,
    k: Tensor,
    v: Tensor,
    keep: Optional[Tensor],
    causal: bool,
    half_width: int,
    dropout_p: float = 0.0,
    width: Optional[Tensor] = None,
    tau: float = 1.0,
) -> Tensor:
    """Banded attention for scattered queries (e.g. routed ones): each sees only its own 2 w + 1 keys.

    Cost O(K (2 w + 1) dh) for K queries, with no (K, S) tensor: each query's key
    window is copied out by row indexing (keys outside the sequence are hidden).

    Args:
        q: (B, H, K, dh) queries.  q_index: (B, K) key index of each query.
        k, v: (B, H, S, dh).  keep: (B, S) bool or None.  causal: hide later keys.
        half_width: w.  dropout_p: attention-weight dropout.
        width: (B, H, K) soft-band half-width per query, or None.  tau: soft-band temperature.

    Returns:
        (B, H, K, dh), equal to :func:`dense_band_attend` with the same ``q_index``.
    """
    batch, heads, n_q, dh = q.shape
    w = int(half_width)
    span = 2 * w + 1
    if keep is None:
        keep = torch.ones(batch, k.shape[-2], dtype=torch.bool, device=q.device)

    s_len = k.shape[-2]
    key_index = q_index[:, :, None] + torch.arange(-w, w + 1, device=q.device)  # (B, K, 2w + 1)
    inside = (key_index >= 0) & (key_index < s_len)
    key_index = key_index.clamp(0, s_len - 1)
    rows = torch.arange(batch, device=q.device)[:, None, None]
    keep_win = inside & keep.to(q.device)[rows, key_index]

    head_rows = torch.arange(heads, device=q.device)[None, :, None, None]

    def windows(x: Tensor) -> Tensor:  # (B, H, S, dh) -> (B, H * K, 2w + 1, dh), copied dh-rows
        picked = x[rows[:, None], head_rows, key_index[:, None]]  # (B, H, K, 2w + 1, dh), contiguous
        return picked.view(batch, heads * n_q, span, dh)

    distance = w - torch.arange(span, device=q.device)  # key b of a window sits at q_index + b - w
    allowed = band_mask(distance, w, causal)[None, None] & keep_win[:, None]  # (B, 1, K, 2w + 1)
    allowed = allowed.expand(batch, heads, n_q, span).reshape(batch, heads * n_q, 1, span)
    bias = None
    if width is not None:
        bias = -(distance.abs().to(width.dtype) - width[..., None]).clamp(min=0.0) / tau  # (B, H, K, 2w + 1)
        bias = bias.reshape(batch, heads * n_q, 1, span)
    out = masked_attend(
        q.reshape(batch, heads * n_q, 1, dh),
        windows(k),
        windows(v),
        allowed,
        bias,
        dropout_p,
    )
    return out.view(batch, heads, n_q, dh)
