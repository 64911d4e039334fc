"""Checkpoints in the format of the paper's code (AdaptiveAILab/brf-neurons): written here with its
tensor names and shapes, read by brf-hw, and run against the paper's equations
(shared/brf-model.md) in an independent step loop."""

import collections
import math

import pytest
import torch

from brf_hw.train import load_checkpoint_model
from brf_hw.train.trainer import CheckpointError

DT, THETA, GAMMA = 0.01, 1.0, 0.9
N_IN, N_HID, N_OUT = 4, 12, 3


def paper_state(cell: str, seed: int = 0, mask_prob: float = 0.0, shape=(N_IN, N_HID, N_OUT)) -> collections.OrderedDict:
    """A state dict as SimpleResRNN / SimpleVanillaRFRNN / SimpleALIFRNN save it (raw parameters:
    signs included, the code takes |.|)."""
    n_in, n_hid, n_out = shape
    g = torch.Generator().manual_seed(seed)
    sign = torch.where(torch.rand(n_hid, generator=g) < 0.3, -1.0, 1.0)  # |.| must be taken
    state = collections.OrderedDict()
    gain = 150.0 if cell == "bhrf" else 30.0  # BHRF damps harder: it needs more drive to spike
    state["hidden.linear.weight"] = (torch.rand(n_hid, n_in + n_hid, generator=g) * 2 - 1) * gain
    if mask_prob:
        mask = torch.ones(n_hid, n_in + n_hid)
        mask[:, n_in:] = (torch.rand(n_hid, n_hid, generator=g) > mask_prob).float()
        state["hidden.linear.mask"] = mask
    if cell == "alif":
        state["hidden.tau_mem"] = sign * (torch.rand(n_hid, generator=g) * 10 + 15)
        state["hidden.tau_adp"] = sign * (torch.rand(n_hid, generator=g) * 100 + 150)
    else:
        state["hidden.omega"] = sign * (torch.rand(n_hid, generator=g) * 40 + 10)
        state["hidden.b_offset"] = sign * (torch.rand(n_hid, generator=g) * 0.9 + 0.1)
    state["out.linear.weight"] = torch.rand(n_out, n_hid, generator=g) * 2 - 1
    state["out.tau_mem"] = torch.randn(n_out, generator=g) * 2 + 20
    return state


