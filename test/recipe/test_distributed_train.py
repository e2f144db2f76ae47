"""Distributed training through ESPnet's launcher: asr.sh --num_nodes 2 --ngpu 0 (stage 5).

espnet2.bin.launch gives cmd.sh's local backend (echo_plugin.recipe.launch) ``--num_nodes 2 LOG mpirun -np 2 ...``;
the backend stands in for two nodes with two processes on this machine (srun's variables, ESPnet's slurm rank
discovery), which train the tiny config over gloo (CPU) with a shared init file. Then a second run resumes it:
the launcher keeps the first run's log as train.1.log. The README's torchrun command, with the options that first
run's train.log holds, trains as two torchrun "nodes" on this machine over gloo.
"""
from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from espnet2.train.distributed_utils import free_port

from echo_plugin.recipe.records import peak_rss_mb
from echo_plugin.train.epoch_cpu import read_epoch_cpu
from test.recipe.recipe_helpers import FSDD, REPO, copy_recipe, recipe_env, run_recipe

# two training speakers, one take per digit: 20 isolated + 4 connected training utterances, 10 + 4 dev
DATA_OPTS = ("--max_takes 1 --train_speakers george,jackson --dev_speakers nicolas --n_connected_train 4 "
             "--n_connected_dev 4 --n_connected_test 1")
TAG = "dist"
# ESPnet's log prefix of rank 0 in a distributed run: [host:RANK/WORLD_SIZE]
RANK0 = re.compile(r"^\[[^\]:]+:0/2\] ", re.M)
# the trainer's summary of an epoch (rank 0 logs it)
EPOCH = re.compile(r"^\[[^\]:]+:0/2\] .*?(\d+)epoch results: \[train\].*?, loss=([-+0-9.eE]+|nan|inf)", re.M)
# README, running at scale: stage 5's options from the first line of its train.log, less the launcher's tail
OPTIONS = (r"sed -n '1{s/^.*echo_plugin\.bin\.asr_train //; "
           r"s/ --ngpu [0-9]* --multiprocessing_distributed .*//; p}'")
# one torchrun "node" ($2 of 2) as the README gives it, with its CPU options last; $1: the train.log, $3: the port
TORCHRUN_NODE = (f'opts=$({OPTIONS} "$1") && eval torchrun --nnodes 2 --node_rank "$2" --master_addr 127.0.0.1 '
                 '--master_port "$3" --nproc_per_node 1 -m echo_plugin.bin.asr_train "$opts" '
                 '--output_dir exp/asr_torchrun --ngpu 0 --multiprocessing_distributed false --dist_backend gloo')


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recipe copy with stages 1-4 done on a few FSDD utterances (no speed perturbation, global_mvn)."""
    root = copy_recipe(tmp_path_factory.mktemp("dist"))
    run_recipe(root, "--stage", "1", "--stop_stage", "4", "--nj", "1", "--speed_perturb_factors", "",
               "--test_sets", "", "--feats_normalize", "global_mvn",
               "--local_data_opts", f"--fsdd_root {FSDD} {DATA_OPTS}")
    return root


@pytest.fixture(scope="module")
def first_training(recipe: Path) -> tuple[str, str]:
    """A fresh two-node training of one epoch: asr.sh's output and the train.log it wrote."""
    out = train(recipe, "--resume", "false", "--asr_args", "--max_epoch 1")
    return out, (recipe / "exp" / f"asr_{TAG}" / "train.log").read_text()


def train(root: Path, *args: str) -> str:
    """Stage 5 through asr.sh; its output (stdout and stderr)."""
    result = run_recipe(root, "--stage", "5", "--stop_stage", "5", "--asr_tag", TAG, "--ngpu", "0", "--num_nodes", "2",
               "--speed_perturb_factors", "", "--feats_normalize", "global_mvn", *args)
    return result.stdout + result.stderr


def check_both_ranks_trained(log: str) -> dict[int, float]:
    """Both local "nodes" ran to the end, rank 0 logged a world of 2; the epochs' training losses."""
    for rank in (0, 1):
        assert f"# rank {rank}/2: SLURM_PROCID={rank} SLURM_NTASKS=2" in log, log[-3000:]
        assert f"# Ended rank {rank}/2 (code 0)" in log, log[-3000:]
    assert RANK0.search(log), log[-3000:]
    assert "--dist_launcher slurm" in log and "--dist_backend gloo" in log and "file://" in log
    losses = {int(n): float(loss) for n, loss in EPOCH.findall(log)}
    assert losses and all(math.isfinite(v) for v in losses.values()), losses
    return losses


