"""BHRF through the integer chain: the integer step by hand, its y = omega*v form equal to the float
step up to rounding, the stability check, QAT == golden bit for bit on real ECG sequences, STE
gradients, the artifact's neuron type and the qat command end to end."""

import dataclasses

import numpy as np
import pytest
import torch

from brf_hw import golden
from brf_hw.artifact import ArtifactError, load_artifact, save_artifact
from brf_hw.fixed import kinds, spec_for_model
from brf_hw.fixed.arith import bhrf_step
from brf_hw.fixed.qat import to_int_network
from brf_hw.model import ModelConfig, build_model
from brf_hw.neurons import NeuronConfig
from brf_hw.neurons.functional import ResonatorState
from brf_hw.neurons.functional import bhrf_step as float_bhrf_step

from test_variants import (assert_qat_equals_golden, assert_a_qat_step_changes_every_parameter,
                           assert_spikes_track_the_float_network, assert_ste_gradients_match, wide_spec)

LO, HI = -32768, 32767
CF, SF = 14, 10  # coef Q1.14, state Q5.10: 1.0 is 16384 resp. 1024


def _steps(accs, d=16000, c=800, dtq=164, gamma=14746, theta=1024):
    """d 0.977, c = dt*omega 0.049, dt 0.01, gamma 0.9, theta 1; the current is acc (wshift 0)."""
    u = y = q = np.int64(0)
    out = []
    for acc in accs:
        u, y, q, z = bhrf_step(np.int64(acc), u, y, q, d, c, dtq, gamma, theta, LO, HI, LO, HI, CF, SF, 0)
        out.append((int(u), int(y), int(q), int(z)))
    return out


def test_integer_bhrf_steps_by_hand():
    got = _steps([1500, 0, 0])
    # 1: e = d; y = 0 + c*0; u = 0 + 1500 > theta + 0: spike, q = 1024
    # 2: e = 16000 - rshift(164*1024 = 167936, 9) = 16000 - 328 = 15672 (2*dt*q = 0.02 = 327.7/2^14);
    #    y = rshift(800*1500 = 1200000, 14) = 73 (73.2); u = rshift(15672*1500 - 800*73 = 23449600, 14)
    #    = 1431 (1431.3, the NEW y); 1431 < 1024 + 1024: no spike; q = rshift(14746*1024, 14) = 922 (922.1)
    # 3: e = 16000 - rshift(164*922 = 151208, 9) = 16000 - 295 (295.3); y = 73 + rshift(800*1431, 14)
    #    = 73 + 70 (69.9); u = rshift(15705*1431 - 800*143 = 22359455, 14) = 1365 (1364.7); q = 830 (830.3)
    assert got == [(1500, 0, 1024, 1), (1431, 73, 922, 0), (1365, 143, 830, 0)]


def test_saturation_and_the_damping_bound():
    # u saturates at HI; y from the saturated u; a huge q drives e to the coefficient format's bound
    u, y, q, z = bhrf_step(np.int64(10**6), np.int64(0), np.int64(0), np.int64(HI), 16000, 800, 164, 14746, 1024,
                           LO, HI, -32768, 32767, CF, SF, 0)
    assert (u, y, z) == (HI, 0, 0)  # the threshold theta + q = 33791 > HI: no spike
    assert q == (14746 * HI + 8192) >> 14
    # dt 0.061 (dtq 1000): 2*dt*q = rshift(1000*HI, 9) = 63998 pushes e = d - 63998 to the coef bound
    u, y, q, z = bhrf_step(np.int64(0), np.int64(1000), np.int64(0), np.int64(HI), 16000, 800, 1000, 14746, 1024,
                           LO, HI, -32768, 32767, CF, SF, 0)
    y_new = (800 * 1000 + 8192) >> 14  # 48.8 -> 49
    assert y == y_new == 49 and u == (-32768 * 1000 - 800 * 49 + 8192) >> 14 == -2002


def test_the_integer_step_is_the_float_step_with_y_omega_v():
    """With wide formats the integer step (y = omega*v, d = 1 - 2 dt b0, c = dt*omega) follows the
    float ``bhrf_step`` (which updates u with the NEW v) to within rounding, spikes included."""
    cf, sf = 28, 26
    dt, omega, b_offset, theta, gamma = 0.01, 9.0, 0.3, 1.0, 0.9
    b0 = 0.5 * dt * omega**2 + b_offset
    d, c = round((1 - 2 * dt * b0) * 2**cf), round(dt * omega * 2**cf)
    lo, hi = -(1 << 34), (1 << 34) - 1
    rng = np.random.default_rng(0)
    currents = rng.uniform(-50, 250, 300)
    f64 = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    state = ResonatorState(*(f64(0.0) for _ in range(4)))
    u = y = q = np.int64(0)
    spikes = 0
    for i in currents:
        acc = np.int64(round(dt * i * 2**sf))
        u, y, q, z = bhrf_step(acc, u, y, q, d, c, round(dt * 2**cf), round(gamma * 2**cf), round(theta * 2**sf),
                               lo, hi, lo, hi, cf, sf, 0)
        state = float_bhrf_step(f64(acc / 2**sf / dt), state, f64(omega), f64(b_offset), dt=dt, theta=theta,
                                gamma=gamma, spike=lambda x: (x > 0).double())
        assert z == state.z.item()
        assert abs(u / 2**sf - state.u.item()) < 1e-4 and abs(y / 2**sf - omega * state.v.item()) < 1e-4
        assert abs(q / 2**sf - state.q.item()) < 1e-4
        spikes += int(z)
    assert 10 <= spikes <= 200


