#!/usr/bin/env bash
# Kaldi-style option parsing, sourced by scripts after their defaults are set:
# "--foo_bar VALUE" (or --foo-bar VALUE / --foo_bar=VALUE) sets an existing
# variable foo_bar; an unknown option is an error. "--help" prints $help_message.
while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            echo "${help_message:-no help}"; exit 0 ;;
        --*=*)
            _name=${1%%=*}; _value=${1#*=}; shift ;;
        --*)
            [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
            _name=$1; _value=$2; shift 2 ;;
        *) break ;;
    esac
    _name=${_name#--}; _name=${_name//-/_}
    if ! declare -p "${_name}" >/dev/null 2>&1; then
        echo "$0: unknown option --${_name}" >&2; exit 1
    fi
    printf -v "${_name}" '%s' "${_value}"
done
unset _name _value
