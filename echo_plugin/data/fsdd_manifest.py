"""SHA-256 of every FSDD recording, shipped with the package, and the check of a corpus root against it.

FSDD publishes no checksum, and GitHub builds its commit archives on request (their bytes may change), so
the recordings themselves are checked: ``fsdd_sha256.txt`` (package data, ``sha256sum`` format, paths
relative to the corpus root) lists the SHA-256 of each recording of the five-speaker copy the project
works from (george, jackson, lucas, nicolas, yweweler; pinned commit, see :mod:`echo_plugin.data.fsdd`).
A corpus root passes when every listed recording is there with its bytes; files the manifest does not
list (the sixth upstream speaker, a README) are ignored. Regenerate it from a trusted copy with

    python -m echo_plugin.data.fsdd_manifest /path/to/fsdd > echo_plugin/data/fsdd_sha256.txt
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path

from echo_plugin.inference.audio import wav_declared_frames
from echo_plugin.recipe.io import file_digest

MANIFEST_NAME = "fsdd_sha256.txt"
SKIP_HINT = "a copy changed on purpose: --skip_checksum"


class ChecksumError(ValueError):
    """A corpus root that does not match the manifest; the message names the first file at fault."""


def read_manifest(text: str | None = None) -> dict[str, str]:
    """relative path -> SHA-256 (hex) of the shipped manifest (or of ``text``); '#' lines are comments."""
    if text is None:
        text = resources.files("echo_plugin.data").joinpath(MANIFEST_NAME).read_text(encoding="utf-8")
    manifest = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, sep, path = line.partition("  ")
        if not sep or len(digest) != 64:
            raise ValueError(f"{MANIFEST_NAME}:{number}: expected '<sha256>  <path>', got {line!r}")
        manifest[path] = digest.lower()
    return manifest


def faults(root: Path, manifest: dict[str, str]) -> Iterator[str]:
    """One message per listed recording of ``root`` that is missing or whose bytes differ, in manifest order."""
    for relative, want in manifest.items():
        path = root / relative
        if not path.is_file():
            yield f"FSDD recording {path} is missing (listed in the package's {MANIFEST_NAME})"
            continue
        got = file_digest(path)
        if got != want:
            frames = wav_declared_frames(path)
            how = (f"truncated: its header declares {frames[0]} samples, the file holds {frames[1]}"
                   if frames is not None and frames[1] < frames[0] else "modified or truncated")
            yield f"FSDD recording {path}: SHA-256 {got} differs from the manifest's {want} ({how})"


def verify_recordings(root: Path, manifest: dict[str, str] | None = None) -> int:
    """Check ``root`` against the manifest (default: the shipped one); the number of recordings checked.

    ChecksumError naming the first recording that is missing or differs, with how many more do;
    FileNotFoundError when ``root`` holds no ``recordings/`` folder."""
    if not (Path(root) / "recordings").is_dir():
        raise FileNotFoundError(f"no FSDD 'recordings' folder in {str(root)!r}")
    manifest = read_manifest() if manifest is None else manifest
    found = list(faults(Path(root), manifest))
    if found:
        more = f"; {len(found) - 1} more recording(s) differ or are missing" if len(found) > 1 else ""
        raise ChecksumError(f"{found[0]}{more} ({SKIP_HINT})")
    return len(manifest)


def manifest_lines(root: Path) -> Iterator[str]:
    """The manifest of the recordings under ``root``: '<sha256>  recordings/<name>' sorted by name."""
    for path in sorted((Path(root) / "recordings").glob("*.wav"), key=lambda p: p.name):
        yield f"{file_digest(path)}  recordings/{path.name}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the SHA-256 manifest of an FSDD corpus root.")
    parser.add_argument("root", type=Path, help="folder holding recordings/")
    parser.add_argument("--comment", default="", help="a '#' line to put first (where the copy came from)")
    args = parser.parse_args(argv)
    if not (args.root / "recordings").is_dir():
        parser.exit(1, f"error: no FSDD 'recordings' folder in {str(args.root)!r}\n")
    if args.comment:
        print(f"# {args.comment}")
    for line in manifest_lines(args.root):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
