"""EchoDecoder: token embedding, pre-norm causal transformer layers with rotary self-attention.

Beam search state (one per hypothesis, :mod:`echo_plugin.asr.decoder.beam_cache`): per layer
the rotated self-attention keys/values of the prefix, so each step runs only the newest token; the
cross-attention keys/values of the encoder output are projected once per utterance and shared by
every hypothesis.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from torch import Tensor, nn

from echo_plugin.asr.decoder.base import AttentionDecoder, DecoderDims
from echo_plugin.nn.layer_builder import LayerBuilder
from echo_plugin.nn.layers import layer_specs, make_norm

LAYER_DEFAULTS: Mapping[str, Any] = {
    "self_attention": "standard",
    "cross_attention": "standard",
    "rotary": "standard",
    "self_masking": "hard",
    "cross_masking": "hard",
    "gate": "none",
}


class EchoDecoder(AttentionDecoder):
    """Attention decoder for ESPnet's joint CTC/attention ASR model (the :mod:`.base` convention).

    Args:
        vocab_size: V (set by ESPnet).
        encoder_output_size: D, also the embedding width (set by ESPnet).
        attention_heads: heads per attention module.
        linear_units: feed-forward hidden width.
        num_blocks: number of layers.
        dropout_rate: embedding, residual and feed-forward dropout.
        self_attention_dropout_rate, src_attention_dropout_rate: attention-weight dropout.
        norm: ``layer_norm`` or ``rms_norm``.
        activation: feed-forward activation (``swish``, ``gelu``, ``relu``).
        tie_embeddings: the output projection shares the token embedding matrix.
        layers: per-group specs ``[{num, self_attention: spec, cross_attention: spec,
            rotary: spec, self_masking: spec, cross_masking: spec, gate: spec}, ...]``; rotary applies to
            self-attention only; the maskings (MASKING specs, default ``hard``) to target
            padding and encoder-memory padding; ``gate`` (a GATE spec, default ``none``)
            gates the feed-forward update, with the layer's cross-attention output as the
            auxiliary stream of gates that read one (``c_gate``).
    """

    CACHE_PARTS = 2  # per layer: self-attention, cross-attention

    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        attention_heads: int = 4,
        linear_units: int = 1024,
        num_blocks: int = 3,
        dropout_rate: float = 0.1,
        self_attention_dropout_rate: float = 0.0,
        src_attention_dropout_rate: float = 0.0,
        norm: str = "layer_norm",
        activation: str = "swish",
        tie_embeddings: bool = False,
        layers: Optional[Sequence[Mapping[str, Any]]] = None,
    ) -> None:
        super().__init__()
        self.dims = DecoderDims(vocab_size, encoder_output_size, attention_heads, linear_units, num_blocks)
        d_model = encoder_output_size
        self.embed = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        self.embed_dropout = nn.Dropout(dropout_rate)
        build = LayerBuilder(d_model, attention_heads, linear_units, dropout_rate, activation, norm)
        self.blocks = nn.ModuleList(
            build.decoder_layer(spec, self_attention_dropout_rate, src_attention_dropout_rate)
            for spec in layer_specs(layers, num_blocks, LAYER_DEFAULTS)
        )
        self.after_norm = make_norm(norm, d_model)
        self.output_layer = nn.Linear(d_model, vocab_size)
        if tie_embeddings:
            self.output_layer.weight = self.embed.weight

    def _embed(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """tokens (B, L) -> (B, L, D); positions enter through the rotary self-attention."""
        return self.embed_dropout(self.embed(tokens))

    def _logits(self, x: Tensor) -> Tensor:
        return self.output_layer(self.after_norm(x))
