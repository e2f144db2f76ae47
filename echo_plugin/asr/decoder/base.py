"""The convention Echo's attention decoders share (EchoDecoder, DualCrossAttentionDecoder).

- :class:`DecoderDims`: the decoder's sizes as built, ``decoder.dims`` (as openai-whisper's
  ``ModelDimensions`` for its text decoder); a warm start that sets the architecture shows here.
- :class:`AttentionDecoder`: token embedding -> ``blocks`` -> logits, run teacher-forced by
  ``forward`` and KV-cached by beam search (:class:`~echo_plugin.asr.decoder.beam_cache.CachedScorer`).
- Warm starts from Whisper: a ``from_whisper(checkpoint, **conf)`` class method where the
  decoder has Whisper's layout (the dual decoder).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from torch import Tensor

from echo_plugin.asr.decoder.beam_cache import CachedScorer
from echo_plugin.espnet_legacy import make_pad_mask
from echo_plugin.nn.layers import DecoderInputs


@dataclass(frozen=True)
class DecoderDims:
    """An attention decoder's sizes: vocabulary V, width D, heads, feed-forward width, layers."""

    vocab_size: int
    d_model: int
    attention_heads: int
    linear_units: int
    num_blocks: int


def teacher_forcing_inputs(hs_pad: Tensor, hlens: Tensor, ys_in_pad: Tensor, ys_in_lens: Tensor) -> DecoderInputs:
    """hs_pad (B, S, D), hlens (B,), ys_in_pad (B, L), ys_in_lens (B,) -> the layers' inputs: memory hs_pad,
    memory mask (B, S) and target mask (B, L), True = real frame / token, and the target positions (L,)."""
    memory_mask = ~make_pad_mask(hlens, maxlen=hs_pad.size(1)).to(hs_pad.device)
    target_mask = ~make_pad_mask(ys_in_lens, maxlen=ys_in_pad.size(1)).to(hs_pad.device)
    return DecoderInputs(hs_pad, memory_mask, target_mask, torch.arange(ys_in_pad.size(1), device=ys_in_pad.device))


class AttentionDecoder(AbsDecoder, CachedScorer):
    """Base of Echo's attention decoders for ESPnet's joint CTC/attention model.

    A subclass sets ``dims`` (:class:`DecoderDims`) and builds ``blocks`` and the hooks that
    :class:`CachedScorer` names (``CACHE_PARTS``, ``_embed``, ``_logits``, ``_block_options``).
    """

    dims: DecoderDims

    def forward(
        self, hs_pad: Tensor, hlens: Tensor, ys_in_pad: Tensor, ys_in_lens: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """Teacher-forced pass.

        hs_pad (B, S, D) encoder output, hlens (B,), ys_in_pad (B, L) input tokens (<sos> + labels,
        padded), ys_in_lens (B,) -> logits (B, L, V), ys_in_lens.
        """
        inputs = teacher_forcing_inputs(hs_pad, hlens, ys_in_pad, ys_in_lens)
        x = self._embed(ys_in_pad, inputs.positions)
        for block in self.blocks:
            x = block(x, inputs, **self._block_options())[0]
        return self._logits(x), ys_in_lens
