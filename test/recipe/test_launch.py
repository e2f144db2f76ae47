"""The Kaldi-style job launcher: JOB substitution, logs, failure reporting, slurm script; the forms ESPnet's
distributed launcher (espnet2.bin.launch) gives it, several nodes locally (srun's variables) and on Slurm."""
from __future__ import annotations

import os
import re
import stat
import sys
import time
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


# ESPnet's distributed launcher (espnet2.bin.launch, asr.sh stage 5) gives its --cmd these forms.

def test_espnet_single_node_form_keeps_the_commands_own_options(tmp_path: Path) -> None:
    """--gpu N --name X LOG COMMAND... (no JOB range); COMMAND's own --gpu is not the launcher's."""
    code = launch.main(["--gpu", "0", "--name", "exp/asr_x/train.log", str(tmp_path / "train.log"),
                        "echo", "args:", "--gpu", "3", "--ngpu", "0"])
    assert code == 0
    assert "args: --gpu 3 --ngpu 0" in (tmp_path / "train.log").read_text()


RANK_PROBE = ("import os, sys; e = os.environ; print('rank', e['SLURM_PROCID'], 'of', e['SLURM_NTASKS'], "
              "'node', e['SLURM_NODEID'], 'step', e['SLURM_STEP_NUM_NODES'], 'args', *sys.argv[1:])")


def test_local_backend_stands_in_for_nodes_with_srun_variables(tmp_path: Path) -> None:
    """--num_nodes 2 LOG mpirun -np 2 CMD: two processes here, each with the variables srun sets for its task;
    ESPnet's --dist_launcher mpi (mpi4py) becomes slurm, which reads them."""
    log = tmp_path / "train.log"
    code = launch.main(["--gpu", "0", "--num_threads", "1", "--num_nodes", "2", "--name", "x", str(log),
                        "mpirun", "-np", "2", sys.executable, "-c", RANK_PROBE,
                        "--multiprocessing_distributed", "true", "--dist_launcher", "mpi"])
    assert code == 0
    text = log.read_text()
    for rank in (0, 1):
        assert f"rank {rank} of 2 node {rank} step 2 args --multiprocessing_distributed true --dist_launcher slurm" \
            in text
        assert f"# Ended rank {rank}/2 (code 0)" in text
    assert len(re.findall(r"# Accounting: rank=\d time=\S+ max_rss_mb=[0-9.]+", text)) == 2
    assert "mpi\n" not in text and "mpirun" not in text.split("\n", 1)[1]


