"""Kaldi-style job dispatch for the recipes: ``[options] JOB=1:N LOG COMMAND...``.

Runs N copies of a command with ``JOB`` replaced by 1..N, each logging to its
own file, and fails (naming the failing job's log; local: with its tail) if any copy fails.

    python -m echo_plugin.recipe.launch --backend local JOB=1:4 exp/log/dec.JOB.log \
        python -m echo_plugin.bin.asr_inference --key_file keys.JOB.scp ...

Backends: ``local`` (subprocesses on this machine, at most ``--max_jobs`` at a
time) and ``slurm`` (one ``sbatch --wait`` job array, ``--array=1-N``; each task
logs its end line, from which a failed task is named, one line each; interrupted,
the launcher cancels the job). A job's resources are options in Kaldi's form,
``--gpu 1 --mem 4G --time 4:00:00 --num_threads 2 --name x`` (cmd.sh gives each
kind of job its own), which a Slurm config in the format of ESPnet's
``conf/slurm.conf`` turns into sbatch options (``option gpu=* --gres=gpu:$0``;
``--config``, default ``$ECHO_SLURM_CONF``, else the package's slurm.conf, which
egs/TEMPLATE/asr1/conf/slurm.conf links to);
``--slurm_opts`` (default ``$ECHO_SLURM_OPTS``) adds sbatch options to every job.

Requeued (``scontrol requeue``, preemption; ``--requeue`` asks Slurm for it, cmd.sh gives it to training), a job
runs again from its start: its log holds that last attempt, the earlier ones rotated to ``LOG``'s ``.1``, ``.2``
... (echo_plugin.recipe.slurm_requeue), and the launcher waits on through the rerun, reporting its end.

It is also the ``--cmd`` of ESPnet's distributed launcher (``espnet2.bin.launch``,
asr.sh stage 5), and takes the forms that launcher gives its cmd: one job without a
JOB range (``--gpu N LOG COMMAND...``), ``--name`` and ``--num_threads`` (Slurm:
``--job-name``, ``--cpus-per-task``; the local backend leaves threads to
OMP_NUM_THREADS) and, for several nodes,

    --num_nodes M LOG mpirun -np M COMMAND... --dist_launcher mpi ...   (any cmd not named slurm.pl)
    --num_nodes M LOG srun --export=ALL COMMAND... --dist_launcher slurm ...

Both run M copies of COMMAND, one per node, with ESPnet's Slurm rank discovery
(``--dist_launcher slurm``: ESPnet's ``mpi`` discovery needs mpi4py and an MPI):
``slurm`` submits one ``sbatch --nodes=M --ntasks-per-node=1`` job that runs
``srun --kill-on-bad-exit=1 COMMAND...``; ``local`` stands in for M nodes with M processes on this
machine, each given the variables srun sets for one task per node (SLURM_PROCID,
SLURM_NTASKS, SLURM_NODEID, SLURM_LOCALID, SLURM_STEP_NUM_NODES, SLURM_STEP_NODELIST)
and, with ``--gpu N``, its own N of the visible GPUs (CUDA_VISIBLE_DEVICES). All
copies log to LOG; if one fails the others are stopped.

The Slurm backend assumes what Kaldi's slurm.pl does: the nodes see this directory
and this Python at the same paths (jobs run ``cd $PWD`` and this interpreter).
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from echo_plugin.recipe.slurm_requeue import RESTART_NOTE, restart_line

JOB_RANGE = re.compile(r"^(?P<var>[A-Za-z_]+)=(?P<first>\d+):(?P<last>\d+)$")
# the launcher words of ESPnet's multi-node forms
NODE_LAUNCHERS = ("mpirun", "srun")


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


def split_node_launcher(words: list[str], num_nodes: int | None) -> tuple[str, list[str], list[str], int]:
    """``mpirun -np M CMD...`` or ``srun OPTS CMD...`` -> (launcher, its options, CMD..., nodes).

    CMD's ``--dist_launcher mpi`` becomes ``slurm``: every copy is started as srun starts one task per node.
    """
    launcher, rest = Path(words[0]).name, words[1:]
    options: list[str] = []
    np_given: int | None = None
    while rest and rest[0].startswith("-"):
        word = rest.pop(0)
        if launcher == "mpirun" and word in ("-np", "-n", "--np", "-c"):
            if not rest or not rest[0].isdigit():
                raise ValueError(f"mpirun {word} needs a number")
            np_given = int(rest.pop(0))
        elif word.startswith("--") and (launcher == "srun" or "=" in word):
            options.append(word)  # srun's --export=ALL and the like (each one word)
        else:
            raise ValueError(f"unsupported {launcher} option {word!r} (ESPnet's launch gives mpirun -np M, "
                             "srun --export=ALL)")
    if not rest:
        raise ValueError(f"no command after {launcher}")
    nodes = num_nodes if num_nodes is not None else (np_given or 1)
    if np_given is not None and np_given != nodes:
        raise ValueError(f"mpirun -np {np_given} with --num_nodes {nodes}: one process per node is supported")
    command = list(rest)
    for i, word in enumerate(command):
        if word == "--dist_launcher=mpi":
            command[i] = "--dist_launcher=slurm"
        elif word == "mpi" and i > 0 and command[i - 1] == "--dist_launcher":
            command[i] = "slurm"
    return launcher, options, command, nodes


def rank_env(rank: int, nodes: int, gpus: int, host: str, visible: list[str] | None) -> dict[str, str]:
    """What srun sets for task ``rank`` of a one-task-per-node step, plus its share of the GPUs."""
    env = {
        "SLURM_PROCID": str(rank), "SLURM_NTASKS": str(nodes), "SLURM_NPROCS": str(nodes),
        "SLURM_NODEID": str(rank), "SLURM_LOCALID": "0", "SLURM_NNODES": str(nodes),
        "SLURM_JOB_NUM_NODES": str(nodes), "SLURM_STEP_NUM_NODES": str(nodes), "SLURM_STEP_NUM_TASKS": str(nodes),
        "SLURM_STEP_NODELIST": host, "SLURM_JOB_NODELIST": host, "SLURMD_NODENAME": host,
    }
    if gpus > 0:
        devices = visible if visible is not None else [str(i) for i in range(gpus * nodes)]
        if len(devices) < gpus * nodes:
            raise ValueError(f"{nodes} local nodes with {gpus} GPUs each need {gpus * nodes} GPUs; "
                             f"CUDA_VISIBLE_DEVICES has {len(devices)}")
        env["CUDA_VISIBLE_DEVICES"] = ",".join(devices[rank * gpus:(rank + 1) * gpus])
    return env


def relay_lines(source: IO[bytes], handle: IO[str], lock: threading.Lock) -> None:
    """Copy a rank's output into the shared log a whole line at a time (ranks never split each other's lines)."""
    for raw in iter(source.readline, b""):
        with lock:
            handle.write(raw.decode("utf-8", errors="replace"))
            handle.flush()
    source.close()


def run_local_nodes(log: Path, words: list[str], nodes: int, gpus: int) -> list[int]:
    """M processes here standing in for M nodes (one srun task each), all logging to LOG line by line.

    Returns the ranks that failed; the first failure stops the others (they would wait on it for ever; the
    stopped ones are not counted as failed).
    """
    visible_var = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = [d for d in visible_var.split(",") if d] if visible_var is not None else None
    host = socket.gethostname()
    envs = [rank_env(rank, nodes, gpus, host, visible) for rank in range(nodes)]
    command = shlex.join(words)
    write_header(log, f"{nodes} local processes standing in for {nodes} nodes: {command}")
    running: dict[int, tuple[subprocess.Popen, float]] = {}
    relays: dict[int, threading.Thread] = {}
    lock = threading.Lock()
    failed: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    def note(text: str) -> None:
        with lock:
            handle.write(text)
            handle.flush()

    try:
        with open(log, "a", encoding="utf-8") as handle:
            for rank, env in enumerate(envs):
                shown = " ".join(f"{k}={env[k]}" for k in ("SLURM_PROCID", "SLURM_NTASKS", "CUDA_VISIBLE_DEVICES")
                                 if k in env)
                note(f"# rank {rank}/{nodes}: {shown}\n")
                # exec: the rank is the process this launcher waits on and stops
                proc = subprocess.Popen(["bash", "-c", f"exec {command}"], env={**os.environ, **env},
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                running[rank] = (proc, time.time())
                relays[rank] = threading.Thread(target=relay_lines, args=(proc.stdout, handle, lock), daemon=True)
                relays[rank].start()
            stop_at, stopped = None, set()
            while running:
                time.sleep(0.2)
                for rank, (proc, start) in list(running.items()):
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                    if pid == 0:
                        continue
                    proc.returncode = code = os.waitstatus_to_exitcode(status)
                    relays[rank].join(timeout=10)  # its last lines before its end
                    note(f"# Accounting: rank={rank} time={time.time() - start:.2f} "
                         f"max_rss_mb={usage.ru_maxrss / 1024:.1f}\n"
                         f"# Ended rank {rank}/{nodes} (code {code}) at {time.ctime()}\n")
                    del running[rank]
                    if code != 0 and rank not in stopped:
                        failed.append(rank)
                if failed and running:
                    if stop_at is None:
                        note(f"# rank {failed[0]} failed: stopping ranks {sorted(running)}\n")
                        stop_at = time.time()
                        stopped.update(running)
                        for proc, _ in running.values():
                            proc.terminate()
                    elif time.time() - stop_at > 10:
                        for proc, _ in running.values():
                            proc.kill()
    finally:
        signal.signal(signal.SIGTERM, previous)
        for proc, _ in running.values():  # interrupted: no rank outlives its launcher
            proc.kill()
            proc.wait()
    return failed


# Slurm job classes: the format of ESPnet's and Kaldi's conf/slurm.conf (read by their slurm.pl). A job's
# options (--gpu 1 --mem 4G --time 4:00:00 --num_threads 2 --name x ...) become sbatch options through its
# `option NAME=VALUE ...` lines (or `option NAME=* ...` with $0 for the value); `default NAME=VALUE` gives an
# option every job has unless it says otherwise; `command` is sbatch with the options of every job.
# The one default config ships in the package; egs/TEMPLATE/asr1/conf/slurm.conf links to it.
DEFAULT_SLURM_CONF_PATH = Path(__file__).with_name("slurm.conf")


class SlurmConfig:
    """A slurm.conf of ESPnet's kind: ``command``, ``default NAME=VALUE`` and ``option NAME=VALUE|* OPTS`` lines."""

    def __init__(self, text: str, source: str = "a Slurm config") -> None:
        self.source = source
        self.command = ["sbatch"]
        self.defaults: dict[str, str] = {}
        self.options: dict[str, dict[str, list[str]]] = {}  # name -> {value or "*": sbatch options}
        for number, raw in enumerate(text.splitlines(), 1):
            words = raw.split("#", 1)[0].split()
            if not words:
                continue
            name, _, value = words[1].partition("=") if len(words) > 1 else ("", "", "")
            if words[0] == "command" and len(words) > 1:
                self.command = words[1:]
            elif words[0] == "default" and len(words) == 2 and name and value:
                self.defaults[name] = value
            elif words[0] == "option" and name and value:
                self.options.setdefault(name, {})[value] = words[2:]
            else:
                raise ValueError(f"{source}:{number}: cannot read {raw.strip()!r} "
                                 "(lines: command sbatch ..., default NAME=VALUE, option NAME=VALUE|* OPTIONS)")

    @classmethod
    def load(cls, path: str | None) -> SlurmConfig:
        if not path:
            path = str(DEFAULT_SLURM_CONF_PATH)
        try:
            return cls(Path(path).read_text(encoding="utf-8"), path)
        except OSError as error:
            raise ValueError(f"cannot read the Slurm config {path}: {error.strerror}") from None

    def sbatch_options(self, given: dict[str, str]) -> list[str]:
        """The sbatch options of a job with these options (and the config's defaults for the others)."""
        result: list[str] = []
        for name, value in {**self.defaults, **given}.items():
            choices = self.options.get(name)
            if choices is None:
                raise ValueError(f"--{name}: {self.source} has no 'option {name}=...' line")
            if value in choices:
                result += choices[value]
            elif "*" in choices:
                result += [word.replace("$0", value) for word in choices["*"]]
            else:
                raise ValueError(f"--{name} {value}: {self.source} has no 'option {name}={value}' "
                                 f"or 'option {name}=*' line")
        return result


