#!/usr/bin/env bash
# Prints the training threads for each of N jobs (default 1) sharing this machine's cores:
# cores / N, at least 1 and at most 2 (what was measured, egs/fsdd/asr1/README.md).
# The cores are counted with OMP_NUM_THREADS unset: nproc alone obeys it.
jobs=${1:-1}
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
threads=$(( cores / jobs ))
[ "${threads}" -ge 1 ] || threads=1
[ "${threads}" -le 2 ] || threads=2
echo "${threads}"
