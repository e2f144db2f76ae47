#!/usr/bin/env bash
# The one stage runner shared by every Echo recipe (Kaldi-free, ESPnet2 inside).
# A recipe's run.sh sets its corpus options and calls this script; the python
# behind each stage lives in echo_plugin.recipe / echo_plugin.bin.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (asr.sh:${BASH_LINENO[0]}) $*"; }
die() { log "ERROR: $*" >&2; exit 1; }

help_message="Usage: $0 [options]
  --stage N / --stop_stage N   run stages N..M (1 data, 2 format+validate, 3 tokens,
                               4 stats, 5 train, 6 decode, 7 score+RESULTS.md, 8 pack)
  --nj N                       parallel jobs for stages 2, 4   --inference_nj N  for stage 6
                               (default: this machine's cores, at most 32; cmd_backend=slurm: 32); stage 2's
                               per-file work (--audio_format wav|flac) runs here, at most one process per core
  --ngpu N                     GPUs for training, per node (>1: ESPnet's multiprocess DDP; default: the GPUs
                               this machine shows (nvidia-smi -L, CUDA_VISIBLE_DEVICES); cmd_backend=slurm:
                               the training job class's --gpu in cmd.sh, else slurm.conf's default gpu=N
                               above 0, else 1 as ESPnet's asr.sh; --ngpu 0 trains on CPU)
  --num_nodes N                training nodes (default 1): ESPnet's launcher, one process per node (cmd.sh backend)
  --train_threads N            CPU threads of the training process (OMP_NUM_THREADS; default 1,
                               the other stages use 1 per job)
  --asr_config FILE            training config     --inference_config FILE  decoding config
  --stats_config FILE          the config stage 4 collects shapes and feature statistics with (default:
                               --asr_config; a frozen pretrained front end names the base's: it needs no statistics)
  --train_set / --valid_set    data/<set> names    --test_sets \"a b /any/kaldi/dir\"
  --fs HZ                      audio rate for the model (stage 2 resamples to it)
  --max_duration S / --min_duration S  stage 2 leaves out of the training and validation sets the clips longer
                               (default 30) or shorter (default 0.0) than S seconds, as ESPnet's recipes: each
                               listed with its length in dump/raw/<set>/dropped, their count in the log; test
                               sets are kept whole (every utterance scored). Another --fs or limit than a set's
                               dump was made with formats it again (logged)
  --audio_format wav|flac|wav.ark|flac.ark  stage 2's audio: one file per utterance (wav, the default: the
                               source where usable, else converted to wav; flac) or, for large corpora, --nj
                               archives per set written by --nj jobs (cmd.sh train_cmd), read by ESPnet as kaldi_ark
  --speed_perturb_factors \"0.9 1.0 1.1\"  stage 2 trains on data/<train_set>_sp (default: off)
  --noisy_copies K             stage 2 trains on data/<train_set>_noisyK: every utterance and K stored noisy copies
                               (echo_plugin.recipe.noisy_copies; a frozen encoder can cache them, on-the-fly noise not):
                               --noisy_snr_range \"0 20\" (dB) --noisy_noise colored|white|pink|brown|babble|DIR
  --noise_dir DIR --babble true --colored_noise \"white pink brown\" --rir_dir DIR
                               noise augmentation at training (ESPnet's --noise_scp):
                               --noise_snr_range \"0 20\" (dB) --noise_apply_prob 0.5 --rir_apply_prob 0.5
  --snr_test_sets \"clean 20 10 5 0\"  decode each test set as <set>_clean, <set>_snr20, ...
                               --snr_noise colored|white|pink|brown|babble|DIR  (default: colored)
  --feature_cache \"pitch harmonic aperiodic\"  stage 5 computes these Echo frontend features once
                               per set (kaldiio ark/scp under exp/<tag>/feature_cache) and trains on them
  --token_type char|bpe --nbpe N --bpemode unigram|bpe
  --token_type whisper_multilingual|whisper_en   a pretrained Whisper vocabulary (stage 3 writes its token list;
                               the training config names preprocessor: whisper, echo_plugin.text.whisper_preprocessor)
  --feats_normalize global_mvn|utterance_mvn|speaker_mvn|speech_mvn|none   feature normalization
                               (speaker_mvn: per-speaker statistics from utt2spk, Kaldi's CMVN)
  --speaker_adapt true         stage 6 also decodes a speaker-adaptive second pass: the model adapted to each
                               test speaker on its own first-pass hypotheses (no transcripts), decoded again
                               into <inference_tag>_spkadapt (--adapt_config FILE: echo_plugin.inference.speaker_adapt)
  --asr_args / --inference_args  extra options passed through to ESPnet
  --local_data_opts \"...\"      options for local/data.sh
  --fold_opts \"...\"            more local/data.sh options choosing the fold's speakers (recorded as the fold)
  --seed N                     training seed (default: the config's)
  --records_dir DIR            stage 7 stores a run record per scored decode in DIR/<name>.jsonl (default: records)
  --record_name NAME           the records' name (default: the asr tag); --folds_file (default: conf/folds.yaml)
  --score_deployed true        stage 8 also decodes every test set with the packed model through transcribe,
                               file by file (an unknown speaker), scored and recorded as <inference_tag>_deployed
  --max_chunk_seconds S        stage 8 packs S into decode.yaml: transcribe splits longer recordings into chunks of
                               at most S seconds (at silences); default: transcribe's own (20 s)
  --score_normalizer whisper   stages 7 and 8 score after openai-whisper's English text normaliser (\"5.\" = FIVE);
                               whisper_digits: then digit strings spelled per digit (\"12\" = ONE TWO); default none"

# General
stage=1
stop_stage=100
nj=                # default: where the jobs run (echo_plugin.recipe.job_defaults), logged with its reason
inference_nj=
ngpu=
num_nodes=1         # >1: distributed training on N nodes (espnet2.bin.launch; cmd.sh's local backend: N processes here)
train_threads=1
gpu_inference=false
python=python
dumpdir=dump
expdir=exp
# Data
local_data_opts=
fold_opts=          # more local/data.sh options that choose the fold (speakers); recorded as the fold, not hashed
train_set=train
valid_set=dev
test_sets=
fs=16000
resample=true
audio_format=wav    # wav | flac: one file per utterance; wav.ark | flac.ark: archives (large corpora)
max_duration=30
min_duration=0.0
speed_perturb_factors=   # e.g. "0.9 1.0 1.1": ESPnet-style sp<f>- copies of the training set
noisy_copies=       # e.g. 2: the training set plus 2 stored noisy copies of every utterance (<train_set>_noisy2)
noisy_snr_range="0 20"
noisy_noise=colored
# Tokens
token_type=bpe
nbpe=30
bpemode=unigram
# Training
asr_config=
stats_config=       # stage 4's config (default: asr_config)
asr_tag=
asr_args=
seed=               # training seed (ESPnet --seed; default: the config's)
feats_normalize=global_mvn
feature_cache=      # e.g. "pitch harmonic aperiodic": precomputed Echo frontend features (frontend: echo)
resume=true
noise_dir=          # noise augmentation (off unless one of noise_dir, babble, colored_noise, rir_dir is set)
babble=false
colored_noise=
noise_snr_range="0 20"
noise_apply_prob=0.5
rir_dir=
rir_apply_prob=0.5
# Decoding
inference_config=
inference_tag=
inference_args=
inference_asr_model=valid.acc.ave.pth
speaker_adapt=false  # true: a speaker-adaptive second pass (<inference_tag>_spkadapt)
adapt_config=        # YAML of echo_plugin.inference.speaker_adapt.AdaptConfig (default: its defaults)
snr_test_sets=      # e.g. "clean 20 10 5 0": SNR-stratified copies of every test set
snr_noise=colored
# Packing
pack_tag=
score_deployed=false  # true: stage 8 also scores the packed model run file by file (<inference_tag>_deployed)
max_chunk_seconds=   # set: stage 8 packs it into decode.yaml, transcribe's limit for splitting long recordings
score_normalizer=none  # none (as written), whisper or whisper_digits: echo_plugin.recipe.score --normalizer
# Run records (echo_plugin.recipe.records): stage 7 stores each scored decode there
records_dir=records
record_name=        # default: the asr tag
folds_file=conf/folds.yaml

source "$(dirname "$0")/utils/parse_options.sh"
source ./path.sh
source ./cmd.sh

# --ngpu, --nj, --inference_nj not given: fitted to where the jobs run (cmd.sh's backend; Slurm: the job class,
# not this host), each logged with where it came from.
missing=()
for opt in ngpu nj inference_nj; do
    [ -n "${!opt}" ] || missing+=("${opt}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    defaults=$(${python} -m echo_plugin.recipe.job_defaults --backend "${cmd_backend}" --config "${slurm_conf}" \
        --train_job_opts "${train_job_opts}" "${missing[@]}") || die "cannot work out the defaults of ${missing[*]}"
    while read -r opt value why; do
        printf -v "${opt}" '%s' "${value}"
        log "--${opt} ${value} (default: ${why})"
    done <<< "${defaults}"
fi
[[ "${ngpu}" =~ ^[0-9]+$ ]] || die "--ngpu must be a number: ${ngpu}"
for opt in nj inference_nj; do
    [[ "${!opt}" =~ ^[1-9][0-9]*$ ]] || die "--${opt} must be a positive number: ${!opt}"
done
log "Jobs: --ngpu ${ngpu} --nj ${nj} --inference_nj ${inference_nj} (cmd_backend=${cmd_backend})"

# Every stage reads archives: ESPnet's loader (kaldi_ark) and the project's one audio reader
# (echo_plugin.inference.audio: speaker statistics, feature cache, babble, SNR sets, speaker adaptation, transcribe).
case "${audio_format}" in
    wav|flac|wav.ark|flac.ark) ;;
    *) die "--audio_format must be wav, flac, wav.ark or flac.ark: ${audio_format}" ;;
esac

# With speed perturbation, stage 2 writes data/<train_set>_sp and every later stage trains on it.
sp_source_set=${train_set}
[ -z "${speed_perturb_factors}" ] || train_set=${train_set}_sp
# With --noisy_copies K, stage 2 then writes data/<train_set>_noisyK from the formatted clean set.
noisy_source_set=${train_set}
if [ -n "${noisy_copies}" ]; then
    [[ "${noisy_copies}" =~ ^[1-9][0-9]*$ ]] || die "--noisy_copies must be a positive number: ${noisy_copies}"
    train_set=${train_set}_noisy${noisy_copies}
fi

[ -n "${asr_config}" ] || die "--asr_config is required"
[ -f "${asr_config}" ] || die "no such config: ${asr_config}"
[ -n "${asr_tag}" ] || asr_tag=$(basename "${asr_config}" .yaml)
asr_exp=${expdir}/asr_${asr_tag}
# An overlay config (top-level base: FILE or apply:, echo_plugin.recipe.overlay) is merged into
# ${asr_exp}/asr_config.merged.yaml, which every later stage reads; asr_config_path keeps the given file.
asr_config_src=${asr_config}
if grep -q -E '^(base|apply|recipe):' "${asr_config}"; then
    mkdir -p "${asr_exp}"
    asr_config=${asr_exp}/asr_config.merged.yaml
    ${python} -m echo_plugin.recipe.overlay --config "${asr_config_src}" --out "${asr_config}" \
        || die "cannot merge the overlay ${asr_config_src}"
fi
stats_dir=${expdir}/asr_stats_${token_type}${nbpe}_fs${fs}
case "${token_type}" in whisper_*) stats_dir=${expdir}/asr_stats_${token_type}_fs${fs} ;; esac
[ -z "${speed_perturb_factors}" ] || stats_dir=${stats_dir}_sp   # its own shapes (ESPnet's naming)
[ -z "${noisy_copies}" ] || stats_dir=${stats_dir}_noisy${noisy_copies}
if [ "${token_type}" = bpe ]; then
    token_dir=data/token_list/bpe_${bpemode}${nbpe}
    bpemodel=${token_dir}/bpe.model
elif [[ "${token_type}" == whisper_* ]]; then   # ESPnet's Whisper token types name their model in bpemodel
    token_dir=data/token_list/${token_type}
    bpemodel=${token_type}
else
    token_dir=data/token_list/char
    bpemodel=none
fi
token_list=${token_dir}/tokens.txt
if [ -z "${inference_tag}" ]; then
    inference_tag=decode_$(basename "${inference_config:-default}" .yaml)_$(echo "${inference_asr_model}" | sed -e 's#/#_#g' -e 's/\.[^.]*$//')
fi

# A test set is a name under data/ or the path of any Kaldi-style data dir.
set_name() { case "$1" in */*) basename "$1" ;; *) echo "$1" ;; esac; }
set_src() { case "$1" in */*) echo "$1" ;; *) echo "data/$1" ;; esac; }

# Stage 2's output is current when it is newer than its source files, in the --audio_format asked for and
# made with this run's --fs and length limits (DST/format_options, written once DST is in place; a changed
# value formats the set again, logged).
# format_set SRC DST [LENGTH_POLICY]: test sets keep every utterance (the default: their limits do not
# matter); training and validation sets leave out those outside --min_duration/--max_duration (listed in
# DST/dropped). Archive formats: --nj archives written by --nj jobs through ${train_cmd} (logs under ${dumpdir}/log).
format_set() {
    local src=$1 dst=$2 policy=${3:-keep} made_with was
    [ -f "${src}/wav.scp" ] || die "no data dir at ${src} (wav.scp missing)"
    made_with="fs=${fs} length_policy=${policy}"
    [ "${policy}" = keep ] || made_with+=" min_duration=${min_duration} max_duration=${max_duration}"
    if [ -f "${dst}/utt2dur" ] && [ "$(cat "${dst}/audio_format" 2>/dev/null)" = "${audio_format}" ] \
        && [ -z "$(find "${src}" -maxdepth 1 -type f ! -name noise.scp ! -name rir.scp -newer "${dst}/utt2dur")" ]; then
        was=$(cat "${dst}/format_options" 2>/dev/null || true)
        if [ "${was}" = "${made_with}" ]; then
            log "  ${dst} is up to date"
            return
        fi
        log "  ${dst} was formatted with ${was:-no record of its --fs and length limits}; now ${made_with}: formatting it again"
    fi
    ${python} -m echo_plugin.recipe.format_data --src "${src}" --dst "${dst}" --fs "${fs}" \
        --resample "${resample}" --max_duration "${max_duration}" --min_duration "${min_duration}" \
        --length_policy "${policy}" --nj "${nj}" --audio_format "${audio_format}" --cmd "${train_cmd}" \
        --log_dir "${dumpdir}/log"
    echo "${made_with}" > "${dst}/format_options"
}

# ESPnet's data type of a stage-2 set's wav.scp: kaldi_ark for archives, else sound (from its audio_format).
wav_type() {
    case "$(cat "$1/audio_format" 2>/dev/null)" in
        *.ark) echo kaldi_ark ;;
        *) echo sound ;;
    esac
}

