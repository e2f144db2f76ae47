"""One small encoder per input feature, each mapping its feature to (B, T, D) on the shared frame grid.

``echo_plugin.catalog.FEATURE_ENCODER`` names each feature's encoder class; every
class is built by ``from_options(feature, dims, d_model, hop_length, options)``
with the frontend's :class:`EncoderOptions` (``frontend_conf.encoder``).

Every encoder ignores padding: frame convolutions see zeros past an
utterance's end (as they would alone), and the input normalisation uses the
utterance's own frames, so a batch member is encoded as if it were alone.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, FrozenSet, Mapping, Optional

import torch
from torch import Tensor, nn

from echo_plugin.features.pitch import PITCH_FEATURE_DIM, pitch_features
from echo_plugin.features.waveform import normalise_rms, pad_for_frames, receptive_field, split_hop


@dataclass
class EncoderInputs:
    """What the feature encoders read: the waveform and the stored-form features of one batch."""

    wave: Tensor  # (B, N)
    wave_lengths: Tensor  # (B,)
    feats: Mapping[str, Tensor]  # name -> (B, T, C); pitch -> (B, T) f0 Hz
    frame_lengths: Tensor  # (B,)
    mask: Tensor  # (B, T) True on real frames
    normalized: FrozenSet[str] = frozenset()  # frame features already normalized (speaker_mvn): used as given


@dataclass(frozen=True)
class EncoderOptions:
    """``frontend_conf.encoder``: options shared by the per-feature encoders."""

    layers: int = 2  # conv layers per frame-feature and pitch encoder
    kernel_size: int = 3  # the frame-feature encoders' kernel (odd)
    pitch_kernel_size: int = 5  # the pitch encoder's kernel (odd)
    dropout: float = 0.0  # dropout after each conv
    waveform_channels: Optional[int] = None  # channels of the waveform conv stack (None: output_size)

    @classmethod
    def from_conf(cls, conf: Optional[Mapping[str, Any]]) -> EncoderOptions:
        """From the YAML mapping (None = defaults); an unknown key is an error naming the known ones."""
        conf = dict(conf or {})
        known = [f.name for f in fields(cls)]
        bad = set(conf) - set(known)
        if bad:
            raise ValueError(f"unknown encoder options {sorted(bad)}; known: {', '.join(known)}")
        numbers = {name: float(value) if name == "dropout" else int(value)
                   for name, value in conf.items() if name != "waveform_channels"}
        return cls(**numbers, waveform_channels=conf.get("waveform_channels"))


def masked_utterance_norm(x: Tensor, mask: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-utterance, per-channel mean/variance normalisation over real frames; padding -> 0."""
    weight = mask[..., None].to(x.dtype)
    count = weight.sum(dim=1, keepdim=True).clamp(min=1.0)
    mean = (x * weight).sum(dim=1, keepdim=True) / count
    var = (((x - mean) * weight) ** 2).sum(dim=1, keepdim=True) / count
    return (x - mean) * torch.rsqrt(var + eps) * weight


