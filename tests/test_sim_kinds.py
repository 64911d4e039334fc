"""Each neuron kind's accelerator as Verilog under Verilator (cocotb) equals the golden model on
ECG sequences back to back, with random valid gaps and ready back-pressure. Marked ``sim``."""

import numpy as np
import pytest

from brf_hw.artifact import HARDWARE_NEURONS, load_artifact, save_artifact
from brf_hw.hw import rtl_sim as simrun

from test_hw_kinds import ecg_network
from test_sim import check, ecg_stream

pytestmark = pytest.mark.sim


@pytest.mark.parametrize("kind", HARDWARE_NEURONS)
def test_ecg_per_kind_under_verilator(kind, ecg_splits, tmp_path):
    """An ECG-size (4-36-6) network of each kind, 4 lanes, 2 segments: three 400-step ECG test
    sequences; the design reads its kind from the artifact's manifest."""
    artifact = save_artifact(tmp_path / f"{kind}.npz", ecg_network(kind), task="ecg", dt=0.01, theta=1.0, gamma=0.9)
    assert load_artifact(artifact)[0].neuron == kind
    design = simrun.build("verilator", artifact, 4, tmp_path / "build", segments=2)
    x, first = ecg_stream(ecg_splits, [0, 1, 2], 400)
    out = check(design, x, first, kind, gap_prob=0.3, stall_prob=0.3, seed=len(kind))
    assert out["spikes_per_step"].sum() > 500