# Split the keys (first column) of a table into N files keys.1..N.scp under a dir; with a 4th
# argument "lines", whole lines.
split_keys() {
    local scp=$1 n=$2 out=$3 field=1
    [ "${4:-}" != lines ] || field=0
    mkdir -p "${out}"
    local total
    total=$(wc -l < "${scp}")
    [ "${total}" -ge "${n}" ] || n=${total}
    awk -v n="${n}" -v total="${total}" -v out="${out}" -v field="${field}" \
        '{ job = int((NR - 1) * n / total) + 1; print $field > (out "/keys." job ".scp") }' "${scp}"
    echo "${n}"
}

# speaker_stats DATA_DIR CONFIG OUT_DIR: per-speaker feature statistics (normalize: speaker_mvn).
speaker_stats() {
    ${python} -m echo_plugin.recipe.speaker_stats --data_dir "$1" --config "$2" --fs "${fs}" --out_dir "$3" \
        || die "speaker statistics of $1 failed"
}

# feature_cache DATA_DIR OUT_DIR: the --feature_cache features of a set, computed unless current
# (every scp there and newer than the set's wav.scp and the training config).
feature_cache() {
    local feature current=true
    for feature in ${feature_cache}; do
        [ "$2/${feature}.scp" -nt "$1/wav.scp" ] && [ "$2/${feature}.scp" -nt "${asr_config}" ] || current=false
    done
    if [ "${current}" = true ]; then
        log "  feature cache $2 is up to date"
        return
    fi
    # shellcheck disable=SC2086
    ${python} -m echo_plugin.features.cache --wav_scp "$1/wav.scp" --out_dir "$2" --features ${feature_cache} \
        --config "${asr_config}" --fs "${fs}" --nj "${nj}" || die "feature cache of $1 failed"
}

