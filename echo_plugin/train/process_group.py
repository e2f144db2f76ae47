"""Ending a distributed training worker: leave the process group, then exit without the interpreter's teardown.

A gloo worker that returns to the interpreter's exit now and then aborts in its teardown ("terminate called
without an active exception", SIGABRT, exit code 134) after a training that succeeded. Destroying the group
first (a barrier, then ``destroy_process_group``) was not enough: with it, the README's two-node torchrun
command still lost rank 1 this way in 1 of 36 runs on this machine and in CI, and the other node then waits
out torchrun's exit barrier (300 s) before it fails too. Under srun one aborted rank cancels the job step.
So a distributed worker, once every rank has left the group, flushes its logs and ends with ``os._exit(0)``:
no C++ static teardown runs. (Tensorboard's writer thread has written each event to its file by then.)
"""
from __future__ import annotations

import logging
import os
import sys

import torch.distributed as dist


def leave_process_group() -> bool:
    """Barrier, then destroy the default process group; False (nothing done) when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.barrier()
    dist.destroy_process_group()
    return True


def finish_worker() -> None:
    """End a distributed worker with exit code 0 once every rank has left the group (module docstring);
    return, with nothing done, when the process has no process group."""
    if not leave_process_group():
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
