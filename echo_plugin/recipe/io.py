"""Recipe I/O: what every corpus preparation and recipe stage writes, in one place.

* :class:`Utterance` and :func:`write_data_dir`: a Kaldi data dir (``wav.scp``, ``text``,
  ``utt2spk``, ``spk2utt``, and ``utt2dur`` when every duration is known), each file
  sorted by key in byte order as ``LC_ALL=C sort`` sorts;
* :func:`atomic_dir`, :func:`atomic_file`, :func:`atomic_write_text`: a dir or file is
  written under a temporary sibling name and renamed into place; until that rename the
  previous one is untouched, and an error leaves it as it was;
* :func:`fetch`: a download into a ``.part`` file that takes its final name only once
  its checksum is verified; an interrupted download resumes where it stopped (HTTP Range);
* :func:`is_current`, :func:`write_stamp`: a JSON stamp beside an output, holding the
  inputs and settings that made it; the output is up to date while the SHA-256 of the
  stamp's canonical JSON equals that of the current inputs and settings.

Audio is read by :func:`echo_plugin.inference.audio.load_audio` (one reader, one error
type: ``AudioError``); Kaldi tables are read by :mod:`echo_plugin.recipe.data_dir`.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from echo_plugin.recipe.data_dir import spk2utt, write_table

log = logging.getLogger(__name__)
FETCH_TIMEOUT = 60  # seconds without data before a download counts as interrupted


# ----------------------------------------------------------------------------- Kaldi data dirs


@dataclass(frozen=True)
class Utterance:
    """One utterance of a data dir: its line in each Kaldi file."""

    utt_id: str
    speaker: str
    text: str
    audio: str | Path  # a file, or a Kaldi pipe command ending in '|'
    duration: float | None = None  # seconds, for utt2dur


def write_kaldi_files(dest: Path, utterances: Iterable[Utterance]) -> None:
    """Write the Kaldi files of ``utterances`` into the existing dir ``dest``.

    ValueError on a duplicate utterance id or an audio file name holding whitespace.
    """
    by_id: dict[str, Utterance] = {}
    for utt in utterances:
        if utt.utt_id in by_id:
            raise ValueError(f"duplicate utterance id {utt.utt_id}")
        audio = str(utt.audio)
        if not audio.rstrip().endswith("|") and any(c.isspace() for c in audio):
            raise ValueError(f"{utt.utt_id}: wav path {audio!r} has whitespace, which wav.scp cannot hold")
        by_id[utt.utt_id] = utt
    utt2spk = {k: u.speaker for k, u in by_id.items()}
    write_table(dest / "wav.scp", {k: u.audio for k, u in by_id.items()})
    write_table(dest / "text", {k: u.text for k, u in by_id.items()})
    write_table(dest / "utt2spk", utt2spk)
    write_table(dest / "spk2utt", spk2utt(utt2spk))
    if by_id and all(u.duration is not None for u in by_id.values()):
        write_table(dest / "utt2dur", {k: f"{u.duration:.3f}" for k, u in by_id.items()})


def write_data_dir(dest: Path, utterances: Iterable[Utterance]) -> None:
    """Write (or replace, atomically) the data dir ``dest`` holding ``utterances``' Kaldi files."""
    with atomic_dir(Path(dest)) as tmp:
        write_kaldi_files(tmp, utterances)


# ----------------------------------------------------------------------------- atomic writes


