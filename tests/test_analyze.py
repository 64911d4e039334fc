"""The numbers behind each analysis plot (``python -m brf_hw.analyze``): response peaks, the
divergence boundary, initial parameters, the raster's integer spikes, the pruning pipeline and
the cycle count, and the CLI's user errors."""

import argparse
import math
import sys

import numpy as np
import pytest
import torch

from brf_hw import golden
from brf_hw.evaluate import evaluate_task
from brf_hw.fixed.spec import spec_for_model
from brf_hw.analyze import boundary, params, prune, raster, response
from brf_hw.analyze.common import float_model_from_artifact, load_int_artifact
from brf_hw.fixed.qat import to_int_network
from brf_hw.artifact import shipped_artifact


def response_args(**kw):
    base = dict(weight_bits=8, state_bits=16, state_frac=None, coef_bits=16)
    base.update(kw)
    return argparse.Namespace(**base)


# --------------------------------------------------------------------------- response
def test_spike_trains_are_in_phase_with_the_period():
    # omega = 2*pi rad/s is 1 Hz: at ratio 1 a spike every 100 steps (dt 0.01), the first at t = 0
    x = response.spike_trains(np.array([2 * math.pi]), np.array([1.0, 2.0]), 0.01, 20.0)
    assert x.shape == (2000, 2, 1)
    assert list(np.flatnonzero(x[:, 0, 0])) == list(range(0, 2000, 100))
    assert list(np.flatnonzero(x[:, 1, 0])) == list(range(0, 2000, 50))


def test_float_response_peaks_near_omega_and_closer_at_smaller_dt():
    ratios = response.ratio_grid(0.5, 1.5, 0.01)
    neurons = response.neurons_from_floats([10.0, 50.0], [0.1], 0.01, 1.0, response_args())
    peaks = response.measure(neurons, ratios).peaks
    for p in peaks:
        assert abs(p["float_peak_ratio"] - 1.0) <= 0.06, p
        assert p["float_contrast"] > 5  # a real resonance, not a flat curve
    # the paper: the offset of the peak from omega is the discretization's and shrinks with dt
    fine = response.neurons_from_floats([50.0], [0.1], 0.002, 1.0, response_args())
    p_fine = response.measure(fine, ratios, seconds=4.0).peaks[0]
    assert abs(p_fine["float_peak_ratio"] - 1.0) < abs(peaks[1]["float_peak_ratio"] - 1.0)


def test_integer_response_with_fine_formats_matches_float():
    ratios = response.ratio_grid(0.2, 2.0, 0.02)
    args = response_args(weight_bits=16, state_bits=32, state_frac=22, coef_bits=24)
    neurons = response.neurons_from_floats([5.0, 20.0], [0.1, 0.5], 0.01, 1.0, args)
    resp = response.measure(neurons, ratios)
    for p in resp.peaks:
        assert p["int_peak_ratio"] == p["float_peak_ratio"]
        assert p["rel_diff"] < 1e-3, p
        assert p["saturated_max"] == 0


def test_default_formats_flatten_a_slow_lightly_damped_neuron():
    """Q5.10 state: omega 5, b_offset 0.1 keeps |u| (~0.03) inside the rounding dead zone (~0.2):
    the integer peak stays near omega but loses most of its contrast."""
    ratios = response.ratio_grid(0.2, 2.0, 0.02)
    neurons = response.neurons_from_floats([5.0], [0.1], 0.01, 1.0, response_args())
    p = response.measure(neurons, ratios).peaks[0]
    assert p["dead_zone_u"] > p["float_peak"]
    assert abs(p["int_peak_ratio"] - p["float_peak_ratio"]) <= 0.04
    assert p["int_contrast"] < 0.6 * p["float_contrast"]


def test_response_of_artifact_neurons_uses_the_artifacts_integers():
    neurons, idx = response.neurons_from_artifact(shipped_artifact(), [16], None)
    net, _ = load_int_artifact(shipped_artifact())
    assert neurons.int_net.d[0] == net.d[16] and neurons.int_net.c[0] == net.c[16]
    assert neurons.omega[0] == pytest.approx(net.c[16] / net.spec.coef.scale / 0.01)