def run_task(var: str, index: int, words: list[str], time_pattern: str | None, nodes: int | None) -> int:
    """One job inside Slurm (its batch script, or one srun task of a multi-node job, runs this).

    The command runs with its output on stdout, which Slurm writes to the job's log, between the lines the local
    backend writes: the command, the host, peak memory and time (``# Accounting:``) and ``# Ended (code C)``,
    which the submitting launcher reads to tell which job failed. A multi-node job's lines name the rank.
    """
    command = shlex.join(substitute(words, var, index))
    env = os.environ
    host = env.get("SLURMD_NODENAME") or socket.gethostname()
    rank = f"rank {env.get('SLURM_PROCID', '?')}/{env.get('SLURM_NTASKS', nodes)}" if nodes else ""
    if rank:
        shown = " ".join(f"{k}={env[k]}" for k in ("SLURM_PROCID", "SLURM_NTASKS", "CUDA_VISIBLE_DEVICES") if k in env)
        print(f"# {rank} on {host}: {shown}", flush=True)
    else:
        job = env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID", "?")
        task = f"_{env['SLURM_ARRAY_TASK_ID']}" if "SLURM_ARRAY_TASK_ID" in env else ""
        restart = f", restart {env['SLURM_RESTART_COUNT']}" if env.get("SLURM_RESTART_COUNT", "0") != "0" else ""
        print(f"# {command}\n# Started at {time.ctime()} on {host} (Slurm job {job}{task}{restart})", flush=True)
    start = time.time()
    proc = subprocess.Popen(["bash", "-c", command])
    # scancel (or the time limit) signals the job: the command gets it too, and its end is still logged
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        signal.signal(signal.SIGTERM, previous)
    code = os.waitstatus_to_exitcode(status)
    elapsed = time.time() - start
    label = f"{rank} " if rank else ""
    print(f"# Accounting: {'rank=' + env.get('SLURM_PROCID', '?') + ' ' if rank else ''}time={elapsed:.2f} "
          f"max_rss_mb={usage.ru_maxrss / 1024:.1f}\n# Ended {label}(code {code}) at {time.ctime()}", flush=True)
    if time_pattern:
        Path(substitute([time_pattern], var, index)[0]).write_text(f"{elapsed:.3f}\n")
    return code if code >= 0 else 128 - code


