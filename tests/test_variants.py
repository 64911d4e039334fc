"""BRF's ablations and RF through the integer chain: the integer step by hand, QAT == golden bit
for bit on ECG-size networks, the float and integer definitions agreeing, the artifact's neuron
type, and its refusal as one line."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from brf_hw import golden
from brf_hw.artifact import ArtifactError, load_artifact, save_artifact
from brf_hw.fixed import FixedSpec, Format, kinds, spec_for_model
from brf_hw.fixed.arith import resonator_step
from brf_hw.fixed.qat import to_int_network
from brf_hw.model import ModelConfig, build_model
from brf_hw.neurons import NeuronConfig
from brf_hw.neurons.modules import RESONATOR_FLAGS

ABLATIONS = list(RESONATOR_FLAGS)  # brf, three ablations, rf
LO, HI = -32768, 32767


def test_every_resonator_has_an_integer_kind():
    assert set(ABLATIONS) <= set(kinds.KINDS)
    assert [kinds.get(k).q_mode for k in ABLATIONS] == [3, 3, 1, 2, 0]  # no-refractory: damping only; no-reset: threshold only
    with pytest.raises(kinds.UnknownKind, match="'izhikevich' has no integer implementation; known: brf"):
        kinds.get("izhikevich")  # a kind no module registers (every float kind has one)


def _step(q_mode, q=512, u=1500):
    # state Q5.10, coef Q1.14 (as test_fixed's BRF step): d, c, dt, gamma, theta
    return resonator_step(np.int64(200), np.int64(u), np.int64(-400), np.int64(q), 16300, 300, 164, 14746, 1024,
                          LO, HI, LO, HI, 14, 10, -3, q_mode)


def test_integer_ablation_steps_by_hand():
    brf = _step(3)
    e_reset = 16300 - ((164 * 512 + 512) >> 10)  # q deepens the damping: e = 16218
    e_plain = 16300  # q not in the damping
    u_of = lambda e: ((e * 1500 - 300 * -400 + 8192) >> 14) + 1600  # noqa: E731
    assert brf[0] == u_of(e_reset) == 3092
    no_reset = _step(2)  # q in the threshold only
    assert no_reset[0] == u_of(e_plain) and no_reset[1] == ((e_plain * -400 + 300 * 1500 + 8192) >> 14)
    no_refr = _step(1)  # q in the damping only
    assert no_refr[0] == brf[0]
    # threshold: u' = 2587 with q = 1600: BRF needs u' > 1024 + 1600 (no spike), no-refractory only > 1024
    assert _step(3, q=1600, u=1000)[3] == 0 and _step(1, q=1600, u=1000)[3] == 1
    # q evolves (gamma q + z) with either use, stays put for RF
    gamma_q = (14746 * 512 + 8192) >> 14
    assert brf[2] == no_refr[2] == no_reset[2] == gamma_q + 1024
    rf = _step(0, q=0)
    assert rf[2] == 0 and rf[3] == 1


def network(kind, seed, weight_scale=40.0, hidden=36, inputs=4, outputs=6):
    """ECG-size (4-36-6) network of ``kind``. Without the divergence boundary a fast resonator's
    oscillation grows (what the boundary prevents) until the integer state saturates where the float
    one does not: those kinds get the ECG's slow omega."""
    omega = (3.0, 60.0) if RESONATOR_FLAGS[kind].boundary else (3.0, 5.0)
    cfg = ModelConfig(inputs, hidden, outputs, neuron=NeuronConfig(kind=kind, omega_init=omega))
    model = build_model(cfg, seed=seed)
    with torch.no_grad():
        model.synapses.weight.mul_(weight_scale)
        model.readout.weight.mul_(5.0)
    return model


def assert_qat_equals_golden(model, spec, x):
    model.fixed = spec
    with torch.no_grad():
        out = model(torch.from_numpy(x), record=True)
    net = to_int_network(model, spec)
    assert net.neuron == model.config.neuron.kind
    gold = golden.run(net, x, record=True)
    assert np.array_equal(out.traces["z"].numpy().astype(np.int64), gold.spikes)
    assert np.array_equal(out.outputs.numpy() * spec.output.scale, gold.outputs)
    for name in net.kind.state_names:
        assert np.array_equal(out.traces[name].numpy() * spec.state.scale, gold.traces[name])
    return gold


