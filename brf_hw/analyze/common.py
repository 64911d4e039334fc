"""Shared plumbing of the analysis commands: user errors, output files, loading a network from a
checkpoint or an integer artifact, and float <-> integer parameter conversion."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..cli_util import UserError  # noqa: F401  (the project's one user-error type: one line, exit 2)

DEFAULT_OUT = Path("docs/analysis")


def pyplot():
    """matplotlib with the Agg backend: the commands run on headless machines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path, dpi: int = 90) -> Path:
    """Save a figure as a palette PNG (plots have few colours; 3-4x smaller files in docs/)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    fig.clf()
    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def out_path(out_dir: str | Path, name: str) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out / name


def write_csv(path: Path, rows: list[dict], fields: list[str] | None = None) -> Path:
    if fields is None:
        fields = list(rows[0]) if rows else []
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in fields})
    return path


def _fmt(value):
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return "" if value is None else value


def require_file(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {p} does not exist")
    return p


# --------------------------------------------------------------------------- networks
class NeuronParams(NamedTuple):
    """Per hidden neuron, in float units: what the boundary and parameter plots show."""

    omega: np.ndarray
    b_offset: np.ndarray
    dt: float
    kind: str
    source: str  # "checkpoint" or "artifact"


def load_checkpoint(path: str | Path, resonator: str = "brf"):
    """(model, checkpoint dict) from a training checkpoint, brf-hw's or the paper code's (whose
    RF/BRF/BHRF cell ``resonator`` names: ``--paper-neuron``); a bad file is a CheckpointError (a
    UserError) naming the problem."""
    from ..train import load_checkpoint_model

    return load_checkpoint_model(require_file(path, "checkpoint"), resonator=resonator)


def load_int_artifact(path: str | Path):
    """(IntNetwork, manifest) from an integer artifact; a bad file is an ArtifactError (a UserError)."""
    from ..artifact import load_artifact

    return load_artifact(require_file(path, "artifact"))


def artifact_neuron_params(net, manifest) -> NeuronParams:
    """omega and b_offset the integer network realises: c = dt*omega and d = 1 + dt*(p(omega) -
    b_offset) solved back for them (dequantized, so they sit on the coefficient grid)."""
    import torch

    from ..neurons.functional import p_omega

    dt = float(manifest["float_constants"]["dt"])
    scale = net.spec.coef.scale
    omega = net.c / scale / dt
    p = p_omega(torch.from_numpy(omega), dt).numpy()
    b_offset = p - (net.d / scale - 1.0) / dt
    return NeuronParams(omega, b_offset, dt, "brf", "artifact")


def model_neuron_params(model) -> NeuronParams:
    cfg = model.config.neuron
    if cfg.kind in ("alif", "lif"):
        raise UserError(f"this analysis needs a resonator network (brf, rf, bhrf); the checkpoint holds {cfg.kind} neurons")
    h = model.hidden
    return NeuronParams(h.omega.detach().double().numpy(), h.b_offset.detach().double().numpy(),
                        cfg.dt, cfg.kind, "checkpoint")


def load_neuron_params(path: str | Path, resonator: str = "brf") -> NeuronParams:
    """A checkpoint (.pt) or an integer artifact (.npz): the hidden neurons' omega and b_offset."""
    p = require_file(path, "network file")
    if p.suffix == ".npz":
        return artifact_neuron_params(*load_int_artifact(p))
    model, _ = load_checkpoint(p, resonator)
    return model_neuron_params(model)


def float_model_from_artifact(net, manifest):
    """The float RSNN an integer artifact stands for: every integer dequantized back into the
    parameter it was rounded from (dt*W per input unit, 1 + dt*(p(omega) - b_offset), dt*omega, (1-alpha)*W_out,
    alpha). ``fixed.qat.to_int_network(model, net.spec)`` gives the artifact back; callers that
    depend on it check that it does."""
    import torch

    from ..model import ModelConfig, build_model
    from ..neurons import NeuronConfig

    params = artifact_neuron_params(net, manifest)
    consts = manifest["float_constants"]
    dt = float(consts["dt"])
    n_in, n_hid, n_out = net.shape
    spec = net.spec
    cfg = ModelConfig(n_in, n_hid, n_out, neuron=NeuronConfig(kind="brf", dt=dt, theta=float(consts["theta"]),
                                                              gamma=float(consts["gamma"])))
    model = build_model(cfg, seed=0)
    alpha = spec.coef.to_float(net.alpha)
    with torch.no_grad():
        # w_in counts per input unit (1/255 for pixels), w_rec per spike
        w = np.concatenate([spec.weight.to_float(net.w_in) / spec.input.unit, spec.rec_weight.to_float(net.w_rec)], 1) / dt
        model.synapses.weight.copy_(torch.from_numpy(w))
        model.recurrent_mask.fill_(1.0)
        model.hidden.omega_param.copy_(torch.from_numpy(params.omega))
        model.hidden.b_offset_param.copy_(torch.from_numpy(params.b_offset))
        model.output.tau_o.copy_(torch.from_numpy(-1.0 / np.log(alpha)))
        alpha_f = model.output.alpha.double().numpy()  # what the float model really computes
        model.readout.weight.copy_(torch.from_numpy(spec.out_weight.to_float(net.w_out) / (1.0 - alpha_f)[:, None]))
    model.validate()
    return model
