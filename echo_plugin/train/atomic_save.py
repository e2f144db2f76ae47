"""Atomic checkpoint writes for ESPnet's trainer.

ESPnet writes ``checkpoint.pth`` and ``*epoch.pth`` with a plain ``torch.save``;
a training killed mid-write leaves a truncated checkpoint that ``--resume``
cannot load. ``install()`` makes every path-based ``torch.save`` in the
process write a temporary file in the same directory and rename it into place,
so a checkpoint on disk is always either the old one or the complete new one.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

_original_save = torch.save


def atomic_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
    """``torch.save`` that renames a finished temporary file onto a path target."""
    if not isinstance(f, (str, os.PathLike)):
        _original_save(obj, f, *args, **kwargs)
        return
    target = Path(f)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        _original_save(obj, tmp, *args, **kwargs)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def install() -> None:
    """Route ``torch.save`` through :func:`atomic_save` (idempotent)."""
    torch.save = atomic_save
