"""Text files that are not UTF-8 (a transcript saved as Latin-1, a UTF-16 byte-order mark) give one line per bad
line naming the file and the line number (and the utterance where its id decodes), never a traceback: the table
reader, stage 2 (format_data), check_text and score."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from echo_plugin.recipe.data_dir import DataDirError, read_numbers, read_table, read_table_faults

BAD_LINE = b"\xff\xfe bad\n"  # a UTF-16 byte-order mark where an utterance id should be
LATIN1_LINE = "u3 caf\xe9\n".encode("latin-1")  # a good id, a Latin-1 transcript


def bad_text(path: Path) -> Path:
    path.write_bytes(b"u1 ONE\n" + BAD_LINE + LATIN1_LINE + b"u4 FOUR\n")
    return path


def cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"echo_plugin.recipe.{module}", *map(str, args)],
                          capture_output=True, text=True)


def assert_one_line_per_bad_line(proc: subprocess.CompletedProcess, path: Path, prog: str) -> None:
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "UnicodeDecodeError" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"{prog}: error: {path}:2: not valid UTF-8 (byte 0xff at byte 1 of the line); save the file as UTF-8",
        f"{prog}: error: {path}:3: utterance 'u3': not valid UTF-8 (byte 0xe9 at byte 7 of the line);"
        " save the file as UTF-8",
    ]


def test_the_table_reader_names_file_line_and_utterance(tmp_path: Path) -> None:
    text = bad_text(tmp_path / "text")
    table, faults = read_table_faults(text)
    assert table == {"u1": "ONE", "u4": "FOUR"}  # the good lines are still read
    assert [f.split(": ", 1)[0] for f in faults] == [f"{text}:2", f"{text}:3"]
    assert "utterance 'u3'" in faults[1] and "utterance" not in faults[0]
    with pytest.raises(DataDirError) as raised:
        read_table(text)
    assert raised.value.faults == faults


def test_crlf_and_utf8_stay_as_they_were(tmp_path: Path) -> None:
    text = tmp_path / "text"
    text.write_bytes("u1 café\r\nu2 ünï ☃\r\n".encode())
    assert read_table(text) == {"u1": "café", "u2": "ünï ☃"}


def test_read_numbers_names_the_line(tmp_path: Path) -> None:
    seconds = tmp_path / "decode_seconds"
    seconds.write_bytes(b"1.5\n2\xa0.0\n")
    with pytest.raises(DataDirError, match=rf"^{seconds}:2: not valid UTF-8 \(byte 0xa0 at byte 2"):
        read_numbers(seconds)


def test_format_data_stage_2(tmp_path: Path) -> None:
    src = tmp_path / "data" / "train"
    src.mkdir(parents=True)
    for utt in ("u1", "u3", "u4"):
        sf.write(tmp_path / f"{utt}.wav", np.zeros(4000, dtype=np.float32), 8000)
    (src / "wav.scp").write_text("".join(f"{u} {tmp_path / u}.wav\n" for u in ("u1", "u3", "u4")))
    (src / "utt2spk").write_text("u1 a\nu3 a\nu4 a\n")
    text = bad_text(src / "text")
    proc = cli("format_data", "--src", src, "--dst", tmp_path / "dump", "--fs", 8000, "--nj", 1)
    assert proc.stderr.splitlines()[:2] == [
        f"format_data: error: {text}:2: not valid UTF-8 (byte 0xff at byte 1 of the line); save the file as UTF-8",
        f"format_data: error: {text}:3: utterance 'u3': not valid UTF-8 (byte 0xe9 at byte 7 of the line);"
        " save the file as UTF-8",
    ]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "dump").exists()


def test_check_text(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("<blank>\n<unk>\nO\nN\nE\nF\nU\nR\n<sos/eos>\n")
    text = bad_text(tmp_path / "text")
    assert_one_line_per_bad_line(cli("check_text", "--text", text, "--token_list", tokens, "--token_type", "char"),
                                 text, "check_text")
    tokens.write_bytes(b"<blank>\n<unk>\n\xe9\n<sos/eos>\n")  # the token list itself
    proc = cli("check_text", "--text", tmp_path / "text", "--token_list", tokens, "--token_type", "char")
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        f"check_text: error: {tokens}:3: not valid UTF-8 (byte 0xe9 at byte 1 of the line); save the file as UTF-8"]


@pytest.mark.parametrize("bad", ["ref", "hyp"])
def test_score(tmp_path: Path, bad: str) -> None:
    files = {"ref": tmp_path / "ref", "hyp": tmp_path / "test" / "text"}
    files["hyp"].parent.mkdir()
    for path in files.values():
        path.write_text("u1 ONE\nu3 CAFE\nu4 FOUR\n")
    bad_text(files[bad])
    proc = cli("score", "--ref", files["ref"], "--hyp", files["hyp"], "--out_dir", tmp_path / "score")
    assert_one_line_per_bad_line(proc, files[bad], "score")
    assert not (tmp_path / "score").exists()
