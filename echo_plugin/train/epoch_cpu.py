"""CPU seconds per training epoch, the load-independent training cost of the records.

Wall-clock training time depends on what else the machine runs (two trainings beside
each other on two cores, a CI run beside them), so it cannot rank mechanisms by cost.
The CPU time a training process spends in each epoch's ``train_one_epoch`` (user plus
system, all its threads, plus the data-loader workers it reaped) does not depend on
the load (cache contention aside). :class:`echo_plugin.train.trainer.EchoTrainer` measures it and writes
``<output_dir>/train_cpu_seconds.json`` (``{"<epoch>": {"seconds": s, "setup": label}}``)
after every epoch, atomically, so a resumed run keeps the epochs it finished and a repeated epoch replaces
its own entry; the records read the total from it.
"""
from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any, Optional

from echo_plugin.recipe.io import atomic_write_text

CPU_FILE = "train_cpu_seconds.json"


def process_cpu_seconds() -> float:
    """User plus system CPU seconds of this process (all threads) and its reaped children.

    Children count once reaped: data-loader workers (spawned per epoch unless persistent) are counted in
    the epoch that ends them; the recipes' configs load data in the training process (``num_workers: 0``).
    """
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def setup_label(device: str, threads: int, processes: int) -> str:
    """How a training ran, as its CPU seconds depend on it: ``cpu, 1 thread, 1 process``. CPU seconds are
    comparable between runs of one setup only (a GPU run's CPU time is mostly waiting on the GPU; more
    threads or processes add their synchronisation)."""
    return f"{device}, {threads} thread{'s' * (threads != 1)}, {processes} process{'es' * (processes != 1)}"


def read_epoch_cpu(exp_dir: Path) -> dict[int, dict[str, Any]]:
    """Epoch -> {"seconds": CPU seconds, "setup": :func:`setup_label` or None where not written}; empty when
    there is no file."""
    path = Path(exp_dir) / CPU_FILE
    if not path.is_file():
        return {}
    table = json.loads(path.read_text(encoding="utf-8"))
    return {int(epoch): entry if isinstance(entry, dict) else {"seconds": float(entry), "setup": None}
            for epoch, entry in table.items()}


def write_epoch_cpu(exp_dir: Path, epoch: int, seconds: float, setup: Optional[str] = None) -> None:
    """Set ``epoch``'s CPU seconds (and the setup they were measured in) in ``exp_dir``'s file (atomic; the
    other epochs kept)."""
    table = read_epoch_cpu(exp_dir)
    table[epoch] = {"seconds": round(seconds, 3), "setup": setup}
    text = json.dumps({str(e): entry for e, entry in sorted(table.items())}, indent=1)
    atomic_write_text(Path(exp_dir) / CPU_FILE, text + "\n")


def train_cpu(exp_dir: Path, epochs: Optional[int]) -> tuple[Optional[float], Optional[str]]:
    """(CPU seconds of training epochs 1..``epochs``, their setup); (None, None) unless every one of them was
    measured (a run begun before the measurement existed, or an epoch cut short, gives no figure rather than
    a low one); the setup is ``mixed`` when a resumed run changed it, None where it was not written."""
    table = read_epoch_cpu(exp_dir)
    if not epochs or any(e not in table for e in range(1, epochs + 1)):
        return None, None
    entries = [table[e] for e in range(1, epochs + 1)]
    setups = {entry["setup"] for entry in entries}
    return sum(entry["seconds"] for entry in entries), setups.pop() if len(setups) == 1 else "mixed"


def mean_in_one_setup(measured: list[tuple[float, Optional[str]]]) -> tuple[Optional[float], Optional[str]]:
    """(mean seconds, their setup) of (seconds, setup) measurements; (None, "mixed") when the setups differ,
    as such seconds do not compare; (None, None) for none."""
    setups = {setup for _, setup in measured}
    if len(setups) > 1:
        return None, "mixed"
    return (sum(seconds for seconds, _ in measured) / len(measured), setups.pop()) if measured else (None, None)
