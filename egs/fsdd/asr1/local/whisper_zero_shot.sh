#!/usr/bin/env bash
# The zero-shot reference row of the Whisper noise experiment (README.md): whisper-base packed as it was
# trained (conf/whisper_base_zero_shot.yaml's whisper_pack: map) into exp/asr_whisper_base_zero_shot, then
# decoded and scored by stages 6-7 (the SNR test sets of the fine-tuned configs), recorded as
# whisper_base_zero_shot. Run from the recipe dir (or a fold's copy) after stages 1-4 of a fine-tuned config;
# options go to run.sh (e.g. --records_dir).
#   local/whisper_zero_shot.sh
set -euo pipefail
config=conf/whisper_base_zero_shot.yaml
exp=exp/asr_whisper_base_zero_shot
. ./path.sh

# the whisper_pack: map as --key value lines (a failure here stops the script: no packing with defaults)
pack_lines=$(python -c '
import sys, yaml
for key, value in yaml.safe_load(open(sys.argv[1]))["whisper_pack"].items():
    print(f"--{key}"); print(value)' "${config}")
mapfile -t pack_args <<< "${pack_lines}"
mkdir -p "${exp}"
python -m echo_plugin.asr.whisper_pack --out "${exp}/whisper_base_zero_shot.zip" --exp_dir "${exp}" "${pack_args[@]}"
# what stage 7's records read from a training: its config and options (none trained here)
python -m echo_plugin.recipe.records run_info --exp_dir "${exp}" --config "${config}" \
    --option token_type=whisper_multilingual --option "whisper_pack=${pack_args[*]}"
./run.sh --asr_config "${config}" --stage 6 --stop_stage 7 --inference_asr_model model.pth "$@"
