"""Standard multi-head attention: Q/K/V/out projections, rotary on q and k, fused kernel."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

import echo_plugin.nn.masking  # noqa: F401  (fills the MASKING registry)
from echo_plugin.nn.attention.kernel import KVCache, attend
from echo_plugin.nn.registries import ATTENTION, MASKING, ROTARY
from echo_plugin.nn.rotary.pitch import F0Track
from echo_plugin.registry import Spec


@ATTENTION.register("standard")
class MultiHeadAttention(nn.Module):
    """Multi-head attention with pluggable rotary position embeddings on queries and keys.

    The rotaries are used only through ``rotate`` and ``score_bias`` (see
    :mod:`echo_plugin.nn.rotary.base`); a score bias goes to the kernel as an
    additive float mask.

    Args:
        d_model: model width D (divisible by n_heads).
        n_heads: number of heads H; head width dh = D // H.
        dropout: attention-weight dropout.
        rotary: ROTARY spec for the queries (and keys unless ``rotary_k`` is set);
            None = no rotation (cross-attention is built with ``"none"``).
        rotary_k: ROTARY spec for the keys; None = the query rotary (one shared module).
        masking: MASKING spec for padding / zero keys; None = ``hard`` (-inf padding).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        rotary: Spec = None,
        rotary_k: Spec = None,
        masking: Spec = None,
    ) -> None:
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
        # Kept None when shared, so the state dict holds the query rotary's tensors once.
        self.rotary_k = None if rotary_k is None else ROTARY.build(rotary_k, head_dim=self.head_dim)
        self.masking = MASKING.build(masking or "hard")

    @property
    def key_rotary(self) -> nn.Module:
        return self.rotary if self.rotary_k is None else self.rotary_k

    def forward(
        self,
        query: Tensor,
        key_value: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
        causal: bool = False,
        q_positions: Optional[Tensor] = None,
        k_positions: Optional[Tensor] = None,
        cache: Optional[KVCache] = None,
        f0: Optional[F0Track] = None,
        k_f0: Optional[F0Track] = None,
        zero_keys: Optional[Tensor] = None,
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
            f0: pitch of the query frames (pitch-aware rotaries), or None.
            k_f0: pitch of the new key frames; default ``f0`` in self-attention.
            zero_keys: (B, S_total) bool, True = real but silent key (soft masking softens it), or None.

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
        if k_f0 is None and key_value is None:
            k_f0 = f0
        q = self.rotary.rotate(self._split_heads(self.query(query)), q_positions, f0)
        k = self.key_rotary.rotate(self._split_heads(self.key(source)), k_positions, k_f0)
        v = self._split_heads(self.value(source))
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        bias = self.score_bias(f0, k_f0, k.shape[-2])
        dropout = self.dropout if self.training else 0.0
        heads = attend(q, k, v, key_padding_mask, causal, dropout, bias=bias, masking=self.masking, zero_keys=zero_keys)
        return self.out(heads.transpose(1, 2).flatten(2)), (k, v)

    def score_bias(self, f0: Optional[F0Track], k_f0: Optional[F0Track], k_len: int) -> Optional[Tensor]:
        """Sum of the score biases of the query rotary and (if separate) the key rotary, or None."""
        bias = None
        for rotary in (self.rotary, self.rotary_k):
            extra = None if rotary is None else rotary.score_bias(f0, k_f0)
            if extra is not None:
                bias = extra if bias is None else bias + extra
        if bias is None:
            return None
        if bias.shape[-1] != k_len:
            raise ValueError(
                f"score bias covers {bias.shape[-1]} keys but there are {k_len} (cached keys need f0 too)"
            )
        return bias

    def _split_heads(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, H, T, dh)."""
        return x.unflatten(-1, (self.n_heads, self.head_dim)).transpose(1, 2)
