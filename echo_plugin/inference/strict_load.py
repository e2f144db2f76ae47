"""Strict weight loading for ESPnet inference.

ESPnet's ``build_model_from_file`` loads weights with ``strict=False``: a
renamed or missing parameter silently keeps its random initial value.
``install()`` replaces it (for ASRTask) with a version that builds the model,
then loads the weights strictly and fails naming every missing or unexpected key.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch


class WeightMismatchError(RuntimeError):
    """The weight file does not match the model built from its config."""


def load_strict(model: torch.nn.Module, model_file: str | Path, device: str = "cpu") -> None:
    """Load ``model_file`` into ``model``; raise if any key is missing or unexpected."""
    state = torch.load(model_file, map_location=device, weights_only=True)
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise WeightMismatchError(
            f"{model_file} does not match the model from its config: "
            f"missing {missing[:10]}{' ...' if len(missing) > 10 else ''} ({len(missing)}), "
            f"unexpected {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''} ({len(unexpected)})"
        )
    model.load_state_dict(state, strict=True)


def install() -> None:
    """Make ``ASRTask.build_model_from_file`` load weights strictly (idempotent)."""
    from espnet2.tasks.asr import ASRTask

    if getattr(ASRTask.build_model_from_file, "_echo_strict", False):
        return
    lenient = ASRTask.build_model_from_file.__func__

    def build_model_from_file(cls: Any, config_file: Any = None, model_file: Any = None,
                              device: str = "cpu") -> tuple[torch.nn.Module, Any]:
        from echo_plugin.asr.frontend.pretrained_whisper import weights_from_model_file

        # a pretrained frontend's weights are in the model file: build it without its checkpoint
        with weights_from_model_file() if model_file is not None else contextlib.nullcontext():
            model, args = lenient(cls, config_file, None, device)
        if model_file is not None:
            load_strict(model, model_file, "cpu" if device == "mps" else device)
        return model, args

    build_model_from_file._echo_strict = True  # type: ignore[attr-defined]
    ASRTask.build_model_from_file = classmethod(build_model_from_file)
