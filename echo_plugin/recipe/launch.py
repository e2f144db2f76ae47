"""Kaldi-style job dispatch for the recipes: ``JOB=1:N LOG COMMAND...``.

Runs N copies of a command with ``JOB`` replaced by 1..N, each logging to its
own file, and fails (showing the failing log's tail) if any copy fails.

    python -m echo_plugin.recipe.launch --backend local JOB=1:4 exp/log/dec.JOB.log \
        python -m echo_plugin.bin.asr_inference --key_file keys.JOB.scp ...

Backends: ``local`` (subprocesses on this machine, at most ``--max_jobs`` at a
time) and ``slurm`` (one ``sbatch --wait --array=1-N`` job array; ``--gpu N``
asks for N GPUs per task, ``--slurm_opts`` passes partition/time/account).

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
``srun COMMAND...``; ``local`` stands in for M nodes with M processes on this
machine, each given the variables srun sets for one task per node (SLURM_PROCID,
SLURM_NTASKS, SLURM_NODEID, SLURM_LOCALID, SLURM_STEP_NUM_NODES, SLURM_STEP_NODELIST)
and, with ``--gpu N``, its own N of the visible GPUs (CUDA_VISIBLE_DEVICES). All
copies log to LOG; if one fails the others are stopped.
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
import time
from pathlib import Path

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


def run_local_nodes(log: Path, words: list[str], nodes: int, gpus: int) -> list[int]:
    """M processes here standing in for M nodes (one srun task each), all logging to LOG.

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
    failed: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        with open(log, "a", encoding="utf-8") as handle:
            for rank, env in enumerate(envs):
                shown = " ".join(f"{k}={env[k]}" for k in ("SLURM_PROCID", "SLURM_NTASKS", "CUDA_VISIBLE_DEVICES")
                                 if k in env)
                handle.write(f"# rank {rank}/{nodes}: {shown}\n")
                handle.flush()
                # exec: the rank is the process this launcher waits on and stops
                proc = subprocess.Popen(["bash", "-c", f"exec {command}"], env={**os.environ, **env},
                                        stdout=handle, stderr=subprocess.STDOUT)
                running[rank] = (proc, time.time())
            stop_at, stopped = None, set()
            while running:
                time.sleep(0.2)
                for rank, (proc, start) in list(running.items()):
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                    if pid == 0:
                        continue
                    proc.returncode = code = os.waitstatus_to_exitcode(status)
                    handle.write(f"# Accounting: rank={rank} time={time.time() - start:.2f} "
                                 f"max_rss_mb={usage.ru_maxrss / 1024:.1f}\n"
                                 f"# Ended rank {rank}/{nodes} (code {code}) at {time.ctime()}\n")
                    handle.flush()
                    del running[rank]
                    if code != 0 and rank not in stopped:
                        failed.append(rank)
                if failed and running:
                    if stop_at is None:
                        handle.write(f"# rank {failed[0]} failed: stopping ranks {sorted(running)}\n")
                        handle.flush()
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


def sbatch(script: str, slurm_opts: str) -> int:
    """Submit a batch script and wait for it; its exit status."""
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as handle:
        handle.write(script)
    try:
        return subprocess.run(["sbatch", "--wait", *shlex.split(slurm_opts), handle.name]).returncode
    finally:
        os.unlink(handle.name)


def resource_directives(gpus: int, threads: int | None, name: str | None) -> str:
    return ((f"#SBATCH --gres=gpu:{gpus}\n" if gpus > 0 else "")
            + (f"#SBATCH --cpus-per-task={threads}\n" if threads else "")
            + (f"#SBATCH --job-name={name}\n" if name else ""))


def run_slurm(var: str, indices: range, log_pattern: str, words: list[str], gpus: int,
              slurm_opts: str, time_pattern: str | None, threads: int | None = None,
              name: str | None = None) -> list[int]:
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
        + resource_directives(gpus, threads, name)
        + f"cd {shlex.quote(os.getcwd())}\n"
        + f"echo \"# {command}\"\nSECONDS=0\n{command}\ncode=$?\n{timer}exit $code\n"
    )
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    return [] if sbatch(script, slurm_opts) == 0 else list(indices)


