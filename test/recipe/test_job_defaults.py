"""asr.sh's --ngpu / --nj / --inference_nj defaults fitted to where the jobs run, with stand-ins for
nvidia-smi and nproc on PATH (echo_plugin.recipe.job_defaults)."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from echo_plugin.recipe import job_defaults
from echo_plugin.recipe.launch import SlurmConfig
from test.recipe.recipe_helpers import TINY_CONFIG, copy_recipe, recipe_env


def stand_in(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def fake_machine(tmp_path: Path, gpus: int | None, cores: int) -> Path:
    """A bin dir with nvidia-smi listing ``gpus`` GPUs (None: one that fails) and nproc answering ``cores``."""
    bin_dir = tmp_path / "bin"
    lines = "".join(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i:08d}-0000)\\n" for i in range(gpus or 0))
    stand_in(bin_dir, "nvidia-smi", f"printf '{lines}'" if gpus is not None else "echo 'driver not loaded' >&2; exit 9")
    stand_in(bin_dir, "nproc", f"echo {cores}")
    return bin_dir


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_recipe(tmp_path_factory.mktemp("defaults"))


def asr_log(recipe: Path, bin_dir: Path, *args: str, **env: str) -> str:
    """asr.sh's output when it runs no stage (stage 9 of 8), on the machine ``bin_dir`` stands in for."""
    environ = recipe_env()
    environ["PATH"] = f"{bin_dir}{os.pathsep}{environ['PATH']}"
    for name in ("CUDA_VISIBLE_DEVICES", "cmd_backend", "slurm_conf", "train_job_opts"):
        environ.pop(name, None)
    environ.update(env)
    done = subprocess.run(["./asr.sh", "--asr_config", TINY_CONFIG, "--stage", "9", *args], cwd=recipe, env=environ,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def used(log: str) -> tuple[int, int, int]:
    """(ngpu, nj, inference_nj) asr.sh ended with."""
    match = re.search(r"Jobs: --ngpu (\d+) --nj (\d+) --inference_nj (\d+)", log)
    assert match, log
    return int(match[1]), int(match[2]), int(match[3])


def test_locally_the_visible_gpus_and_the_cores(recipe: Path, tmp_path: Path) -> None:
    machine = fake_machine(tmp_path, gpus=4, cores=6)
    log = asr_log(recipe, machine)
    assert used(log) == (4, 6, 6)
    assert "--ngpu 4 (default: nvidia-smi -L lists 4 GPU(s))" in log
    assert "--nj 6 (default: nproc: 6 core(s) for this run)" in log
    assert used(asr_log(recipe, machine, CUDA_VISIBLE_DEVICES="2,3"))[0] == 2
    assert used(asr_log(recipe, machine, CUDA_VISIBLE_DEVICES="1,-1,2"))[0] == 1  # CUDA stops at the invalid one
    log = asr_log(recipe, machine, CUDA_VISIBLE_DEVICES="")
    assert used(log)[0] == 0 and "CUDA_VISIBLE_DEVICES='' shows 0 of the 4 GPU(s)" in log
    assert used(asr_log(recipe, fake_machine(tmp_path, gpus=None, cores=64))) == (0, 32, 32)  # failing nvidia-smi


def test_the_users_options_win(recipe: Path, tmp_path: Path) -> None:
    log = asr_log(recipe, fake_machine(tmp_path, gpus=4, cores=6), "--ngpu", "1", "--nj", "3")
    assert used(log) == (1, 3, 6)
    assert "--ngpu 1 (default" not in log and "--nj 3 (default" not in log and "--inference_nj 6 (default" in log
    log = asr_log(recipe, fake_machine(tmp_path, gpus=4, cores=6), "--ngpu", "0", "--nj", "2", "--inference_nj", "5")
    assert used(log) == (0, 2, 5) and "(default:" not in log


def test_under_slurm_the_job_class_not_this_host(recipe: Path, tmp_path: Path) -> None:
    machine = fake_machine(tmp_path, gpus=0, cores=2)  # a head node without GPUs
    log = asr_log(recipe, machine, cmd_backend="slurm", train_job_opts="--num_threads 4 --gpu 2 --mem 8G")
    assert used(log) == (2, 32, 32)
    assert "--ngpu 2 (default: the training job class (cmd.sh train_job_opts) asks for --gpu 2)" in log
    conf = tmp_path / "slurm.conf"
    conf.write_text("command sbatch\ndefault gpu=1\noption gpu=* --gres=gpu:$0\noption num_threads=* -c $0\n"
                    "option mem=* --mem-per-cpu $0\noption time=* --time $0\noption name=* -J $0\n")
    log = asr_log(recipe, machine, cmd_backend="slurm", slurm_conf=str(conf))
    assert used(log)[0] == 1 and f"{conf}: default gpu=1" in log


def test_under_slurm_training_gets_one_gpu_unless_told(recipe: Path, tmp_path: Path) -> None:
    """As ESPnet's asr.sh (ngpu=1): with the template's conf (default gpu=0, the CPU jobs' default) and no --gpu in
    the training job class, training asks for one GPU, logged in one line that says how to train on CPU; an
    explicit --ngpu, 0 included, wins."""
    machine = fake_machine(tmp_path, gpus=0, cores=2)  # a head node without GPUs
    log = asr_log(recipe, machine, cmd_backend="slurm")
    assert used(log)[0] == 1
    [line] = [line for line in log.splitlines() if "--ngpu 1 (default:" in line]
    assert "one GPU" in line and "--ngpu 0" in line, line
    log = asr_log(recipe, machine, "--ngpu", "0", cmd_backend="slurm")
    assert used(log)[0] == 0 and "--ngpu 0 (default" not in log
    assert used(asr_log(recipe, machine, cmd_backend="slurm", train_job_opts="--num_threads 1 --gpu 0"))[0] == 0


def test_visible_entries_reads_as_cuda_does() -> None:
    assert job_defaults.visible_entries("0,1,2,3", 2) == 2
    assert job_defaults.visible_entries("GPU-abc,MIG-def", 8) == 2
    assert job_defaults.visible_entries("1,1", 4) == 1 and job_defaults.visible_entries("x,0", 4) == 0


def test_no_nvidia_smi_means_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_defaults.shutil, "which", lambda name: None)
    [(name, value, why)] = job_defaults.job_defaults(["ngpu"], "local", SlurmConfig(""), "",
                                                     {"CUDA_VISIBLE_DEVICES": "0"})
    assert (name, value) == ("ngpu", 0) and "no nvidia-smi" in why


def test_a_bad_job_class_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert job_defaults.main(["--backend", "slurm", "--train_job_opts", "--gpu two", "ngpu"]) == 1
    assert capsys.readouterr().err == "job_defaults: error: cmd.sh train_job_opts --gpu 'two' is not a number of GPUs\n"