# --------------------------------------------------------------------------- boundary
@pytest.mark.parametrize("dt", [0.005, 0.01, 0.05])
def test_boundary_is_where_the_step_modulus_crosses_one(dt):
    for omega in (0.1 / dt, 0.5 / dt, 0.95 / dt):
        p = float(boundary.curve(np.array([omega]), dt)[0])
        assert boundary.spectral_radius(omega, 0.0, dt) == pytest.approx(1.0, abs=1e-12)
        assert boundary.spectral_radius(omega, 0.1, dt) < 1.0 < boundary.spectral_radius(omega, -0.1, dt)
        lo, hi = p - 5.0, p + 5.0  # bisection on b = p(omega) - b_offset, modulus from brf_step itself
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if boundary.spectral_radius(omega, p - mid, dt) < 1.0:
                lo = mid
            else:
                hi = mid
        assert lo == pytest.approx(p, abs=1e-9)
    assert np.isnan(boundary.curve(np.array([1.0 / dt, 2.0 / dt]), dt)).all()
    assert boundary.curve(boundary.omega_grid(1e9, dt, 5), dt)[-1] == pytest.approx(-1.0 / dt, rel=1e-5)


def test_shipped_neurons_lie_below_their_boundary():
    from brf_hw.analyze.common import load_neuron_params

    rows = boundary._neuron_rows("w8", load_neuron_params(shipped_artifact()))
    assert len(rows) == 36
    for r in rows:
        assert r["b"] == pytest.approx(r["p_omega"] - r["b_offset"])
        assert r["b_offset"] > 0 and r["radius"] < 1.0 and r["dt_omega"] < 1.0


# --------------------------------------------------------------------------- params
def test_params_rebuild_the_initial_network_exactly(tmp_path):
    from brf_hw.train import TrainConfig, Trainer

    cfg = TrainConfig(task="ecg", epochs=1, seed=3, train_limit=16, eval_limit=8, eval_test=False,
                      mask_prob=0.3, run_dir=str(tmp_path), progress=False)
    trainer = Trainer(cfg)
    omega0 = trainer.model.hidden.omega.detach().double().numpy().copy()
    b0 = trainer.model.hidden.b_offset.detach().double().numpy().copy()
    trainer.fit()
    r = params.initial_and_trained(tmp_path / "last.pt")
    assert np.array_equal(r["omega0"], omega0) and np.array_equal(r["b0"], b0)
    assert np.array_equal(r["omega"], trainer.model.hidden.omega.detach().double().numpy())
    assert not np.array_equal(r["omega"], omega0)  # one epoch at lr 0.1 moves them


# --------------------------------------------------------------------------- raster
def test_raster_integer_spikes_equal_the_golden_model():
    args = argparse.Namespace(checkpoint=None, artifact=None, data_dir=None, split="test", sequence=3)
    r = raster.raster(args)
    net, _ = load_int_artifact(shipped_artifact())
    gold = golden.run(net, r.x[:, None, :], record=True)
    assert np.array_equal(r.int_z.astype(np.int64), gold.spikes[:, 0])
    assert np.array_equal(np.round(r.int_u * net.spec.state.scale).astype(np.int64), gold.traces["u"][:, 0])
    assert r.int_z.sum() > 1000 and r.float_z.sum() > 1000
    assert np.array_equal(r.int_pred, gold.predictions[:, 0])


def test_float_network_of_an_artifact_rounds_back_to_it():
    for name in ("ecg_brf_w8.npz", "ecg_brf_w4.npz", "smnist_brf_w8.npz"):  # spikes, and pixels (unit 1/255)
        net, manifest = load_int_artifact(shipped_artifact().with_name(name))
        back = to_int_network(float_model_from_artifact(net, manifest), net.spec)
        for field in ("w_in", "w_rec", "w_out", "d", "c", "alpha", "dtq", "gamma", "theta"):
            assert np.array_equal(getattr(back, field), getattr(net, field)), (name, field)


# --------------------------------------------------------------------------- prune
def test_hardware_cost_by_hand():
    net, _ = load_int_artifact(shipped_artifact())  # 4-36-6
    x = np.zeros((3, 1, 4), np.int64)
    spikes = np.zeros((3, 1, 36), np.int64)
    x[0, 0, :2] = 1  # step 0: 2 inputs
    spikes[1, 0, :5] = 1  # step 1: 5 hidden spikes, accumulated in its READOUT
    # a step in a stream, lanes 1, 2 segments: accept 1 + ACC (2 I + 3 | 0) + UPDATE 36 + 1 + READOUT;
    # READOUT takes spikes of the early chunks from its first cycle: 2 Z + 3, at least 6
    cost = prune.hardware_cost(net, x, spikes, lanes=1, segments=2)
    assert cost["sources_per_step"] == pytest.approx(7 / 3)  # synaptic work: inputs + previous spikes
    assert cost["cycles_per_step"] == pytest.approx(((1 + 7 + 37 + 6) + (1 + 37 + 13) + (1 + 37 + 6)) / 3)
    fan_in = (net.w_in[:, :2] != 0).sum() + (net.w_rec[:, :5] != 0).sum()
    assert cost["syn_ops_per_step"] == pytest.approx(fan_in / 3)
    assert cost["syn_ops_per_step_dense"] == pytest.approx(7 * 36 / 3)


