"""The energy estimate's arithmetic (brf_hw.hw.energy) against hand-computed cases."""

import numpy as np
import pytest

from brf_hw.artifact import load_artifact, shipped_artifact
from brf_hw.hw.energy import StepEvents, blocks_per_access, energy, for_design, for_synth_row, step_events
from brf_hw.hw.synth import Activity


def test_energy_by_hand():
    events = StepEvents(cycles=50, synapse_reads=10, constant_reads=36, state_accesses=72, output_reads=5,
                        multiplies=222)
    blocks = {"synapses": 11, "constants": 2, "state": 3, "output weights": 3}
    e = energy(events, blocks, luts=2540, fmax_mhz=25.0, family="ice40", steps=1300)
    # central iCE40 coefficients: static 0.117 mW for 50 cycles at 25 MHz (2 us) = 0.234 nJ;
    # clock 50 x 53 pJ = 2.65 nJ; logic 50 x 2540 x 0.053 pJ = 6.731 nJ; block RAM
    # (10 x 11 + 36 x 2 + 72 x 3 + 5 x 3) = 413 block accesses x 5 pJ = 2.065 nJ; DSP 222 x 24 pJ = 5.328 nJ
    assert e.parts_nj == pytest.approx({"static": 0.234, "clock": 2.65, "logic": 6.731, "bram": 2.065, "dsp": 5.328})
    assert e.per_step_nj[1] == pytest.approx(17.008)
    assert e.per_inference_uj[1] == pytest.approx(17.008 * 1300 / 1000)
    assert e.power_mw == pytest.approx(17.008e-9 / 2e-6 * 1e3)  # 8.504 mW
    # the range takes every coefficient low, then high: low = 0.104 mW x 2 us + 50 x 52 + 50 x 2540 x 0.014
    # + 413 x 2.5 + 222 x 15 (pJ)
    assert e.per_step_nj[0] == pytest.approx(0.208 + 2.6 + 1.778 + 1.0325 + 3.33)
    assert e.per_step_nj[0] < e.per_step_nj[1] < e.per_step_nj[2]


def test_ecp5_static_power_is_the_devices():
    events = StepEvents(100, 0, 0, 0, 0, 0)
    blocks = {"synapses": 0, "constants": 0, "state": 0, "output weights": 0}
    small = energy(events, blocks, 0, 50.0, "ecp5", "ECP5 LFE5U-25F")
    large = energy(events, blocks, 0, 50.0, "ecp5", "ECP5 LFE5U-85F")
    # 100 cycles at 50 MHz = 2 us: 40 mW -> 80 nJ, 80 mW -> 160 nJ
    assert small.parts_nj["static"] == pytest.approx(80.0) and large.parts_nj["static"] == pytest.approx(160.0)


@pytest.fixture(scope="module")
def ecg():
    return load_artifact(shipped_artifact("ecg"))[0]


def test_step_events_by_hand(ecg):
    """ECG 4-36-6 at lanes 1 (36 chunks, 2 segments): a silent step, and one with an input spike
    and one hidden spike."""
    x = np.zeros((2, 1, 4), np.int64)
    spikes = np.zeros((2, 1, 36), np.int64)
    x[1, 0, 2] = 1
    spikes[1, 0, 5] = 1
    silent = step_events(ecg, x[:1], spikes[:1], lanes=1)
    # period: accept 1 + UPDATE 36 + 1 + READOUT 6 (pipeline drain) = 44; LI (6 + 5) + 2 = 13 is hidden
    assert silent == StepEvents(cycles=44, synapse_reads=0, constant_reads=36, state_accesses=72, output_reads=0,
                                multiplies=36 * 6 + 6)
    both = step_events(ecg, x, spikes, lanes=1)
    # mean of the two steps: (1 input + 1 hidden source) x 2 segments / 2 steps = 2 reads, 0.5 output reads
    assert (both.synapse_reads, both.output_reads) == (2.0, 0.5)
    assert both.cycles > silent.cycles


def test_blocks_per_access(ecg):
    # synapse words 162 bits: 11 EBR of 16 bits, 5 DP16KD of 36; state 3 x 16 bits = 48: 3 and 2
    assert blocks_per_access(ecg, 1, None, "ice40") == {"synapses": 11, "constants": 2, "output weights": 3, "state": 3}
    assert blocks_per_access(ecg, 1, None, "ecp5") == {"synapses": 5, "constants": 1, "output weights": 2, "state": 2}


def test_synth_row_uses_nextpnr_cells_and_fmax(ecg):
    x = np.zeros((3, 1, 4), np.int64)
    act = Activity(x, np.zeros((3, 1, 36), np.int64), "hand", 1)
    row = {"lanes": 1, "segments": 2, "target": "iCE40 UP5K (sg48)", "fmax_mhz": 24.0, "cycles_per_step": 44.0,
           "utilization": {"ICESTORM_LC": 2540, "ICESTORM_DSP": 6}}
    e = for_synth_row(ecg, act, row, "ice40")
    assert e == for_design(ecg, act, 1, 2, "ice40", row["target"], 24.0, 2540)  # silent steps: 44 cycles both ways
    assert e.steps == 3 and e.cycles == 44.0
    assert for_synth_row(ecg, act, {**row, "cycles_per_step": 88.0}, "ice40").cycles == 88.0  # synth's count wins