def test_kind_is_registered_with_the_resonators_fields():
    bhrf = kinds.get("bhrf")
    assert list(bhrf.arrays) == ["d", "c"] and list(bhrf.scalars) == ["dtq", "gamma", "theta"]
    assert bhrf.state_names == bhrf.stored_state == "uyq" and bhrf.multipliers == 5


def network(seed=0, weight_scale=40.0, hidden=36, inputs=4, outputs=6, omega=(3.0, 5.0)):
    """An ECG-size (4-36-6) BHRF network, weights scaled up so that it spikes (BHRF damps harder)."""
    cfg = ModelConfig(inputs, hidden, outputs, neuron=NeuronConfig(kind="bhrf", omega_init=omega))
    model = build_model(cfg, seed=seed)
    with torch.no_grad():
        model.synapses.weight.mul_(weight_scale)
        model.readout.weight.mul_(5.0)
    return model


def test_check_refuses_an_oscillator_that_diverges_at_rest(tmp_path):
    net = to_int_network(network(), spec_for_model(network(), 8))
    kind, one = net.kind, net.spec.coef.scale
    assert kind.check(net) is None
    # c^2 < 2 (1 + d): at d = 0 the bound is c < sqrt(2)
    edge = int(np.ceil(np.sqrt(2) * one))
    assert kind.check(dataclasses.replace(net, d=np.zeros_like(net.d), c=np.full_like(net.c, edge - 1))) is None
    bad = dataclasses.replace(net, d=np.zeros_like(net.d), c=np.full_like(net.c, edge))
    assert "diverges even at rest" in kind.check(bad)
    assert "must be >= 0" in kind.check(dataclasses.replace(net, c=-net.c))
    assert "<= 1" in kind.check(dataclasses.replace(net, d=np.full_like(net.d, one + 1)))
    path = save_artifact(tmp_path / "bad.npz", bad, task="ecg", dt=0.01, theta=1.0, gamma=0.9)
    with pytest.raises(ArtifactError, match="diverges even at rest"):
        load_artifact(path)


@pytest.mark.parametrize("bits", [8, 4])
def test_qat_equals_golden_on_real_ecg(bits, ecg_splits):
    x = ecg_splits["test"].inputs[:6].numpy().transpose(1, 0, 2).astype(np.int64)
    model = network()
    gold = assert_qat_equals_golden(model, spec_for_model(model, bits), x)  # spikes, outputs, u, y, q
    assert gold.spikes.sum() > 500 and gold.traces["q"].any() and gold.traces["y"].any()


def test_wide_integer_network_tracks_the_float_one():
    assert_spikes_track_the_float_network(network(1, weight_scale=150.0).double(), wide_spec(22))


def test_ste_gradients_match_the_float_network():
    """QAT's backward runs the float BHRF adjoints on the dequantized trajectory (v = y / omega): with
    wide formats its gradients are the float network's, omega and b_offset included."""
    model = network(2, weight_scale=150.0, hidden=8, outputs=3).double()
    assert_ste_gradients_match(model, wide_spec(22, rec_frac=21), atol=1e-4)


def test_a_qat_step_changes_every_parameter(ecg_splits):
    """Gradients flow through the integer forward to every float parameter (8-bit formats, real ECG)."""
    assert_a_qat_step_changes_every_parameter(network(4), ecg_splits)


def test_qat_command_end_to_end(tmp_path, capsys, ecg_splits):
    """``brf-hw qat --neuron bhrf`` (tiny): float training, QAT, an artifact whose manifest says bhrf,
    that loads back, and whose golden accuracy is the one printed."""
    from brf_hw.commands import main

    run = tmp_path / "bhrf"
    main(["qat", "--task", "ecg", "--neuron", "bhrf", "--epochs", "1", "--qat-epochs", "1", "--train-limit", "8",
          "--eval-limit", "8", "--run-dir", str(run), "--no-progress"])
    net, manifest = load_artifact(run / "brf_ecg.npz")
    assert manifest["neuron"] == net.neuron == "bhrf" and set(manifest["scalars"]) == {"dtq", "gamma", "theta"}
    assert f"ecg test accuracy {manifest['metrics']['test_acc']:.2f}%" in capsys.readouterr().out
    x = ecg_splits["test"].inputs[:2].numpy().transpose(1, 0, 2).astype(np.int64)
    assert golden.run(net, x, record=True).traces["y"].any()