# store_records "DECODE_DIRS": the scored test sets of those decode dirs as run records, then RESULTS.md
# rendered from every record of the recipe (echo_plugin.recipe.records, echo_plugin.recipe.results).
store_records() {  # $1: the decode dirs; $2: the decoding config they used (default: --inference_config)
    local decoding=${2:-${inference_config}}
    ${python} -m echo_plugin.recipe.records write --exp_dir "${asr_exp}" --data_root "${dumpdir}/raw" \
        --train_set "${train_set}" --valid_set "${valid_set}" --test_sets "$(for d in ${test_sets}; do set_name "$d"; done)" \
        --decode_dirs "$1" ${decoding:+--inference_config "${decoding}"} \
        --records_dir "${records_dir}" ${record_name:+--name "${record_name}"} --folds "${folds_file}" \
        || die "cannot store the run records"
    ${python} -m echo_plugin.recipe.results --recipe_dir . --out RESULTS.md
}

# True when the experiment was trained with normalize: speaker_mvn (read from its config.yaml).
uses_speaker_mvn() {
    grep -q '^normalize: speaker_mvn$' "${asr_exp}/config.yaml" 2>/dev/null
}
# True when its normalization reads the pooled training statistics (speaker_mvn's fallback, speech_mvn's prior).
uses_pooled_stats() {
    grep -q -E '^normalize: (speaker_mvn|speech_mvn)$' "${asr_exp}/config.yaml" 2>/dev/null
}

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "Stage 1: data preparation (local/data.sh ${local_data_opts})"
    # shellcheck disable=SC2086
    local/data.sh ${local_data_opts} ${fold_opts}
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    log "Stage 2: format and validate data dirs -> ${dumpdir}/raw (fs=${fs})"
    if [ -n "${speed_perturb_factors}" ]; then
        log "  speed perturbation (${speed_perturb_factors}): data/${sp_source_set} -> data/${train_set}"
        # shellcheck disable=SC2086
        ${python} -m echo_plugin.recipe.speed_perturb --src "data/${sp_source_set}" --dst "data/${train_set}" \
            --factors ${speed_perturb_factors} --nj "${nj}" --audio_format "${audio_format}" --cmd "${train_cmd}" \
            --log_dir "${dumpdir}/log"
    fi
    if [ -n "${noisy_copies}" ]; then
        format_set "$(set_src "${noisy_source_set}")" "${dumpdir}/raw/$(set_name "${noisy_source_set}")" drop
        log "  noisy copies (${noisy_copies}, ${noisy_noise}, ${noisy_snr_range} dB): ${dumpdir}/raw/${noisy_source_set} -> data/${train_set}"
        ${python} -m echo_plugin.recipe.noisy_copies --src "${dumpdir}/raw/$(set_name "${noisy_source_set}")" \
            --dst "data/${train_set}" --copies "${noisy_copies}" --fs "${fs}" --snr_range "${noisy_snr_range}" \
            --noise "${noisy_noise}" || die "noisy copies of ${noisy_source_set} failed"
    fi
    for dset in ${train_set} ${valid_set}; do
        format_set "$(set_src "${dset}")" "${dumpdir}/raw/$(set_name "${dset}")" drop
    done
    for dset in ${test_sets}; do
        format_set "$(set_src "${dset}")" "${dumpdir}/raw/$(set_name "${dset}")" keep
    done
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    log "Stage 3: token list (${token_type}) -> ${token_dir}"
    # trained on the original training text: speed perturbation and noisy copies repeat it (as ESPnet's bpe_train_text)
    token_text=${dumpdir}/raw/${noisy_source_set}/text
    [ -z "${speed_perturb_factors}" ] || token_text=data/${sp_source_set}/text
    if [[ "${token_type}" == whisper_* ]]; then   # the pretrained vocabulary: nothing to train, any text fits
        ${python} -m echo_plugin.recipe.whisper_token_list --token_type "${token_type}" --out_dir "${token_dir}"
    else
        ${python} -m echo_plugin.recipe.tokens --text "${token_text}" \
            --token_type "${token_type}" --nbpe "${nbpe}" --bpemode "${bpemode}" --out_dir "${token_dir}"
        ${python} -m echo_plugin.recipe.check_text --text "${dumpdir}/raw/${valid_set}/text" \
            --token_list "${token_list}" --token_type "${token_type}" --bpemodel "${bpemodel}"
    fi
