"""Atomic checkpoint writes for ESPnet's trainer.

ESPnet writes ``checkpoint.pth`` and ``*epoch.pth`` with a plain ``torch.save``;
a training killed mid-write leaves a truncated checkpoint that ``--resume``
cannot load. :func:`atomic_save`, which ``echo_plugin.bin.asr_train`` puts in
place of ``torch.save`` (:func:`echo_plugin.espnet_patches.use_atomic_torch_save`),
writes a path target as a temporary file in the same directory and renames it into
place, so a checkpoint on disk is always either the old one or the complete new one.

As with ``torch.save``, a symlinked target is written through (the file it points to is replaced, the link
stays) and the new file gets the permissions the umask gives (``mkstemp`` alone would make it 0600). A process
killed mid-write leaves its ``.<name>.*.tmp`` file behind, never a partial file under the final name.
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
    target = Path(os.path.realpath(f))  # through a symlink, like torch.save
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        _original_save(obj, tmp, *args, **kwargs)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
