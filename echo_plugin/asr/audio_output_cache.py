"""AudioOutputCache: a frozen module's output per audio clip, kept in memory up to a byte budget.

A frozen pretrained encoder gives the same output for the same samples every epoch; a
training over fixed clips (noise augmentation as stored noisy copies, not drawn on the fly)
then pays for the encoder in its first epoch only. Keys are a 16-byte BLAKE2b hash of the
clip's samples (dtype and length included, through the bytes); values live on the CPU and go
back to the device of the clip asked about. Once the budget is spent new outputs are not kept
(the ones kept stay: no eviction, every epoch sees the same clips).
"""
from __future__ import annotations

import hashlib
from typing import Dict, Optional

from torch import Tensor


class AudioOutputCache:
    """Outputs (any shape) keyed by the samples of their input clip, up to ``max_bytes`` (0: nothing kept)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"a cache budget must be 0 or more bytes, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.used_bytes = 0
        self._store: Dict[bytes, Tensor] = {}

    def __len__(self) -> int:
        return len(self._store)

    @staticmethod
    def key(clip: Tensor) -> bytes:
        """The hash of the clip's samples (S,), as stored in memory on the CPU."""
        return hashlib.blake2b(clip.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).digest()

    def get(self, clip: Tensor) -> Optional[Tensor]:
        """The output kept for these samples, on the clip's device; None when not kept (or no budget)."""
        if not self.max_bytes:
            return None
        hit = self._store.get(self.key(clip))
        return None if hit is None else hit.to(clip.device)

    def put(self, clip: Tensor, output: Tensor) -> None:
        """Keep ``output`` for these samples when the budget allows."""
        size = output.numel() * output.element_size()
        if self.max_bytes and self.used_bytes + size <= self.max_bytes:
            key = self.key(clip)
            if key not in self._store:
                self._store[key] = output.detach().cpu()
                self.used_bytes += size

    def clear(self) -> None:
        self._store.clear()
        self.used_bytes = 0
