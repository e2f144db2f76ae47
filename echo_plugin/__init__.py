"""Echo: pitch-aware attention models for ESPnet2 ASR, as a plugin.

``register()`` adds every Echo component to ESPnet's module-level choice
tables. It is idempotent and imports ESPnet lazily, so ``import echo_plugin``
stays light.
"""
from __future__ import annotations

__version__ = "0.1.0"

_REGISTERED = False


def components() -> dict[str, dict[str, type]]:
    """ESPnet choice-table name -> {type name: class} for every Echo component."""
    from echo_plugin.asr.decoder.dual_decoder import DualCrossAttentionDecoder
    from echo_plugin.asr.decoder.echo_decoder import EchoDecoder
    from echo_plugin.asr.encoder.echo_encoder import EchoEncoder
    from echo_plugin.asr.encoder.whisper_style_encoder import WhisperStyleEncoder
    from echo_plugin.asr.espnet_model import EchoASRModel
    from echo_plugin.asr.freezing_model import FreezingASRModel
    from echo_plugin.asr.frontend.echo_frontend import EchoFrontend
    from echo_plugin.asr.normalize.speaker_mvn import SpeakerMVN
    from echo_plugin.asr.normalize.speech_mvn import SpeechMVN
    from echo_plugin.asr.specaug.freq_warp_specaug import FreqWarpSpecAug

    return {
        "frontend_choices": {"echo": EchoFrontend},
        "model_choices": {"echo": EchoASRModel, "echo_freeze": FreezingASRModel},
        "specaug_choices": {"freq_warp": FreqWarpSpecAug},
        "normalize_choices": {"speaker_mvn": SpeakerMVN, "speech_mvn": SpeechMVN},
        "encoder_choices": {"echo": EchoEncoder, "whisper_style": WhisperStyleEncoder},
        "decoder_choices": {"echo": EchoDecoder, "dual": DualCrossAttentionDecoder},
    }


def optimizers() -> dict[str, type]:
    """ESPnet optimizer name (``optim:`` in YAML) -> Echo optimizer class."""
    from echo_plugin.optim.maxfactor import MaxFactor

    return {"maxfactor": MaxFactor}


def _register_optimizers() -> None:
    """Add :func:`optimizers` to ``espnet2.tasks.abs_task.optim_classes`` (checked, idempotent)."""
    import espnet2.tasks.abs_task as abs_task
    import torch

    for name, cls in optimizers().items():
        if not issubclass(cls, torch.optim.Optimizer):
            raise TypeError(f"{cls.__qualname__} must subclass torch.optim.Optimizer for optim_classes")
        known = abs_task.optim_classes.get(name)
        if known is not None and known is not cls:
            raise KeyError(f"optim_classes already has '{name}' = {known.__qualname__}")
        abs_task.optim_classes[name] = cls


def register() -> None:
    """Add Echo classes to ``espnet2.tasks.asr``'s choices (safe to call twice)."""
    global _REGISTERED
    if _REGISTERED:
        return
    import espnet2.tasks.asr as asr_task

    for table_name, classes in components().items():
        table = getattr(asr_task, table_name)
        for name, cls in classes.items():
            if not issubclass(cls, table.base_type):
                raise TypeError(f"{cls.__qualname__} must subclass {table.base_type.__qualname__} for {table_name}")
            known = table.classes.get(name)
            if known is not None and known is not cls:
                raise KeyError(f"{table_name} already has '{name}' = {known.__qualname__}")
            table.classes[name] = cls
    _register_optimizers()
    _REGISTERED = True
