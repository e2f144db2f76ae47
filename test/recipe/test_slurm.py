"""The Slurm backend against a real Slurm (slurm_cluster: munged, slurmctld and two slurmd on this machine).

Array jobs, a failing task named in one line, the job classes' options as Slurm sees them, cancellation of an
interrupted launch, two nodes through ESPnet's launcher (srun, ESPnet's rank discovery, gloo), the FSDD
recipe through cmd_backend=slurm, and its training, on one node and on two (asr.sh --num_nodes 2), requeued,
resuming from its checkpoint. Skipped where Slurm is not installed (``make sysdeps`` installs it).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from echo_plugin.recipe import launch
from echo_plugin.recipe.records import peak_rss_mb
from test.recipe.recipe_helpers import FSDD, REPO, TINY_CONFIG, copy_recipe, recipe_env, run_recipe
from test.recipe.slurm_cluster import SlurmCluster, missing
from test.recipe.test_launch import DIST_PROBE

TEMPLATE_CONF = REPO / "egs" / "TEMPLATE" / "asr1" / "conf" / "slurm.conf"
JOB_ID = re.compile(r"^launch: Slurm job (\d+)$", re.M)


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    absent = missing()
    if absent:
        pytest.skip(f"no Slurm here ({', '.join(absent)} not found; make sysdeps installs slurm-wlm and munge)")
    cluster = SlurmCluster()
    saved = os.environ.get("SLURM_CONF")
    try:
        cluster.start()
        os.environ["SLURM_CONF"] = str(cluster.conf)
        yield cluster
    finally:
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        cluster.stop()


@pytest.fixture(autouse=True)
def no_site_options(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ECHO_SLURM_CONF", "ECHO_SLURM_OPTS", "cmd_backend", "slurm_conf", "slurm_opts"):
        monkeypatch.delenv(name, raising=False)


def scontrol_job(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout


def test_an_array_job_of_three_tasks(slurm: SlurmCluster, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """JOB=1:3 is one job array (at most 2 tasks at a time: --max_jobs); every task logs the local backend's lines
    and writes its time file."""
    code = launch.main(["--backend", "slurm", "--max_jobs", "2", "--time_file", str(tmp_path / "sec.JOB"), "JOB=1:3",
                        str(tmp_path / "logs" / "task.JOB.log"),
                        "bash", "-c", f"echo task JOB on $SLURMD_NODENAME; echo JOB > '{tmp_path}/out JOB'"])
    out = capsys.readouterr()
    assert code == 0, out
    job_id = JOB_ID.search(out.out)[1]
    for i in (1, 2, 3):
        log = (tmp_path / "logs" / f"task.{i}.log").read_text()
        assert re.search(rf"^task {i} on n[12]$", log, re.M), log
        assert f"(Slurm job {job_id}_{i})" in log and "# Ended (code 0)" in log and "max_rss_mb=" in log, log
        assert (tmp_path / f"out {i}").read_text() == f"{i}\n"
        assert float((tmp_path / f"sec.{i}").read_text()) >= 0
    job = scontrol_job(job_id)
    assert re.search(r"\bJobName=task\s", job) and "ArrayTaskThrottle=2" in job, job  # named after its log


def test_a_failing_task_fails_the_job_and_is_named(slurm: SlurmCluster, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    code = launch.main(["--backend", "slurm", "JOB=1:3", str(tmp_path / "task.JOB.log"),
                        "bash", "-c", "echo output of JOB; test JOB -ne 2 || exit 3"])
    out = capsys.readouterr()
    assert code == 1
    job_id = JOB_ID.search(out.out)[1]
    assert out.err == f"launch: job 2/3 (Slurm job {job_id}) failed with exit code 3; log {tmp_path}/task.2.log\n"
    assert "# Ended (code 3)" in (tmp_path / "task.2.log").read_text()
    for i in (1, 3):
        assert "# Ended (code 0)" in (tmp_path / f"task.{i}.log").read_text()


def test_job_class_options_reach_slurm(slurm: SlurmCluster, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The template's conf/slurm.conf maps a job's class (and a GPU) to what Slurm gives the job."""
    log = tmp_path / "class.log"
    probe = "echo cpus=$SLURM_CPUS_PER_TASK mem=$SLURM_MEM_PER_CPU name=$SLURM_JOB_NAME gpus=$CUDA_VISIBLE_DEVICES"
    code = launch.main(["--backend", "slurm", "--config", str(TEMPLATE_CONF), "--num_threads", "2",
                        "--mem", "100M", "--time", "0:05:00", "--gpu", "1", "--name", "decode_x", str(log),
                        "bash", "-c", probe])
    out = capsys.readouterr()
    assert code == 0, out
    assert "cpus=2 mem=100 name=decode_x gpus=0" in log.read_text()
    job = scontrol_job(JOB_ID.search(out.out)[1])
    for field in ("TimeLimit=00:05:00", "MinMemoryCPU=100M", "CPUs/Task=2", "TresPerNode=gres:gpu:1"):
        assert field in job, job


