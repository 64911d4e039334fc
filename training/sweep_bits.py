"""Bit-width sweep: quantization-aware fine-tuning from one float checkpoint at several weight
(and state) widths; accuracy and SOPs of each integer network, a CSV, a Markdown table and a plot.

    python training/sweep_bits.py --init runs/ecg-brf-seed0/float/best.pt --bits 4 5 6 8 10 12 \
        --state-bits-list 12 14 16 --qat-epochs 30
"""

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from brf_hw.cli_util import WORD_BITS, run_main  # noqa: E402
from brf_hw.train.cli import add_train_arguments  # noqa: E402
from brf_hw.train.qat_flow import add_qat_arguments, run_qat  # noqa: E402


def plot_sweep(rows: list[dict], state_bits: int, path: Path) -> None:
    weight_rows = sorted((r for r in rows if int(r["state_bits"]) == state_bits), key=lambda r: int(r["weight_bits"]))
    bits = [int(r["weight_bits"]) for r in weight_rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(bits, [float(r["qat_acc"]) for r in weight_rows], "o-", label="QAT, integer network")
    ax.plot(bits, [float(r["ptq_acc"]) for r in weight_rows], "s--", label="post-training rounding")
    ax.axhline(float(rows[0]["float_acc"]), color="gray", linestyle=":", label="float")
    ax.set_xlabel("weight bits")
    ax.set_ylabel("ECG test accuracy (%)")
    ax.set_title(f"BRF 4-36-6, {state_bits}-bit state")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser)
    add_qat_arguments(parser)
    parser.add_argument("--bits", type=WORD_BITS, nargs="+", default=[4, 5, 6, 8, 10, 12], help="weight widths")
    parser.add_argument("--state-bits-list", type=WORD_BITS, nargs="*", default=[],
                        help="state widths to sweep at --weight-bits")
    parser.add_argument("--out", default="runs/sweep", help="folder for runs, CSV, table and plot")
    parser.add_argument("--plot-only", action="store_true", help="redraw OUT/sweep.png from OUT/sweep.csv")
    args = parser.parse_args()
    if args.plot_only:
        with open(Path(args.out) / "sweep.csv") as f:
            plot_sweep(list(csv.DictReader(f)), args.state_bits, Path(args.out) / "sweep.png")
        return
    if not args.init:
        parser.error("--init FLOAT_CHECKPOINT is required: every setting starts from the same float model")
    out = Path(args.out)
    settings = [(b, args.state_bits) for b in args.bits]
    settings += [(args.weight_bits, s) for s in args.state_bits_list if (args.weight_bits, s) not in settings]
    rows = []
    for weight_bits, state_bits in settings:
        run = argparse.Namespace(**{**vars(args), "weight_bits": weight_bits, "state_bits": state_bits,
                                    "run_dir": str(out / f"w{weight_bits}_s{state_bits}"), "artifact": None})
        print(f"=== weight bits {weight_bits}, state bits {state_bits}")
        m = run_qat(run)
        rows.append({"weight_bits": weight_bits, "state_bits": state_bits, "float_acc": m["float_test_acc"],
                     "ptq_acc": m["ptq_test_acc"], "qat_acc": m["test_acc"],
                     "qat_acc_annotated": m["test_acc_annotated"], "sops": m["test_sops"]})
    with open(out / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = ["| weight bits | state bits | post-training rounding | QAT (integer) | QAT, annotated steps | SOPs |",
             "|---|---|---|---|---|---|"]
    table += [f"| {r['weight_bits']} | {r['state_bits']} | {r['ptq_acc']:.2f} % | {r['qat_acc']:.2f} % | "
              f"{r['qat_acc_annotated']:.2f} % | {r['sops']:.0f} |" for r in rows]
    (out / "sweep.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    plot_sweep(rows, args.state_bits, out / "sweep.png")
    print(f"wrote {out / 'sweep.csv'}, {out / 'sweep.md'}, {out / 'sweep.png'}")


if __name__ == "__main__":
    run_main(main)
