#!/usr/bin/env bash
# LibriSpeech 100 h (train-clean-100), as ESPnet's egs2/librispeech_100/asr1:
# BPE 5000, speed perturbation 0.9/1.0/1.1, validation on dev-clean + dev-other,
# WER on dev/test clean/other, decoded as ESPnet's published rows: conf/decode_asr.yaml
# (joint CTC/attention beam search, beam 20, CTC weight 0.3, no language model);
# --inference_config conf/decode_asr_nolm.yaml is ESPnet's faster beam-10 search.
#   ./run.sh --local_data_opts "--librispeech_root /data/LibriSpeech" --ngpu 1
#   ./run.sh --asr_config conf/tuning/train_asr_e_branchformer.yaml   # ESPnet baseline
#   ./run.sh --asr_config conf/tuning/train_asr_conformer.yaml        # ESPnet baseline
# Without --librispeech_root, local/data.sh downloads and MD5-checks openslr resource 12.
# Stage 2 writes the audio (speed-perturbed copies included) into FLAC archives, --nj per set, read by
# ESPnet as kaldi_ark: a few large files instead of ~85k small ones (--audio_format wav: one file each).
# Options not listed here go to asr.sh (see ./asr.sh --help).
set -euo pipefail

asr_config=conf/tuning/train_asr_echo.yaml
inference_config=conf/decode_asr.yaml
test_sets="dev_clean dev_other test_clean test_other"

# The config's own asr.sh options (its recipe: map) come after the defaults below, before the user's.
. ./path.sh
. utils/config_args.sh
config_args "${asr_config}" "$@"

./asr.sh \
    --fs 16000 \
    --train_set train_clean_100 \
    --valid_set dev \
    --test_sets "${test_sets}" \
    --speed_perturb_factors "0.9 1.0 1.1" \
    --audio_format flac.ark \
    --max_duration 30 \
    --token_type bpe \
    --nbpe 5000 \
    --bpemode unigram \
    --asr_config "${asr_config}" \
    --inference_config "${inference_config}" \
    "${config_args[@]}" \
    "$@"
