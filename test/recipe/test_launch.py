"""The Kaldi-style job launcher: JOB substitution, logs, failure reporting, slurm script."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from echo_plugin.recipe import launch


def test_local_runs_every_job_with_its_index(tmp_path: Path) -> None:
    code = launch.main([
        "--time_file", str(tmp_path / "sec.JOB"), "JOB=1:3", str(tmp_path / "log.JOB.txt"),
        "bash", "-c", f"echo job JOB > {tmp_path}/out.JOB",
    ])
    assert code == 0
    for i in (1, 2, 3):
        assert (tmp_path / f"out.{i}").read_text() == f"job {i}\n"
        log = (tmp_path / f"log.{i}.txt").read_text()
        assert log.startswith("# ") and "Ended (code 0)" in log
        assert float((tmp_path / f"sec.{i}").read_text()) >= 0.0


def test_job_word_boundaries_are_respected(tmp_path: Path) -> None:
    assert launch.substitute(["keys.JOB.scp", "JOBS", "xJOB"], "JOB", 2) == ["keys.2.scp", "JOBS", "xJOB"]


def test_a_failing_job_fails_the_launch_and_shows_its_log(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = launch.main(["JOB=1:2", str(tmp_path / "log.JOB"), "bash", "-c", "echo boom-JOB; test JOB -eq 1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "job 2/2 failed" in err and "boom-2" in err and "job 1/2" not in err


def test_single_job_short_form(tmp_path: Path) -> None:
    assert launch.main([str(tmp_path / "one.log"), "echo", "hello"]) == 0
    assert "hello" in (tmp_path / "one.log").read_text()


def test_slurm_backend_submits_one_array_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake sbatch runs the array script once per task id, as Slurm would."""
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text(
        "#!/usr/bin/env bash\n"
        "script=${@: -1}; echo \"$@\" > " + str(tmp_path / "sbatch_args") + "\n"
        "range=$(sed -n 's/^#SBATCH --array=//p' \"$script\"); "
        "for i in $(seq ${range%-*} ${range#*-}); do SLURM_ARRAY_TASK_ID=$i bash \"$script\" || exit 1; done\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ECHO_SLURM_OPTS", "--partition=cpu --time=1:00:00")
    code = launch.main(["--backend", "slurm", "--gpu", "1", "JOB=1:2", str(tmp_path / "log.JOB"),
                        "bash", "-c", f"echo task JOB > {tmp_path}/out.JOB"])
    assert code == 0
    assert (tmp_path / "out.1").read_text() == "task 1\n" and (tmp_path / "out.2").read_text() == "task 2\n"
    args = (tmp_path / "sbatch_args").read_text()
    assert "--wait" in args and "--partition=cpu" in args


def test_the_log_records_each_jobs_peak_memory(tmp_path: Path) -> None:
    import subprocess
    import sys

    from echo_plugin.recipe.records import peak_rss_mb

    # the launcher runs in its own small process, as the recipes run it: a forked child starts with its
    # parent's resident pages counted, so launching from this (torch-sized) test process would hide the jobs'
    grow = "x = bytearray(JOB * 100 * 2**20); x[::4096] = b'1' * len(x[::4096])"
    launcher = [sys.executable, "-m", "echo_plugin.recipe.launch", "JOB=1:2", str(tmp_path / "log.JOB"),
                sys.executable, "-c", grow]
    assert subprocess.run(launcher, capture_output=True).returncode == 0
    small, large = (peak_rss_mb(tmp_path / f"log.{i}") for i in (1, 2))
    assert 100 <= small < 200 <= large < 400, (small, large)
