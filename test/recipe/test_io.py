"""recipe.io: Kaldi data dirs, atomic dirs and files, checked downloads, up-to-date stamps."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from echo_plugin.recipe import io
from echo_plugin.recipe.io import Utterance


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_data_dir_files_are_byte_sorted_and_utt2dur_needs_every_duration(tmp_path: Path) -> None:
    utts = [Utterance("b-2", "b", "TWO", "/x/b2.wav", 1.25), Utterance("B-1", "B", "", "/x/B1.wav", 0.5),
            Utterance("b-1", "b", "ONE", "sox /x/b1.flac -t wav - |", 2.0)]
    io.write_data_dir(tmp_path / "d", utts)
    d = tmp_path / "d"
    assert sorted(p.name for p in d.iterdir()) == ["spk2utt", "text", "utt2dur", "utt2spk", "wav.scp"]
    assert lines(d / "wav.scp") == ["B-1 /x/B1.wav", "b-1 sox /x/b1.flac -t wav - |", "b-2 /x/b2.wav"]
    assert lines(d / "text") == ["B-1 ", "b-1 ONE", "b-2 TWO"]  # an empty transcript keeps its key
    assert lines(d / "utt2spk") == ["B-1 B", "b-1 b", "b-2 b"]
    assert lines(d / "spk2utt") == ["B B-1", "b b-1 b-2"]
    assert lines(d / "utt2dur") == ["B-1 0.500", "b-1 2.000", "b-2 1.250"]
    io.write_data_dir(d, [Utterance("u", "s", "HI", Path("/x/u.wav"))])
    assert sorted(p.name for p in d.iterdir()) == ["spk2utt", "text", "utt2spk", "wav.scp"]


@pytest.mark.parametrize("utts, message", [
    ([Utterance("u", "s", "A", "/a.wav"), Utterance("u", "s", "B", "/b.wav")], "duplicate utterance id u"),
    ([Utterance("u", "s", "A", "/my files/a.wav")], "has whitespace"),
])
def test_bad_utterances_leave_the_old_dir(tmp_path: Path, utts: list[Utterance], message: str) -> None:
    io.write_data_dir(tmp_path / "d", [Utterance("old", "s", "A", "/a.wav")])
    with pytest.raises(ValueError, match=message):
        io.write_data_dir(tmp_path / "d", utts)
    assert lines(tmp_path / "d" / "text") == ["old A"]
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_atomic_dir_keeps_the_old_dir_until_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dst = tmp_path / "out"
    with io.atomic_dir(dst) as tmp:
        (tmp / "f").write_text("old")
    with pytest.raises(RuntimeError), io.atomic_dir(dst) as tmp:
        (tmp / "f").write_text("new")
        assert (dst / "f").read_text() == "old"
        raise RuntimeError
    assert (dst / "f").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out"]

    real, calls = os.replace, []

    def second_rename_fails(src, target):
        calls.append(target)
        if len(calls) == 2:
            raise OSError("rename failed")
        real(src, target)

    monkeypatch.setattr(io.os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="rename failed"), io.atomic_dir(dst) as tmp:
        (tmp / "f").write_text("new")
    assert (dst / "f").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out"]
    monkeypatch.setattr(io.os, "replace", real)
    with io.atomic_dir(dst) as tmp:
        (tmp / "f").write_text("new")
    assert (dst / "f").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_leftovers_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    for name in (f".out.tmp-{dead}", f".out.old-{dead}-x1", f".out.tmp-{os.getpid()}-x2", ".other.tmp-1-x"):
        (tmp_path / name).mkdir()
    with io.atomic_dir(tmp_path / "out") as tmp:
        (tmp / "f").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-1-x", f".out.tmp-{os.getpid()}-x2", "out"]


def test_atomic_write_text_replaces_or_keeps(tmp_path: Path) -> None:
    path = tmp_path / "a" / "f.txt"
    io.atomic_write_text(path, "one\n")
    with pytest.raises(RuntimeError), io.atomic_file(path) as tmp:
        tmp.write_text("two\n")
        raise RuntimeError
    assert path.read_text() == "one\n" and [p.name for p in path.parent.iterdir()] == ["f.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_fetch_verifies_checksums(tmp_path: Path) -> None:
    src = tmp_path / "server" / "a.bin"
    src.parent.mkdir()
    src.write_bytes(b"payload")
    sha, md5 = hashlib.sha256(b"payload").hexdigest(), hashlib.md5(b"payload").hexdigest()
    dest = tmp_path / "dl" / "a.bin"
    with pytest.raises(ValueError, match="SHA256 .* differs from the published 0+: corrupt"):
        io.fetch(src.as_uri(), dest, "0" * 64)
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []
    assert io.fetch(src.as_uri(), dest, sha, md5=md5) == dest and dest.read_bytes() == b"payload"
    src.unlink()  # a verified copy is not fetched again
    assert io.fetch(src.as_uri(), dest, sha) == dest
    assert io.fetch(src.as_uri(), dest) == dest  # without a checksum any copy is kept
    other = tmp_path / "server" / "b.bin"
    other.write_bytes(b"other")
    with pytest.raises(ValueError, match="MD5 .* differs from the published"):
        io.fetch(other.as_uri(), tmp_path / "dl" / "b.bin", md5=md5)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["a.bin"]


def test_stamps_compare_content_not_formatting(tmp_path: Path) -> None:
    stamp = tmp_path / "out" / "stamp.json"
    content = {"config": {"speakers": ("a", "b"), "seed": 0}, "version": 1}
    assert not io.is_current(stamp, content)
    io.write_stamp(stamp, content)
    assert io.is_current(stamp, content) and json.loads(stamp.read_text())["config"]["speakers"] == ["a", "b"]
    assert not io.is_current(stamp, {**content, "version": 2})
    stamp.write_text(json.dumps({"version": 1, "config": {"seed": 0, "speakers": ["a", "b"]}}))  # older writers
    assert io.is_current(stamp, content)
    stamp.write_text("{not json")
    assert not io.is_current(stamp, content)
