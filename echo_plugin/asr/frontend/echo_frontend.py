"""EchoFrontend: several speech features, one small encoder each, fused by a learned strategy.

ESPnet YAML (``frontend: echo``)::

    frontend: echo
    frontend_conf:
        fs: 8000
        n_fft: 256
        win_length: 200
        hop_length: 80
        n_mels: 40
        features: [spectrogram, waveform, pitch]
        output_size: 144
        fusion: {type: gated, conf: {blend: true}}

All features sit on one frame grid: frame t is centred on sample t * hop and
an utterance of N samples has N // hop + 1 frames (as ESPnet's default
frontend). ``forward`` returns ESPnet's ``(feats (B, T, D), lengths)``;
:meth:`EchoFrontend.extract` also returns f0 (B, T) in Hz for
:class:`echo_plugin.asr.espnet_model.EchoASRModel`, which hands it to
encoders that take ``f0``.

The frontend normalises its raw inputs per utterance and ends in LayerNorm,
so it needs no ESPnet ``normalize`` (use ``--normalize none``; ``global_mvn``
works, but its statistics would describe the untrained frontend). With
``normalize: speaker_mvn`` (``model: echo``) the raw frame features
(spectrogram, harmonic, aperiodic, phase; :meth:`EchoFrontend.speaker_features`
gives them concatenated, for the statistics) are normalized with the speaker's
statistics instead of per utterance, and the fused output is left as it is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import humanfriendly
import torch
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from torch import Tensor, nn

from echo_plugin.asr.frontend.encoders import FRAME_FEATURES, EncoderInputs, EncoderOptions
from echo_plugin.catalog import FEATURE_ENCODER, FUSION
from echo_plugin.features.extractor import FEATURES, FeatureConfig, FeatureExtractor
from echo_plugin.features.grid import frame_mask
from echo_plugin.features.pitch import F0Config
from echo_plugin.registry import Spec


@dataclass
class FrontendOutput:
    """feats (B, T, D); lengths (B,) frames; f0 (B, T) Hz with 0 = unvoiced, or None when not computed."""

    feats: Tensor
    lengths: Tensor
    f0: Optional[Tensor]


class EchoFrontend(AbsFrontend):
    """Multi-feature frontend with learned fusion.

    Args:
        fs: sample rate (int, or a string such as "8k").
        n_fft, win_length, hop_length: STFT geometry of the frame grid.
        n_mels, fmin, fmax: log-mel spectrogram bands.
        features: subset of ``spectrogram, waveform, pitch, harmonic, aperiodic, phase``.
        output_size: D, the width of every feature encoding and of the output.
        fusion: ``{type: gated|concat, conf: {...}}`` (see ``fusion.py``).
        f0: WORLD f0 search ``{method: dio|harvest, floor: Hz, ceil: Hz}``.
        world_bands: mel bands of the harmonic (envelope) and aperiodic features.
        aperiodic_method: ``periodicity`` (any rate) or ``d4c`` (fs >= 12 kHz; see ``features/aperiodic.py``).
        phase_bands: mel bands of the phase feature (it has 2x this many channels).
        encoder: options of the per-feature encoders (``encoders.EncoderOptions``).
    """

    def __init__(
        self,
        fs: Union[int, str] = 16000,
        n_fft: int = 512,
        win_length: Optional[int] = None,
        hop_length: int = 128,
        n_mels: int = 80,
        fmin: float = 0.0,
        fmax: Optional[float] = None,
        features: Sequence[str] = ("spectrogram",),
        output_size: int = 256,
        fusion: Spec = "gated",
        f0: Optional[Mapping[str, Any]] = None,
        world_bands: int = 16,
        aperiodic_method: str = "periodicity",
        phase_bands: int = 16,
        encoder: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__()
        if isinstance(fs, str):
            fs = humanfriendly.parse_size(fs)
        features = tuple(features)
        unknown = set(features) - set(FEATURES)
        if not features or unknown or len(set(features)) != len(features):
            raise ValueError(f"features must be distinct names from {', '.join(FEATURES)}, got {list(features)}")
        options = EncoderOptions.from_conf(encoder)
        self.conf = FeatureConfig(
            fs=int(fs),
            n_fft=n_fft,
            hop_length=hop_length,
            win_length=win_length,
            n_mels=n_mels,
            fmin=fmin,
            fmax=fmax,
            f0=F0Config(**dict(f0 or {})),
            world_bands=world_bands,
            aperiodic_method=aperiodic_method,
            phase_bands=phase_bands,
        )
        self.grid = self.conf.grid
        self.features = features
        self._output_size = output_size
        self.extractor = FeatureExtractor(self.conf, features)
        dims = self.conf.dims()
        self.encoders = nn.ModuleDict(
            {
                name: FEATURE_ENCODER.get(name).from_options(name, dims, output_size, hop_length, options)
                for name in features
            }
        )
        self.fusion = FUSION.build(fusion, d_model=output_size, features=features)

    def output_size(self) -> int:
        return self._output_size

    @property
    def frame_features(self) -> Tuple[str, ...]:
        """The configured features that a speaker normalization applies to, in configuration order."""
        return tuple(name for name in self.features if name in FRAME_FEATURES)

    @torch.no_grad()
    def speaker_features(self, speech: Tensor, speech_lengths: Tensor) -> Tuple[Tensor, Tensor]:
        """speech (B, N), lengths (B,) -> the raw frame features concatenated (B, T, D), frame lengths (B,)."""
        names = self.frame_features
        if not names:
            raise ValueError(f"speaker statistics need a frame feature ({', '.join(FRAME_FEATURES)}); "
                             f"this frontend has {list(self.features)}")
        raw = self.extractor(speech, speech_lengths, names=names)
        return torch.cat([raw.feats[name] for name in names], dim=-1), raw.lengths

    def extract(
        self,
        speech: Tensor,
        speech_lengths: Optional[Tensor] = None,
        with_f0: bool = False,
        cached: Optional[Mapping[str, Tuple[Tensor, Tensor]]] = None,
        input_norm: Optional[Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]] = None,
    ) -> FrontendOutput:
        """speech (B, N) zero-padded, lengths (B,) -> :class:`FrontendOutput`.

        ``with_f0`` computes f0 even if no feature needs it. ``cached`` maps a
        stored-feature name (see ``features/extractor.py``) to ``(array, lengths)``
        delivered by the data loader; it replaces the computation. ``input_norm``
        (x (B, T, D), lengths) -> (normalized, lengths), e.g. SpeakerMVN, replaces the
        per-utterance normalization of the frame features (concatenated as in
        :meth:`speaker_features`).
        """
        if speech.dim() != 2:
            raise ValueError(f"EchoFrontend takes single-channel speech (B, N), got {tuple(speech.shape)}")
        if speech_lengths is None:
            speech_lengths = torch.full((speech.size(0),), speech.size(1), dtype=torch.long, device=speech.device)
        speech = speech[:, : int(speech_lengths.max())]
        raw = self.extractor(speech, speech_lengths, with_f0=with_f0, cached=cached)
        lengths = raw.lengths.to(speech.device)
        mask = frame_mask(lengths, self.grid.num_frames(speech.size(1)))
        feats, normalized = dict(raw.feats), frozenset()
        if input_norm is not None and self.frame_features:
            names = self.frame_features
            joined, _ = input_norm(torch.cat([feats[name] for name in names], dim=-1), lengths)
            widths = [feats[name].size(-1) for name in names]
            feats.update(zip(names, torch.split(joined, widths, dim=-1)))
            normalized = frozenset(names)
        inputs = EncoderInputs(speech, speech_lengths, feats, lengths, mask, normalized)
        encoded: Dict[str, Tensor] = {name: encoder(inputs) for name, encoder in self.encoders.items()}
        feats = self.fusion(encoded) * mask[..., None]
        return FrontendOutput(feats=feats, lengths=inputs.frame_lengths, f0=raw.f0)

    def forward(self, input: Tensor, input_lengths: Tensor) -> Tuple[Tensor, Tensor]:
        out = self.extract(input, input_lengths)
        return out.feats, out.lengths
