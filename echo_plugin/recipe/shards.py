"""Work split into shards, one job each, through the recipe's job backend.

    results = run_shards(format_shard, tasks, work_dir, "dump/log/format_train.JOB.log", cmd)

writes each task (a JSON-able dict) to ``<work_dir>/task.<j>.json`` and runs, as Kaldi's recipes do,

    <cmd> JOB=1:N <log> python -m echo_plugin.recipe.shards <work_dir>/task.JOB.json

``cmd`` is cmd.sh's ``${train_cmd}`` (:mod:`echo_plugin.recipe.launch`: processes on this machine, or one
Slurm job array with the CPU job class's resources), by default the local launcher. Each job imports the
task's function (its module and name, written into the task file by :func:`run_shards` from the function
itself), calls it with the task and writes what it returns (JSON) to ``task.<j>.out.json``, renamed into
place when complete. :func:`run_shards` returns those results in shard order; when a job fails it raises
ShardError naming the job's log (the launcher has printed its tail).

The per-file work of stage 2 (format_data's checks and speed perturbation with one file per utterance) stays on
this machine in a process pool instead, sized by :func:`local_pool_size`: ``--nj``, but at most this machine's
cores (under cmd_backend=slurm ``--nj`` counts the cluster's array tasks, 32 by default, and this is the head
node). The archive formats, the large-corpus path, send that work through ``cmd`` as above.
"""
from __future__ import annotations

import importlib
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

Item = TypeVar("Item")
LOCAL_CMD = f"{shlex.quote(sys.executable)} -m echo_plugin.recipe.launch --backend local"


class ShardError(RuntimeError):
    """A shard's job failed; the message names its log."""


def split(items: Sequence[Item], n: int) -> list[list[Item]]:
    """``items`` in at most ``n`` contiguous shards of near-equal size (none empty), as asr.sh splits keys."""
    n = max(1, min(n, len(items)))
    return [list(items[len(items) * j // n: len(items) * (j + 1) // n]) for j in range(n)]


def local_pool_size(nj: int, items: int, who: str) -> int:
    """Processes of a local pool for ``items`` work items, ``nj`` asked for: at most the items and the cores this
    process may use (os.sched_getaffinity); a cap by the cores is logged on stdout, as ``who``."""
    wanted = max(1, min(nj, items))
    cores = len(os.sched_getaffinity(0))
    if cores >= wanted:
        return wanted
    processes, core_s = ("process", "core") if cores == 1 else ("processes", "cores")
    print(f"{who}: {cores} local {processes} (this machine's {cores} {core_s}), not --nj {nj}: the "
          "per-file audio is worked on here; --audio_format wav.ark or flac.ark sends it to cmd.sh's jobs",
          flush=True)  # flushed before the pool forks: a child would print a buffered line again
    return cores


def importable_module(function: Callable) -> str:
    """The module a job imports to find ``function`` (a module run as ``python -m NAME`` is ``__main__``)."""
    module = function.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is None:
            raise ValueError(f"{function.__qualname__} is in a script, not a module a job can import")
        module = spec.name
    return module


def run_shards(function: Callable[[dict], Any], tasks: list[dict], work_dir: Path, log_pattern: str,
               cmd: str | None = None) -> list[Any]:
    """Run ``function(task)`` for every task, one job each (``cmd`` JOB=1:N, module docstring); their results.

    ``log_pattern`` names each job's log with ``JOB`` standing for its number."""
    if not tasks:
        return []
    work_dir.mkdir(parents=True, exist_ok=True)
    target = f"{importable_module(function)}:{function.__qualname__}"
    for j, task in enumerate(tasks, start=1):
        (work_dir / f"task.{j}.json").write_text(json.dumps({"function": target, "task": task}), encoding="utf-8")
        (work_dir / f"task.{j}.out.json").unlink(missing_ok=True)
    words = [*shlex.split(cmd or LOCAL_CMD), f"JOB=1:{len(tasks)}", log_pattern,
             sys.executable, "-m", __name__, str(work_dir.absolute() / "task.JOB.json")]
    if subprocess.run(words).returncode != 0:
        raise ShardError(f"{len(tasks)} job(s) of {target}: one failed (its log: {log_pattern}, JOB its number)")
    results = []
    for j in range(1, len(tasks) + 1):
        out = work_dir / f"task.{j}.out.json"
        if not out.is_file():
            raise ShardError(f"job {j} of {target} ended without its results {out} (log: "
                             f"{log_pattern.replace('JOB', str(j))})")
        results.append(json.loads(out.read_text(encoding="utf-8")))
    return results


def run_task(task_file: Path) -> None:
    """Do one task file's work and write its results beside it (complete, or not at all)."""
    spec = json.loads(task_file.read_text(encoding="utf-8"))
    module, _, name = spec["function"].partition(":")
    result = getattr(importlib.import_module(module), name)(spec["task"])
    out = task_file.with_name(task_file.name.removesuffix(".json") + ".out.json")
    partial = out.with_name(out.name + ".tmp")
    partial.write_text(json.dumps(result), encoding="utf-8")
    os.replace(partial, out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m echo_plugin.recipe.shards TASK_FILE", file=sys.stderr)
        return 2
    run_task(Path(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