fi

# Options every ESPnet training/stats run shares.
common_train_opts=(
    --use_preprocessor true --token_type "${token_type}" --token_list "${token_list}"
    --bpemodel "${bpemodel}" --non_linguistic_symbols none --cleaner none --g2p none
    --frontend_conf "fs=${fs}" --config "${asr_config}"
    --train_data_path_and_name_and_type "${dumpdir}/raw/${train_set}/wav.scp,speech,$(wav_type "${dumpdir}/raw/${train_set}")"
    --train_data_path_and_name_and_type "${dumpdir}/raw/${train_set}/text,text,text"
    --valid_data_path_and_name_and_type "${dumpdir}/raw/${valid_set}/wav.scp,speech,$(wav_type "${dumpdir}/raw/${valid_set}")"
    --valid_data_path_and_name_and_type "${dumpdir}/raw/${valid_set}/text,text,text"
)

if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
    log "Stage 4: collect feature statistics with ${nj} jobs -> ${stats_dir}"
    logdir=${stats_dir}/logdir
    rm -rf "${logdir}"
    n_train=$(split_keys "${dumpdir}/raw/${train_set}/wav.scp" "${nj}" "${logdir}/train")
    n_valid=$(split_keys "${dumpdir}/raw/${valid_set}/wav.scp" "${n_train}" "${logdir}/valid")
    [ "${n_valid}" -eq "${n_train}" ] || die "valid set has fewer utterances than --nj"
    # shellcheck disable=SC2086
    stats_opts=()
    if [ -n "${stats_config}" ]; then
        [ -f "${stats_config}" ] || die "no such --stats_config: ${stats_config}"
        log "  with ${stats_config} (--stats_config)"
        stats_opts=(--config "${stats_config}")
        if grep -q -E '^(base|apply|recipe):' "${stats_config}"; then
            stats_opts=(--config "${logdir}/stats_config.merged.yaml")
            ${python} -m echo_plugin.recipe.overlay --config "${stats_config}" --out "${stats_opts[1]}" \
                || die "cannot merge the overlay ${stats_config}"
        fi
    fi
    ${train_cmd} JOB=1:"${n_train}" "${logdir}/stats.JOB.log" \
        ${python} -m echo_plugin.bin.asr_train --collect_stats true "${common_train_opts[@]}" "${stats_opts[@]}" \
        --train_shape_file "${logdir}/train/keys.JOB.scp" --valid_shape_file "${logdir}/valid/keys.JOB.scp" \
        --output_dir "${logdir}/stats.JOB" ${asr_args}
    stats_inputs=()
    for i in $(seq "${n_train}"); do stats_inputs+=(--input_dir "${logdir}/stats.${i}"); done
    ${python} -m espnet2.bin.aggregate_stats_dirs "${stats_inputs[@]}" --output_dir "${stats_dir}"
    n_tokens=$(wc -l < "${token_list}")
    for part in train valid; do
        awk -v n="${n_tokens}" '{ print $0 "," n }' "${stats_dir}/${part}/text_shape" \
            > "${stats_dir}/${part}/text_shape.${token_type}"
    done
