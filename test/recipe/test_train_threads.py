"""utils/train_threads.sh: the training threads per job, counted with OMP_NUM_THREADS unset."""
from __future__ import annotations

import os
import subprocess

import pytest

from test.recipe.recipe_helpers import REPO

SCRIPT = REPO / "egs" / "TEMPLATE" / "asr1" / "utils" / "train_threads.sh"


def threads(*args: str) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as make exports it: must not count as one core
    return int(subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, check=True).stdout)


@pytest.mark.parametrize("jobs", [1, 2, 3, 64])
def test_cores_shared_between_jobs_one_to_two_each(jobs: int) -> None:
    cores = len(os.sched_getaffinity(0))
    assert threads(str(jobs)) == min(2, max(1, cores // jobs))


def test_one_job_by_default() -> None:
    assert threads() == threads("1")
