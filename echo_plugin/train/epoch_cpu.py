"""CPU seconds per training epoch, the load-independent training cost of the records.

Wall-clock training time depends on what else the machine runs (two trainings beside
each other on two cores, a CI run beside them), so it cannot rank mechanisms by cost.
The CPU time a training process spends in each epoch's ``train_one_epoch`` (user plus
system, all its threads, plus the data-loader workers it reaped) does not depend on
the load. :class:`echo_plugin.train.trainer.EchoTrainer` measures it and writes
``<output_dir>/train_cpu_seconds.json`` (``{"<epoch>": seconds}``) after every epoch,
atomically, so a resumed run keeps the epochs it finished and a repeated epoch replaces
its own entry; the records read the total from it.
"""
from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Optional

from echo_plugin.recipe.io import atomic_write_text

CPU_FILE = "train_cpu_seconds.json"


def process_cpu_seconds() -> float:
    """User plus system CPU seconds of this process (all threads) and its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def read_epoch_cpu(exp_dir: Path) -> dict[int, float]:
    """Epoch -> CPU seconds from ``exp_dir``'s file; empty when there is none."""
    path = Path(exp_dir) / CPU_FILE
    if not path.is_file():
        return {}
    return {int(epoch): float(seconds) for epoch, seconds in json.loads(path.read_text(encoding="utf-8")).items()}


def write_epoch_cpu(exp_dir: Path, epoch: int, seconds: float) -> None:
    """Set ``epoch``'s CPU seconds in ``exp_dir``'s file (atomic; the other epochs kept)."""
    table = read_epoch_cpu(exp_dir)
    table[epoch] = seconds
    text = json.dumps({str(e): round(s, 3) for e, s in sorted(table.items())}, indent=1)
    atomic_write_text(Path(exp_dir) / CPU_FILE, text + "\n")


def train_cpu_seconds(exp_dir: Path, epochs: Optional[int]) -> Optional[float]:
    """CPU seconds of training epochs 1..``epochs``; None unless every one of them was measured (a run begun
    before the measurement existed, or an epoch cut short, gives no figure rather than a low one)."""
    table = read_epoch_cpu(exp_dir)
    if not epochs or any(e not in table for e in range(1, epochs + 1)):
        return None
    return sum(table[e] for e in range(1, epochs + 1))
