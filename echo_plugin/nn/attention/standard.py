"""Multi-head attention: the one base every ATTENTION variant builds on, and ``standard``.

:class:`MultiHeadAttention` owns everything around the attention step: the
Q/K/V/out projections, the rotary on queries and keys (through the rotary
interface alone: ``rotate`` and ``score_bias``, see :mod:`echo_plugin.nn.rotary.base`),
default positions, the KV cache for incremental decoding, and the score bias.
A call is gathered in an :class:`AttentionCall`, whose ``q``, ``k``, ``v`` and
``bias`` are computed on first use; the module's output is::

    out = attention(call)                      default: W_out merge_heads(attend(q, k, v, mask, bias, call)) + b_out
    new_cache = (call.k, call.v)               cached keys/values followed by this call's

A variant subclasses it, adds its own parameters and overrides its attention step:

* :meth:`MultiHeadAttention.attend` (adaptive, curiosity, integrated; ``standard``
  is the fused kernel :func:`~echo_plugin.nn.attention.kernel.attend`), from the
  projected heads to the per-head context (B, H, T, dh);
* or, for a variant that projects only some rows (myelinated routes frames and
  never projects the skipped ones), :meth:`MultiHeadAttention.attention`, from the
  call to the output (B, T, D), reading ``call.q`` / ``call.k`` only where needed.

A variant with extra key/value heads in its cache (curiosity) overrides
:meth:`~MultiHeadAttention.project_keys` / :meth:`~MultiHeadAttention.project_values`;
the cache is concatenated the same way for every variant.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, Optional, Tuple

import torch
from torch import Tensor, nn

from echo_plugin.catalog import MASKING, ROTARY
from echo_plugin.nn.attention import kernel
from echo_plugin.nn.attention.kernel import KVCache
from echo_plugin.nn.rotary.pitch import F0Track
from echo_plugin.registry import Spec

if TYPE_CHECKING:
    from echo_plugin.nn.attention.memory import WorkingMemory


@dataclass(eq=False)
class AttentionCall:
    """One call of a :class:`MultiHeadAttention`: its arguments (see ``forward``) with the
    defaults filled in, and its projections, each computed on first use (and then kept).

    Filled in:
        source: ``key_value``, or ``query`` in self-attention.
        past: S_cache, the steps the cache holds (0 without one).
        q_positions, k_positions: default, counting on after the cache (the keys take the
            queries' positions in self-attention).
        k_f0: default ``f0`` in self-attention.
        dropout: attention-weight dropout of this call (0.0 outside training).

    Computed on first use:
        q: (B, H, T, dh) rotated queries.
        k, v: (B, H', S, dh) the cache's keys (rotated) / values followed by the new ones;
            H' = H, or more where the variant caches extra heads (:meth:`MultiHeadAttention.project_keys`).
        bias: the rotaries' score bias over the S keys, or None.
    """

    module: MultiHeadAttention
    query: Tensor
    key_value: Optional[Tensor] = None
    key_padding_mask: Optional[Tensor] = None
    causal: bool = False
    q_positions: Optional[Tensor] = None
    k_positions: Optional[Tensor] = None
    cache: Optional[KVCache] = None
    f0: Optional[F0Track] = None
    k_f0: Optional[F0Track] = None
    zero_keys: Optional[Tensor] = None
    memory: Optional[WorkingMemory] = None
    aux_stream: Optional[Tensor] = None

    def __post_init__(self) -> None:
        query, device = self.query, self.query.device
        self.source = query if self.key_value is None else self.key_value
        self.past = 0 if self.cache is None else self.cache[0].shape[-2]
        if self.q_positions is None:
            self.q_positions = torch.arange(self.past, self.past + query.shape[1], device=device)
        if self.k_positions is None:
            self.k_positions = (
                self.q_positions
                if self.key_value is None
                else torch.arange(self.past, self.past + self.source.shape[1], device=device)
            )
        if self.k_f0 is None and self.key_value is None:
            self.k_f0 = self.f0
        self.dropout = self.module.dropout if self.module.training else 0.0

    @property
    def self_attention(self) -> bool:
        return self.key_value is None

    @property
    def k_len(self) -> int:
        """S: cached plus new keys."""
        return self.past + self.source.shape[1]

    @cached_property
    def q(self) -> Tensor:
        module = self.module
        return module.rotary.rotate(module._split_heads(module.query(self.query)), self.q_positions, self.f0)

    @cached_property
    def k(self) -> Tensor:
        return self._after_cache(0, self.module.project_keys(self.source, self.k_positions, self.k_f0))

    @cached_property
    def v(self) -> Tensor:
        return self._after_cache(1, self.module.project_values(self.source))

    @cached_property
    def bias(self) -> Optional[Tensor]:
        return self.module.score_bias(self.f0, self.k_f0, self.k_len)

    def _after_cache(self, which: int, new: Tensor) -> Tensor:
        return new if self.cache is None else torch.cat([self.cache[which], new], dim=2)

    def new_cache(self) -> KVCache:
        """(k, v) over cache + new steps; keys never asked for (nothing attended) come back
        as (B, H, 0, dh)."""
        if "k" in self.__dict__:
            return self.k, self.v
        v = self.v
        return v.new_zeros(v.shape[0], self.module.n_heads, 0, self.module.head_dim), v


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

    kind: ClassVar[str] = "standard"
    """The ATTENTION name, for messages."""
    self_attention_only: ClassVar[bool] = False
    """True refuses ``key_value`` (cross-attention)."""
    uses_memory: bool = False
    """Whether an encoder should hand the module its :class:`WorkingMemory`."""
    uses_aux_stream: bool = False
    """Whether a layer should hand the module its auxiliary stream (``aux_stream``)."""

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
        memory: Optional[WorkingMemory] = None,
        aux_stream: Optional[Tensor] = None,
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
            cache: (k, v), each (B, H, S_cache, dh), keys already rotated (a variant may
                cache more heads, see :meth:`project_keys`).
            f0: pitch of the query frames (pitch-aware rotaries), or None.
            k_f0: pitch of the new key frames; default ``f0`` in self-attention.
            zero_keys: (B, S_total) bool, True = real but silent key (soft masking softens it), or None.
            memory: the encoder pass's working memory; read only by modules with ``uses_memory``.
            aux_stream: (B, S_new, D) a second input on the key frames (EchoEncoder: its input
                layer's output); read only by modules with ``uses_aux_stream``.

        Returns:
            out: (B, T, D).
            new_cache: (k, v), each (B, H, S_cache + S_new, dh).
        """
        if key_value is not None and self.self_attention_only:
            raise ValueError(f"{self.kind} attention is self-attention only (key_value must be None)")
        call = AttentionCall(
            self, query, key_value, key_padding_mask, causal, q_positions, k_positions, cache, f0, k_f0, zero_keys,
            memory, aux_stream,
        )  # fmt: skip
        out = self.attention(call)
        return out, call.new_cache()

    def attention(self, call: AttentionCall) -> Tensor:
        """The attention step, from a call to the output (B, T, D): :meth:`attend`, then ``out``."""
        heads = self.attend(call.q, call.k, call.v, call.key_padding_mask, call.bias, call)
        return self.out(self._merge_heads(heads))

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], bias: Optional[Tensor], call: AttentionCall
    ) -> Tensor:
        """Per-head context (B, H, T, dh) from q (B, H, T, dh), k, v (B, H', S, dh), the key
        padding mask (B, S) (True = real key) or None and the score bias or None; ``call``
        gives the rest (causal, dropout, zero_keys, the inputs). Here: the fused kernel
        under the masking strategy."""
        return kernel.attend(
            q, k, v, mask, call.causal, call.dropout, bias=bias, masking=self.masking, zero_keys=call.zero_keys
        )

    def project_keys(self, source: Tensor, positions: Tensor, f0: Optional[F0Track]) -> Tensor:
        """New keys (B, H, S_new, dh), rotated, from ``source`` (B, S_new, D)."""
        return self.key_rotary.rotate(self._split_heads(self.key(source)), positions, f0)

    def project_values(self, source: Tensor) -> Tensor:
        """New values (B, H, S_new, dh) from ``source`` (B, S_new, D)."""
        return self._split_heads(self.value(source))

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

    @staticmethod
    def _merge_heads(x: Tensor) -> Tensor:
        """(B, H, T, dh) -> (B, T, D)."""
        return x.transpose(1, 2).flatten(2)
