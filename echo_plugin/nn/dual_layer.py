"""Dual cross-attention decoder layer (Whisper layout) and its fusion gate.

One layer, all pre-norm residual::

    x = x + SelfAttn(attn_ln(x))                               causal, cached
    h = cross_attn_ln(x)
    p = cross_attn(h, memory)        s = secondary_attn(h, memory)
    a = sigmoid(MLP([h; p; s]))                                (B, L, 1), per token
    x = x + a * p + (1 - a) * s
    x = x + mlp(mlp_ln(x))

Submodule names follow openai-whisper's ``ResidualAttentionBlock`` (``attn``,
``attn_ln``, ``cross_attn``, ``cross_attn_ln``, ``mlp.0``, ``mlp.2``,
``mlp_ln``), so a Whisper block's weights load by name; ``secondary_attn`` and
``gate`` are the additions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from echo_plugin.catalog import ACTIVATION
from echo_plugin.nn.attention.kernel import KVCache
from echo_plugin.nn.attention.standard import MultiHeadAttention
from echo_plugin.nn.layers import DecoderInputs, causal_self_attention, cross_attention


class DualGate(nn.Module):
    """alpha = sigmoid(MLP([query; primary; secondary])): (B, L, 3D) -> (B, L, 1).

    Args:
        d_model: width D.  hidden: MLP hidden width.
        init_bias: initial bias of the last layer (alpha starts near sigmoid(init_bias);
            e.g. 2.0 keeps a warm-started model close to its pretrained primary path).
    """

    def __init__(self, d_model: int, hidden: int, init_bias: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 * d_model, hidden), nn.GELU(), nn.Linear(hidden, 1))
        nn.init.constant_(self.net[2].bias, init_bias)

    def forward(self, query: Tensor, primary: Tensor, secondary: Tensor) -> Tensor:
        """query, primary, secondary (B, L, D) -> alpha (B, L, 1) in (0, 1)."""
        return torch.sigmoid(self.net(torch.cat([query, primary, secondary], dim=-1)))


def mlp(d_model: int, hidden: int, activation: str) -> nn.Sequential:
    """Whisper's ``mlp``: Linear(D, U) -> activation -> Linear(U, D) (keys ``0`` and ``2``)."""
    act = ACTIVATION.get(activation)
    return nn.Sequential(nn.Linear(d_model, hidden), act(), nn.Linear(hidden, d_model))


def drop_key_bias(attention: nn.Module) -> nn.Module:
    """Replace an attention module's key projection by a bias-free one (Whisper's keys have no bias)."""
    key = getattr(attention, "key", None)
    if not isinstance(key, nn.Linear):
        raise TypeError(f"key_bias: false needs an attention with a 'key' Linear, got {type(attention).__name__}")
    attention.key = nn.Linear(key.in_features, key.out_features, bias=False)
    return attention


@dataclass
class CrossWeights:
    """Explicit attention maps of one layer, for analysis: each (B, H, L, S); gate (B, L, 1)."""

    primary: Tensor
    secondary: Tensor
    gate: Tensor