@pytest.mark.parametrize("kind", ABLATIONS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_qat_equals_golden_on_ecg_size_random_networks(kind, seed):
    model = network(kind, seed, weight_scale=100.0)
    rng = np.random.default_rng(seed)
    x = (rng.random((400, 3, 4)) < 0.3).astype(np.float64)
    spec = spec_for_model(model, [8, 4, 6][seed])
    gold = assert_qat_equals_golden(model, spec, x)
    assert gold.spikes.sum() > 1000
    if kind == "rf":
        assert not gold.traces["q"].any()
    else:
        assert gold.traces["q"].any()


def test_qat_equals_golden_on_real_ecg(ecg_splits):
    x = ecg_splits["test"].inputs[:6].numpy().transpose(1, 0, 2)
    for kind in ABLATIONS[1:]:
        assert assert_qat_equals_golden(network(kind, 0), spec_for_model(network(kind, 0), 8), x).spikes.sum() > 500


WIDE = FixedSpec(weight=Format(16, 15), rec_weight=Format(16, 15), out_weight=Format(16, 12), coef=Format(26, 24),
                 state=Format(32, 22), output=Format(24, 16))  # u up to 512: RF has no reset


@pytest.mark.parametrize("kind", ABLATIONS)
def test_wide_integer_network_tracks_the_float_one(kind):
    """The float step's flags and the integer step's q_mode mean the same: with wide formats the
    integer network spikes as the float network does (up to rounding)."""
    model = network(kind, 1, weight_scale=100.0).double()
    x = (np.random.default_rng(1).random((400, 3, 4)) < 0.3).astype(np.float64)
    with torch.no_grad():
        ref = model(torch.from_numpy(x).float()).spikes_per_step.sum().item()
    spikes = golden.run(to_int_network(model, WIDE), x).spikes.sum()
    assert ref > 300
    assert abs(spikes - ref) <= 0.01 * ref


@pytest.mark.parametrize("kind", ["brf-no-refractory", "brf-no-reset", "rf"])
def test_ste_gradients_match_the_float_network(kind):
    """QAT's backward runs the float adjoints of the same kind (q_mode): with wide formats its
    gradients are the float network's."""
    assert_ste_gradients_match(network(kind, 2, hidden=8, outputs=3).double(), STE_SPEC)


STE_SPEC = FixedSpec(weight=Format(24, 22), rec_weight=Format(24, 23), out_weight=Format(24, 20),
                     coef=Format(30, 28), state=Format(30, 24), output=Format(30, 22))


def wide_spec(state_frac: int, rec_frac: int = 20) -> FixedSpec:
    """Formats wide enough that the integer network follows the float one up to rounding."""
    return FixedSpec(weight=Format(24, 20), rec_weight=Format(24, rec_frac), out_weight=Format(24, 20),
                     coef=Format(30, 28), state=Format(30, state_frac), output=Format(30, 22))


def assert_a_qat_step_changes_every_parameter(model, splits):
    """Gradients flow through the integer forward to every float parameter (8-bit formats, real
    ECG): one Adam step changes each (a plain SGD step can stay below a large parameter's ulp)."""
    model.fixed = spec_for_model(model, 8)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = splits["test"].inputs[:4].transpose(0, 1).float()
    labels = splits["test"].labels[:4].transpose(0, 1)
    out = model(x)
    loss = torch.nn.functional.cross_entropy(out.outputs.reshape(-1, 6), labels.reshape(-1).long())
    loss.backward()
    torch.optim.Adam(model.parameters(), lr=0.01).step()
    for name, p in model.named_parameters():
        assert torch.isfinite(p.grad).all() and p.grad.abs().max() > 0, name
        assert torch.isfinite(p).all() and not torch.equal(p, before[name]), name


def assert_spikes_track_the_float_network(model, spec):
    """The integer network's spikes equal the float network's on >= 99 % of neuron-steps."""
    x = (np.random.default_rng(1).random((400, 3, 4)) < 0.3).astype(np.int64)
    with torch.no_grad():
        ref = model(torch.from_numpy(x).double(), record=True).traces["z"].numpy()
    spikes = golden.run(to_int_network(model, spec), x).spikes
    assert ref.sum() > 300 and (spikes == ref).mean() > 0.99


def assert_ste_gradients_match(model, spec, atol=1e-6):
    """QAT (``spec``) and float gradients of every parameter agree on sparse random spikes."""
    x = torch.from_numpy((np.random.default_rng(2).random((300, 2, 4)) < 0.2).astype(np.float64))
    grads, spikes = [], []
    for fixed in (None, spec):
        model.fixed = fixed
        out = model(x)
        spikes.append(out.spikes_per_step.detach())
        grads.append(torch.autograd.grad((out.outputs**2).sum(), list(model.parameters())))
    model.fixed = None
    assert torch.equal(*spikes) and spikes[0].sum() > 20
    for (name, _), a, b in zip(model.named_parameters(), *grads):
        assert torch.allclose(a, b, rtol=1e-3, atol=atol * b.abs().max().item()), name


def _rewrite_manifest(path, mutate):
    with np.load(path) as data:
        contents = {k: data[k] for k in data.files}
    manifest = json.loads(str(contents.pop("manifest")))
    mutate(manifest)
    np.savez(path, manifest=np.array(json.dumps(manifest)), **contents)


def test_artifact_carries_the_neuron_type(tmp_path):
    model = network("brf-no-reset", 3)
    net = to_int_network(model, spec_for_model(model, 8))
    path = save_artifact(tmp_path / "a.npz", net, task="ecg", dt=0.01, theta=1.0, gamma=0.9)
    loaded, manifest = load_artifact(path)
    assert manifest["neuron"] == loaded.neuron == "brf-no-reset"
    x = (np.random.default_rng(3).random((200, 2, 4)) < 0.2).astype(np.int64)
    assert np.array_equal(golden.run(loaded, x).outputs, golden.run(net, x).outputs)
    # the same arrays read as BRF compute something else: the type is part of the network
    brf = dataclasses.replace(loaded, neuron="brf")
    assert not np.array_equal(golden.run(brf, x).spikes, golden.run(loaded, x).spikes)
    with pytest.raises(ArtifactError, match="manifest.neuron is 'brf-no-reset'; this tool implements brf$"):
        load_artifact(path, neurons=("brf",))


def test_artifacts_without_a_neuron_field_load_as_brf(tmp_path):
    model = network("brf", 4)
    net = to_int_network(model, spec_for_model(model, 8))
    path = save_artifact(tmp_path / "old.npz", net, task="ecg", dt=0.01, theta=1.0, gamma=0.9)
    _rewrite_manifest(path, lambda m: m.pop("neuron"))
    assert load_artifact(path)[0].neuron == "brf"


@pytest.mark.parametrize("value", ["izhikevich", "bogus", ["brf"]])
def test_unknown_neuron_type_is_refused_by_name(tmp_path, value):
    model = network("brf", 5)
    path = save_artifact(tmp_path / "x.npz", to_int_network(model, spec_for_model(model, 8)), task="ecg",
                         dt=0.01, theta=1.0, gamma=0.9)
    _rewrite_manifest(path, lambda m: m.update(neuron=value))
    with pytest.raises(ArtifactError, match=r"manifest\.neuron .* has no integer implementation; known: brf, "):
        load_artifact(path)


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
def test_unknown_neuron_type_on_the_command_line(tmp_path, monkeypatch, capsys):
    from test_cli import assert_user_error, run_cli

    model = network("brf", 5)
    path = save_artifact(tmp_path / "x.npz", to_int_network(model, spec_for_model(model, 8)), task="ecg",
                         dt=0.01, theta=1.0, gamma=0.9)
    _rewrite_manifest(path, lambda m: m.update(neuron="izhikevich"))
    assert_user_error(run_cli(monkeypatch, capsys, "brf_hw.golden", str(path)), "'izhikevich'", "known: brf")


def test_kinds_without_integer_arithmetic_are_refused(monkeypatch):
    """Every float kind ships with integer arithmetic: one is taken out of the registry for the test."""
    monkeypatch.delitem(kinds.KINDS, "bhrf")
    model = build_model(ModelConfig(4, 6, 2, neuron=NeuronConfig(kind="bhrf")), seed=0)
    with pytest.raises(ValueError, match="'bhrf' has no integer implementation"):
        to_int_network(model, spec_for_model(model, 8))


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
def test_hardware_refuses_a_kind_it_does_not_implement(tmp_path, monkeypatch, capsys):
    """A kind with an integer step but no update stage in the accelerator (here a resonator kind
    registered for the test) must never be built as another kind's hardware, which would compute
    something else without a word: refused by name, exit 2, nothing written. Kinds without integer
    arithmetic (a made-up manifest.neuron) are refused as their artifact is read."""
    from test_cli import assert_user_error, run_cli

    from brf_hw.fixed.kinds.resonator import ResonatorKind
    from brf_hw.hw.core import BRFAccelerator

    monkeypatch.setitem(kinds.KINDS, "brf-toy", ResonatorKind("brf-toy", RESONATOR_FLAGS["brf"]))
    model = network("brf", 3)
    net = dataclasses.replace(to_int_network(model, spec_for_model(model, 8)), neuron="brf-toy")
    path = save_artifact(tmp_path / "a.npz", net, task="ecg", dt=0.01, theta=1.0, gamma=0.9)
    assert load_artifact(path)[0].neuron == "brf-toy"  # the integer chain knows it, the hardware does not
    with pytest.raises(ValueError, match="not this network's 'brf-toy'"):
        BRFAccelerator(net)
    out = tmp_path / "rtl"
    assert_user_error(run_cli(monkeypatch, capsys, "brf_hw.generate", "--artifact", str(path), "--out", str(out)),
                      "'brf-toy'")
    assert not out.exists()
    _rewrite_manifest(path, lambda m: m.update(neuron="izhikevich"))
    assert_user_error(run_cli(monkeypatch, capsys, "brf_hw.generate", "--artifact", str(path), "--out", str(out)),
                      "'izhikevich'", "no integer implementation")
    assert not out.exists()
