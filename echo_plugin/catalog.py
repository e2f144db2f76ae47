"""Every swappable Echo part, by kind: the one place where a name in YAML becomes a class.

One :class:`~echo_plugin.registry.Registry` per kind, each filled here from an
explicit table (nothing registers itself on import). A table's classes are
imported on its first use, so that a class may build its own parts from the
catalog (attention builds its ``ROTARY`` and ``MASKING``) and ``import
echo_plugin.catalog`` stays light. ``python -m echo_plugin.bin.list_registries``
prints :data:`TABLES`; ``echo_plugin.register()`` hands :data:`ESPNET_CHOICES`
and :data:`OPTIMIZER` to ESPnet.

A new built-in variant is one new file plus one line in its table below. A
package of your own adds variants through the entry-point group
``echo_plugin.variants`` (:data:`VARIANTS_GROUP`): each entry point names a
function that receives this module and adds to its tables, e.g. in the
package's ``pyproject.toml``::

    [project.entry-points."echo_plugin.variants"]
    my_rotary = "my_package.echo:add_variants"

    # my_package/echo.py
    def add_variants(catalog):
        catalog.ROTARY.add("my_rotary", MyRotary)          # a Rotary subclass
        catalog.ESPNET_CHOICES["encoder_choices"].add("my_encoder", MyEncoder)

The entry points run once, on the first lookup in any table (``register()`` or
building a model). A name already taken by another class, or a class that is not
of the kind's base, is refused.
"""
from __future__ import annotations

import sys
from importlib import metadata
from typing import Dict, Mapping, Optional, Tuple

from echo_plugin.registry import Builtins, Registry

VARIANTS_GROUP = "echo_plugin.variants"

Table = Tuple[Optional[type], Mapping[str, object]]
"""(base class of the kind or None, {name: class})."""


_variants_state = "unloaded"  # -> "loading" (while the entry points run) -> "loaded"


def load_variants() -> None:
    """Run each ``echo_plugin.variants`` entry point once (by name order) with this module.

    Called by every table lookup; returns at once after the first call (and during
    it, so that an entry point may look names up). A failing entry point raises a
    RuntimeError naming it, and is tried again at the next lookup.
    """
    global _variants_state
    if _variants_state != "unloaded":
        return
    _variants_state = "loading"
    try:
        catalog = sys.modules[__name__]
        for entry in sorted(metadata.entry_points(group=VARIANTS_GROUP), key=lambda e: (e.name, e.value)):
            try:
                entry.load()(catalog)
            except Exception as error:
                raise RuntimeError(
                    f"{VARIANTS_GROUP} entry point '{entry.name} = {entry.value}' failed: "
                    f"{type(error).__name__}: {error}"
                ) from error
    except BaseException:
        _variants_state = "unloaded"
        raise
    _variants_state = "loaded"


def _kind(kind: str, where: str, builtins: Builtins) -> Registry:
    return Registry(kind, where, builtins, extend=load_variants)


# ------------------------------------------------------------------ building blocks of layers


def _rotary() -> Table:
    from echo_plugin.nn.rotary import (
        AxialRotary,
        DocPitchAwareRotary,
        GivensRotary,
        LearnedRotary,
        MelRotary,
        NoRotary,
        PitchAwareRotary,
        QuaternionRotary,
        Rotary,
        StandardRotary,
    )

    return Rotary, {
        "standard": StandardRotary,
        "none": NoRotary,
        "learned": LearnedRotary,
        "mel": MelRotary,
        "pitch_aware": PitchAwareRotary,
        "pitch_aware_doc": DocPitchAwareRotary,  # the design document's rotary as written
        "givens": GivensRotary,
        "quaternion": QuaternionRotary,
        "axial": AxialRotary,
    }


def _attention() -> Table:
    from echo_plugin.nn.attention import (
        AdaptiveAttention,
        CuriosityAttention,
        IntegratedAttention,
        MultiHeadAttention,
        MyelinatedAttention,
    )

    return MultiHeadAttention, {
        "standard": MultiHeadAttention,
        "curiosity": CuriosityAttention,
        "adaptive": AdaptiveAttention,
        "myelinated": MyelinatedAttention,
        "integrated": IntegratedAttention,
    }


def _masking() -> Table:
    from echo_plugin.nn.masking import HardMasking, KeyMasking, SoftMasking

    return KeyMasking, {"hard": HardMasking, "soft": SoftMasking}


