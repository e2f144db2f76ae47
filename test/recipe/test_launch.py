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


FAKE_SBATCH = """#!{python}
# sbatch as the launcher calls it (options, --wait --parsable, the script): prints a job id, then runs the
# script once per array task with Slurm's variables, its output to --output (%a: the task id)
import os, re, subprocess, sys
args = sys.argv[1:]
open({record!r}, "w").write(" ".join(args))
opts = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
first, last = map(int, re.match(r"(\\d+)-(\\d+)", opts.get("array", "1-1")).groups())
print(42, flush=True)
code = 0
for task in range(first, last + 1):
    env = dict(os.environ, SLURM_JOB_ID="42", SLURM_ARRAY_JOB_ID="42", SLURMD_NODENAME="fake")
    if "array" in opts:
        env["SLURM_ARRAY_TASK_ID"] = str(task)
    with open(opts["output"].replace("%a", str(task)).replace("%%", "%"), "w") as out:
        code = max(code, subprocess.run(["bash", args[-1]], env=env, stdout=out, stderr=out).returncode)
sys.exit(code)
"""


def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake sbatch on PATH (FAKE_SBATCH); returns the file its arguments are written to."""
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text(FAKE_SBATCH.format(python=sys.executable, record=str(tmp_path / "sbatch_args")))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ECHO_SLURM_OPTS", "--partition=cpu")
    monkeypatch.delenv("ECHO_SLURM_CONF", raising=False)
    return tmp_path / "sbatch_args"


def test_slurm_backend_submits_one_array_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One sbatch --array for JOB=1:N with the job's options mapped by the (built-in) config; each task runs the
    command through the launcher inside the job, which logs as the local backend does and writes the time file."""
    record = fake_slurm(tmp_path, monkeypatch)
    words = ["bash", "-c", f"echo task JOB > '{tmp_path}/out JOB'"]  # a word with spaces and quotes
    code = launch.main(["--backend", "slurm", "--gpu", "1", "--mem", "2G", "--time_file", str(tmp_path / "sec.JOB"),
                        "JOB=1:3", str(tmp_path / "logs" / "log.JOB"), *words])
    assert code == 0
    for i in (1, 2, 3):
        assert (tmp_path / f"out {i}").read_text() == f"task {i}\n"
        log = (tmp_path / "logs" / f"log.{i}").read_text()
        assert f"(Slurm job 42_{i})" in log and "# Ended (code 0)" in log and "max_rss_mb=" in log
        assert float((tmp_path / f"sec.{i}").read_text()) >= 0.0
    args = record.read_text()
    assert args.startswith("--export=ALL ") and args.endswith(" --partition=cpu --wait --parsable " + args.split()[-1])
    for option in ("--job-name log", "--time 24:00:00", "--mem-per-cpu 2G", "--gres=gpu:1", "--array=1-3",
                   f"--output={tmp_path}/logs/log.%a"):
        assert f" {option} " in args, args


def test_a_failing_array_task_is_named_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    fake_slurm(tmp_path, monkeypatch)
    code = launch.main(["--backend", "slurm", "JOB=1:3", str(tmp_path / "log.JOB"),
                        "bash", "-c", "echo out JOB; test JOB -ne 2"])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err == f"launch: job 2/3 (Slurm job 42) failed with exit code 1; log {tmp_path}/log.2", err


def test_slurm_config_of_espnet(tmp_path: Path) -> None:
    """ESPnet's egs2/TEMPLATE/asr1/conf/slurm.conf, as its recipes ship it, maps the options as its slurm.pl does."""
    config = launch.SlurmConfig("""\
# Default configuration
command sbatch --export=PATH
option name=* --job-name $0
default time=24:00:00
option time=* --time $0
option mem=* --mem-per-cpu $0
option mem=0
option num_threads=* --cpus-per-task $0
option num_threads=1 --cpus-per-task 1
option num_nodes=* --nodes $0
default gpu=0
option gpu=0 -p cpu
option gpu=* -p gpu --gres=gpu:$0 -c $0  # Recommend allocating more CPU than, or equal to the number of GPU
""")
    assert config.command == ["sbatch", "--export=PATH"]
    assert config.sbatch_options({}) == ["--time", "24:00:00", "-p", "cpu"]
    assert config.sbatch_options({"gpu": "2", "mem": "4G", "num_threads": "1", "time": "1:00:00"}) == [
        "--time", "1:00:00", "-p", "gpu", "--gres=gpu:2", "-c", "2", "--mem-per-cpu", "4G", "--cpus-per-task", "1"]
    assert config.sbatch_options({"mem": "0"}) == ["--time", "24:00:00", "-p", "cpu"]
    with pytest.raises(ValueError, match="no 'option account=...' line"):
        config.sbatch_options({"account": "x"})
    with pytest.raises(ValueError, match=r"x.conf:1: cannot read 'options gpu=1'"):
        launch.SlurmConfig("options gpu=1\n", "x.conf")


