"""Leaving a distributed training's process group before the process exits.

A gloo process group left to the interpreter's exit is torn down while its threads still run, and now and
then the process aborts ("terminate called without an active exception", exit code 134) after a training
that succeeded; under srun one aborted rank cancels the whole job step. ESPnet's trainer never destroys
its group, so each worker leaves it here: every rank waits for the others (a barrier), then destroys it.
"""
from __future__ import annotations

import torch.distributed as dist


def leave_process_group() -> bool:
    """Barrier, then destroy the default process group; False (nothing done) when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.barrier()
    dist.destroy_process_group()
    return True
