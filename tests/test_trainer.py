"""The training core on real ECG sequences: learning, logs, checkpoints, resume, NaN handling."""

import csv

import pytest
import torch

from brf_hw.tasks import TaskData
from brf_hw.train import TrainConfig, Trainer, TrainingDiverged, load_checkpoint_model
from brf_hw.train.trainer import CheckpointError
from brf_hw.train.metrics import Tally, mean_nll, sequence_loss
from brf_hw.data import Batch


@pytest.fixture(scope="module")
def ecg_data():
    return TaskData("ecg")


def quick(tmp_path, **kw):
    base = dict(task="ecg", epochs=2, batch_size=8, train_limit=8, eval_limit=4,
                run_dir=str(tmp_path), progress=False)
    return TrainConfig(**{**base, **kw})


def test_per_step_loss_and_accuracy_by_hand():
    outputs = torch.tensor([[[2.0, 0.0]], [[0.0, 1.0]]])  # T=2, B=1, C=2
    batch = Batch(None, torch.tensor([[0], [0]]), torch.tensor([[True], [False]]))
    expected = -torch.log_softmax(outputs[0, 0], -1)[0] - torch.log_softmax(outputs[1, 0], -1)[0]
    assert sequence_loss(outputs, batch, "per_step").item() == pytest.approx(expected.item())
    tally = Tally()
    tally.add(outputs, torch.tensor([[3.0], [1.0]]), batch, "per_step", 0.5)
    s = tally.summary()
    assert (s["acc"], s["acc_annotated"], s["sops"], s["sops_per_step"]) == (50.0, 100.0, 4.0, 2.0)
    seq = Batch(None, torch.tensor([1]), None)
    assert sequence_loss(outputs, seq, "label_last").item() == pytest.approx(
        -torch.log_softmax(outputs[1, 0], -1)[1].item())


def test_mean_nll_equals_torch_log_softmax_nll_in_value_and_gradient():
    """The training loss's per-step NLL against torch's own, in float64, with logits up to 1e3
    (exp would overflow unshifted) and 6 classes as ECG."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 6, generator=g, dtype=torch.float64) * torch.tensor([1.0, 10.0, 1e3]).repeat(100)[:, None]
    target = torch.randint(0, 6, (300,), generator=g)
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    ours = mean_nll(a, target)
    theirs = torch.nn.functional.nll_loss(torch.log_softmax(b, -1), target)
    ours.backward()
    theirs.backward()
    assert torch.isfinite(ours) and ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-15)


def test_training_learns_and_logs(tmp_path, ecg_data):
    # The network is silent at init (loss exactly ln 6); a high learning rate makes six steps enough
    # to bring it to spiking and fitting.
    trainer = Trainer(quick(tmp_path, epochs=3, train_limit=32, batch_size=16, lr=1.0), ecg_data)
    before = trainer.evaluate("val")["loss"]
    history = trainer.fit()
    assert history[-1]["val_loss"] < before - 0.02
    assert history[-1]["train_sops"] > 0
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"test_acc", "test_acc_annotated", "test_sops", "test_sops_per_step", "parameters"} <= set(rows[0])
    assert float(rows[1]["lr"]) == pytest.approx(1.0 * (1 - 1 / 3))  # linear decay to zero
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    best, ckpt = load_checkpoint_model(tmp_path / "best.pt")
    assert ckpt["best_val_loss"] == min(r["val_loss"] for r in history)


def test_spike_penalty_trades_spikes_for_loss(tmp_path, ecg_data):
    runs = {}
    for penalty in (0.0, 0.05):
        trainer = Trainer(quick(tmp_path / str(penalty), epochs=3, train_limit=32, batch_size=16, lr=1.0,
                                spike_penalty=penalty), ecg_data)
        runs[penalty] = trainer.fit()[-1]
    assert runs[0.0]["val_sops"] > 50
    assert 0 < runs[0.05]["val_sops"] < 0.7 * runs[0.0]["val_sops"]


def test_resume_continues_exactly(tmp_path, ecg_data):
    straight = Trainer(quick(tmp_path / "a"), ecg_data)
    straight.fit()
    first = Trainer(quick(tmp_path / "b", epochs=2), ecg_data)
    first.cfg.epochs = 1  # stop after one epoch, as an interrupted run would
    first.fit()
    resumed = Trainer(quick(tmp_path / "b"), ecg_data)
    resumed.resume()
    assert resumed.epoch == 1
    resumed.fit()
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_refuses_another_network(tmp_path, ecg_data):
    Trainer(quick(tmp_path, epochs=1), ecg_data).fit()
    with pytest.raises(CheckpointError, match="holds brf neurons, not --neuron alif"):
        Trainer(quick(tmp_path, neuron="alif"), ecg_data).resume()
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        Trainer(quick(tmp_path / "none"), ecg_data).resume()


def one_good_epoch(tmp_path, ecg_data) -> tuple[Trainer, dict]:
    """A trainer one epoch into a two-epoch run, and the weights its last.pt holds."""
    trainer = Trainer(quick(tmp_path, epochs=2), ecg_data)
    trainer.cfg.epochs = 1
    trainer.fit()
    trainer.cfg.epochs = 2
    return trainer, torch.load(tmp_path / "last.pt", weights_only=True)["model"]


def assert_last_checkpoint_holds(tmp_path, weights: dict) -> None:
    kept = torch.load(tmp_path / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(weights[k], kept[k]) for k in weights)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, ecg_data):
    trainer, good = one_good_epoch(tmp_path, ecg_data)
    with torch.no_grad():
        trainer.model.output.tau_o.fill_(float("nan"))  # every potential, so the loss, becomes NaN
    with pytest.raises(TrainingDiverged, match="loss became nan"):
        trainer.fit()
    assert_last_checkpoint_holds(tmp_path, good)


@pytest.mark.slow
def test_five_paper_epochs_reach_most_of_the_papers_accuracy(tmp_path, ecg_data):
    """Paper settings, fused kernel: the paper's BRF reaches ~95 % of its final 85.8 % in 5 epochs."""
    trainer = Trainer(TrainConfig(task="ecg", epochs=400, run_dir=str(tmp_path), progress=False), ecg_data)
    for _ in range(5):
        trainer._run_epoch()
    assert trainer.history[-1]["test_acc"] > 78.0
    assert trainer.history[-1]["test_sops"] < 6308


