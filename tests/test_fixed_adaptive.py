"""ALIF and LIF through the integer chain: the integer step by hand, its ordering equal to the float
step in exact arithmetic, QAT == golden bit for bit on real ECG sequences, STE gradients, the
artifact's neuron type and a checkpoint of another kind refused."""

import numpy as np
import pytest
import torch

from brf_hw import golden
from brf_hw.artifact import load_artifact, save_artifact
from brf_hw.fixed import Format, kinds, spec_for_model
from brf_hw.fixed.arith import adaptive_step
from brf_hw.fixed.qat import to_int_network
from brf_hw.model import ModelConfig, build_model
from brf_hw.neurons import NeuronConfig
from brf_hw.neurons.functional import ALIFState, alif_step

from test_variants import (assert_qat_equals_golden, assert_a_qat_step_changes_every_parameter,
                           assert_spikes_track_the_float_network, assert_ste_gradients_match, wide_spec)

LO, HI = -32768, 32767
CF, SF = 14, 10  # coef Q1.14, state Q5.10: 1.0 is 16384 resp. 1024


def _steps(accs, alpha_m=12288, rho=8192, theta0=256, beta=24576, adapt=1):
    """alpha_m 0.75, rho 0.5, theta0 0.25, beta 1.5; the current is acc (wshift 0)."""
    u = a = np.int64(0)
    out = []
    for acc in accs:
        u, a, z = adaptive_step(np.int64(acc), u, a, alpha_m, rho, theta0, beta, LO, HI, CF, SF, 0, adapt)
        out.append((int(u), int(a), int(z)))
    return out


def test_integer_alif_steps_by_hand():
    got = _steps([300, 100, 600, -50, 0])
    # 1: h = 300 > th = 256: spike, u = 300 - 256; a = 1024 + rshift(8192 * -1024, 14) = 1024 - 512
    # 2: h = rshift(12288*44) + 100 = 33 + 100; th = 256 + rshift(24576*512) = 256 + 768 = 1024: no spike;
    #    a = rshift(8192*512) = 256
    # 3: h = rshift(12288*133 = 99.75 * 2^14) + 600 = 100 + 600; th = 256 + 384 = 640: spike, u = 60;
    #    a = 1024 + rshift(8192 * (256 - 1024)) = 1024 - 384
    # 4: h = 45 - 50; th = 256 + 960; a = 320
    # 5: h = rshift(12288 * -5 = -3.75 * 2^14) = -4 (half up: -3.25 floors to -4); a = 160
    assert got == [(44, 512, 1), (133, 256, 0), (60, 640, 1), (-5, 320, 0), (-4, 160, 0)]


def test_integer_lif_steps_by_hand():
    """LIF: the threshold stays theta0, a stays 0 (beta and rho are not read)."""
    got = _steps([300, 100, 600, -50], rho=9999, beta=9999, adapt=0)
    assert got == [(44, 0, 1), (133, 0, 0), (444, 0, 1), (27, 0, 1)]  # 3: 100 + 600 - 256; 4: 333 - 50 - 256


def test_saturation_and_the_soft_reset_from_the_bound():
    u, a, z = adaptive_step(np.int64(10**6), np.int64(HI), np.int64(0), 16384, 8192, 256, 24576, LO, HI, CF, SF, 0, 1)
    assert (u, a, z) == (HI - 256, 512, 1)  # h saturates at HI, then the reset subtracts theta0
    u, a, z = adaptive_step(np.int64(-10**6), np.int64(LO), np.int64(1024), 16384, 8192, 256, 24576, LO, HI, CF, SF,
                            0, 1)
    assert (u, a, z) == (LO, 512, 0)


def test_end_of_step_adaptation_is_the_float_models_ordering():
    """The integer state a after step t is the float model's a_(t+1): with dyadic parameters and a
    state format wide enough that nothing rounds, the integer step reproduces ``alif_step`` exactly
    (u, z, and the adaptation the step used)."""
    cf, sf = 20, 28
    alpha, rho, theta0, beta = 0.5, 0.75, 0.25, 1.0
    rng = np.random.default_rng(0)
    currents = rng.integers(-8, 24, 12) / 16.0  # (1 - alpha) * I, in 1/16
    state = ALIFState(*(torch.zeros(1, dtype=torch.float64) for _ in range(3)))
    u = a = np.int64(0)
    lo, hi = -(1 << 31), (1 << 31) - 1
    spikes = 0
    for c in currents:
        a_used = a
        u, a, z = adaptive_step(np.int64(c * 2**sf), u, a, int(alpha * 2**cf), int(rho * 2**cf), int(theta0 * 2**sf),
                                int(beta * 2**cf), lo, hi, cf, sf, 0, 1)
        state = alif_step(torch.tensor([c / (1 - alpha)], dtype=torch.float64), state,
                          torch.tensor(alpha, dtype=torch.float64), torch.tensor(rho, dtype=torch.float64),
                          theta0=theta0, beta=beta, spike=lambda x: (x > 0).double())
        assert u == state.u.item() * 2**sf and z == state.z.item() and a_used == state.a.item() * 2**sf
        spikes += int(z)
    assert 2 <= spikes <= 10