def _gate() -> Table:
    from echo_plugin.nn.gates import AdditiveGate, ContextGate, Gate, MemoryGate, MLPGate, NoGate, TypeGate

    return Gate, {
        "none": NoGate,
        "mlp_gate": MLPGate,
        "t_gate": TypeGate,
        "m_gate": MemoryGate,
        "c_gate": ContextGate,
        "additive": AdditiveGate,  # the design document's Residual: the gate value added, not multiplied
    }


def _curiosity_score() -> Table:
    from torch import nn

    from echo_plugin.nn.attention.curiosity_scores import CosineScore, DotScore, RBFScore

    return nn.Module, {"dot": DotScore, "cosine": CosineScore, "rbf": RBFScore}


def _norm() -> Table:
    from torch import nn

    return nn.Module, {"layer_norm": nn.LayerNorm, "rms_norm": nn.RMSNorm}


def _activation() -> Table:
    from torch import nn

    return nn.Module, {"swish": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU}


ROTARY = _kind("rotary", "layers[].rotary, attention conf rotary_k", _rotary)
ATTENTION = _kind("attention", "layers[].attention / self_attention / cross_attention", _attention)
MASKING = _kind("masking", "layers[].masking / self_masking / cross_masking", _masking)
GATE = _kind("gate", "layers[].gate", _gate)
CURIOSITY_SCORE = _kind("curiosity score", "curiosity conf score", _curiosity_score)
NORM = _kind("norm", "encoder_conf / decoder_conf norm", _norm)
ACTIVATION = _kind("activation", "encoder_conf / decoder_conf activation", _activation)


# ------------------------------------------------------------------ parts of encoders, decoders, frontends, models


def _input_layer() -> Table:
    """Classes (or partials) called as ``(idim, odim, dropout_rate, pos_enc=module)``."""
    from functools import partial

    from echo_plugin.asr.encoder.echo_encoder import LinearInput, SEConvSubsampling
    from echo_plugin.asr.encoder.patch_input import PatchEmbedding
    from echo_plugin.espnet_legacy import (
        Conv2dSubsampling,
        Conv2dSubsampling2,
        Conv2dSubsampling6,
        Conv2dSubsampling8,
    )

    return None, {
        "conv2d": Conv2dSubsampling,  # time / 4
        "conv2d2": Conv2dSubsampling2,  # time / 2
        "conv2d6": Conv2dSubsampling6,  # time / 6
        "conv2d8": Conv2dSubsampling8,  # time / 8
        "linear": LinearInput,  # time / 1
        "se_conv": SEConvSubsampling,  # time / 4, ceil
        "se_conv2": partial(SEConvSubsampling, subsample=2),  # time / 2, ceil
        "patch2d": PatchEmbedding,  # time / 4, (4 x 8) spectrogram patches as tokens
    }


def _position() -> Table:
    from torch import nn

    from echo_plugin.nn.positions import LearnedPositions, RotaryPositions, SinusoidalPositions

    return nn.Module, {"learned": LearnedPositions, "sinusoidal": SinusoidalPositions, "rotary": RotaryPositions}


def _feature_encoder() -> Table:
    """Feature name -> its encoder, built with ``from_options(feature, dims, d_model, hop_length, options)``."""
    from torch import nn

    from echo_plugin.asr.frontend.encoders import FrameFeatureEncoder, PitchEncoder, WaveformEncoder

    return nn.Module, {
        "spectrogram": FrameFeatureEncoder,
        "waveform": WaveformEncoder,
        "pitch": PitchEncoder,
        "harmonic": FrameFeatureEncoder,
        "aperiodic": FrameFeatureEncoder,
        "phase": FrameFeatureEncoder,
    }


def _fusion() -> Table:
    from torch import nn

    from echo_plugin.asr.frontend.fusion import ConcatFusion, GatedFusion

    return nn.Module, {"gated": GatedFusion, "concat": ConcatFusion}


def _freeze() -> Table:
    from echo_plugin.asr.freeze import (
        FreezeEncoder,
        FreezeEncoderAndPrimary,
        FreezeStrategy,
        NoFreeze,
        TwoStage,
    )

    return FreezeStrategy, {
        "none": NoFreeze,
        "encoder": FreezeEncoder,
        "encoder_and_primary": FreezeEncoderAndPrimary,
        "two_stage": TwoStage,
    }


def _optimizer() -> Table:
    import torch

    from echo_plugin.optim.maxfactor import MaxFactor

    return torch.optim.Optimizer, {"maxfactor": MaxFactor}