fi

if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
    log "Stage 5: training -> ${asr_exp} (ngpu=${ngpu}, num_nodes=${num_nodes}, train_threads=${train_threads}, resume=${resume})"
    mkdir -p "${asr_exp}"
    # One training per exp dir: an exclusive lock on ${asr_exp}/.lock (fd 9, also held by the launcher
    # process waiting on the training) until the end of this stage; taken before anything else here.
    if command -v flock >/dev/null; then
        exec 9>> "${asr_exp}/.lock"
        flock -n 9 || die "${asr_exp} is in use by another training (lock ${asr_exp}/.lock)"
    else
        log "  warning: no flock (util-linux): ${asr_exp} is not locked against a second training"
    fi
    if [ "${resume}" != true ] && [ -f "${asr_exp}/checkpoint.pth" ]; then
        die "${asr_exp} holds a training already; use --resume true, or another --asr_tag"
    fi
    if [ "${resume}" != true ] && [[ "${cuda_cmd}" == *" --requeue"* ]]; then
        # a requeued rerun of a --resume false training would start again from epoch 1 over its own epochs
        cuda_cmd=${cuda_cmd// --requeue/}
        log "  --resume false: training is not requeueable (cmd.sh's train_requeue dropped for this run)"
    fi
    [[ "${num_nodes}" =~ ^[1-9][0-9]*$ ]] || die "--num_nodes must be a positive number: ${num_nodes}"
    echo "${asr_config_src}" > "${asr_exp}/asr_config_path"
    norm_opts=(--normalize "${feats_normalize}")   # global_mvn | utterance_mvn | speaker_mvn | none
    case "${feats_normalize}" in
        global_mvn) norm_opts+=(--normalize_conf "stats_file=${stats_dir}/train/feats_stats.npz") ;;
        speaker_mvn)   # per-speaker statistics as extra data (batch key spk_stats); model: echo applies them
            for dset in "${train_set}" "${valid_set}"; do
                speaker_stats "${dumpdir}/raw/${dset}" "${asr_config}" "${asr_exp}/speaker_stats/${dset}"
            done
            norm_opts+=(--normalize_conf "stats_file=${asr_exp}/speaker_stats/${train_set}/pooled_stats.npz"
                --train_data_path_and_name_and_type "${asr_exp}/speaker_stats/${train_set}/spk_stats.scp,spk_stats,npy"
                --valid_data_path_and_name_and_type "${asr_exp}/speaker_stats/${valid_set}/spk_stats.scp,spk_stats,npy"
                --allow_variable_data_keys true) ;;
        speech_mvn)    # per-utterance speech-frame statistics with the pooled training statistics as prior
            speaker_stats "${dumpdir}/raw/${train_set}" "${asr_config}" "${asr_exp}/speaker_stats/${train_set}"
            norm_opts+=(--normalize_conf "stats_file=${asr_exp}/speaker_stats/${train_set}/pooled_stats.npz") ;;
    esac
    cache_opts=()   # features computed once (echo_plugin.features.cache), read by ESPnet's data loader
    if [ -n "${feature_cache}" ]; then
        [ -z "${noise_dir}${colored_noise}${rir_dir}" ] && [ "${babble}" != true ] \
            || die "--feature_cache describes the stored audio; it cannot be combined with noise augmentation"
        for part in train valid; do
            [ "${part}" = train ] && dset=${train_set} || dset=${valid_set}
            cache_dir=${asr_exp}/feature_cache/${dset}
            feature_cache "${dumpdir}/raw/${dset}" "${cache_dir}"
            for feature in ${feature_cache}; do
                cache_opts+=(--${part}_data_path_and_name_and_type "${cache_dir}/${feature}.scp,${feature},kaldi_ark")
            done
        done
        cache_opts+=(--allow_variable_data_keys true)
    fi
    noise_opts=()   # ESPnet's on-the-fly noise/RIR augmentation from data/<train_set>/{noise,rir}.scp
    if [ -n "${noise_dir}${colored_noise}${rir_dir}" ] || [ "${babble}" = true ]; then
        log "  noise augmentation: SNR ${noise_snr_range} dB, p=${noise_apply_prob} -> data/${train_set}/noise.scp"
        ${python} -m echo_plugin.recipe.noise --train_dir "${dumpdir}/raw/${train_set}" --out_dir "data/${train_set}" \
            --fs "${fs}" --babble "${babble}" --colored_noise "${colored_noise}" \
            ${noise_dir:+--noise_dir "${noise_dir}"} ${rir_dir:+--rir_dir "${rir_dir}"}
        read -r snr_lo snr_hi <<< "${noise_snr_range}"
        [ ! -f "data/${train_set}/noise.scp" ] || noise_opts+=(--noise_scp "data/${train_set}/noise.scp"
            --noise_db_range "${snr_lo}_${snr_hi:-${snr_lo}}" --noise_apply_prob "${noise_apply_prob}")
        [ -z "${rir_dir}" ] || noise_opts+=(--rir_scp "data/${train_set}/rir.scp" --rir_apply_prob "${rir_apply_prob}")
    fi
    start=$(date +%s)
    # Training time counts across resumes; an interrupted run (INT/TERM) records its part too.
    trap 'echo $(( $(date +%s) - start )) >> "${asr_exp}/train_seconds"; exit 130' INT TERM
    # Through ESPnet's launcher, as ESPnet's asr.sh: it keeps the earlier logs (train.log -> train.1.log, ...),
    # adds --ngpu and --multiprocessing_distributed (one node: ${cuda_cmd} --gpu N LOG ...), and for N nodes runs
    # ${cuda_cmd} --num_nodes N LOG mpirun -np N ... over a shared init file (${asr_exp}/.dist_init_*):
    # echo_plugin.recipe.launch starts one copy per node (Slurm: srun on N nodes; local: N processes here, gloo
    # with --ngpu 0) and logs each copy's peak memory in train.log.
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=${train_threads} ${python} -m espnet2.bin.launch \
        --cmd "${cuda_cmd} --name $(printf %q "$(basename "${asr_exp}")")" --log "${asr_exp}/train.log" \
        --ngpu "${ngpu}" --num_nodes "${num_nodes}" --init_file_prefix "${asr_exp}/.dist_init_" \
        --multiprocessing_distributed true -- \
        ${python} -m echo_plugin.bin.asr_train "${common_train_opts[@]}" \
        --train_shape_file "${stats_dir}/train/speech_shape" \
        --train_shape_file "${stats_dir}/train/text_shape.${token_type}" \
        --valid_shape_file "${stats_dir}/valid/speech_shape" \
        --valid_shape_file "${stats_dir}/valid/text_shape.${token_type}" \
        "${norm_opts[@]}" "${noise_opts[@]}" "${cache_opts[@]}" \
        --resume "${resume}" --output_dir "${asr_exp}" \
        ${seed:+--seed "${seed}"} ${asr_args}
    trap - INT TERM
    echo $(( $(date +%s) - start )) >> "${asr_exp}/train_seconds"
    rm -f "${asr_exp}"/.dist_init_*   # init files of earlier failed runs (the lock: no other training uses them)
    ${python} -m echo_plugin.recipe.train_info --exp_dir "${asr_exp}"
    # the options that change a run, beside its config, for the records' hash (not the fold or the seed)
    run_options=()
    for opt in fs token_type nbpe bpemode feats_normalize speed_perturb_factors local_data_opts asr_args \
               feature_cache noise_dir babble colored_noise noise_snr_range noise_apply_prob rir_dir rir_apply_prob; do
        run_options+=(--option "${opt}=${!opt}")
    done
    if [ -n "${noisy_copies}" ]; then   # only then: the hash of every run without them stays what it was
        for opt in noisy_copies noisy_snr_range noisy_noise; do run_options+=(--option "${opt}=${!opt}"); done
    fi
    ${python} -m echo_plugin.recipe.records run_info --exp_dir "${asr_exp}" --config "${asr_config_src}" \
        "${run_options[@]}" || die "cannot write ${asr_exp}/run.json"
    exec 9>&-   # the training is over: release the lock
