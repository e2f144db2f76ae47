"""Kaldi-style job dispatch for the recipes: ``JOB=1:N LOG COMMAND...``.

Runs N copies of a command with ``JOB`` replaced by 1..N, each logging to its
own file, and fails (showing the failing log's tail) if any copy fails.

    python -m echo_plugin.recipe.launch --backend local JOB=1:4 exp/log/dec.JOB.log \
        python -m echo_plugin.bin.asr_inference --key_file keys.JOB.scp ...

Backends: ``local`` (subprocesses on this machine, at most ``--max_jobs`` at a
time) and ``slurm`` (one ``sbatch --wait --array=1-N`` job array; ``--gpu N``
asks for N GPUs per task, ``--slurm_opts`` passes partition/time/account).
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JOB_RANGE = re.compile(r"^(?P<var>[A-Za-z_]+)=(?P<first>\d+):(?P<last>\d+)$")


def substitute(words: list[str], var: str, index: int) -> list[str]:
    """Replace the job variable in every word (``keys.JOB.scp`` -> ``keys.3.scp``)."""
    pattern = re.compile(rf"\b{re.escape(var)}\b")
    return [pattern.sub(str(index), w) for w in words]


def write_header(log: Path, command: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"# {command}\n# Started at {time.ctime()}\n", encoding="utf-8")


def tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_local(var: str, indices: range, log_pattern: str, words: list[str], max_jobs: int,
              time_pattern: str | None) -> list[int]:
    """Run the jobs here; returns the indices that failed."""
    pending = list(indices)
    running: dict[int, tuple[subprocess.Popen, Path, float, object]] = {}
    failed: list[int] = []
    while pending or running:
        while pending and len(running) < max_jobs:
            index = pending.pop(0)
            log = Path(substitute([log_pattern], var, index)[0])
            command = shlex.join(substitute(words, var, index))
            write_header(log, command)
            handle = open(log, "a", encoding="utf-8")
            proc = subprocess.Popen(["bash", "-c", command], stdout=handle, stderr=subprocess.STDOUT)
            running[index] = (proc, log, time.time(), handle)
        time.sleep(0.2)
        for index, (proc, _log, start, handle) in list(running.items()):
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == 0:
                continue
            proc.returncode = code = os.waitstatus_to_exitcode(status)
            elapsed = time.time() - start
            # ru_maxrss (KiB on Linux): the peak resident memory of the job's largest process
            handle.write(f"# Accounting: time={elapsed:.2f} max_rss_mb={usage.ru_maxrss / 1024:.1f}\n"
                         f"# Ended (code {code}) at {time.ctime()}\n")
            handle.close()
            if time_pattern:
                Path(substitute([time_pattern], var, index)[0]).write_text(f"{elapsed:.3f}\n")
            if code != 0:
                failed.append(index)
            del running[index]
    return failed


def run_slurm(var: str, indices: range, log_pattern: str, words: list[str], gpus: int,
              slurm_opts: str, time_pattern: str | None) -> list[int]:
    """Submit one job array and wait for it; returns the indices that failed."""
    task_var = "${SLURM_ARRAY_TASK_ID}"
    command = " ".join(shlex.quote(w).replace(f"__{var}__", task_var)
                       for w in substitute_marker(words, var))
    log = substitute_marker([log_pattern], var)[0].replace(f"__{var}__", "%a")
    timer = ""
    if time_pattern:
        timer_path = substitute_marker([time_pattern], var)[0].replace(f"__{var}__", task_var)
        timer = f'echo "$SECONDS" > "{timer_path}"\n'
    script = (
        "#!/usr/bin/env bash\n"
        f"#SBATCH --array={indices.start}-{indices.stop - 1}\n"
        f"#SBATCH --output={log}\n"
        + (f"#SBATCH --gres=gpu:{gpus}\n" if gpus > 0 else "")
        + f"cd {shlex.quote(os.getcwd())}\n"
        + f"echo \"# {command}\"\nSECONDS=0\n{command}\ncode=$?\n{timer}exit $code\n"
    )
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as handle:
        handle.write(script)
    try:
        result = subprocess.run(["sbatch", "--wait", *shlex.split(slurm_opts), handle.name])
    finally:
        os.unlink(handle.name)
    return [] if result.returncode == 0 else list(indices)


def substitute_marker(words: list[str], var: str) -> list[str]:
    """Replace the job variable by a marker that survives shell quoting."""
    pattern = re.compile(rf"\b{re.escape(var)}\b")
    return [pattern.sub(f"__{var}__", w) for w in words]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["local", "slurm"], default="local")
    parser.add_argument("--max_jobs", type=int, default=0, help="local: parallel jobs (0 = all)")
    parser.add_argument("--gpu", type=int, default=0, help="GPUs per job (slurm: --gres)")
    parser.add_argument("--slurm_opts", default=os.environ.get("ECHO_SLURM_OPTS", ""),
                        help="extra sbatch options (default: $ECHO_SLURM_OPTS)")
    parser.add_argument("--time_file", default=None, help="write each job's seconds here (JOB substituted)")
    parser.add_argument("job_range", help="JOB=1:N (or a single log file for one job)")
    parser.add_argument("log", help="log file, JOB substituted")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    match = JOB_RANGE.match(args.job_range)
    if match is None:  # Kaldi's short form: LOG COMMAND... for a single job
        var, indices = "JOB", range(1, 2)
        log_pattern, words = args.job_range, [args.log, *args.command]
    else:
        var = match["var"]
        indices = range(int(match["first"]), int(match["last"]) + 1)
        log_pattern, words = args.log, args.command
    if not words:
        parser.error("no command given")

    if args.backend == "local":
        failed = run_local(var, indices, log_pattern, words, args.max_jobs or len(indices), args.time_file)
    else:
        failed = run_slurm(var, indices, log_pattern, words, args.gpu, args.slurm_opts, args.time_file)
    for index in failed:
        log = substitute([log_pattern], var, index)[0]
        print(f"launch: job {index}/{len(indices)} failed; log {log}:\n{tail(Path(log))}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