def test_cmd_sh_job_classes_map_through_the_template_config(tmp_path: Path) -> None:
    """cmd.sh gives each kind of job its class; the template's conf/slurm.conf maps every one of them."""
    import subprocess

    template = Path(launch.__file__).resolve().parents[2] / "egs" / "TEMPLATE" / "asr1"
    (tmp_path / "cmd.sh").symlink_to(template / "cmd.sh")  # as a recipe links it
    shell = ("train_threads=3; cmd_backend=slurm; source ./cmd.sh; "
             'printf "%s\\n" "$ECHO_SLURM_CONF" "$train_cmd" "$cuda_cmd" "$decode_cmd"')
    lines = subprocess.run(["bash", "-c", shell], cwd=tmp_path, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert lines[0] == str(template / "conf" / "slurm.conf")
    config = launch.SlurmConfig.load(lines[0])
    classes, requeue = [], []
    for cmd in lines[1:]:
        words = cmd.split()
        assert words[:4] == ["python", "-m", "echo_plugin.recipe.launch", "--backend"] and words[4] == "slurm"
        own, job, rest = launch.split_options(launch.get_parser(), [*words[5:], "--gpu", "1", "log", "true"])
        args = launch.get_parser().parse_args(own)
        options = {k: str(getattr(args, k)) for k in launch.JOB_OPTIONS if getattr(args, k) is not None}
        classes.append(" ".join(config.sbatch_options(options)))
        requeue.append(args.requeue)
        assert rest == ["log", "true"]
    assert classes == ["--time 4:00:00 --gres=gpu:1 --cpus-per-task 1 --mem-per-cpu 2G",
                       "--time 72:00:00 --gres=gpu:1 --cpus-per-task 3 --mem-per-cpu 4G",
                       "--time 8:00:00 --gres=gpu:1 --cpus-per-task 1 --mem-per-cpu 4G"]
    assert requeue == [False, True, False]  # training may be requeued (it resumes from its checkpoint)

    # a class set in the environment; a recipe's own conf/slurm.conf; slurm_conf=FILE
    def sourced(prefix: str) -> list[str]:
        return subprocess.run(["bash", "-c", f"{prefix} source ./cmd.sh; "
                               'printf "%s\\n" "$ECHO_SLURM_CONF" "$decode_cmd"'],
                              cwd=tmp_path, capture_output=True, text=True, check=True).stdout.splitlines()

    assert sourced('decode_job_opts="--mem 8G";')[1].endswith(" --backend local --mem 8G")
    cuda_cmd = subprocess.run(["bash", "-c", 'train_requeue=false; source ./cmd.sh; echo "$cuda_cmd"'], cwd=tmp_path,
                              capture_output=True, text=True, check=True).stdout
    assert "--requeue" not in cuda_cmd and "--time 72:00:00" in cuda_cmd
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "slurm.conf").write_text("command sbatch\n")
    assert sourced("")[0] == str(tmp_path / "conf" / "slurm.conf")
    assert sourced("slurm_conf=/site/slurm.conf;")[0] == "/site/slurm.conf"


def test_the_template_slurm_conf_is_the_packaged_default() -> None:
    """One source for the job classes: the recipes' conf/slurm.conf is a link to the launcher's default."""
    template = Path(__file__).resolve().parents[2] / "egs" / "TEMPLATE" / "asr1" / "conf" / "slurm.conf"
    assert template.is_symlink() and template.resolve() == launch.DEFAULT_SLURM_CONF_PATH.resolve()
    assert launch.SlurmConfig.load(None).sbatch_options({"gpu": "2"})[-1] == "--gres=gpu:2"


def test_job_options_are_checked_against_the_config_by_the_local_backend_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("ECHO_SLURM_CONF", raising=False)
    assert launch.main(["--mem", "1G", "--time", "1:00", str(tmp_path / "log"), "true"]) == 0
    for backend in ("local", "slurm"):  # refused before anything runs (slurm: before sbatch)
        assert launch.main(["--backend", backend, "--memory", "1G", str(tmp_path / "log"), "true"]) == 2
        err = capsys.readouterr().err
        assert err == f"launch: --memory: {launch.DEFAULT_SLURM_CONF_PATH} has no 'option memory=...' line\n", err
    conf = tmp_path / "slurm.conf"
    conf.write_text("command sbatch\noption gpu=* --gres=gpu:$0\noption account=* --account=$0\n")
    assert launch.main(["--config", str(conf), "--account", "me", "--gpu", "1", str(tmp_path / "log"), "true"]) == 0
    assert launch.main(["--config", str(tmp_path / "none.conf"), str(tmp_path / "log"), "true"]) == 2


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


