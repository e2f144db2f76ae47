"""Freezing strategies (``echo_plugin.catalog.FREEZE``): which parameters of an ESPnet ASR model
train at a given optimizer step.

A strategy answers ``trainable(name, step)`` for every parameter name of the whole
model (``encoder.*``, ``decoder.*``, ``ctc.*``, ...); :class:`FreezingASRModel`
applies it through ``requires_grad`` before each training forward, so frozen
parameters get no gradient (``.grad`` stays None) and no optimizer update.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from torch import nn

ENCODE_PARTS = ("frontend.", "specaug.", "normalize.", "preencoder.", "encoder.", "postencoder.")
"""Model parts before the encoder output: what ``freeze: encoder`` holds fixed."""


class FreezeStrategy(ABC):
    """Decides per parameter name and training step whether it trains."""

    @abstractmethod
    def trainable(self, name: str, step: int) -> bool:
        """True when parameter ``name`` (a ``model.named_parameters()`` name) trains at ``step`` (0-based)."""

    def check(self, model: nn.Module) -> None:  # noqa: B027 (a hook: most strategies apply to any model)
        """Raise a clear error when the strategy cannot apply to ``model`` (default: always applies)."""

    def switch_steps(self) -> tuple[int, ...]:
        """Steps at which the trainable set changes (for logging)."""
        return ()
