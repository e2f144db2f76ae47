"""Encoder outputs of several utterances from one batched encoder call, each as if encoded alone.

ESPnet's Speech2Text encodes one utterance per call. :func:`encode_batch` runs

    per utterance   the model's frontend: features (1, T_i, D), f0 (1, T_i) or None; under the utterance's
                    own speaker statistics (the Echo frontend applies speaker_mvn itself)
    on the batch    the features zero-padded to (B, T_max, D), lengths (B,) -> the model's own ``encode``
                    (normalisation with (B, 2, D) per-utterance statistics, encoder, postencoder), its
                    frontend step replaced by the padded features

and returns each utterance's encoder output cut to its length; ESPnet's beam search
then runs on each one (:meth:`echo_plugin.inference.transcriber.Transcriber.transcribe_batch`).

Why the frontend runs per utterance: ESPnet's STFT (``center: true``) reflect-pads the end
of the padded batch, so the last frames (n_fft / 2 / hop: 2 at n_fft 256, hop 80) of every
shorter utterance would see the batch's zero padding instead of their own reflected samples;
PretrainedWhisperFrontend encodes each utterance alone anyway (Whisper's attention takes no
padding mask). The frontend (STFT + mel) is a small share of the time; the encoder is batched.

Padding leaves every real frame unchanged, up to float rounding, when normalisation works per
utterance and zeroes the padding (speaker_mvn, speech_mvn, utterance_mvn, global_mvn do) and
the encoder masks it: EchoEncoder (its input layers see only real frames for real output frames,
attention masks padded keys, SE blocks take masked means) and WhisperStyleEncoder (padding zeroed
before each convolution, masked in attention). :func:`batch_exact` says False for anything else,
and callers then encode one utterance per call:

- encoders that read f0 (pitch-aware rotaries): ``resample_f0`` interpolates the padded track to
  the padded output length, a ratio that differs from the utterance's own;
- soft key masking of padding (``masking: soft`` with ``padding: true``, its default): padded keys
  get weight by design, so the output depends on how much padding the batch has;
- ESPnet's encoders (measured on the FSDD configs with random weights: Conformer and
  E-Branchformer convolutions see padded frames, and the Transformer's output moves by ~5e-2
  too), a preencoder or a postencoder; multi-speaker and enhancement models.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import Tensor

from echo_plugin.asr.encoder.echo_encoder import EchoEncoder
from echo_plugin.asr.encoder.whisper_style_encoder import WhisperStyleEncoder
from echo_plugin.asr.espnet_model import EchoASRModel
from echo_plugin.asr.normalize.speaker_mvn import SpeakerMVN
from echo_plugin.espnet_legacy import TooShortUttError
from echo_plugin.nn import capabilities
from echo_plugin.nn.masking.soft import SoftMasking

PADDING_EXACT_ENCODERS = (EchoEncoder, WhisperStyleEncoder)


@dataclass
class Features:
    """One utterance's frontend output: feats (T, D), f0 (T,) Hz or None."""

    feats: Tensor
    f0: Tensor | None


def reads_f0(model: torch.nn.Module) -> bool:
    """Whether ``encode`` hands f0 to the encoder."""
    return isinstance(model, EchoASRModel) and model.encoder_wants_f0 and (
        model.frontend_extracts or model.pitch is not None)


def encoder_pads_exactly(encoder: torch.nn.Module | None) -> bool:
    """Whether the encoder's real output frames do not depend on padding (see the module docstring)."""
    return isinstance(encoder, PADDING_EXACT_ENCODERS) and not capabilities.reads_f0(encoder) and not any(
        isinstance(m, SoftMasking) and m.padding for m in encoder.modules())


def batch_exact(model: torch.nn.Module) -> bool:
    """Whether padding leaves every utterance's encoder output unchanged (see the module docstring)."""
    return (
        encoder_pads_exactly(getattr(model, "encoder", None))
        and getattr(model, "preencoder", None) is None
        and getattr(model, "postencoder", None) is None
        and not reads_f0(model)
    )


def speaker_context(model: torch.nn.Module, stats: Tensor | None) -> AbstractContextManager[None]:
    """The context giving ``normalize: speaker_mvn`` the statistics (2, D) or (B, 2, D); a model with another
    normalisation refuses statistics."""
    normalize = getattr(model, "normalize", None)
    if isinstance(normalize, SpeakerMVN):
        return normalize.provide(stats)
    if stats is not None:
        raise ValueError(
            f"speaker statistics given, but the model's normalize is {type(normalize).__name__}, not speaker_mvn")
    return nullcontext()