def test_two_nodes_over_gloo_train_and_resume(recipe: Path, first_training: tuple[str, str]) -> None:
    exp = recipe / "exp" / f"asr_{TAG}"
    out, first = first_training
    # a requeued rerun of it would start from epoch 1 over its own epochs: cmd.sh's --requeue is dropped
    assert "--resume false: training is not requeueable" in out, out[-3000:]
    assert "--requeue" not in first.splitlines()[0], first.splitlines()[0]
    assert sorted(check_both_ranks_trained(first)) == [1]
    # rank 0 writes the checkpoints and the config (ESPnet's trainer: only dist_rank 0 saves); the config it
    # wrote is the one of a 2-process gloo run
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert (config["dist_launcher"], config["dist_backend"], config["ngpu"]) == ("slurm", "gloo", 0)
    assert (exp / "1epoch.pth").is_file() and (exp / "valid.acc.ave.pth").is_file()
    checkpoint = torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert checkpoint["reporter"]["epoch"] == 1
    assert all(torch.isfinite(p).all() for p in checkpoint["model"].values() if p.is_floating_point())
    assert not list(exp.glob(".dist_init_*")) and not list(exp.glob(".*.tmp"))
    assert peak_rss_mb(exp / "train.log") > 50  # both ranks' accounting lines
    assert len((exp / "train_seconds").read_text().split()) == 1
    first_cpu = read_epoch_cpu(exp)  # both ranks' CPU seconds of epoch 1, summed, written by rank 0
    assert set(first_cpu) == {1} and first_cpu[1]["seconds"] > 0 and first_cpu[1]["setup"].endswith(", 2 processes")
    assert (exp / "run.json").is_file() and int((exp / "epochs").read_text()) == 1

    train(recipe, "--resume", "true", "--asr_args", "--max_epoch 2")
    assert (exp / "train.1.log").read_text() == first  # the launcher rotated it, nothing overwrote it
    second = (exp / "train.log").read_text()
    assert sorted(check_both_ranks_trained(second)) == [2]  # epoch 1 not trained again
    assert "resumed" in second.lower()
    assert int((exp / "epochs").read_text()) == 2
    assert torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"]["epoch"] == 2
    assert len((exp / "train_seconds").read_text().split()) == 2
    cpu = read_epoch_cpu(exp)
    assert set(cpu) == {1, 2} and cpu[1] == first_cpu[1] and cpu[2]["seconds"] > 0  # the resumed run kept epoch 1's


def wait_for_nodes(nodes: list[subprocess.Popen], seconds: float, grace: float = 30) -> list[int | None]:
    """The agents' exit codes (None: still running, then killed with its workers). Once one agent has failed,
    the other gets ``grace`` seconds: a surviving agent would otherwise wait out torchrun's exit barrier (300 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(node.poll() is None for node in nodes):
        if any(node.returncode not in (None, 0) for node in nodes):
            deadline = min(deadline, time.monotonic() + grace)
        time.sleep(0.5)
    codes = [node.poll() for node in nodes]
    for node, code in zip(nodes, codes):  # a hung rendezvous or exit barrier: stop the agent and its workers
        if code is None:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
    return codes


def test_torchrun_two_nodes_over_gloo(recipe: Path, first_training: tuple[str, str], tmp_path: Path) -> None:
    """The README's torchrun command on CPU: two torchrun agents (node ranks 0 and 1, one process each) meet at
    127.0.0.1 and train one epoch over gloo; ESPnet takes RANK / WORLD_SIZE / MASTER_* from torchrun's variables."""
    assert OPTIONS in (REPO / "README.md").read_text()  # the command tested is the one the README gives
    log = tmp_path / "train.log"
    log.write_text(first_training[1])  # stage 5's log (its options end in the two-node launcher's tail)
    port = str(free_port())
    nodes = []
    for rank in (0, 1):
        with open(tmp_path / f"node{rank}.log", "w") as out:
            nodes.append(subprocess.Popen(["bash", "-c", TORCHRUN_NODE, "node", str(log), str(rank), port],
                                          cwd=recipe, env=recipe_env(), stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    codes = wait_for_nodes(nodes, seconds=300)
    rank0, rank1 = ((tmp_path / f"node{rank}.log").read_text() for rank in (0, 1))
    assert codes == [0, 0], f"{codes}\n{rank0[-3000:]}\n{rank1[-3000:]}"
    # rank 0 logs a world of 2 (ESPnet silences the other ranks' logging); the epoch's all-reduces needed rank 1
    assert RANK0.search(rank0) and not RANK0.search(rank1), rank1[-3000:]
    assert "--dist_backend gloo" in rank1 and "Traceback" not in rank1, rank1[-3000:]
    losses = {int(n): float(loss) for n, loss in EPOCH.findall(rank0)}
    assert list(losses) == [1] and math.isfinite(losses[1]), losses
    exp = recipe / "exp" / "asr_torchrun"
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert (config["distributed"], config["dist_launcher"], config["dist_backend"]) == (True, None, "gloo")
    assert config["output_dir"] == "exp/asr_torchrun" and config["ngpu"] == 0
    checkpoint = torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert checkpoint["reporter"]["epoch"] == 1 and (exp / "1epoch.pth").is_file()
    assert all(torch.isfinite(p).all() for p in checkpoint["model"].values() if p.is_floating_point())
