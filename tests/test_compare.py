"""``python -m brf_hw.analyze compare``: the table's rows are what the trained networks give, kinds
without integer arithmetic or hardware say why, bad input is one line and exit 2; a checkpoint of
one neuron kind is refused as another (issue 25 item 5)."""

from __future__ import annotations

import csv

import pytest
from test_analyze import run_analyze as run_cli  # (code, stderr) of python -m brf_hw.analyze

from brf_hw.analyze import compare
from brf_hw.api import evaluate_network
from brf_hw.artifact import HARDWARE_NEURONS, load_artifact
from brf_hw.hw.resources import estimate_network
from brf_hw.train import TrainConfig, Trainer, load_checkpoint_model

TINY = ["--seeds", "1", "--epochs", "1", "--qat-epochs", "1", "--train-limit", "4", "--eval-limit", "4",
        "--activity-sequences", "2"]


def test_unknown_kind_is_one_line_naming_it_and_the_known_ones(monkeypatch, capsys, tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    code, err = run_cli(monkeypatch, capsys, "compare", "--neurons", "brf", "foo", "--out", str(out),
                        "--run-root", str(runs))
    assert code == 2
    err = err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "'foo'" in err and "known: brf, brf-no-boundary" in err and "alif" in err, err
    assert not out.exists() and not runs.exists()


def test_table_rows_are_the_trained_networks(monkeypatch, capsys, tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    from brf_hw.fixed import kinds

    monkeypatch.delitem(kinds.KINDS, "bhrf")  # every float kind has integer arithmetic: one taken out
    code, err = run_cli(monkeypatch, capsys, "compare", "--neurons", "brf", "alif", "bhrf", *TINY, "--out", str(out),
                        "--run-root", str(runs))
    assert code == 0, err
    rows = {r["neuron"]: r for r in csv.DictReader(open(out / "compare-ecg.csv"))}
    assert list(rows) == ["brf", "alif", "bhrf"]
    for kind in ("brf", "alif", "bhrf"):
        model, _ = load_checkpoint_model(runs / f"ecg-{kind}-s0" / "float" / "best.pt")
        trainer = Trainer(TrainConfig(task="ecg", neuron=kind, eval_limit=4, run_dir=str(tmp_path / "x"),
                                      progress=False))
        test = trainer.evaluate("test", model)
        assert float(rows[kind]["float_acc"]) == pytest.approx(test["acc"], rel=1e-5)
        assert float(rows[kind]["float_sops"]) == pytest.approx(test["sops"], rel=1e-5)
        assert int(rows[kind]["params"]) == model.parameter_count()
    # BRF and ALIF: the integer numbers are the golden model's on the exported artifact, the
    # hardware columns the accelerator's estimate for it
    for kind in ("brf", "alif"):
        net, _ = load_artifact(runs / f"ecg-{kind}-s0" / "int.npz")
        assert net.neuron == kind
        m = evaluate_network(net, "ecg", limit=4).metrics
        assert float(rows[kind]["int_acc"]) == pytest.approx(m["acc"], rel=1e-5)
        assert float(rows[kind]["int_sops"]) == pytest.approx(m["sops"], rel=1e-5)
        assert kind in HARDWARE_NEURONS
        need = estimate_network(net, 1).need("ecp5")
        assert int(rows[kind]["lut4"]) == round(need["lut"]) and int(rows[kind]["bram"]) == need["bram"]
        assert int(rows[kind]["dsp"]) == need["dsp"] == {"brf": 7, "alif": 4}[kind]  # 6 (3) per lane + LI
        assert float(rows[kind]["cycles_per_step"]) > 0 and float(rows[kind]["energy_uj"]) > 0
        assert rows[kind]["ff"] == "" and rows[kind]["fmax_mhz"] == ""  # only synthesis measures them
    # BHRF (out of the registry): no integer arithmetic, and the table says so instead of a number
    assert rows["bhrf"]["int_acc"] == "" and rows["bhrf"]["lut4"] == ""
    assert "no integer arithmetic for bhrf" in rows["bhrf"]["int_reason"]
    table = (out / "compare-ecg.md").read_text()
    bhrf_line = next(line for line in table.splitlines() if line.startswith("| bhrf "))
    assert "| — |" in bhrf_line and "no integer arithmetic for bhrf" in bhrf_line
    assert "REDUCED" in table.splitlines()[0]
    assert (out / "compare-ecg.png").stat().st_size > 1000

    # a second run with the same protocol reuses the results (no retraining)
    stamp = (runs / "ecg-alif-s0" / "float" / "best.pt").stat().st_mtime_ns
    code, err = run_cli(monkeypatch, capsys, "compare", "--neurons", "alif", *TINY, "--out", str(out),
                        "--run-root", str(runs))
    assert code == 0, err
    assert (runs / "ecg-alif-s0" / "float" / "best.pt").stat().st_mtime_ns == stamp


def test_presets_and_overrides():
    parser = compare.argparse.ArgumentParser()
    compare.add_arguments(parser)
    neurons, seeds, proto = compare.resolve(parser.parse_args([]))
    assert seeds == 5 and proto.epochs is None and proto.qat_epochs == 30 and "lif" in neurons
    neurons, seeds, proto = compare.resolve(parser.parse_args(["--preset", "reduced", "--seeds", "3",
                                                               "--neurons", "rf", "rf", "brf"]))
    assert neurons == ["rf", "brf"] and seeds == 3
    assert proto.epochs == compare.PRESETS["reduced"]["epochs"]


# --------------------------------------------------------------------------- item 5
@pytest.fixture(scope="module")
def bhrf_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("bhrf")
    Trainer(TrainConfig(task="ecg", neuron="bhrf", epochs=1, train_limit=2, eval_limit=2, eval_test=False,
                        run_dir=str(run), progress=False, log_epochs=False)).fit()
    return run


def test_resume_refuses_another_kind_naming_both(bhrf_run, tmp_path):
    from brf_hw.train.trainer import CheckpointError

    trainer = Trainer(TrainConfig(task="ecg", neuron="brf", epochs=1, run_dir=str(tmp_path), progress=False))
    with pytest.raises(CheckpointError, match="holds bhrf neurons, not --neuron brf"):
        trainer.resume(bhrf_run / "last.pt")


@pytest.mark.parametrize("command", ["train", "qat"])
def test_init_from_another_kind_is_one_line_exit_2(bhrf_run, tmp_path, command, capsys):
    from brf_hw.commands import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([command, "--task", "ecg", "--neuron", "brf", "--init", str(bhrf_run / "best.pt"),
              "--run-dir", str(tmp_path / "r"), "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1, err
    assert "holds bhrf neurons, not --neuron brf" in err
    assert not (tmp_path / "r" / "qat").exists() and not (tmp_path / "r" / "best.pt").exists()


def test_diverged_seeds_are_counted_not_averaged():
    reason = "no integer arithmetic for alif (fixed/kinds has brf)"
    rows = [{"neuron": "alif", "seed": 0, "diverged": "gradient of hidden.tau_m has 1 NaN"}]
    rows += [{"neuron": "alif", "seed": s, "float_acc": a, "float_sops": 100.0 * s, "params": 1734, "best_epoch": 3,
              "int_reason": reason} for s, a in ((1, 50.0), (2, 60.0))]
    s = compare.summarize("alif", rows, None)
    assert s["runs"] == 2 and s["float_acc"] == 55.0 and (s["float_acc_min"], s["float_acc_max"]) == (50.0, 60.0)
    assert s["float_sops"] == 150.0 and "int_acc" not in s
    assert s["diverged"] == "1 of 3 seeds diverged (seed 0: gradient of hidden.tau_m has 1 NaN)"
    line = compare.markdown([s], "t", "cmd", "p.png").splitlines()[-1]
    assert line.startswith("| alif | 55.00 [50.00–60.00] | — |") and "1 of 3 seeds diverged" in line
    alone = compare.summarize("alif", rows[:1], None)
    assert alone["runs"] == 0 and "all 1 seeds diverged" in alone["diverged"]
    assert compare.markdown([alone], "t", "cmd", "p.png").splitlines()[-1].startswith("| alif | — | — |")
