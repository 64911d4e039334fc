"""The fixed-point flow end to end on real ECG data (short): QAT, export, golden re-check, CLI."""

import argparse
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from brf_hw.evaluate import bootstrap_interval, evaluate
from brf_hw.evaluate import main as evaluate_main
from brf_hw.artifact import load_artifact
from brf_hw.cli_util import UserError
from brf_hw.train import TrainConfig, Trainer
from brf_hw.train.cli import add_train_arguments
from brf_hw.train.qat_flow import add_qat_arguments, run_qat


def parse(argv):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    add_qat_arguments(parser)
    return parser.parse_args(argv)


def test_qat_flow_exports_an_artifact_the_golden_model_reproduces(tmp_path, ecg_splits, capsys, monkeypatch):
    float_run = Trainer(TrainConfig(task="ecg", epochs=2, batch_size=16, train_limit=32, lr=1.0, eval_limit=4,
                                    run_dir=str(tmp_path / "float"), progress=False))
    float_run.fit()
    args = parse(["--init", str(tmp_path / "float" / "best.pt"), "--qat-epochs", "1", "--train-limit", "16",
                  "--weight-bits", "6", "--run-dir", str(tmp_path / "qat"), "--no-progress"])
    metrics = run_qat(args)
    artifact = tmp_path / "qat" / "brf_ecg.npz"
    net, manifest = load_artifact(artifact)
    assert net.spec.weight.bits == 6 and manifest["metrics"]["test_acc"] == pytest.approx(metrics["test_acc"])
    test = ecg_splits["test"]
    m = evaluate(net, test.inputs.numpy().transpose(1, 0, 2), test.labels.numpy().T, test.annotated.numpy().T).metrics
    assert m["acc"] == pytest.approx(metrics["test_acc"]) and m["sops"] == pytest.approx(metrics["test_sops"])
    assert manifest["metrics"]["test_acc_ci95"] == pytest.approx([m["acc_ci_low"], m["acc_ci_high"]])
    assert m["acc_ci_low"] <= m["acc"] <= m["acc_ci_high"]
    assert json.loads((tmp_path / "qat" / "qat_summary.json").read_text())["artifact"] == str(artifact)
    capsys.readouterr()
    evaluate_main([str(artifact)])
    assert f"accuracy {m['acc']:.2f}%" in capsys.readouterr().out

    # the run comparison recomputes the same integer numbers from the artifact
    monkeypatch.setattr(sys, "argv", ["compare_runs.py", str(tmp_path / "qat"), "--out", str(tmp_path / "cmp")])
    runpy.run_path(str(Path(__file__).parents[1] / "training" / "compare_runs.py"), run_name="__main__")
    table = (tmp_path / "cmp.md").read_text()
    assert f"| qat | {metrics['float_test_acc']:.2f} % | {m['acc']:.2f} % | {m['acc_ci_low']:.2f}-" in table
    assert (tmp_path / "cmp.png").stat().st_size > 0


def test_bootstrap_interval_by_hand():
    assert bootstrap_interval(np.full(50, 80.0)) == (80.0, 80.0)  # no spread, no uncertainty
    # half the sequences all right, half all wrong: the mean's standard error is 50/sqrt(n)
    n = 400
    low, high = bootstrap_interval(np.repeat([0.0, 100.0], n // 2))
    half_width = 1.96 * 50 / np.sqrt(n)
    assert low == pytest.approx(50 - half_width, abs=0.6) and high == pytest.approx(50 + half_width, abs=0.6)
    wide = bootstrap_interval(np.repeat([0.0, 100.0], n // 2), level=0.99)
    assert wide[0] < low and wide[1] > high


def test_qat_flow_refuses_other_neurons(tmp_path, monkeypatch):
    from brf_hw.fixed import kinds

    monkeypatch.delitem(kinds.KINDS, "bhrf")  # every float kind has integer arithmetic: one taken out
    with pytest.raises(UserError, match="covers brf, .*rf, alif, lif networks, not --neuron bhrf"):
        run_qat(parse(["--neuron", "bhrf", "--run-dir", str(tmp_path)]))