def submit(config: SlurmConfig, options: list[str], slurm_opts: str, script: str) -> tuple[str | None, int]:
    """sbatch --wait the script with these options; (its job id, or None if none was submitted; its exit status).

    Interrupted (INT, TERM), it cancels the job: nothing keeps running on the cluster for a stage that stopped.
    """
    with tempfile.NamedTemporaryFile("w", prefix="launch.", suffix=".sh", delete=False) as handle:
        handle.write(script)
    command = [*config.command, *options, *shlex.split(slurm_opts), "--wait", "--parsable", handle.name]
    job_id: str | None = None
    proc = None

    def cancel(signum: int, _frame: object) -> None:
        if job_id:
            subprocess.run(["scancel", job_id], check=False)
        if proc is not None:
            proc.terminate()
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, cancel) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        except OSError as error:
            raise ValueError(f"cannot run {command[0]}: {error.strerror}") from None
        line = proc.stdout.readline().strip()  # --parsable: "ID" or "ID;CLUSTER", printed at submission
        job_id = line.split(";")[0] or None
        if job_id:
            print(f"launch: Slurm job {job_id}", flush=True)
        proc.stdout.read()
        return job_id, proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.unlink(handle.name)


END = re.compile(r"^# Ended (?:rank (\d+)/\d+ )?\(code (-?\d+)\)", re.M)
SLURM_ERROR = re.compile(r"^slurmstepd(?:-\S+)?: error: (.*)$", re.M)  # slurmstepd-NODE where one host runs several


