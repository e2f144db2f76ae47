"""EchoTrainer measures CPU seconds, not wall-clock seconds, around ESPnet's train_one_epoch (its children's
too, and every rank's in a distributed run), and the per-epoch file keeps finished epochs across resumes; the
records' total needs every epoch."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from espnet2.tasks.asr import ASRTask
from espnet2.train.trainer import Trainer

from echo_plugin.tasks.asr import EchoASRTask
from echo_plugin.train.epoch_cpu import CPU_FILE, read_epoch_cpu, setup_label, train_cpu, write_epoch_cpu
from echo_plugin.train.trainer import EchoTrainer

ONE = "cpu, 1 thread, 1 process"
BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"

# Two gloo ranks run EchoTrainer.train_one_epoch with ESPnet's epoch replaced by 0.2 s (rank 0) and 0.6 s (rank
# 1) of CPU work; rank 0 writes the file.
RANK = """
import sys, time, torch.distributed as dist
from types import SimpleNamespace
from espnet2.train.trainer import Trainer
from echo_plugin.train.trainer import EchoTrainer
rank, init, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method="file://" + init, rank=rank, world_size=2)
def epoch(cls, *args):
    end = time.process_time() + (0.2 if rank == 0 else 0.6)
    while time.process_time() < end:
        pass
    return False
Trainer.train_one_epoch = classmethod(epoch)
EchoTrainer.train_one_epoch(None, None, [], [], None, SimpleNamespace(get_epoch=lambda: 1), None,
                            SimpleNamespace(output_dir=out, ngpu=0),
                            SimpleNamespace(distributed=True, dist_rank=rank))
dist.destroy_process_group()
"""


def burn(seconds: float) -> None:
    """Keep one core busy for ``seconds`` of this process's CPU time."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def run_epoch(monkeypatch: pytest.MonkeyPatch, out: Path, epoch: int, work) -> bool:
    """EchoTrainer.train_one_epoch with ESPnet's epoch replaced by ``work`` (the measurement is all that runs)."""
    monkeypatch.setattr(Trainer, "train_one_epoch", classmethod(lambda cls, *args: (work(), True)[1]))
    reporter = SimpleNamespace(get_epoch=lambda: epoch)
    options = SimpleNamespace(output_dir=str(out), ngpu=0)
    distributed = SimpleNamespace(distributed=False, dist_rank=0)
    return EchoTrainer.train_one_epoch(None, None, [], [], None, reporter, None, options, distributed)


def test_the_task_trains_with_echo_trainer() -> None:
    assert EchoASRTask.trainer is EchoTrainer


def test_cpu_seconds_are_counted_and_waiting_is_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_epoch(monkeypatch, tmp_path, 1, lambda: burn(0.3)) is True  # ESPnet's return value passes through
    assert run_epoch(monkeypatch, tmp_path, 2, lambda: time.sleep(0.3)) is True
    child = [sys.executable, "-c", BURN.format(seconds=0.5)]
    assert run_epoch(monkeypatch, tmp_path, 3, lambda: subprocess.run(child, check=True)) is True
    table = read_epoch_cpu(tmp_path)
    assert set(table) == {1, 2, 3}
    assert 0.28 <= table[1]["seconds"] < 1.0
    assert table[2]["seconds"] < 0.1  # 0.3 s of wall clock, next to no CPU
    assert table[3]["seconds"] >= 0.48  # a child process's CPU seconds count once it has ended
    setup = setup_label("cpu", torch.get_num_threads(), 1)
    assert all(entry["setup"] == setup for entry in table.values())


def test_a_distributed_epoch_sums_the_ranks(tmp_path: Path) -> None:
    init = tmp_path / "init"
    ranks = [subprocess.Popen([sys.executable, "-c", RANK, str(rank), str(init), str(tmp_path)])
             for rank in (0, 1)]
    assert [rank.wait(timeout=120) for rank in ranks] == [0, 0]
    [entry] = read_epoch_cpu(tmp_path).values()
    assert 0.78 <= entry["seconds"] < 2.0  # 0.2 + 0.6 s, not rank 0's 0.2 alone
    assert entry["setup"].endswith(", 2 processes")


def test_a_repeated_epoch_replaces_its_entry_and_keeps_the_others(tmp_path: Path) -> None:
    for epoch, seconds in ((1, 10.0), (2, 20.0), (3, 99.0)):
        write_epoch_cpu(tmp_path, epoch, seconds, ONE)
    write_epoch_cpu(tmp_path, 3, 30.0, ONE)  # epoch 3 was cut short and trained again after a resume
    assert {e: entry["seconds"] for e, entry in read_epoch_cpu(tmp_path).items()} == {1: 10.0, 2: 20.0, 3: 30.0}
    assert train_cpu(tmp_path, 3) == (60.0, ONE)
    assert train_cpu(tmp_path, 2) == (30.0, ONE)  # epochs beyond the trained ones are not counted
    assert not list(tmp_path.glob("*.tmp")) and (tmp_path / CPU_FILE).is_file()
    write_epoch_cpu(tmp_path, 2, 40.0, setup_label("cuda", 1, 1))  # resumed on a GPU
    assert train_cpu(tmp_path, 3) == (80.0, "mixed")


def test_no_total_unless_every_epoch_was_measured(tmp_path: Path) -> None:
    assert train_cpu(tmp_path, 2) == (None, None)  # a run trained before the measurement existed
    write_epoch_cpu(tmp_path, 2, 20.0, ONE)
    assert train_cpu(tmp_path, 2) == (None, None)  # epoch 1 unmeasured: no figure rather than a low one
    assert train_cpu(tmp_path, None) == (None, None)


def test_the_first_format_reads_with_an_unknown_setup(tmp_path: Path) -> None:
    """Files written before the setup was recorded: {"<epoch>": seconds}."""
    (tmp_path / CPU_FILE).write_text(json.dumps({"1": 12.5, "2": 7.5}), encoding="utf-8")
    assert train_cpu(tmp_path, 2) == (20.0, None)
    write_epoch_cpu(tmp_path, 3, 5.0, ONE)
    assert train_cpu(tmp_path, 3) == (25.0, "mixed")


def test_deepspeed_gets_espnet_s_own_trainer(monkeypatch: pytest.MonkeyPatch) -> None:
    """AbsTask.main_worker refuses DeepSpeed with a trainer other than ESPnet's: such a run falls back to it."""
    seen = []
    monkeypatch.setattr(ASRTask, "main_worker", classmethod(lambda cls, args: seen.append(cls.trainer)))
    monkeypatch.setattr(EchoASRTask, "trainer", EchoTrainer)
    EchoASRTask.main_worker(argparse.Namespace(use_deepspeed=False))
    EchoASRTask.main_worker(argparse.Namespace(use_deepspeed=True))
    assert seen == [EchoTrainer, Trainer]
