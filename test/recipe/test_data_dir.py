"""run_reporting_faults: the exit status and stderr lines of a recipe command's body."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from echo_plugin.recipe.data_dir import DataDirError, run_reporting_faults


def fail_with(error: Exception) -> Callable[[], None]:
    """A step that raises ``error``."""
    def step() -> None:
        raise error
    return step


def test_a_step_that_returns_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_reporting_faults("tool", lambda: None, (ValueError,)) == 0
    assert capsys.readouterr().err == ""


def test_faults_and_listed_errors_are_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_reporting_faults("tool", fail_with(DataDirError(["a.scp: x", "b.scp: y"])), (ValueError,)) == 1
    assert capsys.readouterr().err == "tool: error: a.scp: x\ntool: error: b.scp: y\n"
    assert run_reporting_faults("tool", fail_with(FileNotFoundError("no such dir: d")), (FileNotFoundError,)) == 1
    assert capsys.readouterr().err == "tool: error: no such dir: d\n"


def test_an_unlisted_error_propagates() -> None:
    with pytest.raises(KeyError):
        run_reporting_faults("tool", fail_with(KeyError("k")), (ValueError,))
