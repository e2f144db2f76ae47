"""A requeued Slurm job's rerun: its log rotated, its rendezvous file removed (echo_plugin.recipe.slurm_requeue).

Without Slurm: bash runs the job scripts the launcher writes, with the variables Slurm sets on a rerun. The real
requeue of a training is test_slurm.py's test_a_requeued_training_resumes_from_its_checkpoint.
"""
from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from echo_plugin.recipe import launch, slurm_requeue
from test.recipe.test_launch import fake_sbatch


def test_rotate_keeps_every_earlier_log_and_empties_the_open_one(tmp_path: Path) -> None:
    """ESPnet's numbering (train.log -> train.1.log, older ones one up, gaps kept); the log is emptied in place, so
    that what Slurm writes through the file it holds open (appending) starts the new log."""
    log = tmp_path / "train.log"
    log.write_text("attempt 3\n")
    (tmp_path / "train.1.log").write_text("attempt 2\n")
    (tmp_path / "train.3.log").write_text("older\n")
    (tmp_path / "train.x.log").write_text("not a copy\n")
    with open(log, "a") as held:  # as Slurm holds the job's output (--open-mode=append)
        assert slurm_requeue.rotate(log) == tmp_path / "train.1.log"
        held.write("attempt 4\n")
    assert log.read_text() == "attempt 4\n"
    contents = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert contents == {"train.log": "attempt 4\n", "train.1.log": "attempt 3\n", "train.2.log": "attempt 2\n",
                        "train.4.log": "older\n", "train.x.log": "not a copy\n"}


def test_nothing_to_rotate(tmp_path: Path) -> None:
    assert slurm_requeue.rotate(tmp_path / "missing.log") is None
    (tmp_path / "empty.log").touch()
    assert slurm_requeue.rotate(tmp_path / "empty.log") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.log"]


def test_init_files_of_a_command() -> None:
    assert slurm_requeue.init_files(["train", "--dist_init_method", "file:///exp/.dist_init_a", "--x",
                                     "--dist_init_method=file:///exp/b", "--dist_init_method", "tcp://h:1"]) == [
        "/exp/.dist_init_a", "/exp/b"]
    assert slurm_requeue.init_files(["train", "--dist_init_method"]) == []


def run_restart_line(line: str, log: Path, restart: str | None) -> None:
    """The script's line as Slurm runs it: its output appended to the log, SLURM_RESTART_COUNT on a rerun."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update({"SLURM_JOB_ID": "9", **({"SLURM_RESTART_COUNT": restart} if restart is not None else {})})
    with open(log, "a") as out:
        subprocess.run(["bash", "-c", line], env=env, stdout=out, check=True)


@pytest.mark.parametrize("restart", [None, "0"])
def test_a_first_run_leaves_everything(tmp_path: Path, restart: str | None) -> None:
    log, init = tmp_path / "train.log", tmp_path / ".dist_init_x"
    log.write_text("# Started\n")
    init.touch()
    run_restart_line(slurm_requeue.restart_line(shlex.quote(str(log)), ["t", f"--dist_init_method=file://{init}"]),
                     log, restart)
    assert log.read_text() == "# Started\n" and init.exists() and not (tmp_path / "train.1.log").exists()


def test_a_rerun_rotates_its_log_and_removes_the_rendezvous_file(tmp_path: Path) -> None:
    exp = tmp_path / "exp dir's"  # quoted into the script
    exp.mkdir()
    log, init = exp / "train.log", exp / ".dist_init_x"
    log.write_text("# Started\n1/3epoch started\n*** JOB 9 CANCELLED DUE TO JOB REQUEUE ***\n")
    init.write_text("stale rendezvous")
    run_restart_line(slurm_requeue.restart_line(shlex.quote(str(log)), ["t", "--dist_init_method", f"file://{init}"]),
                     log, "2")
    assert log.read_text() == f"# Slurm restart 2 of job 9: the earlier attempt's log is {exp}/train.1.log\n"
    assert (exp / "train.1.log").read_text().startswith("# Started\n1/3epoch started\n")
    assert not init.exists()


def test_the_launchers_array_script_rotates_its_own_tasks_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture) -> None:
    """Each array task's rerun finds its own log (JOB in the log's name is the task's id), then runs the task; the
    launcher submits with --open-mode=append (and --requeue when asked), after removing the old logs, and names
    the rerun."""
    script = fake_sbatch(tmp_path, monkeypatch)
    logs = tmp_path / "log's dir"
    logs.mkdir()
    (logs / "stats.2.log").write_text("a stale log of an earlier run\n")
    assert launch.main(["--backend", "slurm", "--requeue", "JOB=1:3", str(logs / "stats.JOB.log"),
                        "echo", "task", "JOB"]) == 1  # the fake sbatch ran nothing: no end lines
    args = (tmp_path / "sbatch_args").read_text().split()
    assert "--open-mode=append" in args and "--requeue" in args
    assert not (logs / "stats.2.log").exists()
    (logs / "stats.2.log").write_text("attempt 1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(SLURM_JOB_ID="8", SLURM_ARRAY_JOB_ID="7", SLURM_ARRAY_TASK_ID="2", SLURM_RESTART_COUNT="1")
    with open(logs / "stats.2.log", "a") as out:
        subprocess.run(["bash", str(script)], env=env, stdout=out, stderr=out, check=True)
    text = (logs / "stats.2.log").read_text()
    assert text.startswith(f"# Slurm restart 1 of job 7_2: the earlier attempt's log is {logs}/stats.2.1.log\n"
                           "# echo task 2\n"), text
    assert "(Slurm job 7_2, restart 1)\ntask 2\n" in text and "# Ended (code 0)" in text, text
    assert (logs / "stats.2.1.log").read_text() == "attempt 1\n"
    # the submitting launcher names the rerun, and judges the task by it
    capsys.readouterr()
    launch.report_restarts([logs / f"stats.{i}.log" for i in (1, 2, 3)])
    assert capsys.readouterr().out == ("launch: Slurm job 7_2 was requeued and ran again (restart 1); "
                                       f"the earlier attempt's log is {logs}/stats.2.1.log\n")
    assert launch.end_of(logs / "stats.2.log") == (0, "")
