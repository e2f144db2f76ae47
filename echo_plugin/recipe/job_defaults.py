"""asr.sh's defaults of ``--ngpu``, ``--nj`` and ``--inference_nj``, fitted to where the jobs run.

    python -m echo_plugin.recipe.job_defaults --backend local|slurm [--config SLURM_CONF] \
        [--train_job_opts "--num_threads 1 --gpu 1 ..."] ngpu nj inference_nj

prints one line per name asked for: ``NAME VALUE WHY`` (asr.sh sets the option and logs why).
It is asked only for the options the user did not give.

``local`` (the jobs run on this machine):

* ngpu: the GPUs this machine shows a job: the ``GPU`` lines of ``nvidia-smi -L``, limited to
  CUDA_VISIBLE_DEVICES when it is set (its entries up to the first one CUDA would reject, as
  CUDA reads it: ``""`` and ``-1`` hide every GPU); 0 without nvidia-smi (no NVIDIA driver) or when it fails.
* nj, inference_nj: the cores this process may use (``nproc`` with OMP_NUM_THREADS unset: the
  CPU affinity, which Slurm allocations and containers narrow), at most MAX_JOBS.

``slurm`` (the jobs run on the cluster; this host may have no GPU and few cores):

* ngpu: the training job class's GPUs: ``--gpu N`` in cmd.sh's ``train_job_opts``, else the
  Slurm config's ``default gpu=N`` where N > 0 (every job gets GPUs), else 1, as ESPnet's asr.sh
  (``ngpu=1``): the config's ``default gpu=0`` is the CPU job classes' default, not a choice of CPU
  training; ``--ngpu 0`` trains on CPU.
* nj, inference_nj: MAX_JOBS, ESPnet's own defaults for cluster runs (each job is one array task).
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping

from echo_plugin.recipe.launch import SlurmConfig

MAX_JOBS = 32  # parallel jobs of a stage, at most (ESPnet's asr.sh default nj / inference_nj)
NAMES = ("ngpu", "nj", "inference_nj")


def nvidia_smi_gpus() -> tuple[int, str]:
    """(the GPUs ``nvidia-smi -L`` lists (its ``GPU <i>:`` lines), why); 0 without nvidia-smi or when it fails."""
    if shutil.which("nvidia-smi") is None:
        return 0, "no nvidia-smi here (no NVIDIA GPU)"
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return 0, f"nvidia-smi -L failed ({error})"
    count = sum(1 for line in listing.splitlines() if re.match(r"GPU \d+:", line))
    return count, f"nvidia-smi -L lists {count} GPU(s)"


def visible_entries(value: str, gpus: int) -> int:
    """How many GPUs CUDA_VISIBLE_DEVICES=``value`` shows of ``gpus``: its entries up to the first invalid one
    (an index outside 0..gpus-1 or repeated, or not a GPU-/MIG- UUID)."""
    seen: set[str] = set()
    for entry in (e.strip() for e in value.split(",")):
        valid = (entry.isdigit() and int(entry) < gpus) or entry.startswith(("GPU-", "MIG-"))
        if not valid or entry in seen:
            break
        seen.add(entry)
    return min(len(seen), gpus)


def local_gpus(env: Mapping[str, str]) -> tuple[int, str]:
    """(GPUs a local job sees, why)."""
    listed, why = nvidia_smi_gpus()
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None or listed == 0:
        return listed, why
    count = visible_entries(visible, listed)
    return count, f"CUDA_VISIBLE_DEVICES={visible!r} shows {count} of the {listed} GPU(s) nvidia-smi -L lists"


def local_cores() -> tuple[int, str]:
    """(parallel jobs for this machine's cores, why)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT")}
    try:
        cores = int(subprocess.run(["nproc"], capture_output=True, text=True, env=env, check=True).stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        cores = len(os.sched_getaffinity(0))
    jobs = max(1, min(cores, MAX_JOBS))
    return jobs, f"nproc: {cores} core(s) for this run" + (f", at most {MAX_JOBS}" if cores > MAX_JOBS else "")


def count(text: str, what: str) -> int:
    """``text`` as a GPU count; ValueError naming ``what`` otherwise."""
    if not text.isdigit():
        raise ValueError(f"{what} {text!r} is not a number of GPUs")
    return int(text)


def job_class_gpus(train_job_opts: str, config: SlurmConfig) -> tuple[int, str]:
    """(GPUs of the training job class, why): its ``--gpu N``, else the config's ``default gpu=N`` above 0,
    else 1 (ESPnet's asr.sh default)."""
    words = shlex.split(train_job_opts)
    given = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--gpu"]
    given += [w.partition("=")[2] for w in words if w.startswith("--gpu=")]
    if given:
        return count(given[-1], "cmd.sh train_job_opts --gpu"), \
            f"the training job class (cmd.sh train_job_opts) asks for --gpu {given[-1]}"
    if "gpu" in config.defaults and count(config.defaults["gpu"], f"{config.source}: default gpu") > 0:
        return int(config.defaults["gpu"]), f"{config.source}: default gpu={config.defaults['gpu']}"
    return 1, ("Slurm: training asks for one GPU, as ESPnet's asr.sh (the training job class, cmd.sh "
               "train_job_opts, gives no --gpu); --ngpu 0 trains on CPU")


def job_defaults(names: list[str], backend: str, config: SlurmConfig, train_job_opts: str,
                 env: Mapping[str, str]) -> list[tuple[str, int, str]]:
    """(name, value, why) of each of ``names``."""
    if backend == "slurm":
        ngpu = job_class_gpus(train_job_opts, config)
        jobs = (MAX_JOBS, f"Slurm: the jobs run on the cluster, {MAX_JOBS} array tasks (ESPnet's default)")
    else:
        ngpu = local_gpus(env)
        jobs = local_cores()
    found = {"ngpu": ngpu, "nj": jobs, "inference_nj": jobs}
    return [(name, *found[name]) for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("local", "slurm"), default="local", help="cmd.sh's cmd_backend")
    parser.add_argument("--config", default="", help="the Slurm config (cmd.sh's slurm_conf; empty: the built-in)")
    parser.add_argument("--train_job_opts", default="", help="cmd.sh's training job class")
    parser.add_argument("names", nargs="+", choices=NAMES, help="the options to find defaults for")
    args = parser.parse_args(argv)
    try:
        config = SlurmConfig.load(args.config or None) if args.backend == "slurm" else SlurmConfig("")
        found = job_defaults(args.names, args.backend, config, args.train_job_opts, os.environ)
    except ValueError as error:
        print(f"job_defaults: error: {error}", file=sys.stderr)
        return 1
    for name, value, why in found:
        print(f"{name} {value} {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
