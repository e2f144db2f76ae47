"""``freeze: encoder``: the encoder (and everything before it) stays fixed."""
from __future__ import annotations

from echo_plugin.asr.freeze.base import ENCODE_PARTS, FreezeStrategy


class FreezeEncoder(FreezeStrategy):
    """Frontend, normalization, pre-/post-encoder and encoder are frozen; decoder and CTC train."""

    def trainable(self, name: str, step: int) -> bool:
        return not name.startswith(ENCODE_PARTS)