class DualDecoderLayer(nn.Module):
    """Self-attention, primary + secondary cross-attention fused by a per-token gate, MLP.

    Args:
        attn: causal self-attention (an ATTENTION module).
        cross_attn: primary cross-attention.  secondary_attn: secondary cross-attention
            (same interface, own weights).
        gate: :class:`DualGate`.
        d_model: width D.  linear_units: MLP width.  activation: MLP activation.
        dropout: residual dropout.  norm_eps: LayerNorm epsilon (Whisper 1e-5, ESPnet 1e-12).
    """

    def __init__(
        self,
        attn: nn.Module,
        cross_attn: nn.Module,
        secondary_attn: nn.Module,
        gate: DualGate,
        d_model: int,
        linear_units: int,
        activation: str = "gelu",
        dropout: float = 0.1,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.attn = attn
        self.attn_ln = nn.LayerNorm(d_model, eps=norm_eps)
        self.cross_attn = cross_attn
        self.cross_attn_ln = nn.LayerNorm(d_model, eps=norm_eps)
        self.secondary_attn = secondary_attn
        self.gate = gate
        self.mlp = mlp(d_model, linear_units, activation)
        self.mlp_ln = nn.LayerNorm(d_model, eps=norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        inputs: DecoderInputs,
        self_cache: Optional[KVCache] = None,
        primary_cache: Optional[KVCache] = None,
        secondary_cache: Optional[KVCache] = None,
        gate_override: Optional[float] = None,
    ) -> Tuple[Tensor, KVCache, KVCache, KVCache]:
        """One layer over the newest L target steps (fused kernel throughout).

        Args:
            x: (B, L, D).  inputs: the pass's memory, masks and positions.
            self_cache: (k, v) of the earlier steps, each (B, H, L_cache, dh).
            primary_cache, secondary_cache: projected memory (k, v) from an earlier call, attended as
                they are (:func:`~echo_plugin.nn.layers.cross_attention`).
            gate_override: a constant alpha instead of the gate (1.0 = primary path only).

        Returns:
            (B, L, D) output, new self cache, primary cache, secondary cache.
        """
        attended, self_cache = causal_self_attention(self.attn, self.attn_ln(x), inputs, self_cache)
        x = x + self.dropout(attended)
        h = self.cross_attn_ln(x)
        primary, primary_cache = cross_attention(self.cross_attn, h, inputs, primary_cache)
        secondary, secondary_cache = cross_attention(self.secondary_attn, h, inputs, secondary_cache)
        x = x + self.dropout(self.fuse(h, primary, secondary, gate_override))
        x = x + self.dropout(self.mlp(self.mlp_ln(x)))
        return x, self_cache, primary_cache, secondary_cache

    def fuse(self, h: Tensor, primary: Tensor, secondary: Tensor, gate_override: Optional[float]) -> Tensor:
        """alpha * primary + (1 - alpha) * secondary, all (B, L, D)."""
        alpha = self.alpha(h, primary, secondary, gate_override)
        return alpha * primary + (1.0 - alpha) * secondary

    def alpha(self, h: Tensor, primary: Tensor, secondary: Tensor, gate_override: Optional[float]) -> Tensor:
        """Gate value (B, L, 1): the learned gate, or the constant override."""
        if gate_override is None:
            return self.gate(h, primary, secondary)
        return torch.full_like(primary[..., :1], float(gate_override))

    def forward_with_weights(
        self, x: Tensor, inputs: DecoderInputs, gate_override: Optional[float] = None
    ) -> Tuple[Tensor, CrossWeights]:
        """As :meth:`forward` (no cache, no dropout on the maps), also returning both cross-attention maps.

        The cross-attention outputs are computed from the explicit maps, so the maps are
        exactly what produced the output.
        """
        attended, _ = causal_self_attention(self.attn, self.attn_ln(x), inputs, None)
        x = x + self.dropout(attended)
        h = self.cross_attn_ln(x)
        primary, primary_w = explicit_cross_attention(self.cross_attn, h, inputs.memory, inputs.memory_mask)
        secondary, secondary_w = explicit_cross_attention(self.secondary_attn, h, inputs.memory, inputs.memory_mask)
        alpha = self.alpha(h, primary, secondary, gate_override)
        x = x + self.dropout(alpha * primary + (1.0 - alpha) * secondary)
        x = x + self.dropout(self.mlp(self.mlp_ln(x)))
        return x, CrossWeights(primary_w, secondary_w, alpha)


def explicit_cross_attention(
    attn: nn.Module, query: Tensor, memory: Tensor, memory_mask: Optional[Tensor]
) -> Tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(dh)) v through a standard attention module's projections.

    Args:
        attn: module with ``query``, ``key``, ``value``, ``out`` Linears and ``n_heads``.
        query: (B, L, D).  memory: (B, S, D).  memory_mask: (B, S) True = real frame, or None.

    Returns:
        output (B, L, D) and weights (B, H, L, S).
    """
    if type(attn) is not MultiHeadAttention:
        raise TypeError(f"attention maps need standard cross-attention, got {type(attn).__name__}")
    heads = attn.n_heads

    def split(t: Tensor) -> Tensor:
        return t.unflatten(-1, (heads, -1)).transpose(1, 2)

    q, k, v = split(attn.query(query)), split(attn.key(memory)), split(attn.value(memory))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if memory_mask is not None:
        scores = scores.masked_fill(~memory_mask[:, None, None, :], float("-inf"))
    weights = scores.softmax(dim=-1).nan_to_num(0.0)
    return attn.out((weights @ v).transpose(1, 2).flatten(2)), weights
