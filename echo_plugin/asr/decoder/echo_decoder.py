"""EchoDecoder: token embedding, pre-norm causal transformer layers with rotary self-attention.

Beam search state (one per hypothesis, :mod:`echo_plugin.asr.decoder.beam_cache`): per layer
the rotated self-attention keys/values of the prefix and the cross-attention keys/values of the
encoder output, so each step runs only the newest token.
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence, Tuple

import torch
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from torch import Tensor, nn

from echo_plugin.asr.decoder.beam_cache import CachedScorer, HypState, batch_caches, hypothesis_states
from echo_plugin.espnet_legacy import make_pad_mask
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


class EchoDecoder(AbsDecoder, CachedScorer):
    """Attention decoder for ESPnet's joint CTC/attention ASR model.

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

    def forward(
        self, hs_pad: Tensor, hlens: Tensor, ys_in_pad: Tensor, ys_in_lens: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """Teacher-forced training pass.

        Args:
            hs_pad: (B, S, D) encoder output.  hlens: (B,) its lengths.
            ys_in_pad: (B, L) input tokens (<sos> + labels, padded).  ys_in_lens: (B,).

        Returns:
            logits (B, L, V) and ys_in_lens.
        """
        memory_mask = ~make_pad_mask(hlens, maxlen=hs_pad.size(1)).to(hs_pad.device)
        target_mask = ~make_pad_mask(ys_in_lens, maxlen=ys_in_pad.size(1)).to(hs_pad.device)
        positions = torch.arange(ys_in_pad.size(1), device=ys_in_pad.device)
        x = self.embed_dropout(self.embed(ys_in_pad))
        for block in self.blocks:
            x, _, _ = block(x, hs_pad, memory_mask, target_mask, positions)
        return self.output_layer(self.after_norm(x)), ys_in_lens

    def batch_score(self, ys: Tensor, states: List[HypState], xs: Tensor) -> Tuple[Tensor, List[HypState]]:
        """Next-token log-probs for N prefixes of equal length.

        Args:
            ys: (N, L) prefixes.  states: N per-hypothesis states (None before the first step).
            xs: (N, S, D) encoder output per hypothesis.

        Returns:
            log-probs (N, V) and the N new states (caches now covering all L tokens).
        """
        caches = batch_caches(states, xs, len(self.blocks), 2)  # per layer: self, cross
        new_tokens = ys if states[0] is None else ys[:, -1:]
        positions = torch.arange(ys.size(1) - new_tokens.size(1), ys.size(1), device=ys.device)
        x = self.embed_dropout(self.embed(new_tokens))
        for i, block in enumerate(self.blocks):
            x, *caches[i] = block(x, xs, None, positions=positions, self_cache=caches[i][0], cross_cache=caches[i][1])
        logp = torch.log_softmax(self.output_layer(self.after_norm(x[:, -1])), dim=-1)
        return logp, hypothesis_states(caches, ys.size(0))
