"""Builds EchoEncoder / EchoDecoder layers from their per-layer specs (``layers.layer_specs``).

The layers receive ready-built submodules (:mod:`echo_plugin.nn.layers`); this is the one
place that turns a layer's specs into them: ATTENTION modules, the feed-forward and the GATE.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from torch import nn

from echo_plugin.catalog import ATTENTION, GATE
from echo_plugin.nn.layers import DecoderLayer, EncoderLayer, FeedForward
from echo_plugin.registry import Spec


@dataclass(frozen=True)
class LayerBuilder:
    """What every layer of one encoder or decoder shares; builds each layer from its own specs.

    Args:
        d_model: width D.  attention_heads: heads per attention module.
        linear_units: feed-forward hidden width.  dropout: residual and feed-forward dropout.
        activation: feed-forward ACTIVATION name.  norm: NORM name.
    """

    d_model: int
    attention_heads: int
    linear_units: int
    dropout: float
    activation: str
    norm: str

    def attention(self, spec: Spec, dropout: float, rotary: Spec, masking: Spec) -> nn.Module:
        """The ATTENTION module ``spec`` at this width and head count, with its attention-weight dropout."""
        return ATTENTION.build(
            spec, d_model=self.d_model, n_heads=self.attention_heads, dropout=dropout, rotary=rotary, masking=masking
        )

    def feed_forward(self) -> FeedForward:
        return FeedForward(self.d_model, self.linear_units, self.dropout, self.activation)

    def gate(self, spec: Spec) -> nn.Module:
        return GATE.build(spec, d_model=self.d_model)

    def encoder_layer(self, spec: Mapping[str, Spec], attention_dropout: float) -> EncoderLayer:
        """An EncoderLayer from specs ``{attention, rotary, masking, gate}``."""
        self_attn = self.attention(spec["attention"], attention_dropout, spec["rotary"], spec["masking"])
        return EncoderLayer(
            self_attn, self.feed_forward(), self.d_model, self.dropout, self.norm, self.gate(spec["gate"])
        )

    def decoder_layer(self, spec: Mapping[str, Spec], self_dropout: float, cross_dropout: float) -> DecoderLayer:
        """A DecoderLayer from specs ``{self_attention, cross_attention, rotary, self_masking,
        cross_masking, gate}``; the rotary applies to self-attention only."""
        self_attn = self.attention(spec["self_attention"], self_dropout, spec["rotary"], spec["self_masking"])
        cross_attn = self.attention(spec["cross_attention"], cross_dropout, "none", spec["cross_masking"])
        return DecoderLayer(
            self_attn, cross_attn, self.feed_forward(), self.d_model, self.dropout, self.norm, self.gate(spec["gate"])
        )