def apply_umask(path: Path, mode: int) -> None:
    """Give ``path`` the permissions ``mode`` less the process umask (mkdtemp/mkstemp use 0700/0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(dst: Path) -> None:
    """Delete the temporary siblings of ``dst`` (``.<name>.tmp-<pid>...``, ``.<name>.old-<pid>...``) whose
    writing process is no longer running: what a killed run leaves behind."""
    pattern = re.compile(rf"\.{re.escape(dst.name)}\.(?:tmp|old)-(\d+)(?:-.*)?")
    for sibling in dst.parent.glob(f".{glob.escape(dst.name)}.*-*"):
        match = pattern.fullmatch(sibling.name)
        if match is None or _running(int(match.group(1))):
            continue
        if sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)


def replace_dir(tmp: Path, dst: Path) -> None:
    """Rename ``tmp`` to ``dst``; an existing ``dst`` is moved aside first and put back if that rename fails."""
    if not os.path.lexists(dst):
        os.replace(tmp, dst)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-{os.getpid()}-", dir=dst.parent))
    os.replace(dst, old / dst.name)
    try:
        os.replace(tmp, dst)
    except BaseException:
        os.replace(old / dst.name, dst)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(dst: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``dst`` to fill; when the block ends without an error it replaces ``dst``.

    On an error the temporary dir is removed and ``dst`` is left as it was. Leftovers of killed runs
    (see :func:`remove_leftovers`) are removed first.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(dst)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-{os.getpid()}-", dir=dst.parent))
    apply_umask(tmp, 0o777)
    try:
        yield tmp
        replace_dir(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; when the block ends without an error it replaces
    ``path``, on an error it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        apply_umask(tmp, 0o666)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary sibling and a rename."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------- downloads


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_fault(path: Path, expected: Mapping[str, str]) -> str | None:
    """Which of the ``algorithm -> hex digest`` checksums ``path`` fails, or None."""
    for algorithm, want in expected.items():
        got = file_digest(path, algorithm)
        if got != want.lower():
            return f"{algorithm.upper()} {got} differs from the published {want}"
    return None


def content_range_start(header: str | None) -> int | None:
    """The first byte of a ``Content-Range: bytes FIRST-LAST/TOTAL`` header, or None."""
    match = re.fullmatch(r"bytes (\d+)-\d+/(?:\d+|\*)", (header or "").strip())
    return int(match.group(1)) if match else None


def download_to(url: str, part: Path) -> None:
    """Download ``url`` into ``part``, resuming after the bytes ``part`` already holds.

    With ``N`` bytes there, the request asks for the rest (``Range: bytes=N-``); they are appended only when
    the server answers 206 with a range starting at ``N``, otherwise the file is written again from the first
    byte (a server, or a ``file:`` URL, that ignores Range sends it whole). A 416 answer (nothing past ``N``)
    leaves ``part`` as it is when the server's total is ``N``, else deletes it and raises the error. Fewer
    bytes than the answer's Content-Length raise http.client.IncompleteRead (what arrived stays in ``part``).
    """
    have = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=FETCH_TIMEOUT)
    except urllib.error.HTTPError as error:
        total = (error.headers.get("Content-Range") or "").rpartition("/")[2]
        if error.code == 416 and have and total == str(have):
            return  # complete already: the checksum decides
        if error.code == 416:
            part.unlink(missing_ok=True)
        raise
    with response:
        resumed = bool(have) and response.status == 206 and content_range_start(
            response.headers.get("Content-Range")) == have
        if have:
            log.info("%s: %s", url, f"resuming after {have} bytes" if resumed else "the server sends it whole")
        declared = response.headers.get("Content-Length")
        received = 0
        with open(part, "ab" if resumed else "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
                received += len(block)
        # http.client ends a body cut short silently: a dropped connection shows only in the count
        if declared is not None and received < int(declared):
            raise http.client.IncompleteRead(b"", int(declared) - received)


def transient(error: BaseException) -> bool:
    """Whether a download error is a dropped or failed connection worth resuming (not an HTTP error answer)."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code >= 500
    return isinstance(error, (urllib.error.URLError, http.client.IncompleteRead, ConnectionError, TimeoutError))


def fetch(url: str, dest: Path, sha256: str | None = None, *, md5: str | None = None, retries: int = 3) -> Path:
    """Download ``url`` to ``dest`` unless a copy with the expected checksums is there; returns ``dest``.

    The download goes to ``<dest>.part`` and is renamed to ``dest`` once its checksums are verified;
    a mismatch deletes it and raises ValueError. An interruption keeps ``<dest>.part``: a dropped
    connection is resumed up to ``retries`` times in this call, and a later call (after the run was
    stopped) resumes it too, asking the server only for the missing bytes (:func:`download_to`).
    Without a checksum any copy already at ``dest`` is kept and a download is not verified. ``md5``
    is for sources that publish only MD5 (openslr).
    """
    dest = Path(dest)
    expected = {name: value for name, value in (("sha256", sha256), ("md5", md5)) if value}
    if dest.is_file() and checksum_fault(dest, expected) is None:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    log.info("downloading %s", url)
    for attempt in range(retries + 1):
        try:
            download_to(url, part)
            break
        except Exception as error:
            if attempt == retries or not transient(error):
                raise
            log.warning("%s: interrupted (%s); resuming (%d/%d)", url, error, attempt + 1, retries)
    problem = checksum_fault(part, expected)
    if problem:
        part.unlink()
        raise ValueError(f"{url}: {problem}: corrupt or truncated download")
    part.replace(dest)
    return dest


# ----------------------------------------------------------------------------- up-to-date stamps


def stamp_digest(content: Mapping) -> str:
    """SHA-256 of the canonical JSON of ``content`` (keys sorted; tuples read back as lists)."""
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def is_current(stamp: Path, content: Mapping) -> bool:
    """Whether the stamp file ``stamp`` records ``content``: the inputs and settings of the output beside it."""
    try:
        recorded = json.loads(Path(stamp).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return stamp_digest(recorded) == stamp_digest(content)


def write_stamp(stamp: Path, content: Mapping) -> None:
    """Record ``content`` in the stamp file ``stamp`` (JSON, keys sorted), atomically."""
    atomic_write_text(Path(stamp), json.dumps(content, indent=2, sort_keys=True) + "\n")