def test_kinds_are_registered_with_their_fields():
    alif, lif = kinds.get("alif"), kinds.get("lif")
    assert list(alif.arrays) == ["alpha_m", "rho"] and list(alif.scalars) == ["theta0", "beta"]
    assert list(lif.arrays) == ["alpha_m"] and list(lif.scalars) == ["theta0"]
    assert (alif.stored_state, lif.stored_state) == ("ua", "u")


def network(kind, seed=0, weight_scale=3.0, hidden=36, inputs=4, outputs=6):
    """An ECG-size (4-36-6) ALIF or LIF network, weights scaled up so that it spikes."""
    model = build_model(ModelConfig(inputs, hidden, outputs, neuron=NeuronConfig(kind=kind)), seed=seed)
    with torch.no_grad():
        model.synapses.weight.mul_(weight_scale)
        model.readout.weight.mul_(5.0)
    return model


@pytest.mark.parametrize("kind, bits", [("alif", 8), ("lif", 8), ("alif", 4)])
def test_qat_equals_golden_on_real_ecg(kind, bits, ecg_splits):
    x = ecg_splits["test"].inputs[:6].numpy().transpose(1, 0, 2).astype(np.int64)
    model = network(kind)
    spec = spec_for_model(model, bits)
    assert spec.state == Format(16, 12)  # the kind's state format: Q3.12
    gold = assert_qat_equals_golden(model, spec, x)
    net = to_int_network(model, spec)
    assert net.neuron == kind and gold.spikes.sum() > 500
    if kind == "alif":
        assert net.beta == 29491 and net.theta0 == 41  # 1.8 in Q1.14, 0.01 in Q3.12
        assert gold.traces["a"].max() > 0
    else:
        assert net.rho is None and net.beta is None


def test_wide_integer_network_tracks_the_float_one():
    """The integer ALIF (weights folded with 1 - alpha_m, adaptation at the end of the step) spikes as
    the float one does, up to rounding, with wide formats."""
    assert_spikes_track_the_float_network(network("alif", 1).double(), wide_spec(24))


@pytest.mark.parametrize("kind", ["alif", "lif"])
def test_ste_gradients_match_the_float_network(kind):
    """QAT's backward runs the float ALIF adjoints on the folded current: with wide formats its
    gradients are the float network's (every parameter, tau_m and tau_adp included)."""
    model = network(kind, 2, hidden=8, outputs=3).double()
    assert_ste_gradients_match(model, wide_spec(24, rec_frac=21), atol=1e-4)


def test_a_qat_step_changes_every_parameter(ecg_splits):
    """Gradients flow through the integer forward to every float parameter (8-bit formats, real ECG)."""
    assert_a_qat_step_changes_every_parameter(network("alif", 4), ecg_splits)


def test_artifact_round_trip(tmp_path, ecg_splits):
    model = network("alif", 3)
    net = to_int_network(model, spec_for_model(model, 8))
    path = save_artifact(tmp_path / "a.npz", net, task="ecg", dt=0.01, theta=1.0, gamma=0.9)
    loaded, manifest = load_artifact(path)
    assert manifest["neuron"] == "alif" and set(manifest["scalars"]) == {"theta0", "beta"}
    assert np.array_equal(loaded.rho, net.rho) and loaded.beta == net.beta
    x = ecg_splits["test"].inputs[:2].numpy().transpose(1, 0, 2).astype(np.int64)
    assert np.array_equal(golden.run(loaded, x).outputs, golden.run(net, x).outputs)


def test_qat_command_end_to_end_and_a_checkpoint_of_another_kind(tmp_path, capsys):
    """``brf-hw qat --neuron alif`` (tiny): float training, QAT, an artifact whose manifest says alif
    and whose golden accuracy is the one printed (``run_qat`` re-checks the QAT forward against the
    reloaded file); the ALIF checkpoint given to --neuron brf is one line naming both, nothing written."""
    from brf_hw.commands import main

    run = tmp_path / "alif"
    main(["qat", "--task", "ecg", "--neuron", "alif", "--epochs", "1", "--qat-epochs", "1", "--train-limit", "8",
          "--eval-limit", "8", "--run-dir", str(run), "--no-progress"])
    net, manifest = load_artifact(run / "brf_ecg.npz")
    assert manifest["neuron"] == net.neuron == "alif" and net.spec.weight.bits == 8
    printed = capsys.readouterr().out
    assert f"ecg test accuracy {manifest['metrics']['test_acc']:.2f}%" in printed
    with pytest.raises(SystemExit) as info:
        main(["qat", "--task", "ecg", "--neuron", "brf", "--init", str(run / "float" / "best.pt"),
              "--run-dir", str(tmp_path / "r"), "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1 and "holds alif neurons, not --neuron brf" in err, err
    assert not (tmp_path / "r").exists()
