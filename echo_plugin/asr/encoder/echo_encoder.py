"""EchoEncoder: input subsampling (ESPnet's or the SE-block conv front), then pre-norm
transformer layers with rotary attention and optionally gated feed-forward updates."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from torch import Tensor, nn

from echo_plugin.asr.encoder.patch_input import PatchEmbedding
from echo_plugin.catalog import INPUT_LAYER
from echo_plugin.espnet_legacy import (
    PositionalEncoding,
    TooShortUttError,
    check_short_utt,
    make_pad_mask,
)
from echo_plugin.nn.attention.memory import WorkingMemory
from echo_plugin.nn.capabilities import reads_f0
from echo_plugin.nn.layer_builder import LayerBuilder
from echo_plugin.nn.layers import layer_specs, make_norm
from echo_plugin.nn.masking import frame_silence, subsample_silence
from echo_plugin.nn.rotary.axial import grid_positions
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


TIME_CONVS = (nn.Conv1d, nn.Conv2d)


def conv_lengths(conv: nn.Module, lengths: Tensor) -> Tensor:
    """Output frames of one time convolution: the kernel's first axis is time, for
    ``nn.Conv1d`` over (B, C, time) and for ESPnet's ``nn.Conv2d`` over (B, C, time, freq)."""
    span = conv.dilation[0] * (conv.kernel_size[0] - 1) + 1
    return (lengths + 2 * conv.padding[0] - span) // conv.stride[0] + 1


def frame_mask(lengths: Tensor, frames: int) -> Tensor:
    """(B,) lengths -> (B, frames) bool, True = real frame."""
    return torch.arange(frames, device=lengths.device) < lengths.unsqueeze(-1)


