"""The RSNN: shapes, masks, constraints, loading, and gradients against finite differences."""

import pytest
import torch
from torch.func import functional_call

from brf_hw.model import ModelConfig, build_model
from brf_hw.neurons import NeuronConfig


def small(kind="brf", **kw):
    neuron = NeuronConfig(kind=kind, omega_init=(20.0, 60.0))
    return ModelConfig(3, 5, 2, neuron=neuron, **kw)


def test_ecg_network_has_the_papers_parameter_count():
    assert build_model(ModelConfig(4, 36, 6), seed=0).parameter_count() == 1734
    assert build_model(ModelConfig(1, 256, 10), seed=0).parameter_count() == 68874


def test_forward_shapes_and_traces():
    model = build_model(small(), seed=1)
    x = (torch.rand(30, 4, 3) < 0.3).float()
    out = model(x, record=True)
    assert out.outputs.shape == (30, 4, 2)
    assert out.spikes_per_step.shape == (30, 4)
    assert set(out.traces) == {"u", "v", "q", "z"}
    assert torch.equal(out.traces["z"].sum(-1), out.spikes_per_step)
    with pytest.raises(ValueError, match=r"\[T, B, 3\]"):
        model(torch.zeros(30, 4))


def test_seeded_build_is_reproducible():
    a, b = build_model(small(), seed=7), build_model(small(), seed=7)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)


def test_pruning_mask_keeps_recurrent_weights_zero():
    model = build_model(small(mask_prob=0.5), seed=3)
    pruned = model.recurrent_mask == 0
    assert 0 < pruned.sum() < pruned.numel()
    with torch.no_grad():
        model.synapses.weight.add_(1.0)
    model.constrain_()
    assert torch.all(model.synapses.weight[:, 3:][pruned] == 0)
    assert torch.all(model.synapses.weight[:, :3] != 0)  # input weights are never masked


def test_loading_omega_past_the_boundary_is_an_error():
    model = build_model(small(), seed=0)
    state = model.state_dict()
    state["hidden.omega_param"] = torch.full((5,), 100.0)
    with pytest.raises(ValueError, match="divergence boundary"):
        build_model(small(), seed=0).load_state_dict(state)


@pytest.mark.parametrize("kind", ["brf", "rf", "bhrf", "alif"])
def test_bptt_gradients_match_finite_differences(kind):
    """With a smooth stand-in for the step function, the BPTT gradient of a short sequence is the
    true derivative, so it must agree with central finite differences in float64."""
    torch.manual_seed(0)
    model = build_model(small(kind), seed=2, kernel="reference").double()
    model.hidden.spike = lambda x: torch.sigmoid(4.0 * x)
    x = (torch.rand(25, 2, 3) < 0.4).double() * 40.0
    names = [n for n, _ in model.named_parameters()]

    def loss(*params):
        out = functional_call(model, dict(zip(names, params)), (x,))
        return (out.outputs**2).sum() + out.spikes_per_step.sum()

    params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert torch.autograd.gradcheck(loss, params, eps=1e-6, atol=1e-6, rtol=1e-4)
