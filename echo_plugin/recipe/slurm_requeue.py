"""A launcher's Slurm job that runs again after a requeue (``scontrol requeue``, preemption, a node failure).

Slurm reruns a requeued batch job's script from its start, on any node, with ``SLURM_RESTART_COUNT`` set to the
number of restarts. The launcher (echo_plugin.recipe.launch) submits its jobs with ``--open-mode=append`` (else
Slurm empties the log as the rerun starts) and begins each job's script with ``restart_line``: on a restart,

* the earlier attempts' output moves out of the log, ESPnet's way (``train.log`` -> ``train.1.log``, an older
  ``train.1.log`` -> ``train.2.log``, ...), and the log is emptied in place (Slurm holds it open, appending):
  the log holds this attempt alone, and its end line is the one the submitting launcher reads;
* the ``file://`` rendezvous file of a multi-node training is removed: the stopped attempt left it behind,
  and torch's file store needs a new one.

The rerun runs the same command: a training continues from its last checkpoint where the command resumes (asr.sh
passes ``--resume true``: ESPnet's trainer loads ``checkpoint.pth``, the epochs after the one it holds follow).

    python -m echo_plugin.recipe.slurm_requeue LOG [INIT_FILE...]
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from pathlib import Path

RESTART_NOTE = re.compile(r"^# Slurm restart (\d+) of job (\S+): the earlier attempt's log is (.+)$", re.M)


def numbered(log: Path, number: int) -> Path:
    """ESPnet's name of a log's rotated copy: train.log, 2 -> train.2.log."""
    return log.with_name(f"{log.stem}.{number}{log.suffix}")


def rotate(log: Path) -> Path | None:
    """Copy LOG to its ``.1`` copy (each older copy moving one number up) and empty LOG in place.

    In place, not renamed: Slurm keeps writing to the file it opened (its own error lines). Returns the copy,
    None where LOG is missing or empty (nothing to keep).
    """
    if not log.is_file() or log.stat().st_size == 0:
        return None
    pattern = re.compile(rf"{re.escape(log.stem)}\.(\d+){re.escape(log.suffix)}")
    older = sorted((int(m[1]) for m in map(pattern.fullmatch, os.listdir(log.parent)) if m), reverse=True)
    for number in older:
        numbered(log, number).replace(numbered(log, number + 1))
    shutil.copyfile(log, numbered(log, 1))
    os.truncate(log, 0)
    return numbered(log, 1)


def init_files(words: list[str]) -> list[str]:
    """The ``file://`` rendezvous files a command names (``--dist_init_method file:///exp/.dist_init_x``)."""
    found = []
    for i, word in enumerate(words):
        value = word.partition("=")[2] if word.startswith("--dist_init_method=") else (
            words[i + 1] if word == "--dist_init_method" and i + 1 < len(words) else "")
        if value.startswith("file://"):
            found.append(value[len("file://"):])
    return found


def restart_line(log_words: str, command: list[str]) -> str:
    """The job script's line that, on a restart only, rotates the log (a shell word or words) and removes the
    command's rendezvous files."""
    task = [sys.executable, "-m", "echo_plugin.recipe.slurm_requeue"]
    files = init_files(command)
    return (f'[ "${{SLURM_RESTART_COUNT:-0}}" = 0 ] || {shlex.join(task)} {log_words}'
            + (f" {shlex.join(files)}" if files else "") + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m echo_plugin.recipe.slurm_requeue LOG [INIT_FILE...]", file=sys.stderr)
        return 2
    log, files = Path(argv[0]), argv[1:]
    copy = rotate(log)
    for name in files:
        Path(name).unlink(missing_ok=True)
    # the first line of this attempt's log (the job's output is LOG, which now starts again)
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID", "?")
    task = f"_{os.environ['SLURM_ARRAY_TASK_ID']}" if "SLURM_ARRAY_TASK_ID" in os.environ else ""
    print(f"# Slurm restart {os.environ.get('SLURM_RESTART_COUNT', '?')} of job {job}{task}: "
          f"the earlier attempt's log is {copy or '(none)'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
