"""Every paper task through float -> QAT -> golden model -> artifact: multi-bit
inputs and the sequence readouts checked by hand, QAT == golden on real MNIST pixels, and the
whole `training/qat.py` flow for S-MNIST, PS-MNIST (real data, a few sequences) and SHD (small
files in SHD's HDF5 layout)."""

import argparse

import numpy as np
import pytest
import torch

from brf_hw import golden
from brf_hw.evaluate import evaluate, evaluate_task
from brf_hw.evaluate import main as evaluate_main
from brf_hw.artifact import load_artifact
from brf_hw.cli_util import UserError
from brf_hw.fixed import spec_for_model
from brf_hw.fixed.formats import Format, FormatError
from brf_hw.fixed.qat import to_int_network
from brf_hw.fixed.spec import FixedSpec, InputFormat, IntNetwork, Readout
from brf_hw.model import ModelConfig, build_model
from brf_hw.neurons import NeuronConfig
from brf_hw.train import TrainConfig, Trainer
from brf_hw.train.cli import add_train_arguments
from brf_hw.train.qat_flow import add_qat_arguments, run_qat
from brf_hw.tasks import TASKS, TaskData

from test_shd import shd_dir  # noqa: F401  (fixture: small SHD files)


def tiny_net(w_in, input_bits, readout=Readout(), w_out=None, hidden=2, outputs=2):
    spec = FixedSpec(weight=Format(8, 6), rec_weight=Format(8, 7), out_weight=Format(8, 5),
                     input=InputFormat(input_bits, 1.0))
    coef = spec.coef.scale
    return IntNetwork(spec=spec, w_in=np.asarray(w_in, np.int64), w_rec=np.zeros((hidden, hidden), np.int64),
                      w_out=np.asarray(w_out if w_out is not None else np.zeros((outputs, hidden)), np.int64),
                      d=np.full(hidden, int(0.99 * coef)), c=np.full(hidden, int(0.05 * coef)),
                      alpha=np.full(outputs, int(0.9 * coef)), dtq=int(0.01 * coef), gamma=int(0.9 * coef),
                      theta=int(spec.state.scale), readout=readout)


def test_multi_bit_input_by_hand():
    """x = 5 on a 3-bit input weighs the input row by 5 (the width bound counts x * w as the rows of
    its set bits, w + 4w, so a synapse term is 2 bits wider than w << in_align). Weight Q1.6,
    recurrent Q0.7: the accumulator has 7 fraction bits (input weights shift left by 1) and the
    state 10, so u after one step from rest is 5 * 5/64 = 0.390625 = 400 / 1024 (and -3 * 5/64)."""
    net = tiny_net([[5], [-3]], input_bits=3)
    assert net.spec.in_align == 1 and net.spec.synapse_bits == 8 + 1 + 2  # row of bit 2: w << 3
    assert net.spec.sources(1, 2) == 3 + 2
    r = golden.run(net, np.array([[[5]]]), record=True)
    assert r.traces["u"][0, 0].tolist() == [400, -240]
    with pytest.raises(FormatError, match="input value 8 is outside the input format u3"):
        golden.run(net, np.array([[[8]]]))


def test_mean_readout_is_a_saturating_running_sum():
    """s_t = sat(s_(t-1) + o_t) in sum_bits bits; with a sum only one bit wider than o it
    saturates, and the class is argmax(s) at the last step, lowest index on ties."""
    readout = Readout("mean", 17)
    net = tiny_net([[100], [0]], 1, readout, w_out=[[127, 0], [-128, 0]])
    x = np.ones((40, 2, 1), np.int64)
    x[:, 1] = 0  # the second sequence stays silent: o = s = 0, a tie, class 0
    r = golden.run(net, x)
    lo, hi = readout.sum_bounds
    assert (lo, hi) == (-65536, 65535)
    s = np.zeros((2, 2), np.int64)
    for t in range(40):
        s = np.clip(s + r.outputs[t], lo, hi)
        assert np.array_equal(r.sums[t], s)
    assert r.sums[-1, 0].tolist() == [hi, lo] and r.spikes[:, 0, 0].sum() > 5
    assert golden.sequence_predictions(net, r).tolist() == [0, 0]
    assert Readout.for_steps("mean", 16, 784).sum_bits == 26  # never saturates within 784 steps
    last = golden.sequence_predictions(tiny_net([[100], [0]], 1, Readout("last")), r)
    assert np.array_equal(last, r.predictions[-1])
    with pytest.raises(FormatError, match="readout rule"):
        Readout("vote")


