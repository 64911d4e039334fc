"""Neuron kinds side by side on one task: float and 8-bit integer accuracy, SOPs, parameters and
the accelerator's cost, as one table (markdown + CSV) and one plot.

    python -m brf_hw.analyze compare --task ecg                       # the full protocol (paper epochs, 5 seeds)
    python -m brf_hw.analyze compare --task ecg --preset reduced --neurons brf alif

Per (kind, seed): ``train_float`` (the task's paper settings unless --epochs), and for kinds with
integer arithmetic (``fixed.kinds``) ``quantize`` (8-bit QAT, golden-model test accuracy and
SOPs, the exported artifact). Kinds the accelerator implements (``artifact.HARDWARE_NEURONS``, read
when the command runs) get hardware columns for one network per kind, the seed with the median
integer accuracy: with --synth Yosys + nextpnr (minutes per kind: LUT4, FF, DSP, BRAM, routed
Fmax, cycles per step measured there); without it the pre-Yosys resource estimate
(``hw.resources``), the cycle model at the golden model's activity, no FF and no Fmax, and the
energy estimate at --fmax. Other kinds show "—" and the reason.

Accuracies are the median over seeds with the min-max range. Each run's result is cached in
RUN_ROOT/TASK-KIND-sSEED/result.json with its protocol, so a protocol can be extended (more seeds,
more kinds) without retraining.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from ..cli_util import POSITIVE_INT, float_range
from .common import DEFAULT_OUT, UserError, out_path, pyplot, save_png, write_csv

# the full protocol is the paper's (epochs None: the task's); "reduced" is what fits a shared
# 2-core machine in about 20 minutes (docs/results/compare-ecg.md)
PRESETS = {"full": {"seeds": 5, "epochs": None, "qat_epochs": 30, "train_limit": None, "eval_limit": None},
           "reduced": {"seeds": 3, "epochs": 15, "qat_epochs": 2, "train_limit": 192, "eval_limit": None}}
MEASURED_FMAX = 109.6  # MHz: the ECG network, lanes 1, routed on the ECP5 LFE5U-25F (README)
CSV_FIELDS = ["neuron", "runs", "float_acc", "float_acc_min", "float_acc_max", "int_acc", "int_acc_min", "int_acc_max",
              "float_sops", "int_sops", "params", "best_epoch", "lut4", "ff", "dsp", "bram", "fmax_mhz", "fpga",
              "cycles_per_step", "energy_uj", "hardware_from", "diverged", "int_reason", "hw_reason"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="ecg", help="task name (default ecg)")
    p.add_argument("--neurons", nargs="+", metavar="KIND", help="neuron kinds (default: every kind)")
    p.add_argument("--preset", choices=PRESETS, default="full",
                   help="full: the paper's epochs, 5 seeds, 30 QAT epochs; reduced: " + ", ".join(
                       f"{k} {v}" for k, v in PRESETS["reduced"].items()) + " (the flags below override)")
    p.add_argument("--seeds", type=POSITIVE_INT, help="seeds 0..N-1")
    p.add_argument("--epochs", type=POSITIVE_INT, help="float training epochs (default: the task's)")
    p.add_argument("--qat-epochs", type=POSITIVE_INT, help="8-bit QAT epochs")
    p.add_argument("--train-limit", type=POSITIVE_INT, help="train on the first N sequences per epoch")
    p.add_argument("--eval-limit", type=POSITIVE_INT, help="evaluate on the first N val / test sequences")
    p.add_argument("--device", default="cpu", help="float training device (cpu, cuda, auto); QAT runs on the CPU")
    p.add_argument("--synth", action="store_true", help="place and route each hardware kind (yowasp; minutes each)")
    p.add_argument("--target", choices=("ecp5", "ice40"), default="ecp5", help="FPGA family (default ecp5)")
    p.add_argument("--lanes", type=POSITIVE_INT, default=1)
    p.add_argument("--fmax", type=float_range(0.0, low_open=True), default=MEASURED_FMAX,
                   help=f"clock for the energy estimate without --synth (default {MEASURED_FMAX} MHz, ECG lanes 1 "
                        "routed on the ECP5-25F)")
    p.add_argument("--activity-sequences", type=POSITIVE_INT, default=8,
                   help="test sequences the hardware activity is measured on (default 8, as synth)")
    p.add_argument("--run-root", default="runs/compare", help="where each run's checkpoints and result go")
    p.add_argument("--data-dir")
    p.add_argument("--out", default=str(DEFAULT_OUT))


@dataclasses.dataclass(frozen=True)
class Protocol:
    task: str
    epochs: int | None
    qat_epochs: int
    train_limit: int | None
    eval_limit: int | None


def resolve(args) -> tuple[list[str], int, Protocol]:
    """The kinds, the seed count and the protocol; a bad kind or task is a UserError before anything runs."""
    from ..neurons.modules import NEURON_KINDS
    from ..tasks import TASKS

    if args.task not in TASKS:
        raise UserError(f"--task {args.task!r} is not a task; known: {', '.join(TASKS)}")
    neurons = list(dict.fromkeys(args.neurons or NEURON_KINDS))
    unknown = [n for n in neurons if n not in NEURON_KINDS]
    if unknown:
        raise UserError(f"--neurons: unknown neuron kind {', '.join(map(repr, unknown))}; known: {', '.join(NEURON_KINDS)}")
    preset = PRESETS[args.preset]
    pick = lambda name: getattr(args, name) if getattr(args, name) is not None else preset[name]  # noqa: E731
    proto = Protocol(args.task, pick("epochs"), pick("qat_epochs"), pick("train_limit"), pick("eval_limit"))
    return neurons, pick("seeds"), proto


# --------------------------------------------------------------------------- one run
def train_one(kind: str, seed: int, proto: Protocol, run_dir: Path, data_dir: str | None, device: str = "cpu") -> dict:
    """Float training, then QAT and the integer network where the kind has integer arithmetic."""
    from .. import api
    from ..fixed import kinds

    from ..train import TrainingDiverged

    start = time.perf_counter()
    try:
        trained = api.train_float(proto.task, epochs=proto.epochs, seed=seed, neuron=kind, run_dir=run_dir / "float",
                                  data_dir=data_dir, train_limit=proto.train_limit, eval_limit=proto.eval_limit,
                                  device=device, eval_test=False)  # the best model is tested once, below
    except TrainingDiverged as exc:  # a result too: the table counts it (deterministic, so cached)
        return {"neuron": kind, "seed": seed, "diverged": str(exc).split(";")[0],
                "seconds": time.perf_counter() - start}
    row = {"neuron": kind, "seed": seed, "epochs": trained.config.epochs, "best_epoch": trained.best_epoch,
           "float_acc": trained.test["acc"], "float_sops": trained.test["sops"],
           "params": trained.model.parameter_count(), "val_acc": [h["val_acc"] for h in trained.history]}
    if kind in kinds.KINDS:
        q = api.quantize(trained, epochs=proto.qat_epochs, weight_bits=8, artifact=run_dir / "int.npz",
                         train_limit=proto.train_limit, eval_limit=proto.eval_limit)
        row.update({"int_acc": q.metrics["test_acc"], "int_sops": q.metrics["test_sops"]})
    else:
        row["int_reason"] = f"no integer arithmetic for {kind} (fixed/kinds has {', '.join(kinds.KINDS)})"
    row["seconds"] = time.perf_counter() - start
    return row


def run_path(root: str | Path, task: str, kind: str, seed: int) -> Path:
    return Path(root) / f"{task}-{kind}-s{seed}"


def cached_or_train(kind: str, seed: int, proto: Protocol, root: Path, data_dir: str | None,
                    device: str = "cpu") -> dict:
    run_dir = run_path(root, proto.task, kind, seed)
    path = run_dir / "result.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("protocol") == dataclasses.asdict(proto):
            return saved["row"]
    if run_dir.exists():  # a stale or interrupted run: start it over, not resume a mixture
        import shutil

        shutil.rmtree(run_dir)
    row = train_one(kind, seed, proto, run_dir, data_dir, device)
    path.write_text(json.dumps({"protocol": dataclasses.asdict(proto), "row": row}, indent=1))
    return row


# --------------------------------------------------------------------------- hardware
def hardware(artifact: Path, args) -> dict:
    """The accelerator's cost for one integer network: synthesized (--synth) or estimated."""
    from ..artifact import load_artifact
    from ..hw import energy, synth
    from ..hw.resources import estimate_network

    net, _ = load_artifact(artifact)
    act = synth.activity(net, args.task, args.data_dir, args.activity_sequences)
    if args.synth:
        r = synth.synthesize(net, args.lanes, args.target, Path(args.run_root) / "synth", act)
        u = r["utilization"]
        e = energy.for_synth_row(net, act, r, args.target)
        return {"lut4": u.get("TRELLIS_COMB", u.get("ICESTORM_LC")), "ff": u.get("TRELLIS_FF", u.get("ICESTORM_DFF")),
                "dsp": u.get("MULT18X18D", u.get("ICESTORM_DSP", 0)), "bram": u.get("DP16KD", u.get("ICESTORM_RAM", 0)),
                "fmax_mhz": r["fmax_mhz"], "fpga": r["target"], "cycles_per_step": r["cycles_per_step"],
                "energy_uj": e.per_inference_uj[1], "hardware_from": "synth"}
    need = estimate_network(net, args.lanes).need(args.target)
    fitting = [d for d in synth.DEVICES if d["family"] == args.target
               and all(need[k] <= d[k] for k in ("lut", "dsp", "bram"))]
    device = (fitting or [d for d in synth.DEVICES if d["family"] == args.target][-1:])[0]["name"]
    e = energy.for_design(net, act, args.lanes, None, args.target, device, args.fmax)
    return {"lut4": round(need["lut"]), "ff": None, "dsp": need["dsp"], "bram": need["bram"], "fmax_mhz": None,
            "fpga": device, "cycles_per_step": e.cycles, "energy_uj": e.per_inference_uj[1],
            "hardware_from": f"estimate (energy at {args.fmax:g} MHz)"}


