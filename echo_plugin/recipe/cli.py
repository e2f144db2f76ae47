"""The ending the recipe's data commands share: a one-line summary, or each fault on its own line."""
from __future__ import annotations

from collections.abc import Callable

from echo_plugin.recipe.data_dir import run_reporting_faults


def report(prog: str, work: Callable[[], str]) -> int:
    """Run ``work``, which returns its summary: print ``<prog>: <summary>`` and return 0; on DataDirError
    its faults, on ValueError its message, as ``<prog>: error: ...`` lines (:func:`run_reporting_faults`), and
    return 1."""
    summaries: list[str] = []
    status = run_reporting_faults(prog, lambda: summaries.append(work()), (ValueError,))
    if status == 0:
        print(f"{prog}: {summaries[0]}")
    return status
