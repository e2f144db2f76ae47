#!/usr/bin/env bash
# Every experiment of RESULTS.md at the same training budget: stages 1-4 once, then each
# config of conf/tuning (the Whisper warm starts aside) trained, decoded and scored (stages 5-7), then the noise-robustness
# comparison (noise-augmented training, SNR-stratified test sets) for the decoder configs.
#   ./run_all.sh                         # everything, one job at a time
#   ./run_all.sh --jobs 2                # two trainings at once (--train_threads cores/jobs each,
#                                        # 1 to 2: two threads beside a busy process run ~10x slower)
#   ./run_all.sh --configs "conf/tuning/train_asr_echo.yaml conf/tuning/train_asr_e_branchformer.yaml"
#   ./run_all.sh --noise_configs ""      # skip the noise-robustness runs
# Options not listed here go to every run.sh call (e.g. --ngpu 1).
set -euo pipefail

jobs=1
configs=
noise_configs="conf/tuning/train_asr_echo.yaml conf/tuning/train_asr_echo_dual.yaml conf/tuning/train_asr_echo_single_wide.yaml"
snr_bands="clean 20 10 5 0"
snr_noise=babble
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --jobs|--configs|--noise_configs|--snr_bands|--snr_noise)
            [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 1; }
            printf -v "${1#--}" '%s' "$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
# every config of conf/tuning but the Whisper warm starts (train_asr_whisper_*: hours each on a CPU, their own
# experiment in README.md "Whisper warm start in noise")
[ -n "${configs}" ] || configs=$(ls conf/tuning/*.yaml | grep -v '/train_asr_whisper_')
threads_each=$(utils/train_threads.sh "${jobs}")

# Stages 1-4 once for each set of data options the configs ask for (their recipe: maps: a pretrained
# front end trains without speed perturbation, the others on data/train_sp).
. ./path.sh
declare -A prepared=()
for config in ${configs} ${noise_configs}; do
    # the recipe options that change stages 1-4, as one string
    key=k:$(python -m echo_plugin.recipe.overlay --config "${config}" --recipe_args \
        | awk 'keep { print; keep = 0; next } /^--(speed_perturb_factors|fs|token_type|nbpe|bpemode|local_data_opts)$/ { print; keep = 1 }' \
        | tr '\n' ' ')
    [ -z "${prepared[${key}]+set}" ] || continue
    prepared[${key}]=1
    ./run.sh --stage 1 --stop_stage 4 --asr_config "${config}" "${args[@]}"
done

# One run: train, decode, score. "noise": with noise augmentation, decoded per SNR band.
# A config's own recipe options (its recipe: map) are run.sh's business.
run_one() {
    local config=$1 mode=$2 extra=() log
    log=logs/$(basename "${config}" .yaml)${mode:+_${mode}}.log
    [ "${mode}" != noise ] || extra+=(--noise_aug true --snr_test_sets "${snr_bands}" --snr_noise "${snr_noise}")
    if ./run.sh --stage 5 --stop_stage 7 --asr_config "${config}" --train_threads "${threads_each}" "${extra[@]}" \
            "${args[@]}" > "${log}" 2>&1; then
        echo "done: ${config} ${mode}"
    else
        echo "FAILED: ${config} ${mode} (${log})"
        return 1
    fi
}
mkdir -p logs
status=0
running=0
for item in $(printf '%s:\n' ${configs}; printf '%s:noise\n' ${noise_configs}); do
    run_one "${item%%:*}" "${item#*:}" &
    running=$((running + 1))
    if [ "${running}" -ge "${jobs}" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
done
while [ "${running}" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done

./run.sh --stage 8 --stop_stage 8 "${args[@]}"   # pack the default model
cat RESULTS.md
exit "${status}"
