"""Distributed training through ESPnet's launcher: asr.sh --num_nodes 2 --ngpu 0 (stage 5).

espnet2.bin.launch gives cmd.sh's local backend (echo_plugin.recipe.launch) ``--num_nodes 2 LOG mpirun -np 2 ...``;
the backend stands in for two nodes with two processes on this machine (srun's variables, ESPnet's slurm rank
discovery), which train the tiny config over gloo (CPU) with a shared init file. Then a second run resumes it:
the launcher keeps the first run's log as train.1.log.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import yaml

from echo_plugin.recipe.records import peak_rss_mb
from test.recipe.recipe_helpers import FSDD, copy_recipe, run_recipe

# two training speakers, one take per digit: 20 isolated + 4 connected training utterances, 10 + 4 dev
DATA_OPTS = ("--max_takes 1 --train_speakers george,jackson --dev_speakers nicolas --n_connected_train 4 "
             "--n_connected_dev 4 --n_connected_test 1")
TAG = "dist"
# ESPnet's log prefix of rank 0 in a distributed run: [host:RANK/WORLD_SIZE]
RANK0 = re.compile(r"^\[[^\]:]+:0/2\] ", re.M)
# the trainer's summary of an epoch (rank 0 logs it)
EPOCH = re.compile(r"^\[[^\]:]+:0/2\] .*?(\d+)epoch results: \[train\].*?, loss=([-+0-9.eE]+|nan|inf)", re.M)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recipe copy with stages 1-4 done on a few FSDD utterances (no speed perturbation, global_mvn)."""
    root = copy_recipe(tmp_path_factory.mktemp("dist"))
    run_recipe(root, "--stage", "1", "--stop_stage", "4", "--nj", "1", "--speed_perturb_factors", "",
               "--test_sets", "", "--feats_normalize", "global_mvn",
               "--local_data_opts", f"--fsdd_root {FSDD} {DATA_OPTS}")
    return root


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


def test_two_nodes_over_gloo_train_and_resume(recipe: Path) -> None:
    exp = recipe / "exp" / f"asr_{TAG}"
    out = train(recipe, "--resume", "false", "--asr_args", "--max_epoch 1")  # a fresh training
    # a requeued rerun of it would start from epoch 1 over its own epochs: cmd.sh's --requeue is dropped
    assert "--resume false: training is not requeueable" in out, out[-3000:]
    first = (exp / "train.log").read_text()
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
    assert (exp / "run.json").is_file() and int((exp / "epochs").read_text()) == 1

    train(recipe, "--resume", "true", "--asr_args", "--max_epoch 2")
    assert (exp / "train.1.log").read_text() == first  # the launcher rotated it, nothing overwrote it
    second = (exp / "train.log").read_text()
    assert sorted(check_both_ranks_trained(second)) == [2]  # epoch 1 not trained again
    assert "resumed" in second.lower()
    assert int((exp / "epochs").read_text()) == 2
    assert torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"]["epoch"] == 2
    assert len((exp / "train_seconds").read_text().split()) == 2