def slurm_nodes_script(log: str, srun_opts: list[str], words: list[str], nodes: int, gpus: int,
                       threads: int | None, name: str | None) -> str:
    """The batch script of a multi-node training: M nodes, one task each, the command under srun."""
    srun = shlex.join(["srun", *(srun_opts or ["--export=ALL"]), *words])
    return (
        "#!/usr/bin/env bash\n"
        f"#SBATCH --nodes={nodes}\n"
        "#SBATCH --ntasks-per-node=1\n"
        f"#SBATCH --output={log}\n"
        + resource_directives(gpus, threads, name)
        + f"cd {shlex.quote(os.getcwd())}\n"
        + f"echo {shlex.quote('# ' + srun)}\n{srun}\n"
    )


def run_slurm_nodes(log: str, srun_opts: list[str], words: list[str], nodes: int, gpus: int,
                    threads: int | None, name: str | None, slurm_opts: str) -> bool:
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    return sbatch(slurm_nodes_script(log, srun_opts, words, nodes, gpus, threads, name), slurm_opts) == 0


def substitute_marker(words: list[str], var: str) -> list[str]:
    """Replace the job variable by a marker that survives shell quoting."""
    pattern = re.compile(rf"\b{re.escape(var)}\b")
    return [pattern.sub(f"__{var}__", w) for w in words]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [options] [JOB=1:N] LOG COMMAND...")
    parser.add_argument("--backend", choices=["local", "slurm"], default="local")
    parser.add_argument("--max_jobs", type=int, default=0, help="local: parallel jobs (0 = all)")
    parser.add_argument("--gpu", type=int, default=0, help="GPUs per job, or per node (slurm: --gres)")
    parser.add_argument("--num_threads", type=int, default=None,
                        help="CPU threads per job (slurm: --cpus-per-task; local: ignored, see OMP_NUM_THREADS)")
    parser.add_argument("--num_nodes", type=int, default=None,
                        help="nodes of a distributed job (COMMAND starts with mpirun or srun)")
    parser.add_argument("--name", default=None, help="job name (slurm: --job-name; local: ignored)")
    parser.add_argument("--slurm_opts", default=os.environ.get("ECHO_SLURM_OPTS", ""),
                        help="extra sbatch options (default: $ECHO_SLURM_OPTS)")
    parser.add_argument("--time_file", default=None, help="write each job's seconds here (JOB substituted)")
    return parser


def split_options(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], list[str]]:
    """The launcher's own leading options, and the rest ([JOB=1:N] LOG COMMAND...) untouched.

    The command's options are never read as the launcher's (``--gpu`` of a command stays its own).
    """
    known = {s for action in parser._actions for s in action.option_strings}
    flags = {s for action in parser._actions if action.nargs == 0 for s in action.option_strings}
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i].split("=", 1)[0] in known:
        i += 1 if ("=" in argv[i] or argv[i] in flags) else 2
    return argv[:i], argv[i:]


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    argv = sys.argv[1:] if argv is None else argv
    own, rest = split_options(parser, argv)
    args = parser.parse_args(own)

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

    if Path(words[0]).name in NODE_LAUNCHERS:
        if len(indices) != 1:
            parser.error(f"{words[0]} runs one distributed job, not a JOB range")
        try:
            launcher, launcher_opts, command, nodes = split_node_launcher(words, args.num_nodes)
            log = substitute([log_pattern], var, indices.start)[0]
            if args.backend == "local":
                failed = run_local_nodes(Path(log), command, nodes, args.gpu)
            else:
                ok = run_slurm_nodes(log, launcher_opts if launcher == "srun" else [], command, nodes, args.gpu,
                                     args.num_threads, args.name, args.slurm_opts)
                failed = [] if ok else [0]
        except ValueError as error:
            parser.error(str(error))
        if failed:
            print(f"launch: rank(s) {failed} of {nodes} failed; log {log}:\n{tail(Path(log))}", file=sys.stderr)
        return 1 if failed else 0
    if (args.num_nodes or 1) > 1:
        parser.error(f"--num_nodes {args.num_nodes}: the command must start with mpirun or srun")

    if args.backend == "local":
        failed = run_local(var, indices, log_pattern, words, args.max_jobs or len(indices), args.time_file)
    else:
        failed = run_slurm(var, indices, log_pattern, words, args.gpu, args.slurm_opts, args.time_file,
                           args.num_threads, args.name)
    for index in failed:
        log = substitute([log_pattern], var, index)[0]
        print(f"launch: job {index}/{len(indices)} failed; log {log}:\n{tail(Path(log))}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
