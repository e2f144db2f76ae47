"""A real Slurm cluster on this machine for the tests: munged, slurmctld and two slurmd (nodes n1, n2).

Debian's slurm-wlm and munge (``make sysdeps`` installs them). Everything lives under one temporary directory:
its own munge key and socket, slurm.conf (this host, its CPUs and memory, select/cons_tres, proctrack/linuxproc,
no accounting), state, spool and logs; free ports. Each node has one GPU to schedule, backed by /dev/null
(gres.conf), so that ``--gres=gpu:1`` jobs run and get CUDA_VISIBLE_DEVICES; nothing can compute on it. The
second slurmd (the same host, its own port) lets a job span two nodes; where this Slurm build cannot run two
slurmd on one host, n2 stays down and ``nodes`` is 1.
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "scancel", "squeue", "sinfo", "scontrol")
NODES = ("n1", "n2")


def missing() -> list[str]:
    """The Slurm and munge programs this machine lacks."""
    return [name for name in (*DAEMONS, *CLIENTS)
            if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]


def program(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def memory_mb() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


class SlurmCluster:
    def __init__(self) -> None:
        # not under pytest's tmp dirs: munged wants its socket's directory reachable by everyone
        self.root = Path(tempfile.mkdtemp(prefix="echo-slurm-"))
        self.root.chmod(0o755)
        self.conf = self.root / "slurm.conf"
        self.cpus = os.cpu_count() or 1
        self.memory_mb = memory_mb()
        self.host = socket.gethostname().split(".")[0]
        self.procs: list[subprocess.Popen] = []
        self.nodes = 0
        self.env = {"SLURM_CONF": str(self.conf)}

    def log(self, name: str) -> str:
        path = self.root / "log" / name
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"

    def write_config(self) -> None:
        user = getpass.getuser()
        ctld, *node_ports = free_ports(1 + len(NODES))
        for sub in ("state", "spool", "log", "run", "key"):
            (self.root / sub).mkdir()
        (self.root / "run").chmod(0o755)
        (self.root / "key").chmod(0o700)
        key = self.root / "key" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        nodes = "".join(
            f"NodeName={name} NodeHostname={self.host} NodeAddr=127.0.0.1 Port={port} CPUs={self.cpus} "
            f"RealMemory={self.memory_mb} Gres=gpu:1\n" for name, port in zip(NODES, node_ports))
        r = self.root
        self.conf.write_text(
            "ClusterName=echotest\n"
            f"SlurmctldHost={self.host}(127.0.0.1)\n"
            f"SlurmctldPort={ctld}\n"
            f"SlurmUser={user}\nSlurmdUser={user}\n"
            f"AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={r}/run/munge.sock\n"
            f"StateSaveLocation={r}/state\nSlurmdSpoolDir={r}/spool/%n\n"
            f"SlurmctldPidFile={r}/run/slurmctld.pid\nSlurmdPidFile={r}/run/slurmd.%n.pid\n"
            f"SlurmctldLogFile={r}/log/slurmctld.log\nSlurmdLogFile={r}/log/slurmd.%n.log\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
            "JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n"
            "MpiDefault=none\nReturnToService=2\nMailProg=/bin/true\nKillWait=5\n"
            "GresTypes=gpu\n"
            + nodes
            + "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n")
        (self.root / "gres.conf").write_text(f"NodeName=n[1-{len(NODES)}] Name=gpu File=/dev/null\n")

    def spawn(self, name: str, *args: str) -> None:
        out = open(self.root / "log" / f"{name}.out", "w")
        self.procs.append(subprocess.Popen([program(name), *args], stdout=out, stderr=subprocess.STDOUT,
                                           env={**os.environ, **self.env}))

    def node_states(self) -> dict[str, str]:
        result = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True,
                                env={**os.environ, **self.env})
        return dict(line.split() for line in result.stdout.splitlines() if len(line.split()) == 2)

    def start(self, timeout: float = 60) -> None:
        self.write_config()
        r = self.root
        self.spawn("munged", "-F", f"--key-file={r}/key/munge.key", f"--socket={r}/run/munge.sock",
                   f"--pid-file={r}/run/munged.pid", f"--log-file={r}/log/munged.log", f"--seed-file={r}/run/seed")
        deadline = time.time() + timeout
        while not (r / "run" / "munge.sock").exists():
            if time.time() > deadline or self.procs[0].poll() is not None:
                raise RuntimeError(f"munged did not start:\n{self.log('munged.out')}\n{self.log('munged.log')}")
            time.sleep(0.2)
        self.spawn("slurmctld", "-D", "-i", "-f", str(self.conf))
        time.sleep(1)
        for name in NODES:
            self.spawn("slurmd", "-D", "-N", name, "-f", str(self.conf))
        while True:
            states = self.node_states()
            if states.get("n1", "").startswith("idle"):
                break
            if time.time() > deadline:
                raise RuntimeError(f"node n1 not up ({states}):\n{self.log('slurmctld.log')}\n"
                                   f"{self.log('slurmd.n1.log')}")
            time.sleep(0.5)
        # the second node where this build runs two slurmd on one host
        while not states.get("n2", "").startswith("idle") and time.time() < deadline:
            time.sleep(0.5)
            states = self.node_states()
        self.nodes = sum(states.get(name, "").startswith("idle") for name in NODES)

    def stop(self) -> None:
        if self.nodes:  # no job of a failed test outlives the cluster
            subprocess.run(["scancel", "--user", getpass.getuser()], env={**os.environ, **self.env},
                           capture_output=True, check=False)
            time.sleep(1)
        for proc in reversed(self.procs):  # slurmd, slurmctld, then munged
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
