#!/usr/bin/env bash
# Create .venv in the repository and install asr-adapt into it, with its test tools and the
# optional whisper-base weights. Usage: bash scripts/install.sh [extra pip arguments]
# TORCH_SPEC picks the PyTorch build (default: the 2.13.0 release; on a machine with a GPU,
# set TORCH_SPEC=torch for the newest CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install --quiet -e ".[test,base,serve,ray]" "$@"
echo "installed: $(.venv/bin/asr-adapt --version) in $(pwd)/.venv"
