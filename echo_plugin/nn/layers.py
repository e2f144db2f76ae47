"""Pre-norm transformer blocks that receive ready-built submodules.

The blocks never construct attention or gates themselves: the encoder/decoder
build each from its spec (``echo_plugin.catalog``, through
:class:`~echo_plugin.nn.layer_builder.LayerBuilder`) and hand it in, so a new
attention or gate variant needs no change here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from torch import Tensor, nn

from echo_plugin.catalog import ACTIVATION, NORM
from echo_plugin.nn.attention.kernel import KVCache
from echo_plugin.nn.attention.memory import WorkingMemory
from echo_plugin.nn.attention.standard import AttentionCall, MultiHeadAttention
from echo_plugin.nn.capabilities import uses_aux_stream, uses_memory
from echo_plugin.nn.gates.none import NoGate
from echo_plugin.nn.rotary.pitch import F0Track
from echo_plugin.registry import Spec


def make_norm(name: str, d_model: int) -> nn.Module:
    """``"layer_norm"`` or ``"rms_norm"`` over the last dimension."""
    return NORM.get(name)(d_model)


def layer_specs(
    groups: Optional[Sequence[Mapping[str, Any]]], num_blocks: int, defaults: Mapping[str, Spec]
) -> List[Dict[str, Spec]]:
    """Expand per-group YAML ``[{num: n, <key>: spec, ...}, ...]`` to one spec dict per layer.

    Keys a group leaves out take ``defaults``; ``groups=None`` gives ``num_blocks``
    layers of defaults. The ``num`` values must add up to ``num_blocks``.
    """
    if groups is None:
        return [dict(defaults) for _ in range(num_blocks)]
    specs: List[Dict[str, Spec]] = []
    for group in groups:
        unknown = set(group) - {"num"} - set(defaults)
        if unknown or "num" not in group:
            raise ValueError(f"layer group {dict(group)}: needs 'num' and may set only {sorted(defaults)}")
        spec = {key: group.get(key, default) for key, default in defaults.items()}
        specs += [dict(spec) for _ in range(int(group["num"]))]
    if len(specs) != num_blocks:
        raise ValueError(f"layers: the groups' 'num' add up to {len(specs)} but num_blocks is {num_blocks}")
    return specs


class FeedForward(nn.Module):
    """Linear -> activation -> dropout -> Linear: (..., D) -> (..., D)."""

    def __init__(self, d_model: int, hidden: int, dropout: float = 0.0, activation: str = "swish") -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, hidden),
            ACTIVATION.get(activation)(),
            nn.Dropout(dropout),
            nn.Linear(hidden, d_model),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PreNormLayer(nn.Module):
    """What EncoderLayer and DecoderLayer share: attention modules, each with its own pre-norm, then
    the gated feed-forward step ``x + dropout(gate(h, feed_forward(h), aux))`` with ``h = ff_norm(x)``.

    Submodules are registered in this order (the state-dict and parameter order): the attentions,
    ``feed_forward``, ``gate``, the attentions' norms, ``ff_norm``, ``dropout``.

    Args:
        attentions: attribute name -> (ATTENTION module, attribute name of its pre-norm), in order.
        feed_forward: (B, T, D) -> (B, T, D).
        d_model: width D.  dropout: residual dropout.  norm: NORM name.
        gate: a GATE module on the feed-forward update; None = ``NoGate`` (no
            parameters, update unchanged: the plain pre-norm layer).
    """

    def __init__(
        self,
        attentions: Mapping[str, Tuple[nn.Module, str]],
        feed_forward: nn.Module,
        d_model: int,
        dropout: float,
        norm: str,
        gate: Optional[nn.Module],
    ) -> None:
        super().__init__()
        for name, (attention, _) in attentions.items():
            self.add_module(name, attention)
        self.feed_forward = feed_forward
        self.gate = NoGate(d_model) if gate is None else gate
        for _, norm_name in attentions.values():
            self.add_module(norm_name, make_norm(norm, d_model))
        self.ff_norm = make_norm(norm, d_model)
        self.dropout = nn.Dropout(dropout)

    def residual(self, x: Tensor, update: Tensor) -> Tensor:
        """x + dropout(update), both (B, T, D)."""
        return x + self.dropout(update)

    def feed_forward_step(self, x: Tensor, aux: Optional[Tensor]) -> Tensor:
        """x (B, T, D), aux (B, T, D) for gates that read one, or None -> x + dropout(gate(h, FF(h), aux))."""
        h = self.ff_norm(x)
        return self.residual(x, self.gate(h, self.feed_forward(h), aux))


class EncoderLayer(PreNormLayer):
    """x + SelfAttention(attn_norm(x)), then x + gate(h, FeedForward(h)) with h = ff_norm(x).

    Args:
        self_attn: an ATTENTION module (rotary already inside).
        feed_forward, d_model, dropout, norm, gate: as :class:`PreNormLayer`.
    """

    self_attn: nn.Module
    attn_norm: nn.Module

    def __init__(
        self,
        self_attn: nn.Module,
        feed_forward: nn.Module,
        d_model: int,
        dropout: float = 0.1,
        norm: str = "layer_norm",
        gate: Optional[nn.Module] = None,
    ) -> None:
        super().__init__({"self_attn": (self_attn, "attn_norm")}, feed_forward, d_model, dropout, norm, gate)

    def forward(
        self,
        x: Tensor,
        key_padding_mask: Optional[Tensor],
        positions: Tensor,
        f0: Optional[F0Track] = None,
        zero_keys: Optional[Tensor] = None,
        aux: Optional[Tensor] = None,
        memory: Optional[WorkingMemory] = None,
    ) -> Tensor:
        """x (B, T, D), key_padding_mask (B, T) True = real frame, positions (T,) or (B, T) -> (B, T, D).

        ``f0``: pitch on these T frames for pitch-aware rotaries; passed to the
        attention module only when given, so attention types without pitch support keep working.
        ``zero_keys``: (B, T) True = silent real frame, for soft masking; passed on likewise.
        ``aux``: (B, T, D) auxiliary stream for gates that read one (``c_gate``), and for
        attention modules whose ``uses_aux_stream`` is True (``curiosity`` with ``aux_source: features``;
        :class:`~echo_plugin.nn.capabilities.UsesAuxStream`).
        ``memory``: the encoder pass's working memory, handed to attention modules whose
        ``uses_memory`` is True (``myelinated``; :class:`~echo_plugin.nn.capabilities.UsesWorkingMemory`),
        which read and rewrite it.
        """
        extra = {} if f0 is None else {"f0": f0}
        if zero_keys is not None:
            extra["zero_keys"] = zero_keys
        if memory is not None and uses_memory(self.self_attn):
            extra["memory"] = memory
        if aux is not None and uses_aux_stream(self.self_attn):
            extra["aux_stream"] = aux
        attended, _ = self.self_attn(
            self.attn_norm(x),
            key_padding_mask=key_padding_mask,
            q_positions=positions,
            k_positions=positions,
            **extra,
        )
        return self.feed_forward_step(self.residual(x, attended), aux)


@dataclass(frozen=True)
class DecoderInputs:
    """What one decoder pass hands every layer beside its states and caches (the same for all layers).

    Attributes:
        memory: (B, S, D) encoder output.
        memory_mask: (B, S) True = real frame, or None (every frame real).
        target_mask: (B, L_total) True = real token (cached + new steps), or None (every token real).
        positions: (L,) positions of the newest L target steps, or None: continue after the
            self-attention cache.
    """

    memory: Tensor
    memory_mask: Optional[Tensor] = None
    target_mask: Optional[Tensor] = None
    positions: Optional[Tensor] = None


def causal_self_attention(
    attn: nn.Module, x: Tensor, inputs: DecoderInputs, cache: Optional[KVCache]
) -> Tuple[Tensor, KVCache]:
    """A decoder's causal self-attention over its newest L steps: x (B, L, D) normalised, the pass's
    target mask and positions from ``inputs``, cache (k, v) of the earlier steps or None -> (B, L, D),
    the cache now covering all steps."""
    positions = inputs.positions
    return attn(
        x, key_padding_mask=inputs.target_mask, causal=True, q_positions=positions, k_positions=positions, cache=cache
    )


def cross_attention(
    attn: MultiHeadAttention, query: Tensor, inputs: DecoderInputs, cache: Optional[KVCache]
) -> Tuple[Tensor, KVCache]:
    """A decoder's cross-attention from query (B, L, D), normalised, to the encoder memory of ``inputs``
    -> (B, L, D) and the memory's keys/values.

    Without ``cache`` the module projects the memory; its keys/values (each (B, H', S, dh)) come
    back as the cache. With one (the memory projected once by an earlier call, shared: e.g. one
    utterance's keys expanded over B hypotheses as a view), the module's attention step reads those
    keys/values as they are and the cache comes back unchanged. (The module's ``forward`` would append
    the memory's new keys, none here, to a copy of the cache: B x S keys copied on every call.)
    """
    if cache is None:
        return attn(query, inputs.memory, key_padding_mask=inputs.memory_mask)
    call = AttentionCall(attn, query, inputs.memory[:, :0], inputs.memory_mask, cache=cache)
    call.k, call.v = cache  # what the call computes on first use: the cached keys/values followed by none
    return attn.attention(call), cache


class DecoderLayer(PreNormLayer):
    """Causal self-attention, cross-attention to the encoder memory, gated feed-forward; all pre-norm.

    The feed-forward step is ``x + gate(h, FeedForward(h), aux=context)`` with
    ``h = ff_norm(x)`` and ``context`` this layer's cross-attention output.

    Args:
        self_attn, cross_attn: ATTENTION modules (cross-attention without rotary).
        feed_forward, d_model, dropout, norm, gate: as :class:`PreNormLayer`.
    """

    self_attn: nn.Module
    cross_attn: nn.Module
    self_norm: nn.Module
    cross_norm: nn.Module

    def __init__(
        self,
        self_attn: nn.Module,
        cross_attn: nn.Module,
        feed_forward: nn.Module,
        d_model: int,
        dropout: float = 0.1,
        norm: str = "layer_norm",
        gate: Optional[nn.Module] = None,
    ) -> None:
        attentions = {"self_attn": (self_attn, "self_norm"), "cross_attn": (cross_attn, "cross_norm")}
        super().__init__(attentions, feed_forward, d_model, dropout, norm, gate)

    def forward(
        self,
        x: Tensor,
        inputs: DecoderInputs,
        self_cache: Optional[KVCache] = None,
        cross_cache: Optional[KVCache] = None,
    ) -> Tuple[Tensor, KVCache, KVCache]:
        """One block over the newest ``L`` target steps.

        Args:
            x: (B, L, D) target states.  inputs: the pass's memory, masks and positions.
            self_cache: rotated self-attention (k, v), each (B, H, L_cache, dh).
            cross_cache: memory (k, v) from an earlier call, attended as it is (see :func:`cross_attention`).

        Returns:
            (B, L, D) output, new self cache, cross cache.
        """
        h = self.self_norm(x)
        attended, self_cache = causal_self_attention(self.self_attn, h, inputs, self_cache)
        x = self.residual(x, attended)
        context, cross_cache = cross_attention(self.cross_attn, self.cross_norm(x), inputs, cross_cache)
        x = self.feed_forward_step(self.residual(x, context), context)
        return x, self_cache, cross_cache
