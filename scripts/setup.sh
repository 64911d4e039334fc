#!/usr/bin/env bash
# Create .venv with brf-hw and everything its tests need. Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# torch is pinned to the CPU wheel (a bare `torch` pulls a multi-GB CUDA build).
.venv/bin/python -m pip install --quiet --upgrade pip 2>/dev/null || true
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test]"
echo "setup done: $(.venv/bin/python -c 'import torch, brf_hw; print("brf_hw", brf_hw.__version__, "torch", torch.__version__)')"
