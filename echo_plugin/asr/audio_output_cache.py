"""AudioOutputCache: a frozen module's output per audio clip, kept in memory up to a byte budget.

A frozen pretrained encoder gives the same output for the same samples every epoch; a
training over fixed clips (noise augmentation as stored noisy copies, not drawn on the fly)
then pays for the encoder in its first epoch only. Keys are a 16-byte BLAKE2b hash of the
clip's dtype and samples (so the length too); values live on the CPU and go
back to the device of the clip asked about. Once the budget is spent new outputs are not kept
(the ones kept stay: no eviction, every epoch sees the same clips).

A deployed model sees each file once, so :func:`caches_off` turns every cache of a model off
(``transcribe``'s ``load``, the exporter, the dev-set benchmark); :func:`caches_turned_off` does
it for a block and restores the budgets after.
"""
from __future__ import annotations

import contextlib
import hashlib
from typing import Dict, Iterator, List, Optional, Tuple

from torch import Tensor, nn


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
        samples = clip.detach().cpu().contiguous()
        digest = hashlib.blake2b(str(samples.dtype).encode(), digest_size=16)  # the dtype, then the samples
        digest.update(samples.numpy().tobytes())
        return digest.digest()

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


def caches_of(model: nn.Module) -> List[AudioOutputCache]:
    """The AudioOutputCache (attribute ``cache``) of every submodule that has one."""
    return [m.__dict__["cache"] for m in model.modules() if isinstance(m.__dict__.get("cache"), AudioOutputCache)]


def caches_off(model: nn.Module) -> List[Tuple[AudioOutputCache, int]]:
    """Every cache of ``model`` emptied and given no budget: outputs are computed from now on.
    Returns (cache, its former budget) for those that had one."""
    saved = [(cache, cache.max_bytes) for cache in caches_of(model) if cache.max_bytes]
    for cache, _ in saved:
        cache.clear()
        cache.max_bytes = 0
    return saved


@contextlib.contextmanager
def caches_turned_off(model: nn.Module) -> Iterator[None]:
    """Within: :func:`caches_off`; the budgets restored on exit (the caches start empty)."""
    saved = caches_off(model)
    try:
        yield
    finally:
        for cache, budget in saved:
            cache.max_bytes = budget
