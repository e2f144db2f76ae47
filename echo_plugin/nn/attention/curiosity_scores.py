"""Score functions for curiosity attention's auxiliary stream, expressed as fused-kernel inputs.

Each score (``echo_plugin.catalog.CURIOSITY_SCORE``, ``score: dot | cosine | rbf`` or ``{type, conf}``) maps
rotated queries ``q`` (B, H, T, dh) and keys ``k`` (B, H, S, dh) to
``(q', k', key_bias)`` such that the logits of
:func:`~echo_plugin.nn.attention.kernel.attend`,
``q'_i . k'_j / sqrt(dh) + key_bias_j``, are the score up to a per-query constant
(which softmax ignores). Per head ``h``:

* ``dot``:    ``s_ij = q_i . k_j / sqrt(dh)``.
* ``cosine``: ``s_ij = tau_h * cos(q_i, k_j)``, learned temperature ``tau_h = exp(log_tau_h) > 0``.
* ``rbf``:    ``s_ij = -||q_i - k_j||^2 / (2 sigma_h^2)``, learned ``sigma_h = exp(log_sigma_h)``,
  so the attention weights are the normalised Gaussian kernel ``exp(s_ij) / sum_j exp(s_ij)``.
  Because ``-||q - k||^2 = 2 q.k - |q|^2 - |k|^2`` and ``-|q_i|^2`` is constant per query,
  it runs as ``q' = q sqrt(dh) / sigma^2`` and a per-key bias ``-|k_j|^2 / (2 sigma^2)``.
  The default ``sigma^2 = sqrt(dh)`` makes the ``q.k`` term equal the dot score.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ScoreInputs = Tuple[Tensor, Tensor, Optional[Tensor]]
"""(q' (B, H, T, dh), k' (B, H, S, dh), key_bias (B, H, 1, S) or None)."""

class DotScore(nn.Module):
    """Scaled dot product: the inputs unchanged."""

    def __init__(self, n_heads: int, head_dim: int) -> None:
        super().__init__()

    def forward(self, q: Tensor, k: Tensor) -> ScoreInputs:
        return q, k, None


class CosineScore(nn.Module):
    """``tau_h cos(q, k)``; ``temperature``: initial tau (same for every head)."""

    def __init__(self, n_heads: int, head_dim: int, temperature: float = 10.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"cosine score: temperature must be > 0, got {temperature}")
        self.head_dim = head_dim
        self.log_temperature = nn.Parameter(torch.full((n_heads,), math.log(temperature)))

    def temperature(self) -> Tensor:
        """(H,) current temperatures."""
        return self.log_temperature.exp()

    def forward(self, q: Tensor, k: Tensor) -> ScoreInputs:
        scale = (self.temperature() * math.sqrt(self.head_dim)).to(q.dtype)[:, None, None]
        return F.normalize(q, dim=-1) * scale, F.normalize(k, dim=-1), None


class RBFScore(nn.Module):
    """``-||q - k||^2 / (2 sigma_h^2)``; ``sigma``: initial bandwidth, None = ``dh ** 0.25``."""

    def __init__(self, n_heads: int, head_dim: int, sigma: Optional[float] = None) -> None:
        super().__init__()
        sigma = head_dim**0.25 if sigma is None else sigma
        if not sigma > 0:
            raise ValueError(f"rbf score: sigma must be > 0, got {sigma}")
        self.head_dim = head_dim
        self.log_sigma = nn.Parameter(torch.full((n_heads,), math.log(sigma)))

    def sigma(self) -> Tensor:
        """(H,) current bandwidths."""
        return self.log_sigma.exp()

    def forward(self, q: Tensor, k: Tensor) -> ScoreInputs:
        inv_var = torch.exp(-2.0 * self.log_sigma).to(q.dtype)[:, None]  # (H, 1): 1 / sigma^2
        q_scaled = q * (inv_var * math.sqrt(self.head_dim))[:, None]
        key_bias = -0.5 * inv_var * k.pow(2).sum(dim=-1)  # (B, H, S)
        return q_scaled, k, key_bias.unsqueeze(-2)
