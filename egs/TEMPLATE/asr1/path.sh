# Sourced by every recipe: puts the project's virtual environment first on PATH.
# ECHO_ROOT is the repository root (three levels above egs/TEMPLATE/asr1, where this file is: links
# to it from each recipe, and from the fold runner's recipe copies, are resolved first).
ECHO_ROOT=${ECHO_ROOT:-$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)}
if [ -x "${ECHO_ROOT}/.venv/bin/python" ]; then
    export PATH="${ECHO_ROOT}/.venv/bin:${PATH}"
fi
export PYTHONPATH="${ECHO_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # small matmuls are 5x slower with 2 threads here
export PYTHONIOENCODING=UTF-8
export LC_ALL=C