def test_qat_forward_equals_golden_on_mnist_pixels():
    """The QAT model's integer forward (what training optimises) and the golden model agree bit for
    bit on real 8-bit pixels, with the 1/255 input unit folded into the input weights."""
    data = TaskData(TASKS["smnist"])
    x_int, _, _ = data.integer_sequences("test", limit=3)
    x_int = x_int[150:450]  # past the blank top rows
    assert x_int.max() == 255 and len(np.unique(x_int)) > 50
    model = build_model(ModelConfig(1, 24, 10, neuron=NeuronConfig(omega_init=(15.0, 50.0))), seed=3)
    with torch.no_grad():
        model.synapses.weight.mul_(100.0)
    spec = spec_for_model(model, 8, inputs=InputFormat(8, 1 / 255))
    model.fixed = spec
    with torch.no_grad():
        out = model(torch.from_numpy(x_int.astype(np.float32) / 255.0), record=True)
    gold = golden.run(to_int_network(model, spec), x_int, record=True)
    assert gold.spikes.sum() > 100
    assert np.array_equal(out.traces["z"].numpy().astype(np.int64), gold.spikes)
    assert np.array_equal(out.outputs.numpy() * spec.output.scale, gold.outputs)
    assert np.array_equal(out.traces["u"].numpy() * spec.state.scale, gold.traces["u"])


def parse(argv):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    add_qat_arguments(parser)
    return parser.parse_args(argv)


def whole_flow(task, tmp_path, capsys, data_dir=None, batch=8):
    float_run = Trainer(TrainConfig(task=task, epochs=1, batch_size=batch, train_limit=batch, eval_limit=batch,
                                    run_dir=str(tmp_path / "float"), data_dir=data_dir, progress=False))
    float_run.fit()
    extra = ["--data-dir", data_dir] if data_dir else []
    metrics = run_qat(parse(["--task", task, "--init", str(tmp_path / "float" / "best.pt"), "--qat-epochs", "1",
                             "--train-limit", str(batch), "--batch-size", str(batch), "--eval-limit", str(batch),
                             "--run-dir", str(tmp_path / "qat"), "--no-progress", *extra]))
    path = tmp_path / "qat" / f"brf_{task}.npz"
    net, manifest = load_artifact(path)
    capsys.readouterr()
    evaluate_main([str(path), "--limit", str(batch), *extra])
    printed = capsys.readouterr().out
    assert f"{task} test: accuracy {metrics['test_acc']:.2f}%" in printed
    return net, manifest, metrics


@pytest.mark.parametrize("task, readout", [("smnist", "last"), ("psmnist", "mean")])
def test_mnist_tasks_through_the_whole_flow(task, readout, tmp_path, capsys):
    net, manifest, metrics = whole_flow(task, tmp_path, capsys)
    assert net.shape == (1, 256, 10) and net.spec.input == InputFormat(8, 1 / 255)
    assert net.readout.rule == readout and manifest["task"] == task and metrics["test_sequences"] == 8
    assert (net.readout.sum_bits == 16 + 10) == (readout == "mean")


def test_shd_through_the_whole_flow(shd_dir, tmp_path, capsys):  # noqa: F811
    net, manifest, metrics = whole_flow("shd", tmp_path, capsys, data_dir=str(shd_dir), batch=4)
    assert net.shape == (700, 128, 20) and net.spec.input == InputFormat(1, 1.0)
    assert net.readout == Readout("mean", 16 + 8)
    x, target, _ = TaskData(TASKS["shd"], str(shd_dir)).integer_sequences("test", limit=4)
    ev = evaluate(net, x, target)
    assert x.shape == (250, 4, 700) and x.sum() > 0
    assert ev.metrics["acc"] == pytest.approx(metrics["test_acc"])
    assert ev.metrics["sops"] == pytest.approx(metrics["test_sops"])


def test_mismatched_init_and_artifact_are_refused(tmp_path, capsys):
    Trainer(TrainConfig(task="ecg", epochs=1, batch_size=8, train_limit=8, eval_limit=4, eval_test=False,
                        run_dir=str(tmp_path / "ecg"), progress=False)).fit()
    with pytest.raises(UserError, match="is a 4-36-6 network; task smnist is 1-256-10"):
        run_qat(parse(["--task", "smnist", "--init", str(tmp_path / "ecg" / "best.pt"), "--run-dir",
                       str(tmp_path / "r")]))
    assert not (tmp_path / "r").exists()  # nothing half-written
    ecg = build_model(ModelConfig(4, 36, 6), seed=0)
    net = to_int_network(ecg, spec_for_model(ecg, 8))
    with pytest.raises(ValueError, match="task smnist feeds 1 inputs of u8"):
        evaluate_task(net, TaskData("smnist"), "test", limit=2)