fi

# --snr_test_sets: every test set is decoded and scored as data/<set>_clean, data/<set>_snr<N>
# (made from its stage-2 copy by echo_plugin.recipe.snr_sets; deterministic, reused when current).
if [ -n "${snr_test_sets}" ] && [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 6 ]; then
    snr_sets=
    for dset in ${test_sets}; do
        name=$(set_name "${dset}")
        if [ "${stage}" -le 6 ]; then
            format_set "$(set_src "${dset}")" "${dumpdir}/raw/${name}"
            ${python} -m echo_plugin.recipe.snr_sets --src "${dumpdir}/raw/${name}" --name "${name}" --out_dir data \
                --fs "${fs}" --bands "${snr_test_sets}" --noise "${snr_noise}" --babble_src "${dumpdir}/raw/${noisy_source_set}"
        fi
        for band in ${snr_test_sets}; do
            case "${band}" in clean) snr_sets+=" ${name}_clean" ;; *) snr_sets+=" ${name}_snr${band}" ;; esac
        done
    done
    test_sets=${snr_sets# }
fi

if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
    log "Stage 6: decoding ${test_sets} with ${inference_nj} jobs -> ${asr_exp}/${inference_tag}"
    [ -n "${inference_config}" ] || die "--inference_config is required for decoding"
    [ -f "${asr_exp}/${inference_asr_model}" ] || die "no model ${asr_exp}/${inference_asr_model}: train first (stage 5)"
    for dset in ${test_sets}; do
        name=$(set_name "${dset}")
        format_set "$(set_src "${dset}")" "${dumpdir}/raw/${name}"
        dir=${asr_exp}/${inference_tag}/${name}
        logdir=${dir}/logdir
        rm -rf "${logdir}"
        n_jobs=$(split_keys "${dumpdir}/raw/${name}/wav.scp" "${inference_nj}" "${logdir}")
        device_opts=(--ngpu 0)
        job_gpus=0   # the job's GPUs (cmd.sh: Slurm's --gres through its config)
        if [ "${gpu_inference}" = true ]; then device_opts=(--ngpu 1); job_gpus=1; fi
        spk_opts=()
        if uses_speaker_mvn; then
            speaker_stats "${dumpdir}/raw/${name}" "${asr_exp}/config.yaml" "${asr_exp}/speaker_stats/${name}"
            spk_opts=(--data_path_and_name_and_type "${asr_exp}/speaker_stats/${name}/spk_stats.scp,spk_stats,npy"
                      --allow_variable_data_keys true)
        fi
        # shellcheck disable=SC2086
        ${decode_cmd} --gpu "${job_gpus}" --time_file "${logdir}/seconds.JOB" JOB=1:"${n_jobs}" "${logdir}/asr_inference.JOB.log" \
            ${python} -m echo_plugin.bin.asr_inference "${device_opts[@]}" --batch_size 1 \
            --data_path_and_name_and_type "${dumpdir}/raw/${name}/wav.scp,speech,$(wav_type "${dumpdir}/raw/${name}")" \
            "${spk_opts[@]}" \
            --key_file "${logdir}/keys.JOB.scp" --asr_train_config "${asr_exp}/config.yaml" \
            --asr_model_file "${asr_exp}/${inference_asr_model}" --output_dir "${logdir}/output.JOB" \
            --config "${inference_config}" ${inference_args}
        for i in $(seq "${n_jobs}"); do cat "${logdir}/output.${i}/1best_recog/text"; done | sort > "${dir}/text.tmp"
        mv "${dir}/text.tmp" "${dir}/text"
        cat "${logdir}"/seconds.* > "${dir}/decode_seconds"
    done
    if [ "${speaker_adapt}" = true ]; then
        # Second pass: each (set, speaker) unit adapted on its first-pass hypotheses and decoded
        # again; the units of every set are spread over --inference_nj jobs (their files and logs
        # under exp/<tag>/speaker_adapt/<inference_tag>/, outside the decode dir RESULTS.md reads).
        adapt_root=${asr_exp}/${inference_tag}_spkadapt
        logdir=${asr_exp}/speaker_adapt/${inference_tag}
        rm -rf "${logdir}"
        mkdir -p "${logdir}"
        for dset in ${test_sets}; do
            name=$(set_name "${dset}")
            awk -v set="${name}" '{ print set, $1 }' "${dumpdir}/raw/${name}/spk2utt"
        done > "${logdir}/units"
        n_jobs=$(split_keys "${logdir}/units" "${inference_nj}" "${logdir}" lines)
        spk_opts=()
        ! uses_speaker_mvn || spk_opts=(--spk_stats_root "${asr_exp}/speaker_stats")
        log "  speaker-adaptive second pass: $(wc -l < "${logdir}/units") set x speaker units, ${n_jobs} jobs -> ${adapt_root}"
        ${decode_cmd} JOB=1:"${n_jobs}" "${logdir}/speaker_adapt.JOB.log" \
            ${python} -m echo_plugin.bin.speaker_adapt --asr_train_config "${asr_exp}/config.yaml" \
            --asr_model_file "${asr_exp}/${inference_asr_model}" --decode_config "${inference_config}" \
            ${adapt_config:+--adapt_config "${adapt_config}"} --units "${logdir}/keys.JOB.scp" \
            --data_root "${dumpdir}/raw" --hyp_root "${asr_exp}/${inference_tag}" "${spk_opts[@]}" \
            --output_dir "${logdir}/output.JOB"
        for dset in ${test_sets}; do
            name=$(set_name "${dset}")
            mkdir -p "${adapt_root}/${name}"
            cat "${logdir}"/output.*/"${name}"/text | sort > "${adapt_root}/${name}/text.tmp"
            mv "${adapt_root}/${name}/text.tmp" "${adapt_root}/${name}/text"
            # both passes count in the real-time factor
            cat "${asr_exp}/${inference_tag}/${name}/decode_seconds" "${logdir}"/output.*/"${name}"/seconds \
                > "${adapt_root}/${name}/decode_seconds"
        done
    fi
fi

if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
    log "Stage 7: scoring (WER/CER) and RESULTS.md"
    decode_tags=${inference_tag}
    [ "${speaker_adapt}" != true ] || decode_tags+=" ${inference_tag}_spkadapt"
    for dset in ${test_sets}; do
        name=$(set_name "${dset}")
        for tag in ${decode_tags}; do
            dir=${asr_exp}/${tag}/${name}
            ${python} -m echo_plugin.recipe.score --ref "${dumpdir}/raw/${name}/text" --hyp "${dir}/text" \
                --out_dir "${dir}/score" --decode_seconds "${dir}/decode_seconds" --utt2dur "${dumpdir}/raw/${name}/utt2dur" \
                --normalizer "${score_normalizer}"
        done
    done
    store_records "${decode_tags}"
fi

if [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; then
    [ -n "${pack_tag}" ] || pack_tag=${asr_tag}
    log "Stage 8: pack ${asr_exp} -> ${asr_exp}/${pack_tag}.zip"
    pack_opts=(--option "${stats_dir}/train/feats_stats.npz")
    ! uses_pooled_stats || pack_opts+=(--option "${asr_exp}/speaker_stats/${train_set}/pooled_stats.npz")
    [ "${token_type}" != bpe ] || pack_opts+=(--option "${bpemodel}")
    if [ -n "${inference_config}" ]; then   # transcribe decodes with it unless told otherwise
        cp "${inference_config}" "${asr_exp}/decode.yaml"
        if [ -n "${max_chunk_seconds}" ]; then   # transcribe's key only: stage 6's ESPnet parser refuses it
            printf '\n# packed by stage 8 (--max_chunk_seconds): transcribe splits longer recordings\nmax_chunk_seconds: %s\n' \
                "${max_chunk_seconds}" >> "${asr_exp}/decode.yaml"
        fi
        pack_opts+=(--option "${asr_exp}/decode.yaml")
    fi
    ${python} -m espnet2.bin.pack asr --asr_train_config "${asr_exp}/config.yaml" \
        --asr_model_file "${asr_exp}/${inference_asr_model}" "${pack_opts[@]}" \
        --outpath "${asr_exp}/${pack_tag}.tmp.zip"
    mv "${asr_exp}/${pack_tag}.tmp.zip" "${asr_exp}/${pack_tag}.zip"
    if [ "${score_deployed}" = true ]; then
        # What a user runs: the packed model through transcribe, every file alone, its speaker unknown,
        # with the packed decoding config; scored and recorded beside the recipe's own decode.
        deployed=${inference_tag}_deployed
        log "  deployed path: ${asr_exp}/${pack_tag}.zip, file by file -> ${asr_exp}/${deployed}"
        for dset in ${test_sets}; do
            name=$(set_name "${dset}")
            dir=${asr_exp}/${deployed}/${name}
            mkdir -p "${dir}"
            start_ns=$(date +%s%N)
            ${python} -m echo_plugin.bin.transcribe --model "${asr_exp}/${pack_tag}.zip" \
                --wav_scp "${dumpdir}/raw/${name}/wav.scp" > "${dir}/transcribe.out" 2> "${dir}/transcribe.log" \
                || die "transcribe failed on ${name} (${dir}/transcribe.log)"
            echo "$(( $(date +%s%N) - start_ns ))" | awk '{ printf "%.3f\n", $1 / 1e9 }' > "${dir}/decode_seconds"
            # its output lines of the set's utterances (a library may print to stdout too)
            awk 'NR == FNR { keep[$1]; next } ($1 in keep)' "${dumpdir}/raw/${name}/wav.scp" "${dir}/transcribe.out" \
                | sort > "${dir}/text"
            ${python} -m echo_plugin.recipe.score --ref "${dumpdir}/raw/${name}/text" --hyp "${dir}/text" \
                --out_dir "${dir}/score" --decode_seconds "${dir}/decode_seconds" --utt2dur "${dumpdir}/raw/${name}/utt2dur" \
                --normalizer "${score_normalizer}"
        done
        # the packed decoding config (with the chunk limit stage 8 added, if any) is what the deployed rows used
        store_records "${deployed}" "$([ -f "${asr_exp}/decode.yaml" ] && [ -n "${inference_config}" ] && echo "${asr_exp}/decode.yaml")"
    fi
fi

log "Successfully finished stages ${stage}-${stop_stage}"
