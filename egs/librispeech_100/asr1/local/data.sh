#!/usr/bin/env bash
# LibriSpeech data preparation: writes data/{train_clean_100,dev_clean,dev_other,
# test_clean,test_other,dev} (dev = dev-clean + dev-other). Run from the recipe dir.
# A thin wrapper over echo_plugin.data.librispeech.
#
# Corpus: --librispeech_root DIR (the folder holding LibriSpeech/, or LibriSpeech
# itself), else the archives are downloaded from openslr resource 12 into
# downloads/ and checked against openslr's published MD5 sums.
set -euo pipefail

librispeech_root=
download_dir=downloads
base_url=https://www.openslr.org/resources/12
subsets="train-clean-100 dev-clean dev-other test-clean test-other"

usage() {
    cat <<USAGE
Usage: $0 [options]
  --librispeech_root DIR   extracted corpus (default: download into --download_dir)
  --download_dir DIR       where archives are downloaded and extracted (default: ${download_dir})
  --base_url URL           openslr mirror, e.g. https://us.openslr.org/resources/12 (default: ${base_url})
  --subsets "A B"          LibriSpeech subsets (default: ${subsets})
USAGE
}

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --librispeech_root|--download_dir|--base_url|--subsets)
            if [ $# -lt 2 ]; then
                echo "$0: option $1 needs a value" >&2; exit 1
            fi
            printf -v "${1#--}" '%s' "$2"
            shift 2 ;;
        *) echo "$0: unknown option '$1'" >&2; usage >&2; exit 1 ;;
    esac
done

if [ -n "${librispeech_root}" ]; then
    source_opts=(--librispeech_root "${librispeech_root}")
else
    echo "$0: no --librispeech_root; downloading ${subsets} from ${base_url} to ${download_dir}/" >&2
    source_opts=(--download_dir "${download_dir}" --base_url "${base_url}")
fi

# shellcheck disable=SC2086
python -m echo_plugin.data.librispeech "${source_opts[@]}" --out_dir data --subsets ${subsets}