# --------------------------------------------------------------------------- summary
def summarize(kind: str, runs: list[dict], args) -> dict:
    from ..artifact import HARDWARE_NEURONS  # read now: the kinds the accelerator implements grow

    diverged = [r for r in runs if "diverged" in r]
    runs = [r for r in runs if "diverged" not in r]
    if not runs:
        return {"neuron": kind, "runs": 0, "diverged": f"all {len(diverged)} seeds diverged ({diverged[0]['diverged']})"}
    s = {"neuron": kind, "runs": len(runs), "params": runs[0]["params"],
         "best_epoch": float(np.median([r["best_epoch"] for r in runs]))}
    for key in ("float_acc", "int_acc"):
        vals = [r[key] for r in runs if r.get(key) is not None]
        if vals:
            s.update({key: float(np.median(vals)), f"{key}_min": min(vals), f"{key}_max": max(vals)})
    for key in ("float_sops", "int_sops"):
        vals = [r[key] for r in runs if r.get(key) is not None]
        if vals:
            s[key] = float(np.median(vals))
    if diverged:
        s["diverged"] = (f"{len(diverged)} of {len(diverged) + len(runs)} seeds diverged (seed "
                         f"{', '.join(str(r['seed']) for r in diverged)}: {diverged[0]['diverged']})")
    if "int_reason" in runs[0]:
        s["int_reason"] = runs[0]["int_reason"]
        s["hw_reason"] = "no integer network"
    elif kind not in HARDWARE_NEURONS:
        s["hw_reason"] = f"the accelerator implements {', '.join(HARDWARE_NEURONS)}"
    else:
        median_run = sorted(runs, key=lambda r: (r["int_acc"], r["seed"]))[(len(runs) - 1) // 2]
        # from the run root, not the path recorded: the runs may have moved
        s.update(hardware(run_path(args.run_root, args.task, kind, median_run["seed"]) / "int.npz", args))
        s["hardware_from"] += f", seed {median_run['seed']}"
    return s


def _range(s: dict, key: str) -> str:
    if s.get(key) is None:
        return "—"
    if s["runs"] == 1:
        return f"{s[key]:.2f}"
    return f"{s[key]:.2f} [{s[key + '_min']:.2f}–{s[key + '_max']:.2f}]"


def _num(value, fmt: str = "{:,.0f}") -> str:
    return "—" if value is None else fmt.format(value)


def markdown(summary: list[dict], title: str, command: str, png: str) -> str:
    head = ("| neuron | float acc % | 8-bit int acc % | SOPs/seq float | SOPs/seq int | params | LUT4 | FF | DSP | "
            "BRAM | Fmax MHz | cycles/step | energy µJ/seq | notes |")
    lines = [f"# {title}", "", f"    {command}", "", f"![comparison]({png})", "", head,
             "|" + "---|" * (head.count("|") - 1)]
    for s in summary:
        notes = "; ".join(x for x in (s.get("diverged"), s.get("int_reason"), s.get("hw_reason") if "int_reason" not in s else None,
                                      s.get("hardware_from")) if x)
        lines.append(f"| {s['neuron']} | {_range(s, 'float_acc')} | {_range(s, 'int_acc')} | {_num(s.get('float_sops'))} | "
                     f"{_num(s.get('int_sops'))} | {_num(s.get('params'))} | {_num(s.get('lut4'))} | {_num(s.get('ff'))} | "
                     f"{_num(s.get('dsp'))} | {_num(s.get('bram'))} | {_num(s.get('fmax_mhz'), '{:.1f}')} | "
                     f"{_num(s.get('cycles_per_step'), '{:.1f}')} | {_num(s.get('energy_uj'), '{:.2f}')} | {notes} |")
    return "\n".join(lines) + "\n"


def plot(summary: list[dict], rows: list[dict], path: Path, title: str) -> None:
    plt = pyplot()
    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(15, 4.2))
    kinds = [s["neuron"] for s in summary]
    for i, kind in enumerate(kinds):
        curves = [r["val_acc"] for r in rows if r["neuron"] == kind and "val_acc" in r]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        ax.plot(range(1, n + 1), np.median([c[:n] for c in curves], 0), "o-" if n < 30 else "-", color=f"C{i}",
                label=kind, ms=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy % (median over seeds)")
    ax.set_title("learning speed", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    x = np.arange(len(kinds))
    for key, dx, marker, label in (("float_acc", -0.12, "o", "float"), ("int_acc", 0.12, "s", "8-bit integer")):
        have = [(i, s) for i, s in enumerate(summary) if s.get(key) is not None]
        if have:
            mid = np.array([s[key] for _, s in have])
            err = np.array([[s[key] - s[key + "_min"], s[key + "_max"] - s[key]] for _, s in have]).T
            bx.errorbar([i + dx for i, _ in have], mid, yerr=err, fmt=marker, capsize=3, label=label)
    bx.set_xticks(x, kinds, rotation=30, ha="right", fontsize=8)
    bx.set_ylabel("test accuracy % (median, min-max)")
    bx.set_title("accuracy", fontsize=9)
    bx.grid(alpha=0.3)
    bx.legend(fontsize=7)
    cx.bar(x, [s.get("float_sops", 0) for s in summary], color=[f"C{i}" for i in range(len(kinds))])
    cx.set_xticks(x, kinds, rotation=30, ha="right", fontsize=8)
    cx.set_ylabel("hidden spikes per test sequence (float, median)")
    for i, s in enumerate(summary):
        cx.annotate(_num(s.get("params")) + " par.", (i, s.get("float_sops", 0)), ha="center", va="bottom", fontsize=6)
    cx.set_title("SOPs and parameters", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def command_line(neurons: list[str], seeds: int, proto: Protocol, args) -> str:
    """The command that reproduces this protocol, every setting spelled out (presets may change)."""
    opts = {"--task": proto.task, "--neurons": " ".join(neurons), "--seeds": seeds, "--epochs": proto.epochs,
            "--qat-epochs": proto.qat_epochs, "--train-limit": proto.train_limit, "--eval-limit": proto.eval_limit,
            "--target": args.target, "--lanes": args.lanes, "--fmax": None if args.synth else args.fmax}
    return ("python -m brf_hw.analyze compare " + " ".join(f"{k} {v}" for k, v in opts.items() if v is not None)
            + (" --synth" if args.synth else ""))


def run(args) -> None:
    neurons, seeds, proto = resolve(args)
    root = Path(args.run_root)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for kind in neurons:
        for seed in range(seeds):
            rows.append(cached_or_train(kind, seed, proto, root, args.data_dir, args.device))
            r = rows[-1]
            if "diverged" in r:
                print(f"{kind} seed {seed}: diverged ({r['diverged']})", flush=True)
                continue
            integer = f", integer {r['int_acc']:.2f}%" if r.get("int_acc") is not None else ""
            print(f"{kind} seed {seed}: float {r['float_acc']:.2f}%{integer}, {r['float_sops']:.0f} SOPs/seq "
                  f"({r['seconds']:.0f} s)", flush=True)
    summary = [summarize(kind, [r for r in rows if r["neuron"] == kind], args) for kind in neurons]
    epochs = next((r["epochs"] for r in rows if "epochs" in r), proto.epochs)
    paper = PRESETS["full"]
    full = (seeds >= paper["seeds"] and proto.epochs is None and proto.qat_epochs >= paper["qat_epochs"]
            and proto.train_limit is None and proto.eval_limit is None)
    title = (f"{proto.task}: {', '.join(neurons)}; {seeds} seeds, {epochs} epochs"
             + (f" x {proto.train_limit} sequences" if proto.train_limit else "")
             + f", QAT {proto.qat_epochs} epochs" + ("" if full else " (REDUCED protocol)"))
    name = f"compare-{proto.task}"
    table = markdown(summary, title, command_line(neurons, seeds, proto, args), f"{name}.png")
    out_path(args.out, f"{name}.md").write_text(table)
    write_csv(out_path(args.out, f"{name}.csv"), summary, CSV_FIELDS)
    plot(summary, rows, out_path(args.out, f"{name}.png"), title)
    print(table)
    print(f"wrote {args.out}/{name}.md, {name}.csv, {name}.png")
