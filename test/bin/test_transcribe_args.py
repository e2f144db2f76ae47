"""The transcribe CLI's arguments and model archive with a tiny random packed model: each bad argument file or
damaged archive stops the run with one stderr line naming it (no traceback), a temporary unpacked model is removed
when the process ends, and the chunk limit comes from the flag, else the decoding options, else 20 s."""
from __future__ import annotations

import gc
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from echo_plugin.bin.transcribe import main
from test.inference.tiny_pack import FS, babble, pack_tiny, write_wav

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return pack_tiny(tmp_path_factory.mktemp("tiny_args"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_wav(tmp_path_factory.mktemp("clip") / "a.wav", babble(1.2, 1))


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """25 s: bursts of 2.5 s and pauses of 0.5 s, so every limit from 4 s up cuts at pauses."""
    gap = (0.002 * np.random.default_rng(0).standard_normal(int(0.5 * FS))).astype(np.float32)
    parts = [p for k in range(9) for p in (babble(2.5, 20 + k), gap)]
    return write_wav(tmp_path_factory.mktemp("long") / "long.wav", np.concatenate(parts)[: 25 * FS])


def repack(archive: Path, out: Path, replace: dict[str, bytes]) -> Path:
    """A copy of ``archive`` whose members ending in a key of ``replace`` hold its bytes instead."""
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            data = next((v for k, v in replace.items() if name.endswith(k)), None)
            target.writestr(name, source.read(name) if data is None else data)
    return out


def member(archive: Path, suffix: str) -> bytes:
    with zipfile.ZipFile(archive) as source:
        return source.read(next(n for n in source.namelist() if n.endswith(suffix)))


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error(err: str) -> str:
    """The single stderr line of a refused run (asserting there is exactly one, without a traceback)."""
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("transcribe: error: ")
    return lines[0][len("transcribe: error: "):]


def test_a_missing_or_unreadable_decode_config_is_one_line(archive, clip, tmp_path, capsys) -> None:
    code, out, err = run(capsys, "--model", archive, "--decode_config", tmp_path / "nope.yaml", clip)
    assert code == 1 and out == ""
    assert one_error(err) == f"--decode_config {tmp_path / 'nope.yaml'}: no such file"
    for name, data, why in [("latin1.yaml", b"beam_size: 2 # \xe9\n", "'utf-8' codec can't decode byte 0xe9"),
                            ("broken.yaml", b"beam_size: [\n", "while parsing a flow node"),
                            ("list.yaml", b"- 1\n- 2\n", "holds a list, not decoding options")]:
        (tmp_path / name).write_bytes(data)
        code, out, err = run(capsys, "--model", archive, "--decode_config", tmp_path / name, clip)
        assert code == 1 and out == ""
        assert one_error(err).startswith(f"--decode_config {tmp_path / name}: ") and why in err
    code, _, err = run(capsys, "--model", archive, "--decode_config", tmp_path, clip)  # a directory
    assert code == 1 and one_error(err).startswith(f"--decode_config {tmp_path}: cannot read it: ")


def test_a_decoding_option_espnet_does_not_know_is_one_line(archive, clip, tmp_path, capsys) -> None:
    (tmp_path / "typo.yaml").write_text("beam_sise: 3\n")
    code, out, err = run(capsys, "--model", archive, "--decode_config", tmp_path / "typo.yaml", clip)
    assert code == 1 and out == ""
    assert one_error(err).startswith("decoding option(s) beam_sise given as overrides (transcribe: --decode_config)")


def test_a_bad_wav_scp_is_one_line(archive, clip, tmp_path, capsys) -> None:
    scp = tmp_path / "wav.scp"
    scp.write_bytes(f"u1 {clip}\nu2 caf\xe9.wav\n".encode("latin-1"))
    code, out, err = run(capsys, "--model", archive, "--wav_scp", scp)
    assert code == 1 and out == ""
    assert one_error(err) == (f"--wav_scp {scp}:2: utterance 'u2': not valid UTF-8 (byte 0xe9 at byte 7 of the "
                              "line); save the file as UTF-8")
    scp.write_text(f"u1 {clip}\nu2\n")
    code, _, err = run(capsys, "--model", archive, "--wav_scp", scp)
    assert code == 1 and one_error(err) == f"--wav_scp {scp}:2: expected '<utt id> <audio path>', got 'u2'"
    code, _, err = run(capsys, "--model", archive, "--wav_scp", tmp_path / "gone.scp")
    assert code == 1 and one_error(err) == f"--wav_scp {tmp_path / 'gone.scp'}: no such file"


def test_a_damaged_model_archive_is_one_line(archive, clip, tmp_path, capsys) -> None:
    cut = tmp_path / "cut.zip"
    cut.write_bytes(archive.read_bytes()[:2000])
    code, out, err = run(capsys, "--model", cut, clip)
    assert code == 1 and out == ""
    assert one_error(err) == f"cannot unpack model archive {cut}: File is not a zip file"
    no_meta = tmp_path / "no_meta.zip"
    with zipfile.ZipFile(no_meta, "w") as target:
        target.writestr("model.pth", b"x")
    code, _, err = run(capsys, "--model", no_meta, clip)
    assert code == 1 and one_error(err) == f"cannot unpack model archive {no_meta}: Format error: not found meta.yaml"


def test_weights_that_do_not_match_the_config_are_one_line_naming_the_keys(archive, clip, tmp_path, capsys) -> None:
    state = torch.load(io.BytesIO(member(archive, "model.pth")), weights_only=True)
    dropped = sorted(state)[0]
    state["encoder.extra.weight"] = state.pop(dropped)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    renamed = repack(archive, tmp_path / "renamed.zip", {"model.pth": buffer.getvalue()})
    code, out, err = run(capsys, "--model", renamed, clip)
    assert code == 1 and out == ""
    line = one_error(err)
    weights = f"{archive.parent.relative_to('/')}/model.pth"  # its name in the archive
    assert line.startswith(f"model archive {renamed}: {weights} does not match the model from its config: ")
    assert f"missing ['{dropped}'] (1)" in line and "unexpected ['encoder.extra.weight'] (1)" in line


def test_an_archive_packed_with_absolute_paths_is_read_from_its_unpacked_copy(archive, tmp_path) -> None:
    """pack_tiny packs absolute paths (ESPnet's unpack then names the packing dir's own files): the model reads
    the unpacked files and leaves the packing dir's config as it was."""
    from echo_plugin.inference.transcriber import load

    packed_config = archive.with_name("config.yaml")
    before = packed_config.read_text()
    model = load(archive, cache_dir=tmp_path / "unpacked")
    assert model.train_config.is_relative_to(tmp_path / "unpacked")
    assert packed_config.read_text() == before
    assert str(tmp_path / "unpacked") in model.train_config.read_text()  # its stats file: the unpacked copy


def test_nbest_under_1_is_refused(archive, clip, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--model", str(archive), "--nbest", "0", str(clip)])
    assert exit_.value.code == 2
    assert "--nbest must be at least 1, got 0" in capsys.readouterr().err


def chunk_ends(out: str) -> list[float]:
    return [c["end"] - c["start"] for c in json.loads(out).get("chunks", [])]


def test_the_packed_chunk_limit_is_used_and_the_flag_overrides_it(archive, long_clip, tmp_path, capsys) -> None:
    decode = member(archive, "decode.yaml") + b"max_chunk_seconds: 6\n"
    six = repack(archive, tmp_path / "six.zip", {"decode.yaml": decode})
    code, out, _ = run(capsys, "--model", six, "--output", "jsonl", long_clip)
    assert code == 0
    packed = chunk_ends(out)
    assert len(packed) >= 5 and max(packed) <= 6.0  # 25 s at most 6 s a chunk
    _, out, _ = run(capsys, "--model", archive, "--output", "jsonl", long_clip)  # nothing packed: 20 s
    assert 2 <= len(chunk_ends(out)) <= 3 and max(chunk_ends(out)) > 6.0
    _, out, _ = run(capsys, "--model", six, "--output", "jsonl", "--max_chunk_seconds", "12", long_clip)
    assert max(chunk_ends(out)) <= 12.0 and max(chunk_ends(out)) > 6.0 and len(chunk_ends(out)) < len(packed)
    _, out, _ = run(capsys, "--model", six, "--output", "jsonl", "--max_chunk_seconds", "0", long_clip)
    assert "chunks" not in json.loads(out)
    (tmp_path / "ten.yaml").write_text("max_chunk_seconds: 10\n")  # a decoding config over the packed one
    _, out, _ = run(capsys, "--model", six, "--output", "jsonl", "--decode_config", tmp_path / "ten.yaml", long_clip)
    assert 6.0 < max(chunk_ends(out)) <= 10.0


def test_the_chunk_limit_is_no_option_of_espnets_and_must_be_a_number(archive, tmp_path) -> None:
    from echo_plugin.inference.transcriber import ModelError, load

    six = repack(archive, tmp_path / "six.zip", {"decode.yaml": member(archive, "decode.yaml")
                                                 + b"max_chunk_seconds: 6\n"})
    model = load(six, cache_dir=tmp_path / "unpacked")
    assert model.chunking.max_seconds == 6.0 and "max_chunk_seconds" not in model.options
    assert model.options["beam_size"] == 2  # the rest of the packed options still reach Speech2Text
    assert load(six, {"max_chunk_seconds": 0}, cache_dir=tmp_path / "unpacked").chunking is None
    with pytest.raises(ModelError, match=r"max_chunk_seconds: a number of seconds >= 0 \(0: never split\), got '6s'"):
        load(six, {"max_chunk_seconds": "6s"}, cache_dir=tmp_path / "unpacked")


def test_a_temporary_unpacked_model_goes_with_its_transcriber(archive, tmp_path, monkeypatch) -> None:
    from echo_plugin.inference.transcriber import load

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    model = load(archive)
    made = list(tmp_path.glob("echo_model_*"))
    assert len(made) == 1 and any(made[0].rglob("model.pth"))
    del model
    gc.collect()
    assert not made[0].exists()


def test_a_process_that_loads_and_exits_leaves_no_unpacked_model(archive, clip, tmp_path) -> None:
    """The deployed path: one process, the model kept to the end; its unpacked copy is removed at exit."""
    script = ("import sys, tempfile; from pathlib import Path; from echo_plugin.inference.transcriber import load;"
              f"model = load({str(archive)!r}); print(model.transcribe({str(clip)!r}).text is not None, "
              "len(list(Path(tempfile.gettempdir()).glob('echo_model_*'))))")
    env = {**os.environ, "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, env=env,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "1"]  # while it ran: the model decoded from its unpacked copy
    assert list(tmp_path.glob("echo_model_*")) == []