def _spec(tmp_path, fraction, qat_epochs=0):
    return prune.RunSpec("brf", 0, fraction, 1, 16, qat_epochs, 0.01, 8, 1, None,
                         str(tmp_path / prune.run_name("brf", fraction, 0)), None)


def test_pruning_zero_reproduces_the_unpruned_model(tmp_path):
    from brf_hw.train import TrainConfig, Trainer, load_checkpoint_model

    row = prune.train_one(_spec(tmp_path, 0.0))
    plain = Trainer(TrainConfig(task="ecg", epochs=1, seed=0, train_limit=16, eval_test=False,
                                run_dir=str(tmp_path / "plain"), progress=False))
    plain.fit()
    best, _ = load_checkpoint_model(tmp_path / "plain" / "best.pt")
    test = plain.evaluate("test", best)
    assert row["pruned_measured"] == 0.0
    assert row["float_acc"] == test["acc"] and row["float_sops"] == test["sops"]
    # the integer numbers are the golden model's on the rounded network
    m = evaluate_task(to_int_network(best, spec_for_model(best, 8)), plain.data, "test").metrics
    assert row["int_acc"] == m["acc"] and row["int_sops"] == m["sops"]


def test_pruned_network_keeps_its_zeros_through_training_and_rounding(tmp_path):
    from brf_hw.fixed.spec import spec_for_model
    from brf_hw.train import load_checkpoint_model

    spec = _spec(tmp_path, 0.5)
    row = prune.train_one(spec)
    assert abs(row["pruned_measured"] - 0.5) < 0.06
    model, _ = load_checkpoint_model(f"{spec.run_dir}/float/best.pt")
    mask = model.recurrent_mask.numpy()
    assert np.all(model.synapses.weight.detach().numpy()[:, 4:][mask == 0] == 0)
    net = to_int_network(model, spec_for_model(model, 8))
    assert np.all(net.w_rec[mask == 0] == 0)
    assert row["syn_ops_per_step"] < row["syn_ops_per_step_dense"]


def test_prune_summary_statistics():
    rows = [{"neuron": "brf", "fraction": 0.5, "seed": s, "float_acc": a, "int_acc": a - 1,
             "float_sops_per_step": 4.0, "int_sops_per_step": 4.0, "cycles_per_step": 60.0, "syn_ops_per_step": 9.0}
            for s, a in enumerate([80.0, 82.0])]
    rows.append({"neuron": "alif", "fraction": 0.5, "seed": 0, "float_acc": 70.0, "float_sops_per_step": 20.0})
    s = prune.summarize(rows)
    assert [x["neuron"] for x in s] == ["brf", "alif"]
    assert s[0]["float_acc_mean"] == 81.0 and s[0]["float_acc_sd"] == pytest.approx(math.sqrt(2))
    assert s[0]["int_acc_mean"] == 80.0 and "int_acc_mean" not in s[1]


# --------------------------------------------------------------------------- CLI
def run_analyze(monkeypatch, capsys, *argv):
    from brf_hw.analyze.__main__ import main

    monkeypatch.setattr(sys, "argv", ["brf_hw.analyze", *argv])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(list(argv))
        sys.exit(0)
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("argv, fragment", [
    (["raster", "--artifact", "no/such.npz"], "does not exist"),
    (["boundary", "README.md"], "not a readable checkpoint"),
    (["raster", "--artifact", "README.md"], "not a readable .npz artifact"),
    (["response", "--network", str(shipped_artifact()), "--neurons", "99"], "hidden neurons 0..35"),
    (["raster", "--sequence", "500"], "sequences 0..140"),
    (["nir", "no/such.pt", "--out", "x.nir"], "does not exist"),
])
def test_cli_user_errors_are_one_line_exit_2(monkeypatch, capsys, argv, fragment):
    code, err = run_analyze(monkeypatch, capsys, *argv)
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and fragment in err, err


def test_cli_writes_boundary_png_and_csv(monkeypatch, capsys, tmp_path):
    code, err = run_analyze(monkeypatch, capsys, "boundary", str(shipped_artifact()), "--out", str(tmp_path))
    assert code == 0, err
    rows = np.genfromtxt(tmp_path / "boundary.csv", delimiter=",", names=True)
    dt = rows["dt"] == 0.01
    got = rows["p_omega"][dt]
    want = (-1 + np.sqrt(1 - (0.01 * rows["omega"][dt]) ** 2)) / 0.01
    assert np.allclose(got, want, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "boundary.png").stat().st_size > 10_000
    neurons = np.genfromtxt(tmp_path / "boundary_neurons.csv", delimiter=",", names=True)
    assert len(neurons) == 36 and np.all(neurons["radius"] < 1)