def test_local_nodes_srun_form(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    assert launch.main(["--num_nodes", "2", str(log), "srun", "--export=ALL", sys.executable, "-c", RANK_PROBE,
                        "--dist_launcher", "slurm"]) == 0
    text = log.read_text()
    assert "rank 0 of 2" in text and "rank 1 of 2" in text


def test_a_failing_rank_stops_the_others(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Rank 1 fails at once; rank 0 (which would wait on it, as in a collective) is stopped, not waited for."""
    log = tmp_path / "train.log"
    script = "import os, sys, time; sys.exit(3) if os.environ['SLURM_PROCID'] == '1' else time.sleep(300)"
    start = time.time()
    assert launch.main(["--num_nodes", "2", str(log), "mpirun", "-np", "2", sys.executable, "-c", script]) == 1
    assert time.time() - start < 60
    text = log.read_text()
    assert "# Ended rank 1/2 (code 3)" in text and "stopping ranks [0]" in text and "# Ended rank 0/2" in text
    assert "rank(s) [1] of 2 failed" in capsys.readouterr().err


def test_local_nodes_each_get_their_own_gpus() -> None:
    envs = [launch.rank_env(rank, 2, 2, "h", ["4", "5", "6", "7"]) for rank in (0, 1)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["4,5", "6,7"]
    assert launch.rank_env(1, 2, 1, "h", None)["CUDA_VISIBLE_DEVICES"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in launch.rank_env(1, 2, 0, "h", ["0"])
    with pytest.raises(ValueError, match="need 4 GPUs"):
        launch.rank_env(0, 2, 2, "h", ["0", "1"])


def test_num_nodes_needs_a_node_launcher(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        launch.main(["--num_nodes", "2", str(tmp_path / "log"), "echo", "hi"])
    with pytest.raises(SystemExit):
        launch.main(["--num_nodes", "2", str(tmp_path / "log"), "mpirun", "-np", "3", "echo", "hi"])


def fake_sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An sbatch that keeps the script it is given (as script.sh) and its arguments; a Slurm job runs nothing."""
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text("#!/usr/bin/env bash\n"
                    f"echo \"$@\" > {tmp_path}/sbatch_args; cp \"${{@: -1}}\" {tmp_path}/script.sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ECHO_SLURM_OPTS", "--partition=gpu")
    return tmp_path / "script.sh"


def test_slurm_backend_runs_several_nodes_with_srun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The multi-node form becomes one sbatch job: M nodes, one task each, the command under srun."""
    script = fake_sbatch(tmp_path, monkeypatch)
    log = tmp_path / "exp" / "train.log"
    code = launch.main(["--backend", "slurm", "--gpu", "2", "--num_threads", "2", "--num_nodes", "3",
                        "--name", "asr_x", str(log), "mpirun", "-np", "3", "python", "-m", "train",
                        "--dist_launcher", "mpi", "--dist_init_method", "file:///shared/.dist_init_1"])
    assert code == 0
    text = script.read_text()
    for directive in ("--nodes=3", "--ntasks-per-node=1", f"--output={log}", "--gres=gpu:2",
                      "--cpus-per-task=2", "--job-name=asr_x"):
        assert f"#SBATCH {directive}\n" in text, text
    assert ("\nsrun --export=ALL python -m train --dist_launcher slurm "
            "--dist_init_method file:///shared/.dist_init_1\n") in text, text
    assert "mpirun" not in text and "--array" not in text
    assert "--wait --partition=gpu" in (tmp_path / "sbatch_args").read_text()
    assert log.parent.is_dir()


def test_slurm_backend_keeps_espnets_srun_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = fake_sbatch(tmp_path, monkeypatch)
    assert launch.main(["--backend", "slurm", "--num_nodes", "2", str(tmp_path / "train.log"),
                        "srun", "--export=ALL", "python", "-m", "train", "--dist_launcher", "slurm"]) == 0
    text = script.read_text()
    assert "#SBATCH --nodes=2\n" in text and "\nsrun --export=ALL python -m train --dist_launcher slurm\n" in text
    assert "--gres" not in text


DIST_PROBE = '''
import sys, torch, torch.distributed as dist
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.distributed_utils import DistributedOption, resolve_distributed_mode
from espnet2.utils.build_dataclass import build_dataclass
args = AbsTask.get_parser().parse_known_args(sys.argv[1:])[0]
resolve_distributed_mode(args)
option = build_dataclass(DistributedOption, args)
option.init_options()
option.init_torch_distributed()
t = torch.tensor([float(option.dist_rank + 1)])
dist.all_reduce(t)
print(f"rank {option.dist_rank} world {option.dist_world_size} backend {dist.get_backend()} sum {t.item()}")
dist.destroy_process_group()
'''


def test_espnet_launch_through_the_local_backend_trains_on_two_nodes(tmp_path: Path) -> None:
    """espnet2.bin.launch --num_nodes 2 --ngpu 0 with this launcher as --cmd: ESPnet's own rank discovery and
    init (file://, gloo) in two local processes, which all-reduce; the earlier log is kept (train.1.log)."""
    import subprocess

    probe = tmp_path / "probe.py"
    probe.write_text(DIST_PROBE)
    log = tmp_path / "exp" / "train.log"
    log.parent.mkdir()
    log.write_text("the earlier run\n")
    command = [sys.executable, "-m", "espnet2.bin.launch",
               "--cmd", f"{sys.executable} -m echo_plugin.recipe.launch --backend local --name exp",
               "--log", str(log), "--ngpu", "0", "--num_nodes", "2",
               "--init_file_prefix", str(tmp_path / "exp" / ".dist_init_"), "--multiprocessing_distributed", "true",
               "--", sys.executable, str(probe)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr + (log.read_text() if log.exists() else "")
    text = log.read_text()
    for rank in (0, 1):
        assert f"rank {rank} world 2 backend gloo sum 3.0" in text, text
    assert (tmp_path / "exp" / "train.1.log").read_text() == "the earlier run\n"
