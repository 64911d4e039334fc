"""SHD end to end on the RTL: small files in SHD's HDF5 layout (class-structured, so the network
learns and spikes), float training and QAT through ``training/qat.py``'s flow, the exported
700-128-20 artifact generated as Verilog (one event per cycle, and four over four memory banks)
and run under Icarus and Verilator on whole test
sequences: every step's spikes, potentials, labels and running-sum labels equal the golden model,
and the RTL's class of each sequence is the golden model's. Marked ``sim`` (``make sim``)."""

import numpy as np
import pytest

from brf_hw import golden
from brf_hw.artifact import load_artifact
from brf_hw.data.shd_synthetic import write_class_dir
from brf_hw.hw import rtl_sim as simrun
from brf_hw.stream import from_stream, to_stream
from brf_hw.tasks import TaskData
from brf_hw.train import TrainConfig, Trainer
from brf_hw.train.qat_flow import run_qat

from test_tasks_chain import parse

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def shd_artifact(tmp_path_factory):
    root = write_class_dir(tmp_path_factory.mktemp("shd_data"))
    runs = tmp_path_factory.mktemp("shd_runs")
    Trainer(TrainConfig(task="shd", epochs=6, batch_size=8, data_dir=str(root), run_dir=str(runs / "float"),
                        progress=False)).fit()
    metrics = run_qat(parse(["--task", "shd", "--init", str(runs / "float" / "best.pt"), "--qat-epochs", "1",
                             "--batch-size", "8", "--data-dir", str(root), "--run-dir", str(runs / "qat"),
                             "--no-progress"]))
    return runs / "qat" / "brf_shd.npz", root, metrics


@pytest.mark.parametrize("simulator, events", [("icarus", 1), ("verilator", 1), ("verilator", 4)])
def test_shd_network_on_the_rtl(simulator, events, shd_artifact, tmp_path):
    artifact, root, metrics = shd_artifact
    net, manifest = load_artifact(artifact)
    assert net.shape == (700, 128, 20) and net.readout.rule == "mean" and manifest["task"] == "shd"
    x, target, _ = TaskData("shd", str(root)).integer_sequences("test", limit=2)
    steps = x.shape[0]
    stream, first = to_stream(x.astype(np.int64))
    design = simrun.build(simulator, artifact, 4, tmp_path / "build", events=events)
    out = simrun.run_stream(design, stream, first, "shd", gap_prob=0.2, stall_prob=0.2, seed=1)
    gold = golden.run(net, x)
    assert gold.spikes.sum() > 500  # the trained network is active: the comparison means something
    assert out["spikes_per_step"].sum() == gold.spikes.sum()
    rtl_classes = net.readout.classes(from_stream(out["labels"], steps), from_stream(out["sum_labels"], steps))
    assert np.array_equal(rtl_classes, golden.sequence_predictions(net, gold))
    assert metrics["test_acc"] > 50  # the class bands are learnable: the flow trained a real network
