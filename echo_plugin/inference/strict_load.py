"""Strict weight loading.

ESPnet's ``build_model_from_file`` loads weights with ``strict=False``: a renamed or
missing parameter silently keeps its random initial value. :func:`load_strict`
fails naming every missing or unexpected key; :class:`echo_plugin.tasks.asr.EchoASRTask`
and :class:`echo_plugin.inference.speaker_speech2text.EchoSpeech2Text` load with it.
"""
from __future__ import annotations

from pathlib import Path

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
