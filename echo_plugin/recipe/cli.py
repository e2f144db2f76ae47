"""The ending the recipe's data commands share: a one-line summary, or each fault on its own line."""
from __future__ import annotations

import sys
from collections.abc import Callable

from echo_plugin.recipe.data_dir import DataDirError, report_faults


def report(prog: str, work: Callable[[], str]) -> int:
    """Run ``work``, which returns its summary: print ``<prog>: <summary>`` and return 0; on DataDirError
    its faults (report_faults), on ValueError its message, as ``<prog>: error: ...`` lines, and return 1."""
    try:
        summary = work()
    except DataDirError as e:
        return report_faults(prog, e.faults)
    except ValueError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    print(f"{prog}: {summary}")
    return 0
