#!/usr/bin/env bash
# Speaker cross-validation: one config over the folds x seeds of conf/folds.yaml (each speaker the
# test speaker once), each fold in its own recipe copy under folds/<fold>/, records into records/.
#   ./run_folds.sh --config conf/tuning/train_asr_echo.yaml                 # 5 folds x 3 seeds
#   ./run_folds.sh --config conf/tuning/train_asr_echo_soft_mask.yaml --seeds 0 --jobs 2
#   ./run_folds.sh --config conf/tuning/train_asr_echo.yaml --folds test-lucas -- --speaker_adapt false
# Each run also packs its model and scores the deployed path (stage 8; --no_deployed skips it).
# Resumable: recorded runs are skipped, a stopped training resumes from its last epoch.
# Then: python -m echo_plugin.recipe.compare / echo_plugin.recipe.claims (README.md).
set -euo pipefail
source ./path.sh
exec python -m echo_plugin.recipe.folds "$@"
