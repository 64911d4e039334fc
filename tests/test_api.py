"""The public API (``import brf_hw``): light to import, every exported name resolves, and a tiny
network goes float training -> QAT -> artifact -> reload -> golden model == accelerator
(Amaranth simulation) through public names only."""

import dataclasses
import importlib
import subprocess
import sys

import numpy as np
import pytest

import brf_hw


def test_import_needs_neither_torch_nor_amaranth():
    code = ("import sys, brf_hw; heavy = [m for m in ('torch', 'amaranth', 'numba') if m in sys.modules]; "
            "assert not heavy, heavy; print(len(brf_hw.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) == len(brf_hw.__all__) > 40


def test_every_public_name_resolves_and_is_documented():
    for name in brf_hw.__all__:
        value = getattr(brf_hw, name)
        if callable(value):
            doc = (value.__doc__ or "").strip()
            # a dataclass or NamedTuple without a docstring gets its signature as one
            assert doc and not doc.startswith(f"{value.__name__}("), f"brf_hw.{name} has no docstring"
    assert set(brf_hw.__all__) <= set(dir(brf_hw))
    # the names the subpackage brf_hw.train and the module brf_hw.evaluate would shadow are not used
    importlib.import_module("brf_hw.evaluate")
    importlib.import_module("brf_hw.train.trainer")

    assert callable(brf_hw.train_float) and callable(brf_hw.evaluate_sequences)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        brf_hw.no_such_name  # noqa: B018


def two_channel_task(name: str, steps: int = 20, seed: int = 0) -> brf_hw.Task:
    """Which of two spike channels fires: a class per sequence, read at the last step. A spike is
    worth 80 input units so that a few drive the neurons past threshold at dt = 0.01."""
    rng = np.random.default_rng(seed)

    def split(n):
        y = rng.integers(0, 2, n)
        rates = np.where(y[:, None] == 0, [0.8, 0.0], [0.0, 0.8])
        return brf_hw.ArraySplit(80.0 * (rng.random((n, steps, 2)) < rates[:, None, :]), y)

    splits = {"train": split(64), "val": split(16), "test": split(16)}
    return brf_hw.Task(name, inputs=2, hidden=8, outputs=2, loss_mode="label_last", load=lambda data_dir: splits,
                       epochs=2, batch_size=16, lr=0.05, steps=steps, input_unit=80.0,
                       omega_init=(3.0, 5.0), b_offset_init=(0.1, 0.5))


def test_tiny_network_end_to_end_through_public_names(tmp_path):
    task = two_channel_task("api-two-channels")
    trained = brf_hw.train_float(task, run_dir=tmp_path / "run", kernel="reference")
    assert isinstance(trained, brf_hw.TrainResult) and len(trained.history) == 2
    assert trained.checkpoint.is_file() and trained.test["acc"] > 50 and trained.test["sops"] > 0

    quantized = brf_hw.quantize(trained, epochs=1)
    assert isinstance(quantized, brf_hw.QATResult)
    assert quantized.artifact == tmp_path / "run" / "brf_api-two-channels.npz"
    assert quantized.spec.weight.bits == 8 and quantized.readout.rule == brf_hw.ReadoutRule.LAST

    network, manifest = brf_hw.load_artifact(quantized.artifact)
    assert manifest["task"] == "api-two-channels" and manifest["metrics"] == quantized.metrics
    for field in dataclasses.fields(network):
        a, b = getattr(network, field.name), getattr(quantized.network, field.name)
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b, field.name

    # the golden model's score on the reloaded file is the one QAT reported
    scored = brf_hw.evaluate_network(network, task)
    assert scored.metrics["acc"] == quantized.metrics["test_acc"]
    assert scored.metrics["sops"] == quantized.metrics["test_sops"]

    # golden model == the accelerator, step by step, on four test sequences back to back
    x, target, _ = brf_hw.TaskData(task).integer_sequences("test", 4)
    gold = brf_hw.run_golden(network, x)
    assert gold.spikes.sum(axis=(0, 2)).min() > 0  # every sequence makes the hidden layer spike
    stream, first = brf_hw.to_stream(x)
    hw = brf_hw.simulate(network, stream, first, lanes=2)
    assert np.array_equal(hw.spikes, brf_hw.to_stream(gold.spikes)[0])
    assert np.array_equal(hw.outputs, brf_hw.to_stream(gold.outputs)[0])
    assert np.array_equal(brf_hw.from_stream(hw.labels, x.shape[0])[-1], gold.predictions[-1])
    assert np.array_equal(hw.cycles, brf_hw.expected_cycles(network, stream, hw.spikes, lanes=2))


    # from the checkpoint file instead of the TrainResult: the same QAT, the same integer network
    again = brf_hw.quantize(trained.checkpoint, task, epochs=1, run_dir=tmp_path / "again" / "qat")
    assert again.artifact == tmp_path / "again" / "brf_api-two-channels.npz"
    assert np.array_equal(again.network.w_rec, network.w_rec) and again.metrics == quantized.metrics


def test_quantize_needs_the_task_of_a_bare_model():
    model = brf_hw.build_model(brf_hw.ModelConfig(2, 4, 2), seed=0)
    with pytest.raises(ValueError, match="needs the task"):
        brf_hw.quantize(model)


def test_a_built_in_task_name_cannot_be_taken():
    with pytest.raises(ValueError, match="'ecg' is already registered"):
        brf_hw.train_float(dataclasses.replace(brf_hw.get_task("ecg"), hidden=4))
