"""Node importance: per-token relevance scores that route queries to full or cheap attention.

The design's "node importance tracking: dynamic computational routing based on
token relevance scores", made concrete (in the manner of Mixture-of-Depths
routing):

* **Score** ``r_i = u . x_i + c`` from the query input x (B, T, D), optionally
  plus ``beta * log(n * a_i)`` where ``a_i`` is the attention that token ``i``
  receives from the mean query (one softmax row: the column sums of the full
  attention matrix would need the T x T matrix routing is meant to avoid), and
  ``n`` the real tokens (0 for uniform attention). That smoothing reads every
  query, so it needs ``select: topk`` (non-causal use).
* **Selection** of the important tokens:
  ``topk`` - per utterance the ``ceil(fraction * length)`` highest scores;
  it reads every query's score, so it is for non-causal self-attention (an
  encoder) and is refused in causal calls and in cross-attention (whose
  queries, in this project, are always a decoder's target tokens).
  ``threshold`` (default) - ``r_i > theta``, a token's own score against a
  buffer ``theta`` that tracks, in training, the ``1 - fraction`` quantile of
  the scores (exponential moving average); fixed in eval. A token's route
  depends on itself only, so this is causal and cache-consistent (decoder self-
  and cross-attention).
* **Routing**: important queries are gathered (B, K, dh), attend over all keys
  (the module's main path: full, or within its span / focus window) and are
  scattered back; every other query takes the cheap path and never enters the
  full computation: ``local`` (a band of ``cheap_window`` keys, chunked, O(T w))
  or ``mean`` (uniform attention over the visible keys, O(S); cross-attention
  always uses ``mean`` since a band means nothing across two sequences).
  Cost: O(K S) main + the cheap path, instead of O(T S).
* **Gradient** to the scorer (hard routing has none) by a straight-through
  gate on the routed tokens: ``full + (full - cheap) * (g - stopgrad(g))``,
  ``g = sigmoid(r)``: the forward value is exactly ``full``; the gradient says
  how much the full path beat the cheap one there.

With ``fraction >= 1`` every token is important and routing is skipped
(exactly the main path).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

SELECTIONS = ("topk", "threshold")
CHEAP_PATHS = ("local", "mean")


class NodeImportance(nn.Module):
    """Scores (B, T) and selects the important queries.

    Args:
        d_model: D.
        fraction: share of tokens routed to the main path, in (0, 1].
        select: ``threshold`` (causal-safe) or ``topk`` (non-causal only).
        cheap: ``local`` or ``mean`` (see the module doc).
        cheap_window: half-width of the ``local`` cheap path.
        received_weight: beta, weight of the attention-received smoothing (needs ``topk``).
        momentum: EMA momentum of the ``threshold`` quantile tracker.
    """

    def __init__(
        self,
        d_model: int,
        fraction: float = 0.5,
        select: str = "threshold",
        cheap: str = "local",
        cheap_window: int = 4,
        received_weight: float = 0.0,
        momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"importance: fraction must be in (0, 1], got {fraction}")
        if select not in SELECTIONS or cheap not in CHEAP_PATHS:
            raise ValueError(f"importance: select must be one of {SELECTIONS}, cheap one of {CHEAP_PATHS}; "
                             f"got {select!r}, {cheap!r}")
        if received_weight and select != "topk":
            raise ValueError("importance: received_weight reads every query (future ones too): it needs select: topk")
        if cheap_window < 0 or not 0.0 < momentum <= 1.0:
            raise ValueError(
                f"importance: need cheap_window >= 0 and 0 < momentum <= 1, got {cheap_window}, {momentum}"
            )
        self.fraction, self.select_mode, self.cheap = fraction, select, cheap
        self.cheap_window, self.received_weight, self.momentum = cheap_window, received_weight, momentum
        self.scorer = nn.Linear(d_model, 1)
        nn.init.normal_(self.scorer.weight, std=0.02)
        nn.init.zeros_(self.scorer.bias)
        self.register_buffer("threshold", torch.tensor(0.0))

    @property
    def routes(self) -> bool:
        """False when every token is important (routing is skipped)."""
        return self.fraction < 1.0

    def scores(
        self, x: Tensor, q: Tensor, k: Tensor, q_keep: Optional[Tensor], keep: Optional[Tensor]
    ) -> Tensor:
        """Relevance scores (B, T).

        Args:
            x: (B, T, D) query input.  q: (B, H, T, dh).  k: (B, H, S, dh) (self-attention: S = T).
            q_keep: (B, T) True = real query, or None.  keep: (B, S) True = real key, or None.
        """
        score = self.scorer(x).squeeze(-1)
        if not self.received_weight:
            return score
        real = torch.ones(q.shape[0], q.shape[2], device=q.device) if q_keep is None else q_keep.to(q.dtype)
        q_mean = (q * real[:, None, :, None]).sum(2, keepdim=True) / real.sum(1).clamp(min=1)[:, None, None, None]
        logits = (q_mean @ k.transpose(-1, -2)).squeeze(2) / math.sqrt(q.shape[-1])  # (B, H, S)
        if keep is not None:
            logits = logits.masked_fill(~keep[:, None, :], float("-inf"))
        received = logits.softmax(dim=-1).mean(dim=1)[:, -q.shape[2]:]  # (B, T)
        count = real.sum(1, keepdim=True)
        return score + self.received_weight * torch.log(received * count + 1e-6)

    def select(self, score: Tensor, q_keep: Optional[Tensor], causal: bool) -> Tensor:
        """(B, T) scores -> (B, T) bool, True = important (padded queries never are)."""
        real = torch.ones_like(score, dtype=torch.bool) if q_keep is None else q_keep.to(torch.bool)
        if self.select_mode == "threshold":
            return (score > self.threshold) & real
        if causal:
            raise ValueError("importance: select: topk ranks every query (future ones too); "
                             "use select: threshold in causal attention")
        count = real.sum(dim=1, keepdim=True)
        budget = torch.ceil(self.fraction * count.to(score.dtype)).long()
        rank = score.masked_fill(~real, float("-inf")).argsort(dim=1, descending=True).argsort(dim=1)
        return (rank < budget) & real

    @torch.no_grad()
    def track(self, score: Tensor, q_keep: Optional[Tensor]) -> None:
        """Training only: move ``threshold`` toward the ``1 - fraction`` quantile of the real scores."""
        if not self.training or self.select_mode != "threshold":
            return
        values = score.detach().float().flatten() if q_keep is None else score.detach().float()[q_keep]
        if values.numel() == 0:
            return
        target = torch.quantile(values, 1.0 - self.fraction)
        self.threshold.lerp_(target.to(self.threshold), self.momentum)

    def extra_repr(self) -> str:
        return f"fraction={self.fraction}, select={self.select_mode}, cheap={self.cheap}"


def routed_indices(important: Tensor) -> Tuple[Tensor, Tensor]:
    """(B, T) bool -> indices (B, K) of the important tokens first (in time order) and valid (B, K) bool.

    K is the largest count in the batch; shorter rows are padded with unimportant indices (valid False).
    """
    k = int(important.sum(dim=1).max()) if important.numel() else 0
    order = torch.argsort((~important).to(torch.int8), dim=1, stable=True)[:, :k]
    return order, important.gather(1, order)


def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """x (B, H|1, T, *E) rows at index (B, K) -> (B, H|1, K, *E); a batch dim of 1 is expanded."""
    x = x.expand(index.shape[0], *x.shape[1:])
    idx = index[:, None, :].expand(x.shape[0], x.shape[1], -1)
    idx = idx.reshape(*idx.shape, *([1] * (x.dim() - 3))).expand(*idx.shape, *x.shape[3:])
    return x.gather(2, idx)
