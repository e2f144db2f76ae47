"""Point an unpacked training config at the files its archive carries.

ESPnet's packer stores every file under its path resolved through symbolic links (relative
to the packing directory when it lies below it, else absolute), and ESPnet's unpacker
rewrites a config value only when it equals a stored name. A recipe whose ``data/`` or
``dump/`` is a link elsewhere (common for large corpora, and the fold runner's shared
data), or a config holding absolute paths, then unpacks into a config that still names the
packing machine's files: the model works in the recipe directory, and nowhere else.

:func:`point_at_packed_files` finishes the job: every string of the config that names a
file by a path whose trailing parts are those of exactly one stored file is replaced by
that unpacked file (``data/token_list/bpe_unigram30/bpe.model`` ->
``<unpacked>/work/x/folds/test-lucas/data/token_list/bpe_unigram30/bpe.model``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def _stored(root: Path) -> dict[tuple[str, ...], list[Path]]:
    """Every file under ``root`` by each of its trailing part sequences (the name alone excluded)."""
    found: dict[tuple[str, ...], list[Path]] = {}
    for path in root.rglob("*"):
        if path.is_file():
            parts = path.relative_to(root).parts
            for start in range(len(parts) - 1):
                found.setdefault(parts[start:], []).append(path)
    return found


def _repoint(value: Any, stored: dict[tuple[str, ...], list[Path]], root: Path) -> Any:
    if isinstance(value, dict):
        return {k: _repoint(v, stored, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_repoint(v, stored, root) for v in value]
    if isinstance(value, str) and "/" in value and "\n" not in value:
        path = Path(value)
        if path.is_absolute() and path.is_relative_to(root):
            return value  # already the unpacked copy
        parts = tuple(p for p in path.parts if p not in ("/", "."))
        matches = stored.get(parts, [])
        if len(matches) == 1:
            return str(matches[0])
    return value


def point_at_packed_files(config_file: Path, root: Path) -> None:
    """Rewrite ``config_file`` (unpacked under ``root``) so that its paths name the unpacked files."""
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    fixed = _repoint(config, _stored(root), root.resolve())
    if fixed != config:
        config_file.write_text(yaml.safe_dump(fixed, sort_keys=False, allow_unicode=True), encoding="utf-8")
