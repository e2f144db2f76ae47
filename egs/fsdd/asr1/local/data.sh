#!/usr/bin/env bash
# FSDD data preparation: writes data/{train,dev,test_isolated,test_connected}.
# Run from the recipe dir (egs/fsdd/asr1). A thin wrapper over echo_plugin.data.fsdd.
#
# Corpus: --fsdd_root DIR, else ../shared/data/fsdd beside the repository root,
# else the pinned upstream commit is downloaded and checked under downloads/.
set -euo pipefail

fsdd_root=
max_takes=
n_connected_train=1500
n_connected_dev=200
n_connected_test=300
seed=0
train_speakers=
dev_speakers=
test_speakers=
synth_voices=0
synth_takes=5
n_connected_synth=1000
world_voices=0
n_connected_world=3000
skip_checksum=false

usage() {
    cat <<EOF
Usage: $0 [options]
  --fsdd_root DIR          folder holding recordings/ (default: ../shared/data/fsdd, else download)
  --max_takes N            keep takes with index < N per speaker and digit (default: all)
  --n_connected_train N    connected-digit utterances in data/train (default: ${n_connected_train})
  --n_connected_dev N      connected-digit utterances in data/dev (default: ${n_connected_dev})
  --n_connected_test N     connected-digit utterances in data/test_connected (default: ${n_connected_test})
  --seed N                 random seed of the connected utterances (default: ${seed})
  --train_speakers A,B,C   training speakers, comma-separated (default: george,jackson,yweweler)
  --dev_speakers A         dev speakers, comma-separated (default: nicolas); a speaker in neither list
                           is a test speaker, so "--train_speakers jackson,yweweler,nicolas
                           --dev_speakers george" is another dev fold with the same test sets
  --test_speakers A        test speakers, comma-separated (default: lucas unless it is a train or dev
                           speaker); every speaker in no list is a test speaker too
  --synth_voices N         add N synthetic espeak-ng speakers to train only (default: ${synth_voices} = none)
  --synth_takes N          takes per synthetic speaker and digit (default: ${synth_takes})
  --n_connected_synth N    connected-digit utterances of the synthetic speakers (default: ${n_connected_synth})
  --world_voices N         add N WORLD pseudo-speakers per training speaker to train only: its recordings
                           resynthesized with their own f0 scale and formant warp (default: ${world_voices} = none)
  --n_connected_world N    connected-digit utterances of the WORLD pseudo-speakers (default: ${n_connected_world})
  --skip_checksum BOOL     true: do not check the recordings against the shipped SHA-256 manifest
                           (echo_plugin/data/fsdd_sha256.txt), for a copy you changed on purpose (default: false)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --fsdd_root|--max_takes|--n_connected_train|--n_connected_dev|--n_connected_test|--seed|\
        --train_speakers|--dev_speakers|--test_speakers|--synth_voices|--synth_takes|--n_connected_synth|\
        --world_voices|--n_connected_world|--skip_checksum)
            if [ $# -lt 2 ]; then
                echo "$0: option $1 needs a value" >&2; exit 1
            fi
            printf -v "${1#--}" '%s' "$2"   # --seed 3 sets seed=3
            shift 2 ;;
        *) echo "$0: unknown option '$1'" >&2; usage >&2; exit 1 ;;
    esac
done

# Prints the shared local copy of FSDD if there is one.
find_local_fsdd() {
    local top here
    if top=$(git rev-parse --show-toplevel 2>/dev/null) && [ -d "${top}/../shared/data/fsdd/recordings" ]; then
        echo "${top}/../shared/data/fsdd"
        return
    fi
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    if [ -d "${here}/../../../../../shared/data/fsdd/recordings" ]; then
        echo "${here}/../../../../../shared/data/fsdd"
    fi
}

[ -n "${fsdd_root}" ] || fsdd_root=$(find_local_fsdd)
if [ -n "${fsdd_root}" ]; then
    source_opts=(--fsdd_root "${fsdd_root}")
else
    echo "$0: no local FSDD copy found; downloading to downloads/" >&2
    source_opts=(--download_dir downloads)
fi

if [ "${synth_voices}" -gt 0 ] && [ "${world_voices}" -gt 0 ]; then
    echo "$0: --synth_voices and --world_voices both add training speakers; choose one" >&2; exit 1
fi
extra_opts=()
[ "${skip_checksum}" = true ] && extra_opts+=(--skip_checksum)
if [ "${synth_voices}" -gt 0 ]; then
    python -m echo_plugin.data.synthetic_digits --out_dir data/local/synth \
        --n_voices "${synth_voices}" --n_takes "${synth_takes}" --seed "${seed}"
    extra_opts+=(--extra_train_root data/local/synth --n_connected_extra_train "${n_connected_synth}")
fi
if [ "${world_voices}" -gt 0 ]; then
    python -m echo_plugin.data.world_voices "${source_opts[@]}" --out_dir data/local/world \
        ${train_speakers:+--speakers ${train_speakers//,/ }} --n_voices "${world_voices}" --seed "${seed}" --nj 2 \
        ${max_takes:+--max_takes "${max_takes}"}
    extra_opts+=(--extra_train_root data/local/world --n_connected_extra_train "${n_connected_world}")
fi

python -m echo_plugin.data.fsdd "${source_opts[@]}" "${extra_opts[@]}" \
    --out_dir data \
    --n_connected_train "${n_connected_train}" \
    --n_connected_dev "${n_connected_dev}" \
    --n_connected_test "${n_connected_test}" \
    --seed "${seed}" \
    ${max_takes:+--max_takes "${max_takes}"} \
    ${train_speakers:+--train_speakers ${train_speakers//,/ }} \
    ${dev_speakers:+--dev_speakers ${dev_speakers//,/ }} \
    ${test_speakers:+--test_speakers ${test_speakers//,/ }}