# one write per line: the ranks share the log, and print() of several words writes each on its own where
# PYTHONUNBUFFERED is set (the two ranks' words then interleave)
RANK_PROBE = ("import os, sys; e = os.environ; sys.stdout.write(' '.join(['rank', e['SLURM_PROCID'], 'of', "
              "e['SLURM_NTASKS'], 'node', e['SLURM_NODEID'], 'step', e['SLURM_STEP_NUM_NODES'], 'args', "
              "*sys.argv[1:]]) + '\\n')")


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


def test_local_ranks_never_split_each_others_lines(tmp_path: Path) -> None:
    """Each rank writes every line in two unbuffered pieces; the shared log still holds whole lines only."""
    log = tmp_path / "train.log"
    script = ("import os, sys, time; r = os.environ['SLURM_PROCID']; w = sys.stdout.write; f = sys.stdout.flush; "
              "[(w(f'rank{r}-'), f(), time.sleep(0.002), w(f'line{i}\\n'), f()) for i in range(300)]")
    assert launch.main(["--num_nodes", "2", str(log), "mpirun", "-np", "2", sys.executable, "-u", "-c", script]) == 0
    lines = [line for line in log.read_text().splitlines() if not line.startswith("#")]
    assert sorted(lines) == sorted(f"rank{r}-line{i}" for r in (0, 1) for i in range(300))


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
    """An sbatch that keeps the script it is given (as script.sh) and its arguments, and prints a job id; the job
    runs nothing."""
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text("#!/usr/bin/env bash\n"
                    f"echo \"$@\" > {tmp_path}/sbatch_args; cp \"${{@: -1}}\" {tmp_path}/script.sh; echo 7\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ECHO_SLURM_OPTS", "--partition=gpu")
    monkeypatch.delenv("ECHO_SLURM_CONF", raising=False)
    return tmp_path / "script.sh"


def test_slurm_backend_runs_several_nodes_with_srun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The multi-node form becomes one sbatch job: M nodes, one task each, the command under srun (through the
    launcher's task runner, which logs each rank's end), a failed rank stopping the others."""
    script = fake_sbatch(tmp_path, monkeypatch)
    log = tmp_path / "exp" / "train.log"
    code = launch.main(["--backend", "slurm", "--gpu", "2", "--num_threads", "2", "--num_nodes", "3",
                        "--name", "asr_x", str(log), "mpirun", "-np", "3", "python", "-m", "train",
                        "--dist_launcher", "mpi", "--dist_init_method", "file:///shared/.dist_init_1"])
    assert code == 0
    args = (tmp_path / "sbatch_args").read_text()
    for option in ("--nodes=3", "--ntasks-per-node=1", f"--output={log}", "--gres=gpu:2",
                   "--cpus-per-task 2", "--job-name asr_x", "--partition=gpu --wait --parsable"):
        assert f" {option} " in args, args
    text = script.read_text()
    assert (f"\nexec srun --export=ALL --kill-on-bad-exit=1 {sys.executable} -m echo_plugin.recipe.launch "
            f"--run_task 1 --num_nodes 3 {log} python -m train --dist_launcher slurm "
            "--dist_init_method file:///shared/.dist_init_1\n") in text, text
    assert "mpirun" not in text and "--array" not in args
    assert log.parent.is_dir()


def test_slurm_backend_keeps_espnets_srun_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = fake_sbatch(tmp_path, monkeypatch)
    assert launch.main(["--backend", "slurm", "--num_nodes", "2", str(tmp_path / "train.log"),
                        "srun", "--export=ALL", "python", "-m", "train", "--dist_launcher", "slurm"]) == 0
    text = script.read_text()
    assert "--nodes=2 " in (tmp_path / "sbatch_args").read_text()
    assert "\nexec srun --export=ALL --kill-on-bad-exit=1 " in text
    assert text.endswith(" python -m train --dist_launcher slurm\n")
    assert "--gres" not in (tmp_path / "sbatch_args").read_text()


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


def test_the_rank_that_failed_on_its_own_is_named_not_one_srun_stopped() -> None:
    """Under load the rank srun stopped (signal: a negative code) may log its end before the rank that failed."""
    stopped_first = "# Ended rank 0/2 (code -15) at x\n# Ended rank 1/2 (code 3) at y\n"
    assert launch.first_failure(stopped_first) == (1, 3)
    assert launch.first_failure("# Ended rank 1/2 (code -9) at x\n# Ended rank 0/2 (code -15) at y\n") == (1, -9)
    assert launch.first_failure("# Ended rank 0/2 (code 0) at x\n") is None
