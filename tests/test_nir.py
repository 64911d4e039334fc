"""NIR export and import (``brf_hw.nir_io``): the file round trip gives identical outputs on real
ECG data, the graph uses standard nodes where NIR has them, and the LI mapping is what a NIR
simulator stepping LI by forward Euler computes."""

import dataclasses

import nir
import numpy as np
import pytest
import torch

from brf_hw import nir_io
from brf_hw.analyze.common import float_model_from_artifact, load_int_artifact
from brf_hw.artifact import shipped_artifact
from brf_hw.model import ModelConfig, build_model
from brf_hw.neurons import NeuronConfig


@pytest.fixture(scope="module")
def shipped_model():
    """A trained network: the float network the shipped 8-bit artifact stands for."""
    model = float_model_from_artifact(*load_int_artifact(shipped_artifact()))
    model.kernel = "reference"  # the ground-truth step loop: these tests compare networks, not kernels
    return model


@pytest.fixture(scope="module")
def ecg_x(ecg_splits):
    return ecg_splits["test"].inputs[:8].transpose(0, 1)  # [T, 8, 4], real ECG spikes


def run(model, x):
    with torch.no_grad():
        return model(x, record=True)


def test_file_round_trip_is_identical_on_ecg(shipped_model, ecg_x, tmp_path):
    path = nir_io.write(nir_io.to_nir(shipped_model, "test"), tmp_path / "ecg.nir")
    back = nir_io.read(path, kernel="reference")
    a, b = run(shipped_model, ecg_x), run(back, ecg_x)
    assert torch.equal(a.outputs, b.outputs)
    assert torch.equal(a.traces["z"], b.traces["z"]) and a.traces["z"].sum() > 10_000
    assert torch.equal(a.traces["u"], b.traces["u"])
    for name in ("omega", "b_offset"):
        assert torch.equal(getattr(back.hidden, name), getattr(shipped_model.hidden, name))


def test_graph_uses_standard_nodes_and_documents_the_brf_node(shipped_model, tmp_path):
    g = nir.read(str(nir_io.write(nir_io.to_nir(shipped_model), tmp_path / "g.nir")))  # type-checks on read
    kinds = {k: type(n).__name__ for k, n in g.nodes.items()}
    assert kinds == {"input": "Input", "w_in": "Linear", "brf": "NIRGraph", "w_rec": "Linear", "w_out": "Linear",
                     "li": "LI", "output": "Output"}
    assert ("w_rec", "brf") in g.edges and ("brf", "w_rec") in g.edges
    assert np.array_equal(g.nodes["w_rec"].weight, shipped_model.recurrent_weight.detach().numpy())
    brf = g.nodes["brf"]
    meta = brf.metadata
    assert meta[nir_io.NODE_TAG] == "BRF"
    assert "u[t] = u[t-1] + dt * (b[t]*u[t-1] - omega*v[t-1] + I[t])" in meta["update"]
    assert float(meta["dt"]) == 0.01 and float(meta["theta"]) == 1.0 and float(meta["gamma"]) == 0.9
    # the placeholder inside the custom node: NaN, so a tool running it blind gets NaN
    assert np.isnan(brf.nodes["brf_update"].scale).all()


def test_li_mapping_is_forward_euler_of_nir_li(shipped_model, ecg_x):
    """Simulate the exported LI the way a NIR tool does (tau dv/dt = v_leak - v + r*I, forward Euler
    at dt) from the graph's standard fields alone, on the real hidden spikes."""
    g = nir_io.to_nir(shipped_model)
    li, w_out = g.nodes["li"], g.nodes["w_out"].weight.astype(np.float64)
    dt = float(g.nodes["brf"].metadata["dt"])
    ours = run(shipped_model, ecg_x)
    z = ours.traces["z"].double().numpy()
    v = np.zeros((z.shape[1], w_out.shape[0]))
    outs = []
    for t in range(z.shape[0]):
        current = z[t] @ w_out.T
        v = v + dt / li.tau * (li.v_leak - v + li.r * current)
        outs.append(v)
    assert np.allclose(np.stack(outs), ours.outputs.double().numpy(), atol=1e-5, rtol=1e-5)


def test_import_without_brf_hw_readout_metadata(shipped_model, ecg_x):
    """A graph whose LI carries only NIR's fields (as another tool would write it) still imports:
    alpha from tau under forward Euler, equal to float32 rounding."""
    g = nir_io.to_nir(shipped_model)
    g.nodes["li"] = dataclasses.replace(g.nodes["li"], metadata={})
    del g.metadata["brf_hw.model_config"]
    back = nir_io.from_nir(g, kernel="reference")
    a, b = run(shipped_model, ecg_x), run(back, ecg_x)
    assert torch.allclose(back.output.alpha, shipped_model.output.alpha, rtol=0, atol=1e-6)
    assert torch.allclose(a.outputs, b.outputs, atol=1e-4)


def test_pruned_network_keeps_its_mask(ecg_x, tmp_path):
    cfg = ModelConfig(4, 12, 6, neuron=NeuronConfig(kind="brf"), mask_prob=0.5)
    model = build_model(cfg, seed=1, kernel="reference")
    back = nir_io.read(nir_io.write(nir_io.to_nir(model), tmp_path / "p.nir"), kernel="reference")
    assert torch.equal(back.recurrent_mask, model.recurrent_mask) and model.recurrent_mask.mean() < 0.7
    assert back.config == model.config and back.kernel == "reference"
    assert torch.equal(run(model, ecg_x).outputs, run(back, ecg_x).outputs)


def test_import_rejects_graphs_that_are_not_brf_networks(shipped_model):
    plain = nir.NIRGraph.from_list(nir.Linear(np.ones((3, 2), np.float32)))
    with pytest.raises(nir_io.NIRImportError, match="one BRF node"):
        nir_io.from_nir(plain)
    g = nir_io.to_nir(shipped_model)
    g.edges.remove(("w_rec", "brf"))
    with pytest.raises(nir_io.NIRImportError, match="recurrent Linear"):
        nir_io.from_nir(g)


def test_export_rejects_other_neurons():
    alif = build_model(ModelConfig(4, 8, 6, neuron=NeuronConfig(kind="alif")), seed=0)
    with pytest.raises(ValueError, match="BRF networks"):
        nir_io.to_nir(alif)