def test_nan_gradient_stops_before_the_update_and_keeps_finite_checkpoints(tmp_path, ecg_data):
    trainer = Trainer(quick(tmp_path, epochs=3, batch_size=16, train_limit=16, lr=1e6), ecg_data)
    with pytest.raises(TrainingDiverged, match=r"gradient of [\w.]+ has \d+ NaN or infinite value\(s\) in epoch 2"):
        trainer.fit()  # lr 1e6: the first update blows u up, the next gradients are NaN
    assert [row["epoch"] for row in trainer.history] == [1]
    for name in ("last.pt", "best.pt"):
        model, ckpt = load_checkpoint_model(tmp_path / name)  # loads: finite, omega inside the boundary
        assert ckpt["epoch"] == 1
        assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_nonfinite_update_is_named_and_never_saved(tmp_path, ecg_data):
    trainer, saved = one_good_epoch(tmp_path, ecg_data)
    trainer.optimizer.param_groups[0]["lr"] = float("inf")
    with pytest.raises(TrainingDiverged, match=r"parameter [\w.]+ has \d+ NaN or infinite value\(s\) in the update "
                                               r"of epoch 2, batch 1.*last\.pt \(epoch 1\)"):
        trainer.fit()
    assert_last_checkpoint_holds(tmp_path, saved)


def test_config_refuses_nonsense(tmp_path):
    from brf_hw.cli_util import UserError

    for bad in (dict(batch_size=0), dict(epochs=-1), dict(lr=float("nan")), dict(train_limit=0)):
        with pytest.raises(UserError, match=next(iter(bad))):
            quick(tmp_path, **bad).resolved()


def test_init_from_an_artifact_starts_from_its_network(tmp_path):
    """--init ARTIFACT.npz: the dequantized network rounds back to the artifact exactly, and a
    network of another shape or another kind is refused by name."""
    import numpy as np

    from brf_hw.artifact import load_artifact, save_artifact, shipped_artifact
    from brf_hw.fixed.qat import to_int_network
    from brf_hw.tasks import TASKS
    from brf_hw.train.trainer import load_init_model

    net, _ = load_artifact(shipped_artifact())
    model = load_init_model(shipped_artifact(), TASKS["ecg"], "brf")
    back = to_int_network(model, net.spec)
    for field in ("w_in", "w_rec", "w_out", "d", "c", "alpha"):
        assert np.array_equal(getattr(back, field), getattr(net, field)), field
    with pytest.raises(CheckpointError, match="4-36-6 network; task smnist is 1-256-10"):
        load_init_model(shipped_artifact(), TASKS["smnist"], "brf")
    with pytest.raises(CheckpointError, match="holds brf neurons, not --neuron alif"):
        load_init_model(shipped_artifact(), TASKS["ecg"], "alif")
    with pytest.raises(CheckpointError, match="no artifact at"):
        load_init_model(tmp_path / "missing.npz", TASKS["ecg"], "brf")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(shipped_artifact().read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="broken.npz"):
        load_init_model(broken, TASKS["ecg"], "brf")
