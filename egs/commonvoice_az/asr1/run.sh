#!/usr/bin/env bash
# Common Voice Azerbaijani (MP3 clips, official speaker-disjoint train/dev/test),
# 16 kHz, sentencepiece unigram tokens, noise augmentation during training.
# Download the release by hand first (see README.md), then:
#   ./run.sh --local_data_opts "--cv_root /data/cv-corpus-<version>/az"
#   ./run.sh --asr_config conf/tuning/train_asr_e_branchformer.yaml --stage 5
# Options not listed here go to asr.sh (see ./asr.sh --help).
set -euo pipefail

asr_config=conf/tuning/train_asr_echo.yaml
inference_config=conf/decode_asr.yaml
nbpe=150   # the az release is small: a larger vocabulary leaves most pieces rarely seen

# Noise augmentation, on by default: babble of training speakers and white/pink/brown
# noise at 0-20 dB SNR on half the training utterances (ESPnet's --noise_scp mixing).
# Off: ./run.sh --babble false --colored_noise ""   (later options win)
# Recorded noise too: --noise_dir DIR; SNR-stratified test sets: --snr_test_sets "clean 20 10 5 0"
noise_opts=(--babble true --colored_noise "white pink brown" --noise_snr_range "0 20" --noise_apply_prob 0.5)

# The config's own asr.sh options (its recipe: map) come after the defaults below, before the user's.
. ./path.sh
. utils/config_args.sh
config_args "${asr_config}" "$@"

./asr.sh \
    --fs 16000 \
    --train_set train \
    --valid_set dev \
    --test_sets "dev test" \
    --token_type bpe \
    --nbpe "${nbpe}" \
    --asr_config "${asr_config}" \
    --inference_config "${inference_config}" \
    "${noise_opts[@]}" \
    "${config_args[@]}" \
    "$@"
