# Thin entry points; the work lives in scripts/ and the Python package.
PY := .venv/bin/python
export BRF_HW_DATA ?= $(abspath ../shared/data)

.PHONY: setup run test test-slow rtl
setup:
	bash scripts/setup.sh

# The main job: set up, then train the ECG network with the paper's settings.
run: setup
	$(PY) training/qat.py --task ecg

# The default (fast) test suite.
test: setup
	$(PY) -m pytest -m "not slow"

# Slow tests only (full-length training checks).
test-slow: setup
	$(PY) -m pytest -m slow

# Regenerate the committed Verilog from the shipped ECG artifact (a test checks it is current).
rtl: setup
	$(PY) -m brf_hw.generate --neurons 36 --out rtl
