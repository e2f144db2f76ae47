"""Adaptive-focus sliding window: a per-query, per-head window width predicted from content.

The design's "adaptive focus sliding window: content-dependent windowing that
dynamically allocates computation to important signal regions", made concrete:

    w_{b,h,i} = w_min + (w_max - w_min) * sigmoid(W x_{b,i} + c)_h        (B, H, T)

with ``x`` the attention module's query input (B, T, D) and ``W`` a (H, D)
projection, so each query and head chooses its own half-width in frames. The
window is realised as a soft band on the scores (see
:func:`echo_plugin.nn.attention.local.window_penalty`):

    s_ij -> s_ij - max(0, |i - j| - w_i) / tau,   keys with |i - j| > w_max hidden

The penalty is zero inside the window and differentiable in ``w_i``, so the
projection learns from the task loss where wide context pays; ``tau -> 0``
approaches a hard window. A query's width depends only on its own input, so
causal attention stays causal and a KV cache gives the same widths.

Cost: the hard limit ``w_max`` bounds the keys, so self-attention without a
cache runs chunked (:func:`~echo_plugin.nn.attention.local.chunked_band_attend`),
O(T (C + 2 w_max)) scores and no T x T tensor, plus the (B, H, T, C + 2 w_max)
penalty; with a KV cache or an extra score bias it falls back to one dense
(T, S) mask. With ``w_min >= S - 1`` every distance is inside every window and
the module is skipped: exactly standard attention.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class FocusWindow(nn.Module):
    """Predicts (B, H, T) window half-widths from (B, T, D) queries.

    Args:
        d_model: D.  n_heads: H.
        w_min, w_max: width range in frames (0 <= w_min <= w_max).
        init: initial position of the widths inside the range (sigmoid of the bias), in (0, 1).
        tau: soft-band temperature in frames.
    """

    def __init__(
        self, d_model: int, n_heads: int, w_min: float = 4.0, w_max: float = 64.0, init: float = 0.5, tau: float = 2.0
    ) -> None:
        super().__init__()
        if not 0 <= w_min <= w_max or not 0.0 < init < 1.0 or tau <= 0:
            raise ValueError(
                f"focus: need 0 <= w_min <= w_max, 0 < init < 1, tau > 0; got {w_min}, {w_max}, {init}, {tau}"
            )
        self.w_min, self.w_max, self.tau = float(w_min), float(w_max), float(tau)
        self.proj = nn.Linear(d_model, n_heads)
        nn.init.normal_(self.proj.weight, std=0.02)
        nn.init.constant_(self.proj.bias, math.log(init / (1.0 - init)))

    @property
    def hard_limit(self) -> int:
        """Keys further than this are hidden outright."""
        return int(math.ceil(self.w_max))

    def covers(self, k_len: int) -> bool:
        """True when every window spans all ``k_len`` keys (the module is then a no-op)."""
        return self.w_min >= k_len - 1

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, D) -> widths (B, H, T) in [w_min, w_max]."""
        gate = torch.sigmoid(self.proj(x)).transpose(1, 2)
        return self.w_min + (self.w_max - self.w_min) * gate

    def extra_repr(self) -> str:
        return f"w_min={self.w_min}, w_max={self.w_max}, tau={self.tau}"
