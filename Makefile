# Thin entry points; the work lives in scripts/ and the Python package.
PY := .venv/bin/python
export BRF_HW_DATA ?= $(abspath ../shared/data)

.PHONY: setup run test test-slow rtl sim sim-full sim-long fuzz synth
setup:
	bash scripts/setup.sh

# The main job: set up, then train the ECG network with the paper's settings.
run: setup
	$(PY) training/qat.py --task ecg

# The default test suite (no slow, no RTL-simulation tests).
test: setup
	$(PY) -m pytest -m "not slow and not sim"

# Slow tests only (full-length training checks, the long tutorial notebooks).
test-slow: setup
	$(PY) -m pytest -m slow

# The documentation site (MkDocs Material, API reference from the docstrings, examples/*.ipynb
# rendered): build/site/index.html. --strict: a broken link or reference fails the build.
.PHONY: docs notebooks
docs: setup
	$(PY) -m mkdocs build --strict

# Every tutorial notebook in examples/, the long ones too (each cell executed by nbmake).
notebooks: setup
	$(PY) -m pytest -v examples

# Regenerate the committed Verilog from the shipped ECG artifact (a test checks it is current).
rtl: setup
	$(PY) -m brf_hw.generate --neurons 36 --out rtl

# cocotb: the generated Verilog against the golden model under Icarus and Verilator (quick set), and the
# board top (UART, framing, host over a socket bridge) at the UART bit level.
sim: setup
	PATH="$(abspath .venv/bin):$$PATH" $(PY) -m pytest -m sim -v tests/test_sim.py tests/test_sim_kinds.py tests/test_sim_shd.py tests/test_board.py

# A task's test set through the RTL (TASK=ecg: the 141 ECG sequences; TASK=smnist|psmnist|shd: the
# test images/recordings, ARTIFACT defaults to brf_hw/artifacts/TASK_brf_w8.npz, LIMIT=N the first N;
# SIM=verilator|icarus, JOBS=N parallel processes, LANES=P, FAST=1: Verilator -O3 and X handling fast);
# prints the accuracy measured from the RTL outputs (last readout: the label at the last step; mean:
# sum_label there).
SIM ?= verilator
JOBS ?= 1
LANES ?= 1
TASK ?= ecg
sim-full: setup
	PATH="$(abspath .venv/bin):$$PATH" $(PY) sim/run.py --task $(TASK) --sim $(SIM) --set full --jobs $(JOBS) \
		--lanes $(LANES) $(if $(ARTIFACT),--artifact $(ARTIFACT)) $(if $(LIMIT),--limit $(LIMIT)) $(if $(FAST),--fast)

# Random networks, golden model against the accelerator (Amaranth simulator; every 50th also under
# Verilator). Not in CI: about 4 s per network per core. N networks, JOBS processes, from SEED.
N ?= 1000
SEED ?= 0
fuzz: setup
	$(PY) -m brf_hw.hw.fuzz --n $(N) --seed $(SEED) --jobs $(JOBS) --verilator-every 50

# One ECG stream of STEPS steps without a reset through the golden model and Verilator.
STEPS ?= 100000
sim-long: setup
	$(PY) sim/run.py --set long --steps $(STEPS) --sim $(SIM) --lanes $(LANES)

# Area and timing (yowasp yosys + nextpnr): the smallest of iCE40 UP5K, ECP5-25F/45F/85F that holds
# the shipped ECG network at lanes 1, 2 and 4 (brf-hw synth --shape 1-256-10 --lanes 8 for
# other shapes, --artifact PATH for other networks).
synth: setup
	$(PY) -m brf_hw synth --lanes 1 2 4

# The accelerator on a board (brf_hw.board): the board top at the UART bit level under Icarus and
# Verilator (cocotb), and the host program through a localhost socket bridge to the simulated board.
.PHONY: board-sim bitstream
board-sim: setup
	PATH="$(abspath .venv/bin):$$PATH" $(PY) -m pytest -m sim -v tests/test_board.py

# A bitstream with the YoWASP tools: BOARD=icebreaker|ulx3s|ulx3s-12f|ulx3s-25f|ulx3s-45f|ulx3s-85f,
# BAUD (default 3000000); writes build/board/BOARD/ and fails if timing does not close.
BOARD ?= icebreaker
BAUD ?= 3000000
bitstream: setup
	$(PY) -m brf_hw build --board $(BOARD) --baud $(BAUD)
