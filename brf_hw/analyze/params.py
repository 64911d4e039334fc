"""omega / b_offset of the hidden neurons, initial against trained, one panel per checkpoint
(the paper's parameter analysis, Figure 5).

The initial values are not stored in a checkpoint; they are rebuilt exactly: the trainer builds
its model with ``build_model(config, seed)`` (initialisation in a forked, seeded RNG), so the same
call on the checkpoint's model config and seed gives the same initial network. The rebuilt
model's recurrent mask (drawn in the same RNG stream, never trained) must equal the stored one:
that is checked, so a checkpoint from other code fails loudly instead of plotting wrong initials.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .common import DEFAULT_OUT, UserError, load_checkpoint, out_path, pyplot, save_png, write_csv


def add_arguments(p) -> None:
    p.add_argument("checkpoints", nargs="+", help="training checkpoints (best.pt / last.pt), e.g. one per task")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--name", default="params")


def initial_and_trained(path) -> dict:
    """{'task', 'label', 'omega0', 'b0', 'omega', 'b', 'init'} for one checkpoint."""
    from ..model import ModelConfig, build_model

    model, ckpt = load_checkpoint(path)
    cfg = model.config.neuron
    if cfg.kind in ("alif", "lif"):
        raise UserError(f"{path}: {cfg.kind} neurons have no omega / b_offset")
    if ckpt.get("format") != "brf_hw.checkpoint/1":
        raise UserError(f"{path}: a checkpoint of the paper's code does not hold what rebuilds its initial values "
                        "(the config and seed of brf-hw's trainer)")
    train = ckpt["train_config"]
    init = build_model(ModelConfig.from_dict(ckpt["model_config"]), seed=int(train["seed"]), kernel="reference")
    if not torch.equal(init.recurrent_mask, model.recurrent_mask.cpu()):
        raise UserError(f"{path}: rebuilding the initial network from its config and seed {train['seed']} does not "
                        f"reproduce its recurrent mask; it was not initialised by build_model(config, seed)")
    return {"task": train["task"], "neuron": cfg.kind, "label": "/".join(Path(path).parts[-3:]),
            "epoch": ckpt.get("epoch"), "init_omega": cfg.omega_init, "init_b_offset": cfg.b_offset_init,
            "omega0": init.hidden.omega.detach().double().numpy(),
            "b0": init.hidden.b_offset.detach().double().numpy(),
            "omega": model.hidden.omega.detach().double().numpy(),
            "b": model.hidden.b_offset.detach().double().numpy()}


def plot(runs: list[dict], path: Path) -> None:
    plt = pyplot()
    n = len(runs)
    fig, axes = plt.subplots(2, n, figsize=(5 * n, 6.5), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1.3]})
    for k, r in enumerate(runs):
        ax, hx = axes[0][k], axes[1][k]
        for w0, b0, w, b in zip(r["omega0"], r["b0"], r["omega"], r["b"]):
            ax.plot([w0, w], [b0, b], color="gray", lw=0.4, alpha=0.5)
        ax.scatter(r["omega0"], r["b0"], s=12, color="gray", label=f"initial: U{tuple(r['init_omega'])}, "
                                                                     f"U{tuple(r['init_b_offset'])}")
        ax.scatter(r["omega"], r["b"], s=14, color="C0", label=f"trained (epoch {r['epoch']})")
        ax.set_title(f"{r['task']} {r['neuron']}: {r['label']}", fontsize=8)
        ax.set_xlabel("omega (rad/s)")
        ax.set_ylabel("b_offset")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        bins = np.linspace(0.0, max(r["omega"].max(), r["omega0"].max()) * 1.02 + 1e-9, 30)
        hx.hist(r["omega0"], bins=bins, color="gray", alpha=0.6, label="initial")
        hx.hist(r["omega"], bins=bins, color="C0", alpha=0.6, label="trained")
        hx.set_xlabel("omega (rad/s)")
        hx.set_ylabel("neurons")
        hx.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def run(args) -> None:
    runs = [initial_and_trained(p) for p in args.checkpoints]
    rows = [{"task": r["task"], "checkpoint": r["label"], "neuron": i, "omega_init": r["omega0"][i],
             "b_offset_init": r["b0"][i], "omega": r["omega"][i], "b_offset": r["b"][i]}
            for r in runs for i in range(len(r["omega"]))]
    write_csv(out_path(args.out, f"{args.name}.csv"), rows)
    plot(runs, out_path(args.out, f"{args.name}.png"))
    for r in runs:
        moved = np.abs(r["omega"] - r["omega0"])
        print(f"{r['label']} ({r['task']}): omega {r['omega0'].min():.2f}..{r['omega0'].max():.2f} -> "
              f"{r['omega'].min():.2f}..{r['omega'].max():.2f} (median shift {np.median(moved):.2f} rad/s), "
              f"b_offset {r['b0'].min():.2f}..{r['b0'].max():.2f} -> {r['b'].min():.2f}..{r['b'].max():.2f}")
    print(f"wrote {args.out}/{args.name}.png, {args.name}.csv")
