#!/usr/bin/env bash
# FSDD spoken digits (real speech, 8 kHz): speaker-disjoint train/dev/test,
# isolated and connected-digit test sets of unseen speakers. Features are
# normalized per utterance: the five speakers' recording channels differ widely.
#   ./run.sh                                   # every stage with the Echo default
#   ./run.sh --asr_config conf/tuning/train_asr_e_branchformer.yaml
#   ./run.sh --stage 6 --test_sets /path/to/any/kaldi/data_dir
# Options not listed here go to asr.sh (see ./asr.sh --help).
set -euo pipefail

asr_config=conf/tuning/train_asr_echo.yaml
inference_config=conf/decode_asr.yaml
test_sets="test_isolated test_connected"

./asr.sh \
    --fs 8000 \
    --feats_normalize utterance_mvn \
    --train_set train \
    --valid_set dev \
    --test_sets "${test_sets}" \
    --token_type bpe \
    --nbpe 30 \
    --asr_config "${asr_config}" \
    --inference_config "${inference_config}" \
    "$@"
