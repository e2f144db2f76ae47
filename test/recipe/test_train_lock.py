"""asr.sh stage 5 holds an exclusive lock on exp/<tag>/.lock for the training: a second training on the same exp
dir refuses at once with a clear message and changes nothing there. No prepared data is needed: the lock is the
first thing stage 5 does, and the "training" of the second test is a stand-in (asr.sh --python) that waits."""
from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

import pytest

from test.recipe.recipe_helpers import TINY_CONFIG, copy_recipe, recipe_env

TAG_DIR = Path("exp") / "asr_train_asr_echo_tiny"  # the tiny config's default asr_tag
MESSAGE = f"ERROR: {TAG_DIR} is in use by another training (lock {TAG_DIR}/.lock)"

# asr.sh --python: the training (-m echo_plugin.bin.asr_train) marks its start and waits for a release file;
# everything else is the real python.
STAND_IN = """#!/usr/bin/env bash
if [ "$1 $2" = "-m echo_plugin.bin.asr_train" ]; then
    touch "${MARK_DIR}/started"
    for _ in $(seq 1200); do [ -e "${MARK_DIR}/release" ] && exit 0; sleep 0.1; done
    exit 1
fi
exec python "$@"
"""


@pytest.fixture()
def recipe(tmp_path: Path) -> Path:
    root = copy_recipe(tmp_path)
    stand_in = tmp_path / "python_stand_in"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    return root


def stage5(root: Path) -> list[str]:
    return ["./run.sh", "--asr_config", TINY_CONFIG, "--stage", "5", "--stop_stage", "5",
            "--feats_normalize", "none", "--python", str(root.parent / "python_stand_in")]


def env(root: Path) -> dict[str, str]:
    return {**recipe_env(), "MARK_DIR": str(root.parent)}


def snapshot(directory: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every entry under directory (itself included): its mtime and, for files, its bytes."""
    entries = {".": (directory.stat().st_mtime_ns, None)}
    for path in sorted(directory.rglob("*")):
        entries[str(path.relative_to(directory))] = (
            path.stat().st_mtime_ns, path.read_bytes() if path.is_file() else None)
    return entries


def lock_is_free(lock: Path) -> bool:
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def test_a_held_lock_refuses_stage_5_and_changes_nothing(recipe: Path) -> None:
    exp = recipe / TAG_DIR
    exp.mkdir(parents=True)
    (exp / "checkpoint.pth").write_bytes(b"the running training's checkpoint")
    (exp / "train.log").write_text("epoch 3 of the running training\n")
    (exp / "asr_config_path").write_text("conf/tuning/other.yaml\n")
    with (exp / ".lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        before = snapshot(recipe / "exp")
        time.sleep(0.01)  # a rewrite would show in the mtimes
        result = subprocess.run(stage5(recipe), cwd=recipe, env=env(recipe), capture_output=True, text=True)
        assert result.returncode != 0
        assert MESSAGE in result.stderr, result.stdout + result.stderr
        assert len(result.stderr.strip().splitlines()) == 1  # the message, no traceback
        assert snapshot(recipe / "exp") == before
        assert not (recipe.parent / "started").exists()
    # the same command with nobody holding the lock gets past it and trains (the stand-in returns at once)
    (recipe.parent / "release").touch()
    result = subprocess.run(stage5(recipe), cwd=recipe, env=env(recipe), capture_output=True, text=True)
    assert "in use by another training" not in result.stderr
    assert (recipe.parent / "started").exists()
    assert lock_is_free(exp / ".lock")


def test_a_running_training_holds_the_lock_until_it_ends(recipe: Path) -> None:
    marks = recipe.parent
    first = subprocess.Popen(stage5(recipe), cwd=recipe, env=env(recipe),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (marks / "started").exists():
            assert first.poll() is None, "the first stage 5 stopped before its training"
            assert time.time() < deadline, "the first training never started"
            time.sleep(0.1)
        assert not lock_is_free(recipe / TAG_DIR / ".lock")
        second = subprocess.run(stage5(recipe), cwd=recipe, env=env(recipe), capture_output=True, text=True,
                                timeout=120)
        assert second.returncode != 0 and MESSAGE in second.stderr, second.stdout + second.stderr
        assert first.poll() is None  # the refusal did not disturb the running training
    finally:
        (marks / "release").touch()
        try:
            first.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(first.pid, 9)
            raise
    assert lock_is_free(recipe / TAG_DIR / ".lock")
