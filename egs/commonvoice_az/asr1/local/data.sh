#!/usr/bin/env bash
# Common Voice Azerbaijani data preparation: writes data/{train,dev,test}.
# Run from the recipe dir (egs/commonvoice_az/asr1). A thin wrapper over
# echo_plugin.data.commonvoice (Azerbaijani text normalisation: echo_plugin.text.azerbaijani).
#
# Common Voice cannot be downloaded by a script: accept the terms at
# https://commonvoice.mozilla.org/datasets, download the Azerbaijani release,
# unpack it, and pass its language folder (cv-corpus-<version>/az, the one
# holding clips/ and train.tsv) as --cv_root.
set -euo pipefail

cv_root=
train_tsv=train
skip_bad_rows=false

usage() {
    cat <<EOF
Usage: $0 --cv_root DIR [options]
  --cv_root DIR            unpacked release: cv-corpus-<version>/az (holds clips/ and train.tsv)
  --train_tsv train|validated
                           train on train.tsv, or on validated.tsv less the dev/test
                           speakers and sentences (default: ${train_tsv})
  --skip_bad_rows true     drop faulty tsv rows (missing, corrupt or zero-byte clip, a clip
                           under two client_ids, empty sentence, ...) with a one-line warning
                           each instead of stopping (default: ${skip_bad_rows})
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --cv_root|--train_tsv|--skip_bad_rows)
            if [ $# -lt 2 ]; then
                echo "$0: option $1 needs a value" >&2; exit 1
            fi
            printf -v "${1#--}" '%s' "$2"
            shift 2 ;;
        *) echo "$0: unknown option '$1'" >&2; usage >&2; exit 1 ;;
    esac
done

if [ -z "${cv_root}" ]; then
    cat >&2 <<EOF
$0: --cv_root is required. Common Voice asks every user to accept its terms, so
the recipe cannot download it: go to https://commonvoice.mozilla.org/datasets,
choose Azerbaijani, accept the terms, download and unpack the release, then run
    ./run.sh --local_data_opts "--cv_root /path/to/cv-corpus-<version>/az"
EOF
    exit 1
fi

skip_opts=()
[ "${skip_bad_rows}" != true ] || skip_opts=(--skip_bad_rows)
python -m echo_plugin.data.commonvoice --cv_root "${cv_root}" --lang az --out_dir data \
    --text_norm az --train_tsv "${train_tsv}" "${skip_opts[@]}"
