"""leave_process_group: every rank of a two-process gloo group leaves it, and exits 0; finish_worker then ends
the process at once with its output flushed and its tensorboard events on disk."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch.distributed as dist

from echo_plugin.train.process_group import finish_worker, leave_process_group

RANK = """
import sys, torch, torch.distributed as dist
from echo_plugin.train.process_group import leave_process_group
rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method="file://" + sys.argv[2], rank=rank, world_size=2)
total = torch.tensor([rank + 1.0])
dist.all_reduce(total)
left = leave_process_group()
print(int(total.item()), left, dist.is_initialized())
"""


def test_without_a_group_nothing_is_done() -> None:
    assert leave_process_group() is False


def test_both_ranks_leave_the_group_and_exit_cleanly(tmp_path: Path) -> None:
    init = tmp_path / "init"
    ranks = [subprocess.Popen([sys.executable, "-c", RANK, str(rank), str(init)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outputs = [rank.communicate(timeout=120) for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], [err[-2000:] for _, err in outputs]
    assert [out.split() for out, _ in outputs] == [["3", "True", "False"]] * 2


FINISH = """
import atexit, logging, sys, torch, torch.distributed as dist
from torch.utils.tensorboard import SummaryWriter
from echo_plugin.train.process_group import finish_worker
rank = int(sys.argv[1])
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
atexit.register(print, "teardown ran")  # os._exit skips the interpreter's teardown
dist.init_process_group("gloo", init_method="file://" + sys.argv[2], rank=rank, world_size=2)
writer = SummaryWriter(sys.argv[3] + f"/rank{rank}", flush_secs=3600)  # never flushed, never closed (as ESPnet's)
writer.add_scalar("loss", 1.5 + rank, 7)
del writer
print("trained", end="")  # no newline: still in the buffer
logging.info("worker done")
finish_worker()
print("after finish_worker")
"""


def test_a_distributed_worker_exits_zero_without_teardown_and_loses_no_output(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    init = tmp_path / "init"
    ranks = [subprocess.Popen([sys.executable, "-c", FINISH, str(rank), str(init), str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outputs = [rank.communicate(timeout=120) for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], [err[-2000:] for _, err in outputs]
    assert [out for out, _ in outputs] == ["trained"] * 2  # flushed; nothing after it ran, no atexit either
    assert all("worker done" in err for _, err in outputs)
    for rank in (0, 1):  # the events of a writer ESPnet leaves open are on disk
        events = EventAccumulator(str(tmp_path / f"rank{rank}"))
        events.Reload()
        assert [(s.step, s.value) for s in events.Scalars("loss")] == [(7, 1.5 + rank)]


def test_finish_worker_without_a_group_returns() -> None:
    finish_worker()  # not distributed: the process goes on
    assert not dist.is_initialized()
