#!/usr/bin/env bash
printf '%s\n' "$@" > asr_args.txt
