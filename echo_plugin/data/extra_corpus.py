"""Writing an FSDD-style extra training corpus (``root/recordings/*.wav`` + a JSON stamp) atomically.

Shared by the synthetic espeak-ng digits and the WORLD pseudo-speakers: a corpus is
written into a temporary sibling folder and renamed into place, and a complete corpus
with the same stamp is left as it is.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path


def is_complete(root: Path, stamp_file: str, stamp: dict, n_recordings: int) -> bool:
    """True if ``root`` holds ``stamp`` in ``stamp_file`` and ``n_recordings`` wavs under recordings/."""
    try:
        if json.loads((root / stamp_file).read_text()) != stamp:
            return False
    except (OSError, ValueError):
        return False
    return len(list((root / "recordings").glob("*.wav"))) == n_recordings


def write_corpus(root: Path, stamp_file: str, stamp: dict, fill: Callable[[Path], None]) -> None:
    """``fill(recordings_dir)`` in a temporary folder, then the stamp, then rename it to ``root``."""
    tmp = root.with_name(f".{root.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "recordings").mkdir(parents=True)
    try:
        fill(tmp / "recordings")
        (tmp / stamp_file).write_text(json.dumps(stamp, indent=2) + "\n")
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
