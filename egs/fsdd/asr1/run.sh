#!/usr/bin/env bash
# FSDD spoken digits (real speech, 8 kHz): speaker-disjoint train/dev/test,
# isolated and connected-digit test sets of unseen speakers. With three training
# speakers the recipe is built for speaker generalisation. The default
# (conf/tuning/train_asr_echo_whisper_frontend.yaml) trains the Echo model on the frozen
# encoder of OpenAI's whisper-base, which needs no feature or speaker statistics: one file
# of an unknown speaker gets what the recipe's decode gets (stage 8 scores that deployed path
# beside the recipe's, _deployed rows). Its recipe options (no speed perturbation, no
# normalisation) are in the config's recipe: map. The filterbank base it overlays
# (conf/tuning/train_asr_echo.yaml: speaker_mvn, Kaldi's per-speaker CMVN, speed perturbation
# 0.9/1.0/1.1, a speaker-adaptive second pass) is what every mechanism ablation overlays; the
# options below are its defaults.
#   ./run.sh                                   # every stage with the Echo default
#   ./run.sh --asr_config conf/tuning/train_asr_e_branchformer.yaml
#   ./run.sh --stage 6 --test_sets /path/to/any/kaldi/data_dir
#   ./run_all.sh --jobs 2                      # every config of conf/tuning: the RESULTS.md table
# Decoding: a first pass (CTC weight 0.8); the filterbank configs add a speaker-adaptive second pass
# (asr.sh --speaker_adapt: the model fine-tuned on each test speaker's own first-pass hypotheses,
# conf/adapt.yaml), scored side by side (decode_..._spkadapt); --speaker_adapt false keeps the first pass only.
# The packed model carries a 4 s chunk limit (--max_chunk_seconds 4, chosen on dev speakers: bench/CHUNKING.md):
# transcribe splits longer recordings at pauses, and the deployed rows are scored with it.
# Noise robustness (both opt-in; the default run above is unchanged):
#   ./run.sh --noise_aug true                  # train with babble of training speakers and
#                                              # white/pink/brown noise, 0-20 dB SNR, p=0.5
#                                              # (exp/asr_<config>_noiseaug; finer control:
#                                              # asr.sh --noise_dir --babble --colored_noise
#                                              # --noise_snr_range --noise_apply_prob --rir_dir)
#   ./run.sh --stage 6 --snr_test_sets "clean 20 10 5 0" --snr_noise babble
#                                              # decode + score test_*_clean, test_*_snr20, ...
#                                              # (noise: colored|white|pink|brown|babble|DIR)
# Options not listed here go to asr.sh (see ./asr.sh --help).
set -euo pipefail

asr_config=conf/tuning/train_asr_echo_whisper_frontend.yaml
inference_config=conf/decode_asr_ctc08.yaml
test_sets="test_isolated test_connected"
# The training process uses two CPU threads where there are two cores (asr.sh --train_threads):
# 1.6x faster than one for this model (README.md). run_all.sh gives each of its jobs its share.
train_threads=$(utils/train_threads.sh)

noise_aug=false
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --noise_aug) [ $# -ge 2 ] || { echo "$0: --noise_aug needs a value" >&2; exit 1; }
            noise_aug=$2; shift 2 ;;
        --asr_config) [ $# -ge 2 ] && asr_config=$2; args+=("$1"); shift ;;
        *) args+=("$1"); shift ;;
    esac
done
aug_opts=()
if [ "${noise_aug}" = true ]; then
    aug_opts=(--babble true --colored_noise "white pink brown" --noise_snr_range "0 20" --noise_apply_prob 0.5
              --asr_tag "$(basename "${asr_config}" .yaml)_noiseaug")
fi

# The config's own asr.sh options (its recipe: map) come after the defaults below, before the user's.
. ./path.sh
. utils/config_args.sh
config_args "${asr_config}" "${args[@]}"

./asr.sh \
    --fs 8000 \
    --feats_normalize speaker_mvn \
    --speed_perturb_factors "0.9 1.0 1.1" \
    --train_threads "${train_threads}" \
    --train_set train \
    --valid_set dev \
    --test_sets "${test_sets}" \
    --token_type bpe \
    --nbpe 30 \
    --asr_config "${asr_config}" \
    --inference_config "${inference_config}" \
    --speaker_adapt true \
    --adapt_config conf/adapt.yaml \
    --score_deployed true \
    --max_chunk_seconds 4 \
    "${config_args[@]}" \
    "${aug_opts[@]}" \
    "${args[@]}"
