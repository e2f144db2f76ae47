"""Running a copy of a recipe under a temporary dir, for recipe tests."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FSDD = REPO.parent / "shared" / "data" / "fsdd"
FIXTURES = REPO / "test" / "fixtures"
TINY_CONFIG = "conf/train_asr_echo_tiny.yaml"
FAST_DECODE = "conf/decode_fast.yaml"


def copy_recipe(dest: Path, corpus: str = "fsdd") -> Path:
    """Copy ``egs/<corpus>/asr1`` to ``dest`` (shared runner linked), plus the tiny configs."""
    src = REPO / "egs" / corpus / "asr1"
    root = dest / "asr1"
    root.mkdir(parents=True)
    for entry in src.iterdir():
        if entry.is_symlink():
            (root / entry.name).symlink_to(entry.resolve())
        elif entry.name in {"run.sh", "local", "conf"}:
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, root / entry.name)
    shutil.copy2(FIXTURES / "train_asr_echo_tiny.yaml", root / TINY_CONFIG)
    shutil.copy2(FIXTURES / "decode_fast.yaml", root / FAST_DECODE)
    return root


def recipe_env() -> dict[str, str]:
    return {**os.environ, "ECHO_ROOT": str(REPO), "OMP_NUM_THREADS": "1",
            "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}


def run_recipe(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``./run.sh`` with the tiny configs; on failure the output is in the assertion."""
    result = subprocess.run(
        ["./run.sh", "--asr_config", TINY_CONFIG, "--inference_config", FAST_DECODE, *args],
        cwd=root, env=recipe_env(), capture_output=True, text=True,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def epoch_results(train_log: str) -> dict[int, dict[str, dict[str, float]]]:
    """ESPnet's per-epoch summary lines of a train.log: {epoch: {"train"|"valid"|...: {key: number}}}.

    A line reads ``3epoch results: [train] ..., loss=2.910, ..., [valid] ..., acc=0.857, ...``.
    """
    results: dict[int, dict[str, dict[str, float]]] = {}
    for epoch, summary in re.findall(r"(\d+)epoch results: (.*)", train_log):
        results[int(epoch)] = {
            section: {key: float(value) for key, value in re.findall(r"(\w+)=([-+0-9.e]+)", body)}
            for section, body in re.findall(r"\[(\w+)\] (.*?)(?=, \[|$)", summary)}
    return results