def utterance_features(model: torch.nn.Module, speech: Tensor, stats: Tensor | None) -> Features:
    """speech (S,) -> the frontend's Features of that utterance alone (its statistics (2, D) provided)."""
    batch, lengths = speech[None], torch.tensor([speech.numel()], device=speech.device)
    with speaker_context(model, stats):
        if reads_f0(model):
            feats, feats_lengths, f0 = model._extract_feats_f0(batch, lengths, True)
        elif isinstance(model, EchoASRModel) and model.frontend_extracts:
            feats, feats_lengths, f0 = model._extract_feats_f0(batch, lengths, False)
        else:
            (feats, feats_lengths), f0 = model._extract_feats(batch, lengths), None
    length = int(feats_lengths[0])
    return Features(feats[0, :length], None if f0 is None else f0[0, :length])


@contextmanager
def frontend_replaced(model: torch.nn.Module, feats: Tensor, lengths: Tensor, f0: Tensor | None) -> Iterator[None]:
    """Within the block ``model.encode`` takes feats (B, T, D), lengths (B,) and f0 (B, T) or None as its
    frontend's output, whatever speech it is given."""
    def extract(speech: Tensor, speech_lengths: Tensor) -> tuple[Tensor, Tensor]:
        return feats, lengths

    def extract_f0(speech: Tensor, speech_lengths: Tensor, with_f0: bool) -> tuple[Tensor, Tensor, Tensor | None]:
        return feats, lengths, f0 if with_f0 else None

    # EchoASRModel's frontend step (_extract_feats) asks _extract_feats_f0 and keeps f0 for the encoder
    name, replacement = ("_extract_feats_f0", extract_f0) if isinstance(model, EchoASRModel) else (
        "_extract_feats", extract)
    setattr(model, name, replacement)
    try:
        yield
    finally:
        delattr(model, name)  # the instance attribute: the class method again


def batch_statistics(model: torch.nn.Module, stats: Sequence[Tensor | None]) -> Tensor | None:
    """Per-utterance statistics (2, D) or None (the model's fallback) -> (B, 2, D), or None when all are None."""
    if all(s is None for s in stats):
        return None
    normalize = getattr(model, "normalize", None)
    if not isinstance(normalize, SpeakerMVN):
        raise ValueError(
            f"speaker statistics given, but the model's normalize is {type(normalize).__name__}, not speaker_mvn")
    fallback = None
    if normalize.fallback_mean is not None:
        fallback = torch.stack([normalize.fallback_mean, normalize.fallback_std])
    if fallback is None and any(s is None for s in stats):
        raise RuntimeError("speaker_mvn without statistics for some utterances needs stats_file (pooled training "
                           "statistics)")
    return torch.stack([fallback if s is None else s.to(fallback.dtype if fallback is not None else s.dtype)
                        for s in stats])


def pad(rows: Sequence[Tensor]) -> Tensor:
    """Tensors (T_i, ...) -> (B, T_max, ...) zero-padded."""
    return torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True)


@torch.no_grad()
def encode_batch(model: torch.nn.Module, speeches: Sequence[Tensor], stats: Sequence[Tensor | None]
                 ) -> list[Tensor | None]:
    """speeches: B waveforms (S_i,) on the model's device; stats: B speaker statistics (2, D) or None ->
    B encoder outputs (T'_i, D') (see the module docstring; one batched encoder call); None for an
    utterance too short for the encoder's subsampling (no output frame)."""
    if len(speeches) != len(stats):
        raise ValueError(f"{len(speeches)} waveforms but {len(stats)} statistics")
    stats = [None if s is None else torch.as_tensor(s, dtype=torch.float32, device=speeches[0].device)
             for s in stats]
    features = [utterance_features(model, speech, s) for speech, s in zip(speeches, stats)]
    lengths = torch.tensor([f.feats.size(0) for f in features], device=speeches[0].device)
    feats = pad([f.feats for f in features])
    f0 = pad([f.f0 for f in features]) if all(f.f0 is not None for f in features) else None
    speech = pad(speeches)
    speech_lengths = torch.tensor([s.numel() for s in speeches], device=speech.device)
    try:
        with frontend_replaced(model, feats, lengths, f0), speaker_context(model, batch_statistics(model, stats)):
            encoded, encoded_lengths = model.encode(speech, speech_lengths)
    except TooShortUttError:  # raised on the longest: every utterance is too short
        return [None] * len(speeches)
    if isinstance(encoded, tuple):  # intermediate CTC outputs: the final output is what beam search reads
        encoded = encoded[0]
    return [encoded[i, :n] if n > 0 else None for i, n in enumerate(encoded_lengths.tolist())]
