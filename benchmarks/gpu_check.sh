#!/usr/bin/env bash
# One prepared check for a GPU machine (see benchmarks/gpu_check.py): --device cuda against the
# CPU on the GPT-2-small shape, and attribute timed against circuit-tracer on the GPU.
#   bash benchmarks/gpu_check.sh [--device cuda:1]   # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry               # anywhere: tiny shape, CPU only
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then
    make setup
fi
if [[ " $* " != *" --dry "* ]] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv
fi
# No hub access is needed: the model is written locally.
export HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE
exec "$PYTHON" benchmarks/gpu_check.py "$@"