def end_of(log: Path) -> tuple[int | None, str]:
    """A job log's exit code (None: the job never wrote its end line) and Slurm's last error line in it."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, "no log"
    ends = END.findall(text)
    errors = SLURM_ERROR.findall(text)
    return (int(ends[-1][1]) if ends else None), (errors[-1].strip(" *") if errors else "")


def fresh_logs(logs: list[Path], requeue: bool) -> list[str]:
    """Make the logs' directories and remove old logs; the sbatch options that keep an attempt's log on a requeue.

    Slurm appends to a job's log (--open-mode=append, or a rerun would start by emptying it, losing the earlier
    attempt); the job's script rotates it on a restart (restart_line). --requeue where asked (else the cluster's
    JobRequeue decides).
    """
    for log in logs:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.unlink(missing_ok=True)  # a new run's log starts empty, as Slurm's default (truncate) gives
    return ["--open-mode=append", *(["--requeue"] if requeue else [])]


def report_restarts(logs: list[Path]) -> None:
    """One line for each job that Slurm requeued and ran again: how often, and where its earlier log went."""
    for log in logs:
        try:
            notes = RESTART_NOTE.findall(log.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        if notes:
            restart, job, earlier = notes[-1]
            print(f"launch: Slurm job {job} was requeued and ran again (restart {restart}); "
                  f"the earlier attempt's log is {earlier}", flush=True)


def job_name(log_pattern: str, var: str) -> str:
    """A Slurm job name from the log's name: exp/.../stats.JOB.log -> stats."""
    name = re.sub(r"\.log$", "", Path(log_pattern).name)
    return re.sub(rf"[._-]?\b{re.escape(var)}\b", "", name) or name