INPUT_LAYER = _kind("input layer", "encoder_conf input_layer", _input_layer)
POSITION = _kind("decoder position", "dual decoder_conf position", _position)
FEATURE_ENCODER = _kind("frontend feature", "frontend_conf features", _feature_encoder)
FUSION = _kind("fusion", "frontend_conf fusion", _fusion)
FREEZE = _kind("freeze", "echo_freeze model_conf freeze", _freeze)
OPTIMIZER = _kind("optim", "top level", _optimizer)


# ------------------------------------------------------------------ ESPnet's choice tables (echo_plugin.register())


def _frontend_choices() -> Table:
    from espnet2.asr.frontend.abs_frontend import AbsFrontend

    from echo_plugin.asr.frontend.echo_frontend import EchoFrontend
    from echo_plugin.asr.frontend.pretrained_whisper import PretrainedWhisperFrontend

    return AbsFrontend, {"echo": EchoFrontend, "whisper_pretrained": PretrainedWhisperFrontend}


def _model_choices() -> Table:
    from espnet2.train.abs_espnet_model import AbsESPnetModel

    from echo_plugin.asr.espnet_model import EchoASRModel
    from echo_plugin.asr.freezing_model import FreezingASRModel

    return AbsESPnetModel, {"echo": EchoASRModel, "echo_freeze": FreezingASRModel}


def _specaug_choices() -> Table:
    from espnet2.asr.specaug.abs_specaug import AbsSpecAug

    from echo_plugin.asr.specaug.freq_warp_specaug import FreqWarpSpecAug

    return AbsSpecAug, {"freq_warp": FreqWarpSpecAug}


def _normalize_choices() -> Table:
    from espnet2.layers.abs_normalize import AbsNormalize

    from echo_plugin.asr.normalize.speaker_mvn import SpeakerMVN
    from echo_plugin.asr.normalize.speech_mvn import SpeechMVN

    return AbsNormalize, {"speaker_mvn": SpeakerMVN, "speech_mvn": SpeechMVN}


def _encoder_choices() -> Table:
    from espnet2.asr.encoder.abs_encoder import AbsEncoder

    from echo_plugin.asr.encoder.echo_encoder import EchoEncoder
    from echo_plugin.asr.encoder.whisper_style_encoder import WhisperStyleEncoder
    from echo_plugin.asr.whisper_audio_encoder import WhisperAudioEncoder

    return AbsEncoder, {"echo": EchoEncoder, "whisper_style": WhisperStyleEncoder,
                        "whisper_style_audio": WhisperAudioEncoder}


def _decoder_choices() -> Table:
    from espnet2.asr.decoder.abs_decoder import AbsDecoder

    from echo_plugin.asr.decoder.dual_decoder import DualCrossAttentionDecoder
    from echo_plugin.asr.decoder.echo_decoder import EchoDecoder

    return AbsDecoder, {"echo": EchoDecoder, "dual": DualCrossAttentionDecoder}


def _preprocessor_choices() -> Table:
    from espnet2.train.preprocessor import AbsPreprocessor

    from echo_plugin.text.whisper_preprocessor import WhisperPreprocessor

    return AbsPreprocessor, {"whisper": WhisperPreprocessor}


ESPNET_CHOICES: Dict[str, Registry] = {
    "frontend_choices": _kind("espnet frontend_choices", "", _frontend_choices),
    "model_choices": _kind("espnet model_choices", "", _model_choices),
    "specaug_choices": _kind("espnet specaug_choices", "", _specaug_choices),
    "normalize_choices": _kind("espnet normalize_choices", "", _normalize_choices),
    "encoder_choices": _kind("espnet encoder_choices", "", _encoder_choices),
    "decoder_choices": _kind("espnet decoder_choices", "", _decoder_choices),
    "preprocessor_choices": _kind("espnet preprocessor_choices", "", _preprocessor_choices),
}
"""``espnet2.tasks.asr`` choice-table name -> the Echo classes ``register()`` adds to it."""

TABLES: Tuple[Registry, ...] = (
    ROTARY,
    ATTENTION,
    MASKING,
    GATE,
    CURIOSITY_SCORE,
    NORM,
    ACTIVATION,
    INPUT_LAYER,
    POSITION,
    FEATURE_ENCODER,
    FUSION,
    FREEZE,
    OPTIMIZER,
    *ESPNET_CHOICES.values(),
)
"""Every table, in the order ``list_registries`` prints them."""
