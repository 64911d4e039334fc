"""Spike raster and membrane traces of a network on one ECG sequence, float against integer.

Both sides are one ``RSNN``: forward with ``model.fixed = None`` is the float network, with
``model.fixed = spec`` the integer one (the QAT forward, the numba integer kernel running
``fixed.arith``). From an integer artifact (default: the shipped ``ecg_brf_w8.npz``) the model is
the float network the artifact stands for (every integer dequantized; ``to_int_network`` must
give the artifact back bit for bit, which is checked), so "float" shows what the same
parameters do without the fixed-point arithmetic (run by the reference step loop). From a checkpoint (``--checkpoint``), its
float network, and in integers its own QAT formats or, for a float checkpoint, the default 8-bit
formats (post-training rounding). The integer spikes are checked against the golden model.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..cli_util import NON_NEGATIVE_INT
from .common import (DEFAULT_OUT, UserError, float_model_from_artifact, load_checkpoint, load_int_artifact,
                     out_path, pyplot, save_png, write_csv)


def add_arguments(p) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--artifact", help="integer artifact (.npz; default: the shipped brf_hw/artifacts/ecg_brf_w8.npz)")
    src.add_argument("--checkpoint", help="a BRF training checkpoint instead (float, or QAT with its formats)")
    p.add_argument("--sequence", type=NON_NEGATIVE_INT, default=0, help="index into the split (default 0)")
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("--trace-neurons", nargs="+", type=NON_NEGATIVE_INT, help="neurons whose u to plot (default: the 3 most active)")
    p.add_argument("--steps", nargs=2, type=NON_NEGATIVE_INT, metavar=("FROM", "TO"), help="plot only these steps")
    p.add_argument("--data-dir")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--name", default="raster")


class RasterRun(NamedTuple):
    x: np.ndarray  # [T, I] input spikes
    labels: np.ndarray  # [T]
    annotated: np.ndarray  # [T]
    float_z: np.ndarray  # [T, H]
    int_z: np.ndarray  # [T, H]
    float_u: np.ndarray  # [T, H]
    int_u: np.ndarray  # [T, H] dequantized
    float_pred: np.ndarray  # [T]
    int_pred: np.ndarray  # [T]
    net: object  # IntNetwork of the integer side


def load_network(args):
    """(model, spec, IntNetwork, description)."""
    from ..fixed.qat import to_int_network
    from ..fixed.spec import FixedSpec, spec_for_model
    from ..artifact import shipped_artifact

    if args.checkpoint:
        model, ckpt = load_checkpoint(args.checkpoint, args.paper_neuron)
        if model.config.neuron.kind != "brf":
            raise UserError(f"{args.checkpoint} holds {model.config.neuron.kind} neurons; the integer network is BRF only")
        fixed = ckpt["train_config"].get("fixed")
        spec = FixedSpec.from_dict(fixed) if fixed else spec_for_model(model)
        model.fixed = None
        how = "QAT formats" if fixed else "post-training rounding, 8-bit"
        return model, spec, to_int_network(model, spec), f"{args.checkpoint} ({how})"
    path = args.artifact or shipped_artifact()
    net, manifest = load_int_artifact(path)
    if manifest.get("task") != "ecg":
        raise UserError(f"{path} is a {manifest.get('task')!r} network; the raster runs ECG sequences")
    model = float_model_from_artifact(net, manifest)
    back = to_int_network(model, net.spec)
    for name in ("w_in", "w_rec", "w_out", "d", "c", "alpha"):
        if not np.array_equal(getattr(back, name), getattr(net, name)):
            raise RuntimeError(f"{path}: the dequantized float network does not round back to the artifact's {name}")
    return model, net.spec, net, str(path)


def run_sequence(model, spec, net, x: torch.Tensor) -> tuple:
    """x [T, 1, I] -> float and integer (z, u, predictions), each [T, H] / [T]."""
    with torch.no_grad():
        model.fixed = None
        model.kernel = "reference"  # float side: the plain step loop, the ground truth of the fused kernels
        f = model(x.to(model.synapses.weight.dtype), record=True)
        model.fixed = spec
        i = model(x, record=True)
        model.fixed = None
    take = lambda t: t[:, 0].detach().double().numpy()  # noqa: E731
    return (take(f.traces["z"]), take(i.traces["z"]), take(f.traces["u"]), take(i.traces["u"]),
            f.outputs[:, 0].argmax(-1).numpy(), i.outputs[:, 0].argmax(-1).numpy())


def raster(args) -> RasterRun:
    from ..data import load_ecg

    model, spec, net, _ = load_network(args)
    split = load_ecg(args.data_dir)[args.split]  # missing or corrupt files: a DataError (a UserError)
    if not 0 <= args.sequence < len(split):
        raise UserError(f"--sequence {args.sequence}: the {args.split} split has sequences 0..{len(split) - 1}")
    x = split.inputs[args.sequence : args.sequence + 1].transpose(0, 1)  # [T, 1, I]
    fz, iz, fu, iu, fp, ip = run_sequence(model, spec, net, x)
    return RasterRun(x[:, 0].numpy(), split.labels[args.sequence].numpy(), split.annotated[args.sequence].numpy(),
                     fz, iz, fu, iu, fp, ip, net)


def plot(r: RasterRun, neurons: list[int], window: tuple[int, int], title: str, path) -> None:
    from ..data.ecg import CLASSES

    plt = pyplot()
    a, b = window
    t = np.arange(a, b)
    fig, axes = plt.subplots(4, 1, figsize=(11, 9), sharex=True,
                             gridspec_kw={"height_ratios": [0.8, 2.2, 2.2, 1.0]})
    ax = axes[0]
    for ch in range(r.x.shape[1]):
        s = np.flatnonzero(r.x[a:b, ch]) + a
        ax.vlines(s, ch + 0.1, ch + 0.9, color="k", lw=0.8)
    ax.set_yticks(np.arange(r.x.shape[1]) + 0.5, [f"in {c}" for c in range(r.x.shape[1])], fontsize=7)
    ax.set_title(title, fontsize=9)
    ax = axes[1]
    for name, z, style, color in (("float", r.float_z, "|", "C0"), ("integer", r.int_z, "_", "C3")):
        tt, hh = np.nonzero(z[a:b])
        ax.scatter(tt + a, hh, marker=style, s=14, color=color, lw=0.8,
                   label=f"{name}: {int(z[a:b].sum())} spikes")
    ax.set_ylabel("hidden neuron")
    ax.legend(fontsize=7, loc="upper right")
    ax = axes[2]
    for k, h in enumerate(neurons):
        ax.plot(t, r.float_u[a:b, h] + 0.0, color=f"C{k}", lw=0.8, label=f"neuron {h} float")
        ax.plot(t, r.int_u[a:b, h], color=f"C{k}", lw=0.8, ls="--", label=f"neuron {h} integer")
    ax.axhline(1.0, color="gray", lw=0.6, ls=":")
    ax.set_ylabel("u")
    ax.legend(fontsize=6, ncol=3, loc="upper right")
    ax = axes[3]
    ann = r.annotated[a:b]
    ax.plot(t[ann], r.labels[a:b][ann], "k.", ms=2, label="label")
    ax.plot(t, r.float_pred[a:b] + 0.15, color="C0", lw=0.8, label="float prediction")
    ax.plot(t, r.int_pred[a:b] - 0.15, color="C3", lw=0.8, label="integer prediction")
    ax.set_yticks(range(len(CLASSES)), CLASSES, fontsize=7)
    ax.set_xlabel("step")
    ax.legend(fontsize=6, ncol=3, loc="upper right")
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def run(args) -> None:
    from .. import golden

    r = raster(args)
    gold = golden.run(r.net, r.x[:, None, :])
    if not np.array_equal(gold.spikes[:, 0], r.int_z.astype(np.int64)):
        raise RuntimeError("the integer raster and the golden model disagree")
    steps, hidden = r.float_z.shape
    a, b = args.steps or (0, steps)
    if not 0 <= a < b <= steps:
        raise UserError(f"--steps {a} {b}: the sequence has steps 0..{steps}")
    neurons = args.trace_neurons or [int(h) for h in np.argsort(-r.int_z.sum(0), kind="stable")[:3]]
    if any(not 0 <= h < hidden for h in neurons):
        raise UserError(f"--trace-neurons: the network has neurons 0..{hidden - 1}")
    both = np.nonzero(r.float_z[a:b] + r.int_z[a:b])  # the CSVs cover the plotted window
    spikes = [{"step": s + a, "neuron": h, "float": int(r.float_z[s + a, h]), "integer": int(r.int_z[s + a, h])}
              for s, h in zip(*both)]
    write_csv(out_path(args.out, f"{args.name}_spikes.csv"), spikes, ["step", "neuron", "float", "integer"])
    traces = [{"step": s, **{f"u_float_{h}": r.float_u[s, h] for h in neurons},
               **{f"u_int_{h}": r.int_u[s, h] for h in neurons},
               "label": int(r.labels[s]), "annotated": int(r.annotated[s]),
               "pred_float": int(r.float_pred[s]), "pred_int": int(r.int_pred[s])} for s in range(a, b)]
    write_csv(out_path(args.out, f"{args.name}_traces.csv"), traces)
    same = float((r.float_z == r.int_z).all(1).mean())
    acc_f = 100.0 * float((r.float_pred == r.labels).mean())
    acc_i = 100.0 * float((r.int_pred == r.labels).mean())
    title = (f"ECG {args.split} sequence {args.sequence}: float {int(r.float_z.sum())} spikes, {acc_f:.1f} % steps "
             f"right; integer {int(r.int_z.sum())} spikes, {acc_i:.1f} %")
    plot(r, neurons, (a, b), title, out_path(args.out, f"{args.name}.png"))
    print(title)
    print(f"steps with identical float and integer spikes: {100 * same:.1f} %; first difference at step "
          f"{int(np.argmax(~(r.float_z == r.int_z).all(1))) if same < 1 else 'none'}; "
          f"integer spikes equal the golden model's ({int(r.int_z.sum())})")
    print(f"wrote {args.out}/{args.name}.png, {args.name}_spikes.csv, {args.name}_traces.csv")