def reference_outputs(state: dict, cell: str, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The paper's network, step by step in float64 from its equations: I[t] = W [x[t], z[t-1]]
    (W masked), the hidden update of ``cell``, o[t] = alpha o[t-1] + (1 - alpha) W_out z[t]."""
    s = {k: v.double() for k, v in state.items()}
    w = s["hidden.linear.weight"] * s.get("hidden.linear.mask", 1.0)
    w_out, alpha_o = s["out.linear.weight"], torch.exp(-1.0 / s["out.tau_mem"].abs())
    steps, batch, _ = x.shape
    u, v, q, a, z = (torch.zeros(batch, w.shape[0], dtype=torch.float64) for _ in range(5))
    o = torch.zeros(batch, w_out.shape[0], dtype=torch.float64)
    outs, spikes = [], 0
    for t in range(steps):
        current = torch.cat([x[t].double(), z], 1) @ w.T
        if cell == "alif":
            alpha, rho = (torch.exp(-1.0 / s[k].abs()) for k in ("hidden.tau_mem", "hidden.tau_adp"))
            a = rho * a + (1 - rho) * z
            th = 0.01 + 1.8 * a
            u = alpha * u + (1 - alpha) * current
            z = (u - th > 0).double()
            u = u - z * th
        else:
            omega, b_off = s["hidden.omega"].abs(), s["hidden.b_offset"].abs()
            if cell == "bhrf":
                b = DT / 2 * omega**2 + b_off + q
                v = v + DT * u
                u = u + DT * current - 2 * DT * b * u - DT * omega**2 * v
            else:
                b = (-1 + torch.sqrt(1 - (DT * omega) ** 2)) / DT - b_off - q if cell == "brf" else -b_off
                u, v = u + DT * (b * u - omega * v + current), v + DT * (omega * u + b * v)
            z = (u - THETA - (q if cell != "rf" else 0) > 0).double()
            q = GAMMA * q + z if cell != "rf" else q
        spikes += int(z.sum())
        o = alpha_o * o + (1 - alpha_o) * (z @ w_out.T)
        outs.append(o)
    return torch.stack(outs), spikes


def save(path, state, wrapped=True):
    # as smnist_train.py saves its best model (the optimiser state rides along)
    torch.save({"epoch": 7, "model_state_dict": state, "optimizer_state_dict": {"state": {}, "param_groups": []},
                "loss": 0.25} if wrapped else state, path)
    return path


@pytest.mark.parametrize("cell, mask_prob", [("brf", 0.0), ("brf", 0.5), ("rf", 0.0), ("bhrf", 0.3), ("alif", 0.0)])
def test_the_float_model_reproduces_the_papers_forward_pass(tmp_path, cell, mask_prob):
    state = paper_state(cell, seed=1, mask_prob=mask_prob)
    model, info = load_checkpoint_model(save(tmp_path / "paper.pt", state), resonator="brf" if cell == "alif" else cell)
    assert model.config.neuron.kind == cell and info["epoch"] == 7 and info["format"] == "brf-neurons"
    assert (model.config.inputs, model.config.hidden, model.config.outputs) == (N_IN, N_HID, N_OUT)
    x = (torch.rand(300, 5, N_IN, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    expected, spikes = reference_outputs(state, cell, x)
    assert spikes > 300, "too few spikes for the comparison to mean anything"
    with torch.no_grad():
        for kernel in ("reference", "auto"):
            model.kernel = kernel
            out = model(x)
            assert int(out.spikes_per_step.sum()) == spikes, kernel
            torch.testing.assert_close(out.outputs.double(), expected, atol=1e-4, rtol=1e-4)
    if mask_prob:
        mask = state["hidden.linear.mask"][:, N_IN:]
        assert 0 < int((mask == 0).sum()) and torch.equal(model.recurrent_mask, mask)
        assert torch.equal(model.recurrent_weight == 0, (mask == 0) | (state["hidden.linear.weight"][:, N_IN:] == 0))


def test_a_bare_state_dict_reads_too_and_the_mapping_is_exact(tmp_path):
    state = paper_state("brf", seed=3)
    model, info = load_checkpoint_model(save(tmp_path / "bare.pt", state, wrapped=False))
    assert info["epoch"] is None
    assert torch.equal(model.synapses.weight, state["hidden.linear.weight"])
    assert torch.equal(model.input_weight, state["hidden.linear.weight"][:, :N_IN])
    assert torch.equal(model.hidden.omega, state["hidden.omega"].abs())
    assert torch.equal(model.hidden.b_offset, state["hidden.b_offset"].abs())
    assert torch.equal(model.readout.weight, state["out.linear.weight"])
    assert torch.allclose(model.output.alpha, torch.exp(-1 / state["out.tau_mem"].abs()))
    assert model.output.alpha[0].item() == pytest.approx(math.exp(-1 / abs(state["out.tau_mem"][0].item())))


@pytest.mark.parametrize("change, fragment", [
    (lambda s: s.update({"hidden.tau_mem": s.pop("hidden.omega")[:], "hidden.x": s.pop("hidden.b_offset")}),
     "does not implement (parameters: hidden.tau_mem, hidden.x)"),
    (lambda s: (s.pop("hidden.omega"), s.pop("hidden.b_offset"), s.update({"hidden.tau_mem": torch.ones(N_HID)})),
     "LIF layer"),
    (lambda s: s.update({f"hidden1.{k[7:]}": v for k, v in list(s.items()) if k.startswith("hidden.")}),
     "two hidden layers"),
    (lambda s: s.update({"out.linear.bias": torch.zeros(N_OUT)}), "biases (out.linear.bias)"),
    (lambda s: s.update({"hidden.omega": torch.full((N_HID,), 150.0)}), "divergence boundary"),
    (lambda s: s.update({"out.tau_mem": torch.ones(N_OUT + 1)}), "out.tau_mem has shape (4,), expected (3,)"),
    (lambda s: s.pop("out.tau_mem"), "out.tau_mem is missing"),
    (lambda s: s.update({"hidden.linear.mask": torch.zeros(N_HID, N_IN + N_HID)}), "prunes input weights"),
    (lambda s: s.update({"extra.thing": torch.zeros(1)}), "does not know: extra.thing"),
])
def test_what_brf_hw_cannot_represent_is_refused_by_name(tmp_path, change, fragment):
    state = paper_state("brf")
    change(state)
    with pytest.raises(CheckpointError, match="a brf-neurons checkpoint") as err:
        load_checkpoint_model(save(tmp_path / "p.pt", state))
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_a_paper_checkpoint_starts_a_run_but_does_not_resume_one(tmp_path):
    from types import SimpleNamespace

    from brf_hw.tasks import TASKS
    from brf_hw.train.trainer import load_init_model, read_checkpoint

    path = save(tmp_path / "p.pt", paper_state("brf"))
    with pytest.raises(CheckpointError, match="is a 4-12-3 network; task ecg is 4-36-6"):
        load_init_model(path, TASKS["ecg"], "brf")
    task = SimpleNamespace(name="tiny", inputs=N_IN, hidden=N_HID, outputs=N_OUT)
    assert load_init_model(path, task, "rf").config.neuron.kind == "rf"  # --neuron names the resonator
    with pytest.raises(CheckpointError, match="holds alif neurons, not --neuron rf"):
        load_init_model(save(tmp_path / "a.pt", paper_state("alif")), task, "rf")
    with pytest.raises(CheckpointError, match="holds brf neurons, not --neuron alif"):
        load_init_model(path, task, "alif")
    with pytest.raises(CheckpointError, match="checkpoint of the paper's code .*not resume"):
        read_checkpoint(path)  # what --resume reads


def test_train_init_starts_from_a_paper_checkpoint(capsys, tmp_path):
    """``brf-hw train --init`` on a brf-neurons file of the ECG shape: with a learning rate too
    small to move a weight, the saved network is the file's network, as brf-hw maps it."""
    from brf_hw.train.cli import train_main

    state = paper_state("brf", seed=4, mask_prob=0.2, shape=(4, 36, 6))
    path = save(tmp_path / "ecg_paper.pt", state)
    run = tmp_path / "run"
    train_main(["--init", str(path), "--epochs", "1", "--lr", "1e-30", "--train-limit", "8", "--eval-limit", "4",
                "--no-test-eval", "--no-progress", "--kernel", "reference", "--run-dir", str(run)])
    assert f"initialised from {path}" in capsys.readouterr().out
    trained, _ = load_checkpoint_model(run / "last.pt")
    mapped, _ = load_checkpoint_model(path)
    for name, tensor in mapped.state_dict().items():
        assert torch.equal(trained.state_dict()[name], tensor), name
    assert torch.equal(trained.recurrent_mask, state["hidden.linear.mask"][:, 4:])


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")  # runpy re-runs imported modules
def test_the_entry_points_read_paper_checkpoints_and_refuse_in_one_line(monkeypatch, capsys, tmp_path):
    from test_cli import assert_user_error, run_cli

    from brf_hw.analyze.__main__ import main as analyze_main

    ecg = save(tmp_path / "ecg.pt", paper_state("brf", seed=5, shape=(4, 36, 6)))
    out = tmp_path / "net.nir"
    analyze_main(["nir", str(ecg), "--out", str(out), "--check", "2"])
    assert "read back: identical outputs and spikes" in capsys.readouterr().out and out.stat().st_size > 0
    assert_user_error(run_cli(monkeypatch, capsys, "brf_hw.analyze", "nir", str(ecg), "--paper-neuron", "rf",
                              "--out", str(tmp_path / "rf.nir")), "holds rf neurons")
    lif = paper_state("brf", shape=(4, 36, 6))
    lif["hidden.tau_mem"] = lif.pop("hidden.omega")
    del lif["hidden.b_offset"]
    assert_user_error(run_cli(monkeypatch, capsys, "training/qat.py", "--init", str(save(tmp_path / "lif.pt", lif)),
                              "--run-dir", str(tmp_path / "q")), "lif.pt (a brf-neurons checkpoint)", "LIF layer")
    assert_user_error(run_cli(monkeypatch, capsys, "training/qat.py", "--init", str(save(tmp_path / "small.pt",
                              paper_state("brf"))), "--run-dir", str(tmp_path / "q")), "4-12-3 network")
    assert_user_error(run_cli(monkeypatch, capsys, "training/train.py", "--init", str(ecg), "--neuron", "alif",
                              "--run-dir", str(tmp_path / "t")), "holds brf neurons, not --neuron alif")
    assert_user_error(run_cli(monkeypatch, capsys, "brf_hw.analyze", "params", str(ecg), "--out", str(tmp_path)),
                      "initial values")
    assert not (tmp_path / "q").exists() and not (tmp_path / "t").exists()