def run_slurm(var: str, indices: range, log_pattern: str, words: list[str], job_options: dict[str, str],
              config: SlurmConfig, slurm_opts: str, time_pattern: str | None, max_jobs: int = 0,
              requeue: bool = False) -> list[str]:
    """Submit the jobs as one sbatch job array (one plain job for one index) and wait for it.

    Each task runs ``launch --run_task ID`` (run_task), which logs its end line; returns one line per failed task
    (its exit code, or why it has none, and its log), empty if all succeeded. A task Slurm requeued is judged
    by its last attempt.
    """
    logs = {index: Path(os.path.abspath(substitute([log_pattern], var, index)[0])) for index in indices}
    array = len(indices) > 1
    output = re.sub(rf"\b{re.escape(var)}\b", "%a" if array else str(indices.start),
                    os.path.abspath(log_pattern).replace("%", "%%"))
    options = config.sbatch_options(job_options) + [f"--output={output}"] + fresh_logs([*logs.values()], requeue)
    if array:
        options.append(f"--array={indices.start}-{indices.stop - 1}" + (f"%{max_jobs}" if max_jobs else ""))
    task = [sys.executable, "-m", "echo_plugin.recipe.launch"]
    rest = [*(["--time_file", os.path.abspath(time_pattern)] if time_pattern else []),
            f"{var}={indices.start}:{indices.stop - 1}", log_pattern, *words]
    task_id = f'"${{SLURM_ARRAY_TASK_ID:-{indices.start}}}"'
    log_words = task_id.join(shlex.quote(part) for part in re.split(rf"\b{re.escape(var)}\b",
                                                                    os.path.abspath(log_pattern)))
    script = ("#!/usr/bin/env bash\n"
              f"cd {shlex.quote(os.getcwd())}\n"
              + restart_line(log_words, words)
              + f"exec {shlex.join(task)} --run_task {task_id} {shlex.join(rest)}\n")
    job_id, code = submit(config, options, slurm_opts, script)
    if job_id is None:
        return [f"sbatch failed (exit code {code}); nothing was submitted"]
    report_restarts([*logs.values()])
    failures = []
    for index, log in logs.items():
        end, slurm_error = end_of(log)
        if end == 0:
            continue
        what = (f"failed with exit code {end}" + (f" ({slurm_error})" if slurm_error else "") if end is not None
                else f"ended without its end line ({slurm_error or 'killed'})")
        failures.append(f"job {index}/{len(indices)} (Slurm job {job_id}) {what}; log {log}")
    if not failures and code != 0:
        failures.append(f"Slurm job {job_id} ended with exit code {code}; logs {log_pattern}")
    return failures


def slurm_nodes_script(log: str, srun_opts: list[str], words: list[str], nodes: int) -> str:
    """The batch script of a multi-node training: the command under srun, one task on each of M nodes.

    Each task runs through ``launch --run_task`` (its rank's accounting and end lines in the log); srun stops
    the other ranks when one fails (--kill-on-bad-exit), as they would wait on it for ever. Requeued, the script
    first rotates the log and removes the stopped attempt's rendezvous file (restart_line).
    """
    opts = list(srun_opts or ["--export=ALL"])
    if not any(o.startswith("--kill-on-bad-exit") or o == "-K" for o in opts):
        opts.append("--kill-on-bad-exit=1")
    task = [sys.executable, "-m", "echo_plugin.recipe.launch", "--run_task", "1", "--num_nodes", str(nodes), log]
    header = shlex.join(["srun", *opts, *words])
    return ("#!/usr/bin/env bash\n"
            f"cd {shlex.quote(os.getcwd())}\n"
            + restart_line(shlex.quote(os.path.abspath(log)), words)
            + f"echo {shlex.quote('# ' + header)}\n"
            f'echo "# Started at $(date) (Slurm job $SLURM_JOB_ID on $SLURM_JOB_NODELIST'
            '${SLURM_RESTART_COUNT:+, restart $SLURM_RESTART_COUNT})"\n'
            f"exec {shlex.join(['srun', *opts, *task, *words])}\n")


