"""The transcribe CLI on a folder of good and bad files with a tiny random packed model: one stderr line per bad
file (a file of a few samples, which the front end's STFT cannot frame, among them), the good ones transcribed in
input order, long recordings in chunks, batched output as batch 1, a
progress bar only when asked (or on a terminal) that never shares a line with an error."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from echo_plugin.bin.transcribe import main
from test.inference.tiny_pack import FS, babble, pack_tiny, write_wav


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return pack_tiny(tmp_path_factory.mktemp("tiny_cli"))


def long_recording(seconds: float) -> np.ndarray:
    """Bursts of 2.5 s with 0.5 s pauses of low noise, ``seconds`` long."""
    gap = (0.002 * np.random.default_rng(0).standard_normal(int(0.5 * FS))).astype(np.float32)
    parts = []
    while sum(len(p) for p in parts) < seconds * FS:
        parts += [babble(2.5, 20 + len(parts)), gap]
    return np.concatenate(parts)[: int(seconds * FS)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("audio")
    files = {
        "a": write_wav(root / "a.wav", babble(1.4, 1)),
        "long": write_wav(root / "long.wav", long_recording(25.0)),
        "notes": root / "notes.wav",
        "cut": root / "cut.wav",
        "b": write_wav(root / "b.wav", babble(2.2, 2)),
        "short": write_wav(root / "short.wav", babble(1.0, 3)[:200]),
        "few": write_wav(root / "few.wav", babble(1.0, 5)[:40]),  # under the STFT's half window (128)
        "c": write_wav(root / "c.wav", babble(0.9, 4)),
    }
    files["notes"].write_text("not audio")
    files["cut"].write_bytes(files["b"].read_bytes()[:3000])
    return files


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_folder_of_good_and_bad_files(archive, folder, capsys) -> None:
    code, out, err = run(capsys, "--model", archive, "--output", "jsonl", *folder.values())
    assert code == 1
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["file"] for r in records] == [str(folder[k]) for k in ("a", "long", "b", "c")]
    assert [r["seconds"] for r in records] == pytest.approx([1.4, 25.0, 2.2, 0.9], abs=1e-3)
    long = records[1]
    assert len(long["chunks"]) >= 2 and all(c["end"] - c["start"] <= 20.0 for c in long["chunks"])
    assert long["chunks"][0]["start"] == 0.0 and long["chunks"][-1]["end"] == 25.0
    assert long["text"] == " ".join(c["text"] for c in long["chunks"] if c["text"])
    assert "chunks" not in records[0]
    errors = err.splitlines()
    assert errors[:-1] == [
        f"transcribe: error: unreadable audio file {folder['notes']}: Error opening '{folder['notes']}': "
        "Format not recognised.",
        f"transcribe: error: truncated audio file {folder['cut']}: its header declares 17600 samples, "
        "the file holds 1478",
        f"transcribe: error: too short audio file {folder['short']}: 0.025 s give the encoder no output frame",
        f"transcribe: error: too short audio file {folder['few']}: 0.005 s give the encoder no output frame",
    ]
    assert errors[-1] == (f"transcribe: 4 input(s) failed: {folder['notes']} {folder['cut']} {folder['short']} "
                          f"{folder['few']}")


@pytest.mark.parametrize("speaker", ["pooled", "unknown"])
def test_a_file_of_a_few_samples_fails_alone_whatever_the_speaker_statistics(archive, folder, speaker,
                                                                             capsys) -> None:
    files = [folder[k] for k in ("a", "few", "b")]
    code, out, err = run(capsys, "--model", archive, "--speaker", speaker, "--batch_size", "2", *files)
    assert code == 1
    assert [line.split(" ")[0] for line in out.splitlines()] == [str(folder["a"]), str(folder["b"])]
    assert err.splitlines() == [
        f"transcribe: error: too short audio file {folder['few']}: 0.005 s give the encoder no output frame",
        f"transcribe: 1 input(s) failed: {folder['few']}"]


def test_batched_output_is_the_output_of_batch_1(archive, folder, capsys) -> None:
    good = [folder[k] for k in ("a", "long", "b", "c")]
    _, alone, _ = run(capsys, "--model", archive, "--output", "jsonl", *good)
    code, batched, err = run(capsys, "--model", archive, "--output", "jsonl", "--batch_size", "3", *good)
    assert code == 0 and err == ""
    alone_records, batched_records = ([json.loads(x) for x in out.splitlines()] for out in (alone, batched))
    assert [r["text"] for r in batched_records] == [r["text"] for r in alone_records]
    assert [r["score"] for r in batched_records] == pytest.approx([r["score"] for r in alone_records], abs=1e-3)


def test_a_long_recording_whole_when_chunking_is_off(archive, folder, capsys) -> None:
    code, out, _ = run(capsys, "--model", archive, "--output", "jsonl", "--max_chunk_seconds", "0", folder["long"])
    assert code == 0 and "chunks" not in json.loads(out)


def test_no_progress_bar_unless_asked_or_on_a_terminal(archive, folder, capsys) -> None:
    good = [folder[k] for k in ("a", "b", "c")]
    _, _, err = run(capsys, "--model", archive, *good)  # stderr is not a terminal here
    assert err == ""
    _, _, err = run(capsys, "--model", archive, "--progress", folder["a"])  # one file: never
    assert err == ""


def test_the_progress_bar_counts_files_and_never_shares_a_line_with_an_error(archive, folder, capsys) -> None:
    files = [folder[k] for k in ("a", "notes", "b", "cut", "c")]
    code, out, err = run(capsys, "--model", archive, "--progress", *files)
    assert code == 1
    assert [line.split(" ")[0] for line in out.splitlines()] == [str(folder[k]) for k in ("a", "b", "c")]
    assert re.search(r"5/5 \[", err)  # the bar reached every file, failed ones included
    segments = [s for s in re.split(r"[\r\n]", err) if s.strip()]
    errors = [s for s in segments if "error" in s]
    assert [e.split(" ")[2] for e in errors] == ["unreadable", "truncated"]
    assert all(e.startswith("transcribe: error: ") and "/5" not in e for e in errors)
