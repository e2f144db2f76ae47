"""EchoTrainer measures CPU seconds, not wall-clock seconds, around ESPnet's train_one_epoch, and the per-epoch
file keeps finished epochs across resumes; the records' total needs every epoch."""
from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from espnet2.train.trainer import Trainer

from echo_plugin.tasks.asr import EchoASRTask
from echo_plugin.train.epoch_cpu import CPU_FILE, read_epoch_cpu, train_cpu_seconds, write_epoch_cpu
from echo_plugin.train.trainer import EchoTrainer


def burn(seconds: float) -> None:
    """Keep one core busy for ``seconds`` of this process's CPU time."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def run_epoch(monkeypatch: pytest.MonkeyPatch, out: Path, epoch: int, work) -> bool:
    """EchoTrainer.train_one_epoch with ESPnet's epoch replaced by ``work`` (the measurement is all that runs)."""
    monkeypatch.setattr(Trainer, "train_one_epoch", classmethod(lambda cls, *args: work() or True))
    reporter = SimpleNamespace(get_epoch=lambda: epoch)
    options = SimpleNamespace(output_dir=str(out))
    distributed = SimpleNamespace(distributed=False, dist_rank=0)
    return EchoTrainer.train_one_epoch(None, None, [], [], None, reporter, None, options, distributed)


def test_the_task_trains_with_echo_trainer() -> None:
    assert EchoASRTask.trainer is EchoTrainer


def test_cpu_seconds_are_counted_and_waiting_is_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_epoch(monkeypatch, tmp_path, 1, lambda: burn(0.3)) is True  # ESPnet's return value passes through
    assert run_epoch(monkeypatch, tmp_path, 2, lambda: time.sleep(0.3)) is True
    table = read_epoch_cpu(tmp_path)
    assert set(table) == {1, 2}
    assert 0.28 <= table[1] < 1.0
    assert table[2] < 0.1  # 0.3 s of wall clock, next to no CPU


def test_a_repeated_epoch_replaces_its_entry_and_keeps_the_others(tmp_path: Path) -> None:
    for epoch, seconds in ((1, 10.0), (2, 20.0), (3, 99.0)):
        write_epoch_cpu(tmp_path, epoch, seconds)
    write_epoch_cpu(tmp_path, 3, 30.0)  # epoch 3 was cut short and trained again after a resume
    assert read_epoch_cpu(tmp_path) == {1: 10.0, 2: 20.0, 3: 30.0}
    assert train_cpu_seconds(tmp_path, 3) == 60.0
    assert train_cpu_seconds(tmp_path, 2) == 30.0  # epochs beyond the trained ones are not counted
    assert not list(tmp_path.glob("*.tmp")) and (tmp_path / CPU_FILE).is_file()


def test_no_total_unless_every_epoch_was_measured(tmp_path: Path) -> None:
    assert train_cpu_seconds(tmp_path, 2) is None  # a run trained before the measurement existed
    write_epoch_cpu(tmp_path, 2, 20.0)
    assert train_cpu_seconds(tmp_path, 2) is None  # epoch 1 unmeasured: no figure rather than a low one
    assert train_cpu_seconds(tmp_path, None) is None