class FrameConvStack(nn.Module):
    """(B, T, C_in), mask (B, T) -> (B, T, D).

    [zero the padding frames -> Conv1d (same length) -> GELU -> dropout] x layers -> LayerNorm.
    """

    def __init__(self, in_dim: int, d_model: int, layers: int = 2, kernel_size: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        if kernel_size % 2 == 0 or layers < 1:
            raise ValueError(f"need an odd kernel_size and layers >= 1, got {kernel_size}, {layers}")
        self.convs = nn.ModuleList(
            nn.Conv1d(in_dim if i == 0 else d_model, d_model, kernel_size, padding=kernel_size // 2)
            for i in range(layers)
        )
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        keep = mask[:, None, :].to(x.dtype)
        h = x.transpose(1, 2)
        for conv in self.convs:
            h = self.dropout(self.act(conv(h * keep)))
        return self.norm(h.transpose(1, 2))


FRAME_FEATURES = ("spectrogram", "harmonic", "aperiodic", "phase")  # what FrameFeatureEncoder encodes


class FrameFeatureEncoder(nn.Module):
    """A stored frame feature (spectrogram, harmonic, aperiodic, phase): utterance MVN (unless the
    feature comes normalized, see ``EncoderInputs.normalized``), then a conv stack."""

    def __init__(
        self, name: str, in_dim: int, d_model: int, layers: int = 2, kernel_size: int = 3, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.name = name
        self.stack = FrameConvStack(in_dim, d_model, layers, kernel_size, dropout)

    @classmethod
    def from_options(
        cls, feature: str, dims: Mapping[str, int], d_model: int, hop_length: int, options: EncoderOptions
    ) -> FrameFeatureEncoder:
        return cls(feature, dims[feature], d_model, options.layers, options.kernel_size, options.dropout)

    def forward(self, inputs: EncoderInputs) -> Tensor:
        x = inputs.feats[self.name]
        if self.name not in inputs.normalized:
            x = masked_utterance_norm(x, inputs.mask)
        return self.stack(x, inputs.mask)


class PitchEncoder(nn.Module):
    """f0 -> (voicing, log f0, speaker-normalised log f0, delta) -> a conv stack of wider kernel."""

    def __init__(self, d_model: int, layers: int = 2, kernel_size: int = 5, dropout: float = 0.0) -> None:
        super().__init__()
        self.stack = FrameConvStack(PITCH_FEATURE_DIM, d_model, layers, kernel_size, dropout)

    @classmethod
    def from_options(
        cls, feature: str, dims: Mapping[str, int], d_model: int, hop_length: int, options: EncoderOptions
    ) -> PitchEncoder:
        return cls(d_model, options.layers, options.pitch_kernel_size, options.dropout)

    def forward(self, inputs: EncoderInputs) -> Tensor:
        return self.stack(pitch_features(inputs.feats["pitch"], inputs.frame_lengths), inputs.mask)


class WaveformEncoder(nn.Module):
    """Raw samples -> strided, unpadded Conv1d stack (stride product = hop) -> (B, N // hop + 1, D).

    Kernels are twice the strides (hop 80: strides 5, 4, 4, kernels 10, 8, 8,
    receptive field 185 samples, close to a 200-sample window); the input is
    zero-padded by :func:`pad_for_frames` so frame t is centred on sample
    t * hop like the STFT frames. Each conv is followed by a per-frame
    LayerNorm over channels (no statistics across time) and GELU. The input is
    scaled to unit RMS per utterance.
    """

    def __init__(self, d_model: int, hop_length: int, channels: Optional[int] = None, dropout: float = 0.0) -> None:
        super().__init__()
        channels = channels or d_model
        self.hop_length = hop_length
        self.strides = split_hop(hop_length)
        self.kernels = [2 * s if s > 1 else 3 for s in self.strides]
        self.receptive = receptive_field(self.kernels, self.strides)
        dims = [1] + [channels] * len(self.strides)
        self.convs = nn.ModuleList(
            nn.Conv1d(dims[i], dims[i + 1], k, stride=s) for i, (k, s) in enumerate(zip(self.kernels, self.strides))
        )
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in self.strides)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(channels, d_model)
        self.norm = nn.LayerNorm(d_model)

    @classmethod
    def from_options(
        cls, feature: str, dims: Mapping[str, int], d_model: int, hop_length: int, options: EncoderOptions
    ) -> WaveformEncoder:
        return cls(d_model, hop_length, options.waveform_channels, options.dropout)

    def forward(self, inputs: EncoderInputs) -> Tensor:
        wave = normalise_rms(inputs.wave.float(), inputs.wave_lengths)
        h = pad_for_frames(wave, inputs.wave_lengths, self.receptive, self.hop_length)[:, None, :]
        for conv, norm in zip(self.convs, self.norms):
            h = self.act(norm(conv(h).transpose(1, 2)).transpose(1, 2))
        h = self.dropout(h.transpose(1, 2))  # (B, T, C)
        num_frames = inputs.mask.size(1)
        assert h.size(1) == num_frames, (h.shape, num_frames)
        return self.norm(self.proj(h))
