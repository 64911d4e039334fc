"""A task of your own, defined in your code without editing brf-hw: data as arrays, a shape, an
input format (4-bit intensities), a readout (the time-mean's argmax), run through float training,
QAT, the golden model, Verilog generation and simulation (Amaranth; the Verilog under Verilator in
the ``sim`` set)."""

import json
import shutil

import numpy as np
import pytest

import brf_hw

STEPS = 24
UNIT = 10.0  # one input integer step is worth 10.0 in the float network


def brightest_channel(n: int, rng: np.random.Generator) -> brf_hw.ArraySplit:
    """Three channels of 4-bit intensities (0..15 units); the class is the channel that is
    brightest on average, the others flicker at low levels."""
    y = rng.integers(0, 3, n)
    levels = rng.integers(0, 5, (n, STEPS, 3))
    levels[np.arange(n), :, y] += rng.integers(6, 11, (n, STEPS))
    return brf_hw.ArraySplit(UNIT * levels, y)


def load(data_dir):
    rng = np.random.default_rng(7)
    return {"train": brightest_channel(96, rng), "val": brightest_channel(24, rng), "test": brightest_channel(24, rng)}


MY_TASK = brf_hw.Task("brightest-channel", inputs=3, hidden=12, outputs=3, loss_mode="every_step", load=load,
                      epochs=3, batch_size=16, lr=0.05, steps=STEPS, input_bits=4, input_unit=UNIT,
                      omega_init=(3.0, 5.0), b_offset_init=(0.1, 0.5))


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    run = tmp_path_factory.mktemp("own-task")
    trained = brf_hw.train_float(MY_TASK, run_dir=run, kernel="reference")
    assert brf_hw.get_task("brightest-channel") is MY_TASK  # registered by its first use
    assert trained.test["acc"] > 50  # three classes: chance is 33 %
    return brf_hw.quantize(trained, epochs=1)


def test_own_task_through_qat_and_golden(quantized):
    net = quantized.network
    assert net.shape == (3, 12, 3) and net.spec.input == brf_hw.InputFormat(4, UNIT)
    # the mean readout's running sum is sized for the task's sequence length: 16 + ceil(log2 24)
    assert quantized.readout == brf_hw.Readout("mean", 16 + 5)
    scored = brf_hw.evaluate_network(brf_hw.load_artifact(quantized.artifact)[0], "brightest-channel")
    assert scored.metrics["acc"] == quantized.metrics["test_acc"] > 50
    assert scored.predictions.shape == (24,)


def test_own_task_verilog_and_simulation(quantized, tmp_path):
    info = brf_hw.generate_verilog(quantized, tmp_path / "rtl", lanes=3, segments=2)
    assert (tmp_path / "rtl" / "brf_rsnn.v").stat().st_size > 10_000
    assert json.loads((tmp_path / "rtl" / "brf_rsnn.json").read_text()) == info
    assert info["shape"] == {"inputs": 3, "hidden": 12, "outputs": 3} and info["readout"]["rule"] == "mean"
    assert info["artifact"]["task"] == "brightest-channel"

    net = quantized.network
    x, target, _ = brf_hw.TaskData(MY_TASK).integer_sequences("test", 3)
    assert x.dtype == np.uint8 and x.max() <= 15
    gold = brf_hw.run_golden(net, x)
    assert gold.spikes.sum() > 0
    stream, first = brf_hw.to_stream(x)
    hw = brf_hw.simulate(net, stream, first, lanes=3, segments=2, gap_prob=0.2, stall_prob=0.2, seed=1)
    assert np.array_equal(hw.outputs, brf_hw.to_stream(gold.outputs)[0])
    assert np.array_equal(hw.spikes, brf_hw.to_stream(gold.spikes)[0])
    # the accelerator's class for each sequence (argmax of the running sums at its last step) is the
    # golden model's, which is what evaluate_network scored
    hw_classes = brf_hw.from_stream(hw.sum_labels, STEPS)[-1]
    assert np.array_equal(hw_classes, gold.sums[-1].argmax(-1))
    assert np.array_equal(hw_classes, brf_hw.evaluate_network(net, MY_TASK, limit=3).predictions)


@pytest.mark.sim
def test_own_task_verilog_under_verilator(quantized, tmp_path):
    if shutil.which("verilator") is None:
        pytest.skip("verilator not on PATH (make sim puts .venv/bin there)")
    x, _, _ = brf_hw.TaskData(MY_TASK).integer_sequences("test", 2)
    stream, first = brf_hw.to_stream(x)
    out = brf_hw.simulate_verilog(quantized, stream, first, lanes=2, build_dir=tmp_path)  # Mismatch on a difference
    gold = brf_hw.run_golden(quantized.network, x)
    assert np.array_equal(brf_hw.from_stream(out["sum_labels"], STEPS)[-1], gold.sums[-1].argmax(-1))
