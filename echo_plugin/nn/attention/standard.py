"""Standard multi-head attention: Q/K/V/out projections, rotary on q and k, fused kernel."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from echo_plugin.nn.attention.kernel import KVCache, attend
from echo_plugin.nn.registries import ATTENTION, ROTARY
from echo_plugin.nn.rotary import apply_rotary
from echo_plugin.registry import Spec


@ATTENTION.register("standard")
class MultiHeadAttention(nn.Module):
    """Multi-head attention with a pluggable rotary position embedding.

    Args:
        d_model: model width D (divisible by n_heads).
        n_heads: number of heads H; head width dh = D // H.
        dropout: attention-weight dropout.
        rotary: ROTARY spec applied to q and k; None = no rotation
            (cross-attention is built with ``"none"``).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, rotary: Spec = None) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.rotary = ROTARY.build(rotary or "none", head_dim=self.head_dim)

    def forward(
        self,
        query: Tensor,
        key_value: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
        causal: bool = False,
        q_positions: Optional[Tensor] = None,
        k_positions: Optional[Tensor] = None,
        cache: Optional[KVCache] = None,
    ) -> Tuple[Tensor, KVCache]:
        """Attend from ``query`` to the cached keys followed by those of ``key_value``.

        Args:
            query: (B, T, D).
            key_value: (B, S_new, D) source of new keys/values; None = ``query`` (self-attention).
                With a cache holding every key already (e.g. encoder memory), pass a
                length-0 tensor.
            key_padding_mask: (B, S_total) bool, True = real key, over cache + new keys.
            causal: hide later keys (bottom-right aligned, so cached steps stay visible).
            q_positions, k_positions: (T,) / (S_new,) or batched (B, T) / (B, S_new)
                positions for the rotary; default: continue counting after the cache.
            cache: (k, v), each (B, H, S_cache, dh), keys already rotated.

        Returns:
            out: (B, T, D).
            new_cache: (k, v), each (B, H, S_cache + S_new, dh).
        """
        source = query if key_value is None else key_value
        past = 0 if cache is None else cache[0].shape[-2]
        if q_positions is None:
            q_positions = torch.arange(past, past + query.shape[1], device=query.device)
        if k_positions is None:
            k_positions = (
                q_positions
                if key_value is None
                else torch.arange(past, past + source.shape[1], device=query.device)
            )
        q_freqs = self.rotary(q_positions)
        k_freqs = q_freqs if k_positions is q_positions else self.rotary(k_positions)
        q = apply_rotary(self._split_heads(self.query(query)), q_freqs)
        k = apply_rotary(self._split_heads(self.key(source)), k_freqs)
        v = self._split_heads(self.value(source))
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        heads = attend(q, k, v, key_padding_mask, causal, self.dropout if self.training else 0.0)
        return self.out(heads.transpose(1, 2).flatten(2)), (k, v)

    def _split_heads(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, H, T, dh)."""
        return x.unflatten(-1, (self.n_heads, self.head_dim)).transpose(1, 2)