def start_sleeping_array(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """A launcher (in its own session, as a shell's foreground job) waiting on 2 tasks that sleep; its job id,
    once both run."""
    proc = subprocess.Popen([sys.executable, "-m", "echo_plugin.recipe.launch", "--backend", "slurm", "JOB=1:2",
                             str(tmp_path / "sleep.JOB.log"), "sleep", "300"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    job_id = JOB_ID.search(proc.stdout.readline())[1]
    deadline = time.time() + 60
    while subprocess.run(["squeue", "-h", "-j", job_id, "-t", "RUNNING", "-o", "%T"], capture_output=True,
                         text=True).stdout.split() != ["RUNNING"] * 2:
        assert time.time() < deadline, "the tasks never ran"
        time.sleep(0.5)
    return proc, job_id


def wait_gone(job_id: str) -> None:
    deadline = time.time() + 30
    while subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip():
        assert time.time() < deadline, "the job still runs"
        time.sleep(0.5)


@pytest.mark.parametrize("how", ["ctrl-c", "term"])
def test_an_interrupted_launch_cancels_its_job(slurm: SlurmCluster, tmp_path: Path, how: str) -> None:
    """Stopped (Ctrl-C: INT to the launcher and its sbatch; TERM to the launcher alone), the launcher cancels its
    job: no task keeps running on the cluster."""
    proc, job_id = start_sleeping_array(tmp_path)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + (signal.SIGINT if how == "ctrl-c" else signal.SIGTERM)
    wait_gone(job_id)
    for i in (1, 2):
        assert "CANCELLED" in (tmp_path / f"sleep.{i}.log").read_text()


def test_a_job_slurm_stops_is_named_with_slurms_reason(slurm: SlurmCluster, tmp_path: Path) -> None:
    """A job cancelled by someone else (scancel) fails the launch, each task in one line with Slurm's reason."""
    proc, job_id = start_sleeping_array(tmp_path)
    subprocess.run(["scancel", job_id], check=True)
    assert proc.wait(timeout=60) == 1
    lines = proc.stderr.read().splitlines()
    assert len(lines) == 2, lines
    for i, line in enumerate(lines, 1):
        # the task's end line written on Slurm's TERM, or none where the task was stopped before it could
        assert re.fullmatch(rf"launch: job {i}/2 \(Slurm job {job_id}\) "
                            r"(failed with exit code -15|ended without its end line) "
                            rf"\(JOB \d+ ON n[12] CANCELLED AT \S+\); log {tmp_path}/sleep.{i}.log", line), line


def two_nodes(slurm: SlurmCluster) -> None:
    if slurm.nodes < 2:
        pytest.skip("this Slurm build runs one slurmd per host: one node only")


def test_two_nodes_through_espnets_launcher(slurm: SlurmCluster, tmp_path: Path) -> None:
    """espnet2.bin.launch --num_nodes 2 with this backend as --cmd: one sbatch job on n1 and n2, srun starting a
    rank on each, ESPnet's Slurm rank discovery and file:// init, an all-reduce over gloo."""
    two_nodes(slurm)
    probe = tmp_path / "probe.py"
    probe.write_text(DIST_PROBE)
    log = tmp_path / "exp" / "train.log"
    command = [sys.executable, "-m", "espnet2.bin.launch",
               "--cmd", f"{sys.executable} -m echo_plugin.recipe.launch --backend slurm --mem 1G",
               "--log", str(log), "--ngpu", "0", "--num_nodes", "2",
               "--init_file_prefix", str(tmp_path / "exp" / ".dist_init_"), "--multiprocessing_distributed", "true",
               "--", sys.executable, str(probe)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    text = log.read_text() if log.exists() else ""
    assert result.returncode == 0, result.stdout + result.stderr + text
    for rank in (0, 1):
        assert f"rank {rank} world 2 backend gloo sum 3.0" in text, text
        assert re.search(rf"^# rank {rank}/2 on n[12]: SLURM_PROCID={rank} SLURM_NTASKS=2", text, re.M), text
        assert f"# Ended rank {rank}/2 (code 0)" in text
    assert {"n1", "n2"} == set(re.findall(r"^# rank \d/2 on (n\d)", text, re.M))
    assert "srun --export=ALL --kill-on-bad-exit=1" in text and "--dist_launcher slurm" in text


def test_a_failing_rank_stops_the_other_node(slurm: SlurmCluster, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    two_nodes(slurm)
    script = "import os, sys, time; sys.exit(3) if os.environ['SLURM_PROCID'] == '1' else time.sleep(300)"
    log = tmp_path / "train.log"
    start = time.time()
    assert launch.main(["--backend", "slurm", "--num_nodes", "2", str(log), "srun", "--export=ALL",
                        sys.executable, "-c", script]) == 1
    assert time.time() - start < 120
    out = capsys.readouterr()
    job_id = JOB_ID.search(out.out)[1]
    assert out.err == f"launch: 2-node Slurm job {job_id}: rank 1 of 2 failed first, with exit code 3; log {log}\n"


# FSDD through cmd_backend=slurm: two training speakers, one take per digit, one test speaker
DATA_OPTS = ("--max_takes 1 --train_speakers george,jackson --dev_speakers nicolas --n_connected_train 4 "
             "--n_connected_dev 4 --n_connected_test 2")
# --ngpu 0: under Slurm training asks for one GPU unless told, and the test nodes' GPU is a fake one
RECIPE_OPTS = ("--ngpu", "0", "--nj", "2", "--inference_nj", "2", "--speed_perturb_factors", "",
               "--feats_normalize", "global_mvn",
               "--speaker_adapt", "false", "--asr_args", "--max_epoch 1")


def test_fsdd_recipe_through_slurm(slurm: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run.sh stages 1-7 with cmd_backend=slurm and cmd.sh's job classes: statistics and decoding as job arrays,
    training as one job; then stage 2 into archives (--audio_format flac.ark with speed perturbation: a job array
    for the perturbed copies, one for each set); then GPU decoding (--gpu_inference true: a job with a GPU, which
    this machine's fake one cannot run), which fails naming its logs. Training on two nodes through asr.sh
    (--num_nodes 2) is the requeue test's (nodes=2): it trains, is requeued and resumes there."""
    monkeypatch.setenv("cmd_backend", "slurm")
    monkeypatch.setenv("slurm_opts", "--partition=debug")  # cmd.sh's options of every job
    if slurm.memory_mb < 9000:  # cmd.sh's training class asks 2 x 4G; a smaller machine's node cannot give it
        monkeypatch.setenv("train_job_opts", "--num_threads 1 --mem 1G --time 1:00:00")
    root = copy_recipe(tmp_path)
    run = run_recipe(root, "--stage", "1", "--stop_stage", "7", *RECIPE_OPTS,
                     "--local_data_opts", f"--fsdd_root {FSDD} {DATA_OPTS}")
    assert len(JOB_ID.findall(run.stdout)) == 1 + 1 + 2  # stats, training, two test sets' decoding
    stats_logs = sorted((root / "exp").glob("asr_stats_*/logdir/stats.*.log"))
    exp = root / "exp" / "asr_train_asr_echo_tiny"
    decode_logs = sorted(exp.glob("decode_*/*/logdir/asr_inference.*.log"))
    assert len(stats_logs) == 2 and len(decode_logs) == 4
    for log in [*stats_logs, exp / "train.log", *decode_logs]:
        text = log.read_text()
        assert "(Slurm job " in text and "# Ended (code 0)" in text, (log, text[-2000:])
    assert peak_rss_mb(exp / "train.log") > 50
    assert (exp / "valid.acc.ave.pth").is_file() and int((exp / "epochs").read_text()) == 1
    for name in ("test_isolated", "test_connected"):
        decode = next(exp.glob(f"decode_*/{name}"))
        scores = json.loads((decode / "score" / "scores.json").read_text())
        assert scores["wer"]["n_sentences"] == len((decode / "text").read_text().splitlines()) > 0
    assert "test_isolated" in (root / "RESULTS.md").read_text()

    # stage 2 into archives (a dumpdir of its own), with speed perturbation: the 0.9x copies of the training set
    # and every set's --nj archives, each written by one Slurm job array
    run = run_recipe(root, "--stage", "2", "--stop_stage", "2", *RECIPE_OPTS, "--audio_format", "flac.ark",
                     "--dumpdir", "dump_ark", "--speed_perturb_factors", "0.9 1.0")
    sets = ("train_sp", "dev", "test_isolated", "test_connected")
    assert len(JOB_ID.findall(run.stdout)) == 1 + len(sets), run.stdout[-3000:]
    logs = [root / "dump_ark" / "log" / f"{kind}.{j}.log" for j in (1, 2)
            for kind in ("speed_perturb_train_sp", *(f"format_{name}" for name in sets))]
    for log in logs:
        text = log.read_text()
        assert "(Slurm job " in text and "# Ended (code 0)" in text, (log, text[-2000:])
    sp_arks = {str((root / "data" / "train_sp" / "audio" / f"wav.{j}.ark").resolve()) for j in (1, 2)}
    for name in sets:
        arks = root / "dump_ark" / "raw" / name
        entries = dict(line.split(" ", 1) for line in (arks / "wav.scp").read_text().splitlines())
        # <ark>:<offset>, the ark by its real path (format_data makes --dst absolute from run.sh's cwd); the
        # perturbed copies stay in the archives speed perturbation wrote (train_sp's second job, whose share they
        # are, only checks them)
        ark_of = {utt: value.rpartition(":")[0] for utt, value in entries.items()}
        written = {str((arks / "data" / f"wav.{j}.ark").resolve()) for j in (1, 2)}
        originals = {a for u, a in ark_of.items() if not u.startswith("sp0.9-")}
        assert originals and originals <= written and (originals == written or name == "train_sp"), originals
        assert {a for u, a in ark_of.items() if u.startswith("sp0.9-")} == (sp_arks if name == "train_sp" else set())
        assert all(v.rpartition(":")[2].isdigit() for v in entries.values()), list(entries.values())[:3]
        source = "train" if name == "train_sp" else name
        ids = [line.split(" ", 1)[0] for line in (root / "dump" / "raw" / source / "wav.scp").read_text().splitlines()]
        if name == "train_sp":
            ids += [f"sp0.9-{utt}" for utt in ids]
        assert sorted(entries) == sorted(ids), name  # the wav dump's ids (and their 0.9x copies)

    import torch
    if torch.cuda.is_available():
        return
    failed = run_recipe(root, "--stage", "6", "--stop_stage", "6", *RECIPE_OPTS, "--test_sets", "test_isolated",
                        "--gpu_inference", "true", check=False)
    assert failed.returncode != 0
    job_id = JOB_ID.findall(failed.stdout)[-1]
    logdir = next(exp.glob("decode_*/test_isolated/logdir"))
    lines = [line for line in failed.stderr.splitlines() if line.startswith("launch:")]
    assert lines == [f"launch: job {i}/2 (Slurm job {job_id}) failed with exit code 1; "
                     f"log {logdir}/asr_inference.{i}.log" for i in (1, 2)], failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr
    assert "TresPerNode=gres:gpu:1" in scontrol_job(job_id)


def slurm_state(job_id: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def trained_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recipe copy with stages 1-4 done here (one local job), shared by the requeue tests: each trains its own
    --asr_tag on it."""
    root = copy_recipe(tmp_path_factory.mktemp("requeue"))
    run_recipe(root, "--stage", "1", "--stop_stage", "4", *RECIPE_OPTS, "--nj", "1",
               "--local_data_opts", f"--fsdd_root {FSDD} {DATA_OPTS}")
    return root


@pytest.mark.parametrize("nodes", [1, 2])
def test_a_requeued_training_resumes_from_its_checkpoint(slurm: SlurmCluster, trained_data: Path, nodes: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Stage 5 through cmd_backend=slurm (cmd.sh's training class asks --requeue), requeued with scontrol once its
    first epoch is saved: Slurm stops it and runs the job again, which resumes from checkpoint.pth (the epochs after
    the saved ones only, in a fresh train.log; the first attempt's in train.1.log); the stage succeeds.

    With 2 nodes (asr.sh --num_nodes 2: one job on n1 and n2, srun, gloo over a file:// rendezvous) the rerun's
    ranks meet again on both nodes: the job's script removed the stopped attempt's rendezvous file first."""
    if nodes > 1:
        two_nodes(slurm)
    root = trained_data
    monkeypatch.setenv("cmd_backend", "slurm")
    if slurm.memory_mb < 9000:
        monkeypatch.setenv("train_job_opts", "--num_threads 1 --mem 1G --time 1:00:00")
    tag = f"requeue{nodes}"
    exp = root / "exp" / f"asr_{tag}"
    # 3 short epochs of 8 iterations, seconds apart (the requeue lands in epoch 2 or 3, not after them); no plots
    asr_args = "--max_epoch 3 --num_iters_per_epoch 8 --num_att_plot 0 --use_tensorboard false"
    stage5 = subprocess.Popen(["./run.sh", "--asr_config", TINY_CONFIG, "--stage", "5", "--stop_stage", "5",
                               *RECIPE_OPTS[:-1], asr_args, "--asr_tag", tag, "--num_nodes", str(nodes)], cwd=root,
                              env=recipe_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        deadline = time.time() + 300
        while not (exp / "1epoch.pth").is_file():
            if stage5.poll() is not None or time.time() > deadline:
                log = exp / "train.log"
                pytest.fail(f"no first epoch (run.sh: {stage5.poll()}):\n"
                            + (log.read_text()[-3000:] if log.exists() else stage5.communicate()[1][-3000:]))
            time.sleep(0.1)
        # "(Slurm job 7)" in a job's start line; "(Slurm job 7 on n[1-2])" in a multi-node job's
        job_id = re.search(r"\(Slurm job (\d+)[ )]", (exp / "train.log").read_text())[1]
        rendezvous = list(exp.glob(".dist_init_*"))
        assert len(rendezvous) == (nodes > 1), rendezvous  # the ranks met through it (one node: no file)
        subprocess.run(["scontrol", "requeue", job_id], check=True)
        # Slurm holds a requeued job for AuthInfo's cred_expire (120 s by default); start it sooner, though not
        # within the second of the requeue (the job credentials revoked then: the rerun would be killed)
        while slurm_state(job_id) != "PENDING":
            assert time.time() < deadline, slurm_state(job_id)
            time.sleep(0.2)
        time.sleep(2)
        # the stopped ranks left their rendezvous file: met again through it, the rerun's ranks would wait on
        # the stopped ones' addresses
        assert all(path.exists() for path in rendezvous), rendezvous
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
        out, err = stage5.communicate(timeout=300)
    finally:
        if stage5.poll() is None:  # the launcher cancels its job on TERM
            os.killpg(stage5.pid, signal.SIGTERM)
            stage5.wait(timeout=60)
    assert stage5.returncode == 0, out[-3000:] + err[-3000:]
    first, rerun = (exp / "train.1.log").read_text(), (exp / "train.log").read_text()
    earlier = f"the earlier attempt's log is {exp.resolve()}/train.1.log"  # the launcher's absolute path
    assert f"launch: Slurm job {job_id} was requeued and ran again (restart 1); {earlier}\n" in out, out
    assert re.search(rf"\*\*\* JOB {job_id} ON n[12] CANCELLED AT \S+ DUE TO JOB REQUEUE", first), first[-3000:]
    assert re.findall(r"INFO: (\d+)/3epoch started", first)[0] == "1" and "training was finished" not in first
    assert rerun.startswith(f"# Slurm restart 1 of job {job_id}: {earlier}\n"), rerun[:1000]
    assert re.search(rf"\(Slurm job {job_id}( on \S+)?, restart 1\)", rerun), rerun[:3000]
    assert f"The training was resumed using {exp.relative_to(root)}/checkpoint.pth" in rerun, rerun[-3000:]
    # the rerun trains the epochs after the saved ones (epoch 1, or 2 where it ended before the requeue), once each
    epochs = [int(e) for e in re.findall(r"INFO: (\d+)/3epoch started", rerun)]
    assert epochs in ([2, 3], [3]) and f"INFO: {epochs[0] - 1}epoch results" in first, (epochs, first[-3000:])
    assert "The training was finished at 3 epochs" in rerun, rerun[-3000:]
    if nodes == 1:
        assert "# Ended (code 0)" in rerun, rerun[-3000:]
    else:
        # both ranks again, one on each node, over the same file:// path (a new file: the stale one was removed)
        init = re.search(r"--dist_init_method (file://\S+)", rerun)[1]
        assert init in first, first[:3000]
        assert {"n1", "n2"} == set(re.findall(r"^# rank \d/2 on (n\d)", rerun, re.M)), rerun[-3000:]
        for rank in (0, 1):
            assert f"# Ended rank {rank}/2 (code 0)" in rerun, rerun[-3000:]
        assert re.search(r"^\[[^\]:]+:0/2\] ", rerun, re.M), rerun[-3000:]  # ESPnet's rank 0 of a world of 2
        config = yaml.safe_load((exp / "config.yaml").read_text())
        assert (config["dist_launcher"], config["dist_backend"]) == ("slurm", "gloo")
    assert int((exp / "epochs").read_text()) == 3 and (exp / "valid.acc.ave.pth").is_file()