def run_slurm_nodes(log: str, srun_opts: list[str], words: list[str], nodes: int, job_options: dict[str, str],
                    config: SlurmConfig, slurm_opts: str, requeue: bool = False) -> list[str]:
    """One sbatch job on M nodes, one task each (srun); one line per failure, empty if it succeeded."""
    path = Path(os.path.abspath(log))
    options = config.sbatch_options(job_options) + [f"--nodes={nodes}", "--ntasks-per-node=1",
                                                    f"--output={str(path).replace('%', '%%')}"]
    options += fresh_logs([path], requeue)
    job_id, code = submit(config, options, slurm_opts, slurm_nodes_script(log, srun_opts, words, nodes))
    if job_id is None:
        return [f"sbatch failed (exit code {code}); nothing was submitted"]
    report_restarts([path])
    if code == 0:
        return []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    failed = first_failure(text)
    slurm_error = SLURM_ERROR.findall(text)
    what = (f"rank {failed[0]} of {nodes} failed first, with exit code {failed[1]}" if failed
            else f"ended with exit code {code}" + (f" ({slurm_error[-1].strip(' *')})" if slurm_error else ""))
    return [f"{nodes}-node Slurm job {job_id}: {what}; log {path}"]


def first_failure(log_text: str) -> tuple[int, int] | None:
    """(rank, exit code) of the rank whose failure stopped a multi-node job, from its ranks' end lines.

    The first rank that ended with an error of its own (a positive exit code) is the cause: srun then stops
    the others with a signal (a negative code), and under load a stopped rank may log its end first.
    """
    failed = [(int(rank), int(end)) for rank, end in END.findall(log_text) if rank and int(end) != 0]
    own = [f for f in failed if f[1] > 0]
    return (own or failed or [None])[0]


# options of the job, for the Slurm config (the local backend reads --gpu only); others (--mem, --time, ...) too
JOB_OPTIONS = ("gpu", "num_threads", "name", "mem", "time")
OPTION_NAME = re.compile(r"^--([a-z][a-z0-9_]*)$")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [options] [JOB=1:N] LOG COMMAND...")
    parser.add_argument("--backend", choices=["local", "slurm"], default="local")
    parser.add_argument("--max_jobs", type=int, default=0,
                        help="jobs at a time (local: 0 = all; slurm: the array's %%N throttle, 0 = none)")
    parser.add_argument("--num_nodes", type=int, default=None,
                        help="nodes of a distributed job (COMMAND starts with mpirun or srun)")
    parser.add_argument("--config", default=os.environ.get("ECHO_SLURM_CONF") or None,
                        help="the Slurm config (ESPnet's conf/slurm.conf format; default: $ECHO_SLURM_CONF, "
                             "else the package's slurm.conf, which maps the options below)")
    parser.add_argument("--slurm_opts", default=os.environ.get("ECHO_SLURM_OPTS", ""),
                        help="sbatch options after the config's (default: $ECHO_SLURM_OPTS)")
    parser.add_argument("--time_file", default=None, help="write each job's seconds here (JOB substituted)")
    parser.add_argument("--requeue", action="store_true",
                        help="slurm: the job may be requeued (sbatch --requeue; preemption, scontrol requeue): it "
                             "runs again, its earlier log rotated (cmd.sh gives it to training, which resumes)")
    parser.add_argument("--run_task", type=int, default=None, help=argparse.SUPPRESS)  # inside a Slurm job
    job = parser.add_argument_group(
        "job options", "a job's resources, turned into sbatch options by the Slurm config (its 'option NAME=' "
        "lines; any --NAME VALUE it has an option line for is taken); checked against it by both backends, "
        "the local backend reads --gpu only")
    job.add_argument("--gpu", type=int, default=None, help="GPUs per job, or per node (built-in: --gres=gpu:N)")
    job.add_argument("--num_threads", type=int, default=None, help="CPU threads per job (built-in: --cpus-per-task)")
    job.add_argument("--name", default=None, help="job name (built-in: --job-name; default: the log's name)")
    job.add_argument("--mem", default=None, help="memory per CPU, e.g. 4G (built-in: --mem-per-cpu)")
    job.add_argument("--time", default=None, help="time limit, e.g. 4:00:00 (built-in: --time; default 24:00:00)")
    return parser


