"""EchoEncoder: ESPnet's input subsampling, then pre-norm transformer layers with rotary attention."""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch
from espnet.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet.nets.pytorch_backend.transformer.embedding import PositionalEncoding
from espnet.nets.pytorch_backend.transformer.subsampling import (
    Conv2dSubsampling,
    Conv2dSubsampling2,
    Conv2dSubsampling6,
    Conv2dSubsampling8,
    TooShortUttError,
    check_short_utt,
)
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from torch import Tensor, nn

import echo_plugin.nn.attention  # noqa: F401  (fills the ATTENTION registry)
import echo_plugin.nn.rotary  # noqa: F401  (fills the ROTARY registry)
from echo_plugin.nn.layers import EncoderLayer, FeedForward, layer_specs, make_norm
from echo_plugin.nn.masking import frame_silence, subsample_silence
from echo_plugin.nn.registries import ATTENTION
from echo_plugin.nn.rotary.pitch import F0Track, resample_f0


class LinearInput(nn.Module):
    """No subsampling: Linear -> LayerNorm -> Dropout -> ReLU -> pos_enc, as ESPnet's ``linear`` input layer."""

    def __init__(self, idim: int, odim: int, dropout_rate: float, pos_enc: nn.Module) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(idim, odim), nn.LayerNorm(odim), nn.Dropout(dropout_rate), nn.ReLU(), pos_enc
        )

    def forward(self, x: Tensor, mask: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """x (B, T, idim), mask (B, 1, T) or None -> (B, T, odim), the same mask."""
        return self.net(x), mask


def _subsampling(subsampling: type) -> Callable[[int, int, float, bool], nn.Module]:
    """An ESPnet subsampling class whose output gets ESPnet's absolute sinusoidal
    positional encoding (``abs_pos``) or only dropout (rotary-only positions)."""

    def build(idim: int, odim: int, dropout_rate: float, abs_pos: bool) -> nn.Module:
        pos_enc = PositionalEncoding(odim, dropout_rate) if abs_pos else nn.Dropout(dropout_rate)
        return subsampling(idim, odim, dropout_rate, pos_enc=pos_enc)

    return build


INPUT_LAYERS: Dict[str, Callable[[int, int, float, bool], nn.Module]] = {
    "conv2d": _subsampling(Conv2dSubsampling),  # time / 4
    "conv2d2": _subsampling(Conv2dSubsampling2),  # time / 2
    "conv2d6": _subsampling(Conv2dSubsampling6),  # time / 6
    "conv2d8": _subsampling(Conv2dSubsampling8),  # time / 8
    "linear": _subsampling(LinearInput),  # time / 1
}


def subsampled_lengths(embed: nn.Module, ilens: Tensor) -> Tensor:
    """Frames each utterance keeps after the time convolutions of ``embed``.

    Counts only output frames whose whole receptive field lies inside the
    utterance. ESPnet's own subsampled masks also keep a frame whose window runs
    into the padding, so a shorter utterance in a batch would see padding there.
    """
    lengths = ilens
    for conv in embed.modules():
        if isinstance(conv, nn.Conv2d):  # (B, C, time, freq): time is the kernel's first axis
            span = conv.dilation[0] * (conv.kernel_size[0] - 1) + 1
            lengths = (lengths + 2 * conv.padding[0] - span) // conv.stride[0] + 1
    return lengths.clamp(min=0)


def subsampling_factor(embed: nn.Module) -> int:
    """Input frames per output frame of ``embed``: the product of its time-axis conv strides."""
    factor = 1
    for conv in embed.modules():
        if isinstance(conv, nn.Conv2d):
            factor *= conv.stride[0]
    return factor


LAYER_DEFAULTS: Mapping[str, Any] = {"attention": "standard", "rotary": "standard", "masking": "hard"}


class EchoEncoder(AbsEncoder):
    """Subsampling -> ``num_blocks`` pre-norm self-attention layers -> final norm.

    Positions for the rotary are frame indices after subsampling. Pitch-aware
    rotaries read f0, given to ``forward`` at the input frame rate and resampled
    here to the subsampled frames (frame period ``frame_shift * subsampling``).

    Args:
        input_size: feature dimension F (set by ESPnet).
        output_size: model width D.
        attention_heads: heads per attention layer.
        linear_units: feed-forward hidden width.
        num_blocks: number of layers.
        dropout_rate: residual, feed-forward and input-layer dropout.
        attention_dropout_rate: dropout on attention weights.
        input_layer: one of ``INPUT_LAYERS`` (conv2d, conv2d2, conv2d6, conv2d8, linear).
        norm: ``layer_norm`` or ``rms_norm``.
        activation: feed-forward activation (``swish``, ``gelu``, ``relu``).
        layers: per-group specs ``[{num: n, attention: spec, rotary: spec, masking: spec}, ...]`` whose
            ``num`` add up to ``num_blocks``; None = all ``attention: standard, rotary: standard``.
            A rotary spec may be any ROTARY type (``python -m echo_plugin.bin.list_registries``).
        frame_shift: seconds between input frames (the frontend's hop), for pitch phase.
        abs_pos: also add ESPnet's absolute sinusoidal positions after subsampling (as
            Whisper's encoder does beside rotary attention): without them the encoder
            output carries no absolute time, which the decoder's cross-attention needs
            to keep its place among repeated words.
        silence_threshold: mark input frames more than this many feature units (mean over
            the feature axis) below the utterance's loudest frame, or all-zero, as silence;
            layers with ``masking: soft`` soften them (see ``echo_plugin.nn.masking.silence``).
            None = no silence frames.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int = 256,
        attention_heads: int = 4,
        linear_units: int = 1024,
        num_blocks: int = 6,
        dropout_rate: float = 0.1,
        attention_dropout_rate: float = 0.0,
        input_layer: str = "conv2d",
        norm: str = "layer_norm",
        activation: str = "swish",
        layers: Optional[Sequence[Mapping[str, Any]]] = None,
        frame_shift: float = 0.01,
        abs_pos: bool = False,
        silence_threshold: Optional[float] = None,
    ) -> None:
        super().__init__()
        if input_layer not in INPUT_LAYERS:
            raise ValueError(f"unknown input_layer '{input_layer}'; known: {', '.join(sorted(INPUT_LAYERS))}")
        if frame_shift <= 0:
            raise ValueError(f"frame_shift must be positive seconds, got {frame_shift}")
        self._output_size = output_size
        self.embed = INPUT_LAYERS[input_layer](input_size, output_size, dropout_rate, abs_pos)
        self.frame_period = frame_shift * subsampling_factor(self.embed)
        self.silence_threshold = silence_threshold
        self.blocks = nn.ModuleList(
            EncoderLayer(
                ATTENTION.build(
                    spec["attention"],
                    d_model=output_size,
                    n_heads=attention_heads,
                    dropout=attention_dropout_rate,
                    rotary=spec["rotary"],
                    masking=spec["masking"],
                ),
                FeedForward(output_size, linear_units, dropout_rate, activation),
                output_size,
                dropout_rate,
                norm,
            )
            for spec in layer_specs(layers, num_blocks, LAYER_DEFAULTS)
        )
        self.after_norm = make_norm(norm, output_size)

    def output_size(self) -> int:
        return self._output_size

    @property
    def needs_f0(self) -> bool:
        """Whether some layer's rotary reads pitch, so ``forward`` must get ``f0``."""
        return any(getattr(module, "needs_f0", False) for module in self.blocks.modules())

    def forward(
        self, xs_pad: Tensor, ilens: Tensor, prev_states: Optional[Tensor] = None, f0: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor, None]:
        """xs_pad (B, T, F), ilens (B,) -> out (B, T', D), olens (B,), None.

        ``f0``: (B, T) pitch in Hz on the input frames (0 = unvoiced), needed by
        pitch-aware rotaries; linearly resampled to the T' subsampled frames.
        """
        if f0 is not None and (f0.dim() != 2 or f0.shape != xs_pad.shape[:2]):
            raise ValueError(
                f"f0 must be (B, T) = {tuple(xs_pad.shape[:2])} like xs_pad, got {tuple(f0.shape)}"
            )
        too_short, limit = check_short_utt(self.embed, xs_pad.size(1))
        if too_short:
            raise TooShortUttError(
                f"has {xs_pad.size(1)} frames and is too short for subsampling (it needs more than {limit} frames)",
                xs_pad.size(1),
                limit,
            )
        xs, _ = self.embed(xs_pad, None)
        olens = subsampled_lengths(self.embed, ilens.to(xs.device))
        keep = ~make_pad_mask(olens, maxlen=xs.size(1)).to(xs.device)  # (B, T') True = real frame
        positions = torch.arange(xs.size(1), device=xs.device)
        pitch = None if f0 is None else F0Track(resample_f0(f0.to(xs.device), xs.size(1)), self.frame_period)
        silence = None
        if self.silence_threshold is not None:
            silent = frame_silence(xs_pad, ilens, self.silence_threshold)
            silence = subsample_silence(silent, self.embed)[:, : xs.size(1)].to(xs.device)
        for block in self.blocks:
            xs = block(xs, keep, positions, pitch, silence)
        return self.after_norm(xs), olens, None
