#!/usr/bin/env bash
# The end-to-end quickstart run by `make demo`. It uses its own registry home (.demo/) so it never touches yours.
set -euo pipefail
cd "$(dirname "$0")/.."
export LEPTONKIT_HOME="${LEPTONKIT_HOME:-$PWD/.demo/home}"
export HF_HUB_OFFLINE=1
lk() { .venv/bin/leptonkit "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. versions and device"
lk version

step "2. import the built-in encoder (all-MiniLM-L6-v2) into the registry at $LEPTONKIT_HOME"
lk models import builtin:minilm --name minilm
lk models alias minilm demo
lk models list
lk models show minilm@demo
lk models verify minilm@demo

step "done"
echo "Fine-tuning, serving and data preparation join this quickstart as they land (see the open issues)."
