"""leave_process_group: every rank of a two-process gloo group leaves it, and exits 0."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from echo_plugin.train.process_group import leave_process_group

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