class SEBlock(nn.Module):
    """Squeeze-and-excitation over channels, squeezing with the mean over real frames only.

        s   = sum_{t < n} x[:, :, t] / n                  (B, C)   n = the utterance's frames
        e   = sigmoid(W_2 ReLU(W_1 s + b_1) + b_2)        (B, C)   W_1: (C // reduction, C)
        out = x * e[:, :, None]

    A squeeze-excitation block averaged over every frame (``AdaptiveAvgPool1d``), so padding
    changed the channel weights of a shorter utterance in a batch; the mask fixes that.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.excite = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def squeeze(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """x (B, C, T), mask (B, T) True = real frame or None = all -> per-channel mean (B, C)."""
        if mask is None:
            return x.mean(dim=-1)
        total = x.masked_fill(~mask.unsqueeze(1), 0.0).sum(dim=-1)
        return total / mask.sum(dim=-1, keepdim=True).clamp(min=1).to(x.dtype)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """x (B, C, T), mask (B, T) or None -> (B, C, T)."""
        return x * self.excite(self.squeeze(x, mask)).unsqueeze(-1)


class SEConvSubsampling(nn.Module):
    """A squeeze-excitation conv stack with time strides, as an input layer: (B, T, idim) -> (B, T', odim).

        conv k3 -> GELU -> dilated conv k3 d2 (stride s1) -> depthwise conv k3 (stride s2)
        -> pointwise conv k1 -> SEBlock (masked mean) -> GELU -> dropout -> conv k3 -> pos_enc

    Every conv pads to keep ``ceil(T / stride)`` frames; ``subsample`` 4 = strides
    (2, 2), 2 = (2, 1), 1 = (1, 1). Before each conv the frames past an utterance's
    length are zeroed, the same zeros a lone utterance sees as conv padding, so a
    padded batch gives each utterance exactly its own outputs (up to float
    rounding) and :func:`subsampled_lengths` gives its exact frame count.

    Args:
        idim: input features.  odim: output width.  dropout_rate: dropout after the SE block.
        pos_enc: applied last (ESPnet's PositionalEncoding or a Dropout).
        subsample: time reduction, 1, 2 or 4.  reduction: SE bottleneck ratio (seed: 16).
    """

    STRIDES = {1: (1, 1), 2: (2, 1), 4: (2, 2)}

    def __init__(
        self,
        idim: int,
        odim: int,
        dropout_rate: float,
        pos_enc: nn.Module,
        subsample: int = 4,
        reduction: int = 16,
    ) -> None:
        super().__init__()
        if subsample not in self.STRIDES:
            raise ValueError(f"se_conv: subsample must be one of {sorted(self.STRIDES)}, got {subsample}")
        first, second = self.STRIDES[subsample]
        # Registration order is forward order: subsampled_lengths walks the convs in it.
        self.conv_in = nn.Conv1d(idim, odim, kernel_size=3, padding=1)
        self.conv_dilated = nn.Conv1d(odim, odim, kernel_size=3, stride=first, padding=2, dilation=2)
        self.conv_depthwise = nn.Conv1d(odim, odim, kernel_size=3, stride=second, padding=1, groups=odim)
        self.conv_pointwise = nn.Conv1d(odim, odim, kernel_size=1)
        self.se = SEBlock(odim, reduction)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout_rate)
        self.conv_out = nn.Conv1d(odim, odim, kernel_size=3, padding=1)
        self.pos_enc = pos_enc

    @staticmethod
    def _conv(conv: nn.Conv1d, x: Tensor, lengths: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """Zero the padding frames of x (B, C, T), convolve; -> (output, output lengths)."""
        if lengths is None:
            return conv(x), None
        x = x.masked_fill(~frame_mask(lengths, x.size(-1)).unsqueeze(1), 0.0)
        return conv(x), conv_lengths(conv, lengths)

    def forward(self, x: Tensor, mask: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """x (B, T, idim), mask (B, 1, T) True = real frame or None -> (B, T', odim), mask (B, 1, T') or None."""
        lengths = None if mask is None else mask[:, 0].sum(dim=-1)
        h, lengths = self._conv(self.conv_in, x.transpose(1, 2), lengths)
        h, lengths = self._conv(self.conv_dilated, self.act(h), lengths)
        h, lengths = self._conv(self.conv_depthwise, h, lengths)
        h, lengths = self._conv(self.conv_pointwise, h, lengths)
        valid = None if lengths is None else frame_mask(lengths, h.size(-1))
        h = self.dropout(self.act(self.se(h, valid)))
        h, lengths = self._conv(self.conv_out, h, lengths)
        out = self.pos_enc(h.transpose(1, 2))
        return out, None if lengths is None else frame_mask(lengths, out.size(1)).unsqueeze(1)


def build_input_layer(name: str, idim: int, odim: int, dropout_rate: float, abs_pos: bool) -> nn.Module:
    """The ``INPUT_LAYER`` ``name`` (ESPnet's subsampling classes or Echo's), whose output gets
    ESPnet's absolute sinusoidal positional encoding (``abs_pos``) or only dropout (rotary-only positions)."""
    subsampling = INPUT_LAYER.get(name)
    pos_enc = PositionalEncoding(odim, dropout_rate) if abs_pos else nn.Dropout(dropout_rate)
    return subsampling(idim, odim, dropout_rate, pos_enc=pos_enc)

PATCH_ROTARIES = ("axial", "none")  # what layers over (time, frequency) patch tokens may use


def subsampled_lengths(embed: nn.Module, ilens: Tensor) -> Tensor:
    """Frames each utterance keeps after the time convolutions (Conv1d, Conv2d) of ``embed``.

    For ESPnet's unpadded Conv2d subsampling these are the output frames whose
    whole receptive field lies inside the utterance. ESPnet's own subsampled masks
    also keep a frame whose window runs into the padding, so a shorter utterance
    in a batch would see padding there. For padded convs (``se_conv``) they are the
    frames the utterance alone would give; the input layer zeroes the batch padding
    that these frames' windows reach, as the conv's own zero padding would be.
    """
    lengths = ilens
    for conv in embed.modules():
        if isinstance(conv, TIME_CONVS):
            lengths = conv_lengths(conv, lengths)
    return lengths.clamp(min=0)


def subsampling_factor(embed: nn.Module) -> int:
    """Input frames per output frame of ``embed``: the product of its time-axis conv strides."""
    factor = 1
    for conv in embed.modules():
        if isinstance(conv, TIME_CONVS):
            factor *= conv.stride[0]
    return factor


LAYER_DEFAULTS: Mapping[str, Any] = {"attention": "standard", "rotary": "standard", "masking": "hard", "gate": "none"}


def _spec_type(spec: Any) -> str:
    return spec if isinstance(spec, str) else str(spec.get("type"))


def _check_patch_layers(specs: Sequence[Mapping[str, Any]], silence_threshold: Optional[float]) -> None:
    """Patch tokens carry (time, frequency) positions: only axial (or no) rotary and standard attention."""
    for number, spec in enumerate(specs):
        if _spec_type(spec["rotary"]) not in PATCH_ROTARIES or _spec_type(spec["attention"]) != "standard":
            raise ValueError(
                f"input_layer patch2d: layer {number} has rotary {_spec_type(spec['rotary'])} and attention "
                f"{_spec_type(spec['attention'])}; patch tokens need rotary {' or '.join(PATCH_ROTARIES)} "
                "and attention standard"
            )
    if silence_threshold is not None:
        raise ValueError("input_layer patch2d does not mark silence frames: leave silence_threshold unset")


def _check_silence_frames(embed: nn.Module, input_layer: str) -> None:
    """Refuse an input layer whose frames ``subsample_silence`` does not follow (it
    mirrors Conv2d time convolutions only), rather than mark the wrong frames silent."""
    probe = 16
    frames = subsample_silence(torch.zeros(1, probe, dtype=torch.bool), embed).size(1)
    if frames != int(subsampled_lengths(embed, torch.tensor([probe]))[0]):
        raise ValueError(f"silence_threshold is not supported with input_layer '{input_layer}' yet")


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
        input_layer: an ``INPUT_LAYER`` name: ESPnet's conv2d (time / 4), conv2d2, conv2d6,
            conv2d8, linear (no subsampling), the SE-block conv front ``se_conv`` (time / 4)
            and ``se_conv2`` (time / 2), see :class:`SEConvSubsampling`, or ``patch2d``:
            spectrogram patches as tokens with (time, frequency) positions for the ``axial``
            rotary, averaged over frequency at the output (``patch_input.py``).
        norm: ``layer_norm`` or ``rms_norm``.
        activation: feed-forward activation (``swish``, ``gelu``, ``relu``).
        layers: per-group specs ``[{num: n, attention: spec, rotary: spec, masking: spec, gate: spec}, ...]``
            whose ``num`` add up to ``num_blocks``; None = all ``attention: standard, rotary: standard,
            masking: hard, gate: none``. A rotary spec may be any ROTARY type, a gate spec any GATE
            type (``python -m echo_plugin.bin.list_registries``); the gate wraps the layer's
            feed-forward update, and gates with an auxiliary stream (``c_gate``) get the
            input layer's output, as do attentions that read one (``curiosity`` with
            ``aux_source: features``).
        frame_shift: seconds between input frames (the frontend's hop), for pitch phase.
        abs_pos: also add ESPnet's absolute sinusoidal positions after subsampling (as
            Whisper's encoder does beside rotary attention): without them the encoder
            output carries no absolute time, which the decoder's cross-attention needs
            to keep its place among repeated words.
        silence_threshold: mark input frames more than this many feature units (mean over
            the feature axis) below the utterance's loudest frame, or all-zero, as silence;
            layers with ``masking: soft`` soften them (see ``echo_plugin.nn.masking.silence``).
            None = no silence frames. Not yet with ``se_conv*`` input layers.
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
        if frame_shift <= 0:
            raise ValueError(f"frame_shift must be positive seconds, got {frame_shift}")
        self._output_size = output_size
        self.embed = build_input_layer(input_layer, input_size, output_size, dropout_rate, abs_pos)
        self.frame_shift = frame_shift
        self.frame_period = frame_shift * subsampling_factor(self.embed)
        self.silence_threshold = silence_threshold
        if silence_threshold is not None:
            _check_silence_frames(self.embed, input_layer)
        specs = layer_specs(layers, num_blocks, LAYER_DEFAULTS)
        build = LayerBuilder(output_size, attention_heads, linear_units, dropout_rate, activation, norm)
        self.blocks = nn.ModuleList(build.encoder_layer(spec, attention_dropout_rate) for spec in specs)
        self.after_norm = make_norm(norm, output_size)
        self.patches = isinstance(self.embed, PatchEmbedding)
        if self.patches:
            _check_patch_layers(specs, silence_threshold)

    def output_size(self) -> int:
        return self._output_size

    @property
    def needs_f0(self) -> bool:
        """Whether some layer's rotary reads pitch, so ``forward`` must get ``f0``."""
        return any(reads_f0(module) for module in self.blocks.modules())

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
        in_mask = ~make_pad_mask(ilens, maxlen=xs_pad.size(1)).to(xs_pad.device)
        xs, _ = self.embed(xs_pad, in_mask.unsqueeze(1))  # padded convs (se_conv) zero the padding
        olens = subsampled_lengths(self.embed, ilens.to(xs.device))
        if self.patches:
            return self._forward_patches(xs, olens)
        keep = ~make_pad_mask(olens, maxlen=xs.size(1)).to(xs.device)  # (B, T') True = real frame
        positions = torch.arange(xs.size(1), device=xs.device)
        pitch = None if f0 is None else F0Track(resample_f0(f0.to(xs.device), xs.size(1)), self.frame_period, keep)
        silence = None
        if self.silence_threshold is not None:
            silent = frame_silence(xs_pad, ilens, self.silence_threshold)
            silence = subsample_silence(silent, self.embed)[:, : xs.size(1)].to(xs.device)
        features = xs  # the auxiliary stream of gates and attentions that read one
        memory = WorkingMemory()  # slots passed layer to layer (myelinated attention)
        for block in self.blocks:
            xs = block(xs, keep, positions, pitch, silence, aux=features, memory=memory)
        return self.after_norm(xs), olens, None

    def _forward_patches(self, tokens: Tensor, olens: Tensor) -> Tuple[Tensor, Tensor, None]:
        """tokens (B, T', F', D) -> layers over the T' x F' tokens, time-major, with (t, f) positions ->
        mean over the F' tokens of each time step -> (B, T', D)."""
        batch, frames, n_freq, width = tokens.shape
        keep = ~make_pad_mask(olens, maxlen=frames).to(tokens.device)
        keep = keep[:, :, None].expand(batch, frames, n_freq).reshape(batch, frames * n_freq)
        positions = grid_positions(frames, n_freq, device=tokens.device)
        xs = tokens.reshape(batch, frames * n_freq, width)
        features, memory = xs, WorkingMemory()
        for block in self.blocks:
            xs = block(xs, keep, positions, None, None, aux=features, memory=memory)
        return self.after_norm(xs.reshape(batch, frames, n_freq, width).mean(dim=2)), olens, None
