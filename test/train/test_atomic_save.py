"""Atomic checkpoint writes: a write that dies midway (an error, or SIGKILL of the writing process) leaves the
previous checkpoint intact and loadable, and never a partial file under the final name. The SIGKILL case is run
without atomic_save too, to show that the same kill does truncate a plain torch.save checkpoint."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from echo_plugin import espnet_patches
from echo_plugin.train import atomic_save

REPO = Path(__file__).resolve().parents[2]

# Serialises a real checkpoint with torch's writer into a file that stalls after its first MiB, marks that
# point and sleeps until it is killed. "atomic": through atomic_save (the writer under the temporary name);
# "plain": straight onto the target, as ESPnet's unpatched torch.save would.
STALLING_WRITER = textwrap.dedent("""
    import io, sys, time
    from pathlib import Path
    import torch
    from echo_plugin import espnet_patches
    from echo_plugin.train import atomic_save

    target, marker, mode = sys.argv[1:]
    real_save = atomic_save._original_save

    class Stalling(io.FileIO):
        written = 0

        def write(self, data):
            n = super().write(data)
            Stalling.written += n
            if Stalling.written > 1 << 20:
                Path(marker).write_text(self.name)
                time.sleep(600)
            return n

    def stalling_save(obj, f, *args, **kwargs):
        with Stalling(f, "wb") as handle:
            real_save(obj, handle, *args, **kwargs)

    state = {"model": {f"w{i}": torch.full((256, 256), float(i)) for i in range(64)}, "epoch": 2}  # 16 MiB
    if mode == "atomic":
        atomic_save._original_save = stalling_save
        espnet_patches.use_atomic_torch_save()
        torch.save(state, target)
    else:
        stalling_save(state, target)
""")


def old_checkpoint(path: Path) -> bytes:
    atomic_save._original_save({"model": {"w": torch.arange(4.0)}, "epoch": 1}, path)
    return path.read_bytes()


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def kill_mid_write(tmp_path: Path, target: Path, mode: str) -> Path:
    """Run STALLING_WRITER, SIGKILL it once it has written a MiB; the path it was writing."""
    marker = tmp_path / "mid-write"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", STALLING_WRITER, str(target), str(marker), mode],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert proc.poll() is None, f"writer exited early:\n{proc.stdout.read().decode()}"
            assert time.time() < deadline, "writer never reached the middle of its write"
            time.sleep(0.05)
        time.sleep(0.1)  # the marker is written before the sleep: let it start
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return Path(marker.read_text())


def test_sigkill_mid_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pth"
    before = old_checkpoint(target)
    partial = kill_mid_write(tmp_path, target, "atomic")
    assert partial.parent == tmp_path and partial.name.startswith(".checkpoint.pth.") and partial.suffix == ".tmp"
    assert target.read_bytes() == before
    assert load(target)["epoch"] == 1
    assert partial.stat().st_size > 1 << 20  # the killed write was real and large, and only under its temp name
    with pytest.raises(Exception):  # noqa: B017 (torch raises by where the file was cut)
        load(partial)


def test_sigkill_mid_write_truncates_a_plain_torch_save(tmp_path: Path) -> None:
    """The control: the same kill without atomic_save leaves an unloadable checkpoint.pth."""
    target = tmp_path / "checkpoint.pth"
    before = old_checkpoint(target)
    assert kill_mid_write(tmp_path, target, "plain") == target
    assert target.read_bytes() != before
    with pytest.raises(Exception):  # noqa: B017 (torch raises by where the file was cut)
        load(target)


def test_writer_error_mid_write_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "checkpoint.pth"
    before = old_checkpoint(target)

    real_save = atomic_save._original_save

    def dies_midway(obj, f, *args, **kwargs):  # half the bytes reach the file, then the disk is full
        buffer = io.BytesIO()
        real_save(obj, buffer)
        Path(f).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic_save, "_original_save", dies_midway)
    with pytest.raises(OSError, match="No space left"):
        atomic_save.atomic_save({"model": {"w": torch.zeros(100_000)}, "epoch": 2}, target)
    assert target.read_bytes() == before and load(target)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]  # the partial temp file is removed


def test_a_finished_write_replaces_the_checkpoint_like_torch_save(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pth"
    old_checkpoint(target)
    atomic_save.atomic_save({"epoch": 2}, target)
    assert load(target) == {"epoch": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]
    plain = tmp_path / "plain.pth"
    atomic_save._original_save({"epoch": 2}, plain)
    assert target.stat().st_mode == plain.stat().st_mode  # umask permissions, not mkstemp's 0600


def test_a_symlinked_target_is_written_through(tmp_path: Path) -> None:
    real = tmp_path / "3epoch.pth"
    old_checkpoint(real)
    link = tmp_path / "valid.acc.best.pth"
    link.symlink_to(real.name)
    atomic_save.atomic_save({"epoch": 3}, link)
    assert link.is_symlink() and load(real) == {"epoch": 3}


def test_use_atomic_torch_save_routes_torch_save_and_leaves_buffers_alone(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch, "save", torch.save)  # restored after the test
    espnet_patches.use_atomic_torch_save()
    espnet_patches.use_atomic_torch_save()
    assert torch.save is atomic_save.atomic_save
    buffer = io.BytesIO()
    torch.save({"epoch": 4}, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=False) == {"epoch": 4}
    torch.save({"epoch": 5}, str(tmp_path / "x.pth"))
    assert load(tmp_path / "x.pth") == {"epoch": 5}
