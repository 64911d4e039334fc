"""Pruning ablation on ECG: accuracy against the fraction of recurrent weights pruned, BRF against
ALIF, over seeds, with the hardware cost of every pruned BRF network in integers.

Protocol per (neuron, seed, fraction): train the float network with ``mask_prob = fraction``
(the model's fixed random recurrent mask, as ``training/train.py --mask-prob``); the best-validation
model's float test accuracy and SOPs. BRF networks then go through the project's 8-bit QAT
(``spec_for_model`` formats, ``Trainer`` with ``fixed=spec``; the mask is part of the quantized
recurrent weights), the best QAT model becomes an ``IntNetwork`` and the golden model gives
integer test accuracy, SOPs, and at the measured per-step activity the accelerator's cycles per
step (``generate.cycle_model``, lanes/segments as given). ALIF has no fixed-point path: float only.

The accelerator adds a spiking source's whole weight row whatever its zeros, so pruning changes
its cycles only through activity; ``syn_ops_per_step`` counts the non-zero synapses the active
sources drive (what a zero-skipping design would add).

Each run writes RUN_ROOT/ecg-NEURON-pFRAC-sSEED/result.json; an existing result with the same
protocol is reused, so a protocol can be extended (more seeds, fractions) without retraining.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from ..cli_util import NON_NEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, WORD_BITS, float_range
from .common import DEFAULT_OUT, UserError, out_path, pyplot, save_png, write_csv

NEURONS = ("brf", "alif")
CSV_FIELDS = ["neuron", "seed", "fraction", "pruned_measured", "epochs", "train_limit", "best_epoch",
              "float_acc", "float_acc_annotated", "float_sops", "float_sops_per_step", "qat_epochs",
              "int_acc", "int_acc_annotated", "int_sops", "int_sops_per_step", "sources_per_step",
              "cycles_per_step", "syn_ops_per_step", "syn_ops_per_step_dense", "seconds"]
SUMMARY_FIELDS = ["neuron", "fraction", "runs", "float_acc_mean", "float_acc_sd", "int_acc_mean", "int_acc_sd",
                  "float_sops_per_step_mean", "int_sops_per_step_mean", "cycles_per_step_mean",
                  "syn_ops_per_step_mean"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--neurons", nargs="+", choices=NEURONS, default=list(NEURONS))
    p.add_argument("--seeds", nargs="+", type=NON_NEGATIVE_INT, default=[0, 1, 2, 3, 4])
    p.add_argument("--fractions", nargs="+", type=float_range(0.0, 1.0, high_open=True), default=[0.0, 0.1, 0.3, 0.5, 0.7, 0.9],
                   help="fractions of recurrent weights pruned (ModelConfig.mask_prob), each in [0, 1)")
    p.add_argument("--epochs", type=POSITIVE_INT, help="float training epochs (default: the paper's 400)")
    p.add_argument("--train-limit", type=POSITIVE_INT, help="train on the first N shuffled sequences per epoch (default all 557)")
    p.add_argument("--qat-epochs", type=NON_NEGATIVE_INT, default=30, help="8-bit QAT epochs of each pruned BRF network (0: rounding only)")
    p.add_argument("--qat-lr", type=POSITIVE_FLOAT, default=0.01)
    p.add_argument("--weight-bits", type=WORD_BITS, default=8)
    p.add_argument("--lanes", type=POSITIVE_INT, default=1, help="accelerator lanes for the cycle count")
    p.add_argument("--segments", type=POSITIVE_INT, help="accumulator segments (default: the generator's)")
    p.add_argument("--jobs", type=POSITIVE_INT, default=1, help="runs in parallel (processes, one thread each)")
    p.add_argument("--run-root", default="runs/prune", help="where each run's checkpoints and result go")
    p.add_argument("--data-dir")
    p.add_argument("--plot-only", action="store_true", help="no training: tabulate and plot the finished runs")
    p.add_argument("--out", default=str(DEFAULT_OUT))


@dataclasses.dataclass(frozen=True)
class RunSpec:
    neuron: str
    seed: int
    fraction: float
    epochs: int | None
    train_limit: int | None
    qat_epochs: int
    qat_lr: float
    weight_bits: int
    lanes: int
    segments: int | None
    run_dir: str
    data_dir: str | None

    def protocol(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("run_dir", "data_dir"):
            d.pop(k)
        return d


def run_name(neuron: str, fraction: float, seed: int) -> str:
    return f"ecg-{neuron}-p{fraction:g}-s{seed}"


# --------------------------------------------------------------------------- one run
def hardware_cost(net, x: np.ndarray, spikes: np.ndarray, lanes: int, segments: int | None) -> dict:
    """Accelerator cycles a step occupies in a stream at the measured activity
    (``core.period_model`` of the step's input spikes and its own hidden spikes); synaptic operations:
    S_t = active inputs at t + hidden spikes at t-1 (the state, and so the previous spikes, are
    cleared at each sequence start). x [T, B, I], spikes [T, B, H]."""
    from ..hw.core import period_model
    from ..hw.simulate import expected_cycles

    n_in, n_hid, n_out = net.shape
    prev = np.concatenate([np.zeros_like(spikes[:1]), spikes[:-1]])
    sources = x.sum(-1).astype(np.int64) + prev.sum(-1)  # [T, B]
    cycles = expected_cycles(net, x.astype(np.int64), spikes, lanes, segments, period_model)
    # synapses a zero-skipping design would add: non-zero weights out of each active source
    fan_in = (net.w_in != 0).sum(0)  # [I] non-zero targets per input
    fan_rec = (net.w_rec != 0).sum(0)  # [H] per hidden source
    syn = x.astype(np.int64) @ fan_in + prev @ fan_rec
    dense = x.sum(-1) * n_hid + prev.sum(-1) * n_hid
    return {"sources_per_step": float(sources.mean()), "cycles_per_step": float(cycles.mean()),
            "syn_ops_per_step": float(syn.mean()), "syn_ops_per_step_dense": float(dense.mean())}


def train_one(spec: RunSpec, data=None, progress: bool = False) -> dict:
    """Float training (+ QAT, golden model and cycles for BRF) of one pruned network."""
    from ..evaluate import evaluate_task
    from ..fixed.qat import to_int_network
    from ..fixed.spec import spec_for_model
    from ..train import TrainConfig, Trainer, load_checkpoint_model

    start = time.perf_counter()
    root = Path(spec.run_dir)
    cfg = TrainConfig(task="ecg", neuron=spec.neuron, epochs=spec.epochs, seed=spec.seed,
                      mask_prob=spec.fraction, train_limit=spec.train_limit, eval_test=False,
                      run_dir=str(root / "float"), data_dir=spec.data_dir, progress=progress)
    trainer = Trainer(cfg, data)
    trainer.fit()
    best, ckpt = load_checkpoint_model(root / "float" / "best.pt")
    test = trainer.evaluate("test", best)
    mask = best.recurrent_mask.numpy()
    row = {"neuron": spec.neuron, "seed": spec.seed, "fraction": spec.fraction,
           "pruned_measured": float(1.0 - mask.mean()), "epochs": trainer.cfg.epochs,
           "train_limit": spec.train_limit or trainer.data.size("train"), "best_epoch": ckpt["epoch"],
           "float_acc": test["acc"], "float_acc_annotated": test["acc_annotated"],
           "float_sops": test["sops"], "float_sops_per_step": test["sops_per_step"]}
    if spec.neuron == "brf":
        fspec = spec_for_model(best, spec.weight_bits)
        model = best
        if spec.qat_epochs > 0:
            qcfg = dataclasses.replace(cfg, run_dir=str(root / "qat"), epochs=spec.qat_epochs, lr=spec.qat_lr,
                                       fixed=fspec.to_dict())
            qat = Trainer(qcfg, trainer.data, init_state=best.state_dict())
            qat.fit()
            model, _ = load_checkpoint_model(root / "qat" / "best.pt")
        net = to_int_network(model, fspec)
        ev = evaluate_task(net, trainer.data, "test", keep_spikes=True)
        m = ev.metrics
        x = trainer.data.integer_sequences("test")[0].astype(np.int64)
        row.update({"qat_epochs": spec.qat_epochs, "int_acc": m["acc"], "int_acc_annotated": m["acc_annotated"],
                    "int_sops": m["sops"], "int_sops_per_step": m["sops_per_step"],
                    **hardware_cost(net, x, ev.spikes, spec.lanes, spec.segments)})
    row["seconds"] = time.perf_counter() - start
    return row


def _worker(spec: RunSpec, threads: int) -> dict:
    from ..threads import set_threads

    set_threads(threads)
    return cached_or_train(spec)


def cached_or_train(spec: RunSpec, data=None, progress: bool = False) -> dict:
    path = Path(spec.run_dir) / "result.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("protocol") == spec.protocol():
            return saved["row"]
    if Path(spec.run_dir).exists():  # a stale or interrupted run: start it over, not resume a mixture
        import shutil

        shutil.rmtree(spec.run_dir)
    row = train_one(spec, data, progress)
    Path(spec.run_dir).mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"protocol": spec.protocol(), "row": row}, indent=1))
    return row


# --------------------------------------------------------------------------- the sweep
def specs_from_args(args) -> list[RunSpec]:
    for f in args.fractions:
        if not 0.0 <= f < 1.0:
            raise UserError(f"--fractions: {f} is not in [0, 1)")
    return [RunSpec(n, s, f, args.epochs, args.train_limit, args.qat_epochs, args.qat_lr, args.weight_bits,
                    args.lanes, args.segments, str(Path(args.run_root) / run_name(n, f, s)), args.data_dir)
            for f in args.fractions for n in args.neurons for s in args.seeds]


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["neuron"], r["fraction"]) for r in rows}, key=lambda k: (NEURONS.index(k[0]), k[1]))
    for neuron, fraction in keys:
        group = [r for r in rows if r["neuron"] == neuron and r["fraction"] == fraction]
        s = {"neuron": neuron, "fraction": fraction, "runs": len(group)}
        for key in ("float_acc", "int_acc"):
            vals = [r[key] for r in group if r.get(key) is not None]
            if vals:
                s[f"{key}_mean"] = float(np.mean(vals))
                s[f"{key}_sd"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
        for key in ("float_sops_per_step", "int_sops_per_step", "cycles_per_step", "syn_ops_per_step"):
            vals = [r[key] for r in group if r.get(key) is not None]
            if vals:
                s[f"{key}_mean"] = float(np.mean(vals))
        out.append(s)
    return out


def plot(rows: list[dict], path: Path, title: str) -> None:
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    series = [("brf", "float_acc", "BRF float", "C0", "o-"), ("brf", "int_acc", "BRF 8-bit integer", "C0", "s--"),
              ("alif", "float_acc", "ALIF float", "C3", "o-")]
    for neuron, key, label, color, style in series:
        group = [r for r in rows if r["neuron"] == neuron and r.get(key) is not None]
        if not group:
            continue
        fr = sorted({r["fraction"] for r in group})
        vals = [[r[key] for r in group if r["fraction"] == f] for f in fr]
        sd = [np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in vals]  # as in prune_summary.csv
        ax.errorbar(fr, [np.mean(v) for v in vals], yerr=sd, fmt=style, color=color, capsize=3,
                    label=f"{label} (mean, sd over seeds)")
        for f, v in zip(fr, vals):
            ax.plot([f] * len(v), v, ".", color=color, alpha=0.35)
    ax.set_xlabel("fraction of recurrent weights pruned")
    ax.set_ylabel("ECG test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    for neuron, key, label, color, style in [("brf", "int_sops_per_step", "BRF integer SOPs/step", "C0", "s--"),
                                             ("alif", "float_sops_per_step", "ALIF float SOPs/step", "C3", "o-")]:
        group = [r for r in rows if r["neuron"] == neuron and r.get(key) is not None]
        if group:
            fr = sorted({r["fraction"] for r in group})
            bx.plot(fr, [np.mean([r[key] for r in group if r["fraction"] == f]) for f in fr], style, color=color,
                    label=label)
    bx.set_xlabel("fraction of recurrent weights pruned")
    bx.set_ylabel("hidden spikes per step")
    bx.grid(alpha=0.3)
    brf = [r for r in rows if r.get("cycles_per_step") is not None]
    if brf:
        cx = bx.twinx()
        fr = sorted({r["fraction"] for r in brf})
        cx.plot(fr, [np.mean([r["cycles_per_step"] for r in brf if r["fraction"] == f]) for f in fr], "^:",
                color="k", label="BRF accelerator cycles/step")
        cx.set_ylabel("accelerator cycles per step")
        cx.set_ylim(0.0, 1.1 * max(r["cycles_per_step"] for r in brf))  # from 0: the change is small
        lines = bx.get_legend_handles_labels()[0] + cx.get_legend_handles_labels()[0]
        labels = bx.get_legend_handles_labels()[1] + cx.get_legend_handles_labels()[1]
        bx.legend(lines, labels, fontsize=8, loc="center right")
    else:
        bx.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def run(args) -> None:
    from tqdm import tqdm

    from ..train.trainer import progress_enabled

    quiet = not progress_enabled(True)  # bars on a terminal only; a log gets one line per run
    specs = specs_from_args(args)
    rows: list[dict] = []
    if args.plot_only:
        for spec in specs:
            path = Path(spec.run_dir) / "result.json"
            if path.exists():
                rows.append(json.loads(path.read_text())["row"])
        if not rows:
            raise UserError(f"--plot-only: no finished runs under {args.run_root}")
    elif args.jobs == 1:
        from ..tasks import TaskData

        data = TaskData("ecg", args.data_dir)
        for spec in tqdm(specs, desc="pruning runs", disable=quiet):
            rows.append(cached_or_train(spec, data, progress=not quiet))
            tqdm.write(_line(rows[-1]))
    else:
        import multiprocessing

        threads = 1
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_worker, spec, threads) for spec in specs]
            for fut in tqdm(as_completed(futures), total=len(futures), desc="pruning runs", disable=quiet):
                rows.append(fut.result())
                tqdm.write(_line(rows[-1]))
    rows.sort(key=lambda r: (NEURONS.index(r["neuron"]), r["fraction"], r["seed"]))
    write_csv(out_path(args.out, "prune.csv"), rows, CSV_FIELDS)
    summary = summarize(rows)
    write_csv(out_path(args.out, "prune_summary.csv"), summary, SUMMARY_FIELDS)
    epochs = rows[0]["epochs"]
    limit = rows[0]["train_limit"]
    title = (f"ECG, {epochs} epochs x {limit} training sequences, "
             f"{len({r['seed'] for r in rows})} seeds" + ("" if epochs >= 400 and limit >= 557 else " (reduced protocol)"))
    plot(rows, out_path(args.out, "prune.png"), title)
    for s in summary:
        integer = (f", integer {s['int_acc_mean']:.2f}% (sd {s['int_acc_sd']:.2f}), "
                   f"{s['cycles_per_step_mean']:.1f} cycles/step") if "int_acc_mean" in s else ""
        print(f"{s['neuron']:4s} pruned {s['fraction']:.2f}: float {s['float_acc_mean']:.2f}% "
              f"(sd {s['float_acc_sd']:.2f}, {s['runs']} runs){integer}")
    print(f"wrote {args.out}/prune.csv, prune_summary.csv, prune.png")


def _line(r: dict) -> str:
    integer = f", integer {r['int_acc']:.2f}%, {r['cycles_per_step']:.1f} cycles/step" if "int_acc" in r else ""
    return (f"{r['neuron']} seed {r['seed']} pruned {r['fraction']:g}: float {r['float_acc']:.2f}%"
            f"{integer} ({r['seconds']:.0f} s)")
