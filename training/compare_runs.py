"""Compare finished ``qat.py`` runs (for instance one per float seed): float and integer test
accuracy, the integer network's 95 % interval over test sequences, SOPs and the validation numbers
a run would be selected by. Integer numbers are recomputed from each run's exported artifact by the
golden model. Writes a Markdown table and a plot.

    python training/compare_runs.py runs/q-s*-p0 --out docs/seeds_w8 --target 86.2
"""

import argparse
import csv
import json
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from brf_hw.artifact import load_artifact  # noqa: E402
from brf_hw.cli_util import UserError, run_main  # noqa: E402
from brf_hw.evaluate import evaluate_task  # noqa: E402
from brf_hw.tasks import TaskData  # noqa: E402


def run_row(run: Path, data: TaskData) -> dict:
    if not (run / "qat_summary.json").exists():
        raise UserError(f"{run}: no qat_summary.json (not a qat.py run directory, or the run has not finished)")
    summary = json.loads((run / "qat_summary.json").read_text())
    net, _ = load_artifact(summary["artifact"])
    with open(run / "qat" / "metrics.csv") as f:
        epochs = list(csv.DictReader(f))
    chosen = epochs[int(summary["qat_best_epoch"]) - 1]
    row = {"run": run.name, "float_acc": summary["float_test_acc"], "qat_val_loss": float(chosen["val_loss"])}
    for split in ("val", "test"):
        m = evaluate_task(net, data, split).metrics
        row.update({f"{split}_acc": m["acc"], f"{split}_sops": m["sops"]})
        if split == "test":
            row.update({"test_ci_low": m["acc_ci_low"], "test_ci_high": m["acc_ci_high"]})
    return row


def median_interval(values: np.ndarray, resamples: int = 4000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the median over runs (runs are the unit resampled)."""
    rng = np.random.default_rng(seed)
    medians = np.median(values[rng.integers(0, len(values), (resamples, len(values)))], axis=1)
    low, high = np.quantile(medians, [0.025, 0.975])
    return float(low), float(high)


def plot(rows: list[dict], target: float | None, path: Path) -> None:
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows) + 2), 4))
    acc = np.array([r["test_acc"] for r in rows])
    err = np.array([[r["test_acc"] - r["test_ci_low"], r["test_ci_high"] - r["test_acc"]] for r in rows]).T
    ax.errorbar(x, acc, yerr=err, fmt="o", capsize=3, label="integer network (95 % interval over sequences)")
    ax.plot(x, [r["float_acc"] for r in rows], "x", color="gray", label="float model")
    if target is not None:
        ax.axhline(target, color="red", linestyle=":", label=f"target {target} %")
    ax.set_xticks(x, [r["run"] for r in rows], rotation=45, ha="right")
    ax.set_ylabel("ECG test accuracy (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="qat.py run directories")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"), help="writes OUT.md and OUT.png")
    parser.add_argument("--target", type=float, help="draw this accuracy as a line")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    data = TaskData("ecg", args.data_dir)
    rows = [run_row(run, data) for run in args.runs]
    diff = np.array([r["test_acc"] - r["float_acc"] for r in rows])
    table = ["| run | float test | integer test | 95 % interval | SOPs | integer val | QAT val loss |",
             "|---|---|---|---|---|---|---|"]
    table += [f"| {r['run']} | {r['float_acc']:.2f} % | {r['test_acc']:.2f} % | {r['test_ci_low']:.2f}-"
              f"{r['test_ci_high']:.2f} | {r['test_sops']:.0f} | {r['val_acc']:.2f} % | {r['qat_val_loss']:.4f} |"
              for r in rows]
    table.append(f"\nfloat mean {np.mean([r['float_acc'] for r in rows]):.2f} %, integer mean "
                 f"{np.mean([r['test_acc'] for r in rows]):.2f} %, integer - float {diff.mean():+.2f} "
                 f"(sd {diff.std(ddof=1) if len(rows) > 1 else 0:.2f}) over {len(rows)} runs")
    integer = np.array([r["test_acc"] for r in rows])
    low, high = median_interval(integer)
    table.append(f"integer median {np.median(integer):.2f} % (95 % interval of the median over runs {low:.2f}-"
                 f"{high:.2f}), float median {np.median([r['float_acc'] for r in rows]):.2f} %")
    best = min(rows, key=lambda r: r["qat_val_loss"])
    table.append(f"chosen by validation (lowest QAT validation loss, test set unseen): {best['run']}, test "
                 f"{best['test_acc']:.2f} % ({best['test_ci_low']:.2f}-{best['test_ci_high']:.2f}), "
                 f"{best['test_sops']:.0f} SOPs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    plot(rows, args.target, args.out.with_suffix(".png"))
    print(f"wrote {args.out.with_suffix('.md')}, {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    run_main(main)
