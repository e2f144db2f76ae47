"""An FSDD-style extra training corpus: ``root/recordings/*.wav`` plus a JSON stamp, written atomically.

Shared by the synthetic espeak-ng digits and the WORLD pseudo-speakers: a corpus is
written into a temporary sibling folder and renamed into place (``recipe.io.atomic_dir``),
and a complete corpus with the same stamp is left as it is.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from echo_plugin.recipe.io import atomic_dir, is_current, write_stamp


def is_complete(root: Path, stamp_file: str, stamp: Mapping, n_recordings: int) -> bool:
    """True if ``root`` holds ``stamp`` in ``stamp_file`` and ``n_recordings`` wavs under recordings/."""
    return is_current(root / stamp_file, stamp) and len(list((root / "recordings").glob("*.wav"))) == n_recordings


def write_corpus(root: Path, stamp_file: str, stamp: Mapping, fill: Callable[[Path], None]) -> None:
    """``fill(recordings_dir)`` in a temporary sibling of ``root``, then the stamp, then it replaces ``root``."""
    with atomic_dir(root) as tmp:
        (tmp / "recordings").mkdir()
        fill(tmp / "recordings")
        write_stamp(tmp / stamp_file, stamp)
