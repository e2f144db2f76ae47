"""``freeze: none``: full fine-tuning."""
from __future__ import annotations

from echo_plugin.asr.freeze.base import FreezeStrategy


class NoFreeze(FreezeStrategy):
    """Every parameter trains."""

    def trainable(self, name: str, step: int) -> bool:
        return True