def split_options(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], dict[str, str], list[str]]:
    """The launcher's own leading options, the other leading ``--NAME VALUE`` pairs (job options for the Slurm
    config, as Kaldi's slurm.pl takes them), and the rest ([JOB=1:N] LOG COMMAND...) untouched.

    The command's options are never read as the launcher's (``--gpu`` of a command stays its own).
    """
    known = {s for action in parser._actions for s in action.option_strings}
    flags = {s for action in parser._actions if action.nargs == 0 for s in action.option_strings}
    own: list[str] = []
    extra: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        key, eq, value = argv[i].partition("=")
        if key in known:
            step = 1 if (eq or argv[i] in flags) else 2
            own += argv[i:i + step]
        elif OPTION_NAME.match(key) and (eq or i + 1 < len(argv)):
            step = 1 if eq else 2
            extra[key[2:]] = value if eq else argv[i + 1]
        else:
            break
        i += step
    return own, extra, argv[i:]


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    argv = sys.argv[1:] if argv is None else argv
    own, extra, rest = split_options(parser, argv)
    args = parser.parse_args(own)
    job_options = {name: str(getattr(args, name)) for name in JOB_OPTIONS if getattr(args, name) is not None}
    job_options.update(extra)
    gpus = args.gpu or 0

    match = JOB_RANGE.match(rest[0]) if rest else None
    if match is None:  # Kaldi's short form: LOG COMMAND... for a single job
        var, indices = "JOB", range(1, 2)
        log_pattern, words = (rest[0] if rest else None), rest[1:]
    else:
        var = match["var"]
        indices = range(int(match["first"]), int(match["last"]) + 1)
        log_pattern, words = (rest[1] if len(rest) > 1 else None), rest[2:]
    if not log_pattern or not words:
        parser.error("no command given")
    if args.run_task is not None:  # inside a Slurm job: one job (or one rank), logging to stdout
        return run_task(var, args.run_task, words, args.time_file, args.num_nodes)

    try:  # both backends check the job's options against the Slurm config: a typo fails here, not on the cluster
        config = SlurmConfig.load(args.config)
        config.sbatch_options(job_options)
    except ValueError as error:
        print(f"launch: {error}", file=sys.stderr)
        return 2
    if args.backend == "slurm" and "name" not in job_options and "name" in config.options:
        job_options["name"] = job_name(log_pattern, var)

    if Path(words[0]).name in NODE_LAUNCHERS:
        if len(indices) != 1:
            parser.error(f"{words[0]} runs one distributed job, not a JOB range")
        try:
            launcher, launcher_opts, command, nodes = split_node_launcher(words, args.num_nodes)
            log = substitute([log_pattern], var, indices.start)[0]
            if args.backend == "local":
                failed = run_local_nodes(Path(log), command, nodes, gpus)
                if failed:
                    print(f"launch: rank(s) {failed} of {nodes} failed; log {log}:\n{tail(Path(log))}",
                          file=sys.stderr)
            else:
                failures = run_slurm_nodes(log, launcher_opts if launcher == "srun" else [], command, nodes,
                                           job_options, config, args.slurm_opts, args.requeue)
                failed = bool(failures)
                for line in failures:
                    print(f"launch: {line}", file=sys.stderr)
        except ValueError as error:
            parser.error(str(error))
        return 1 if failed else 0
    if (args.num_nodes or 1) > 1:
        parser.error(f"--num_nodes {args.num_nodes}: the command must start with mpirun or srun")

    if args.backend == "local":
        failed = run_local(var, indices, log_pattern, words, args.max_jobs or len(indices), args.time_file)
        for index in failed:
            log = substitute([log_pattern], var, index)[0]
            print(f"launch: job {index}/{len(indices)} failed; log {log}:\n{tail(Path(log))}", file=sys.stderr)
        return 1 if failed else 0
    try:
        failures = run_slurm(var, indices, log_pattern, words, job_options, config, args.slurm_opts,
                             args.time_file, args.max_jobs, args.requeue)
    except ValueError as error:
        print(f"launch: {error}", file=sys.stderr)
        return 1
    for line in failures:
        print(f"launch: {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
