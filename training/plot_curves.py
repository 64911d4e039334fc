"""Learning curves of finished or running ``train.py`` runs: training and validation accuracy and
SOPs per step over epochs, from each run's ``metrics.csv`` (what the trainer logs every epoch).

    python training/plot_curves.py runs/smnist-brf-e10 --out docs/results/smnist_curve.png

A run's final integer test accuracy (``qat_summary.json`` of a qat.py run, ``--qat``) is drawn as
a point at its last epoch, so the plot shows where the shipped network came from.
"""

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from brf_hw.cli_util import UserError, run_main  # noqa: E402


def read_metrics(run: Path) -> dict[str, list[float]]:
    path = run / "metrics.csv"
    if not path.exists():
        raise UserError(f"{run}: no metrics.csv (not a train.py run directory)")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise UserError(f"{path}: no epoch logged yet")
    return {key: [float(r[key]) for r in rows] for key in ("epoch", "train_acc", "val_acc", "val_sops_per_step")}


def plot(runs: list[Path], qat: list[Path], path: Path) -> None:
    fig, (acc_ax, sops_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for run in runs:
        m = read_metrics(run)
        line, = acc_ax.plot(m["epoch"], m["val_acc"], "o-", label=f"{run.name} validation")
        acc_ax.plot(m["epoch"], m["train_acc"], ":", color=line.get_color(), label=f"{run.name} training")
        sops_ax.plot(m["epoch"], m["val_sops_per_step"], "o-", color=line.get_color(), label=run.name)
    for q in qat:
        if not (q / "qat_summary.json").exists():
            raise UserError(f"{q}: no qat_summary.json (not a finished qat.py run directory)")
        summary = json.loads((q / "qat_summary.json").read_text())
        last = max(max(read_metrics(r)["epoch"]) for r in runs)
        acc_ax.errorbar([last], [summary["test_acc"]], fmt="s", capsize=3, color="black",
                        yerr=[[summary["test_acc"] - summary["test_acc_ci95"][0]],
                              [summary["test_acc_ci95"][1] - summary["test_acc"]]],
                        label=f"{q.name}: integer test {summary['test_acc']:.2f} %")
    acc_ax.set(xlabel="float epoch", ylabel="accuracy (%)")
    sops_ax.set(xlabel="float epoch", ylabel="validation SOPs per step")
    for ax in (acc_ax, sops_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="train.py run directories")
    parser.add_argument("--qat", nargs="*", type=Path, default=[], help="qat.py run directories (integer result)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args()
    plot(args.runs, args.qat, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_main(main)
