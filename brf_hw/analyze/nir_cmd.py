"""Export a BRF network to a NIR graph (``brf_hw.nir_io``), then read the file back and check that
the imported network gives identical outputs and spikes on real ECG test sequences.

A checkpoint exports its float network; an integer artifact the float network it stands for
(every integer dequantized). NIR describes float dynamics: the fixed-point formats are not in it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..cli_util import NON_NEGATIVE_INT
from .common import UserError, float_model_from_artifact, load_checkpoint, load_int_artifact


def add_arguments(p) -> None:
    p.add_argument("network", help="BRF training checkpoint (.pt) or integer artifact (.npz)")
    p.add_argument("--out", required=True, help="the .nir file to write")
    p.add_argument("--check", type=NON_NEGATIVE_INT, default=16, metavar="N",
                   help="read the file back and compare on the first N ECG test sequences (0: skip; default 16)")
    p.add_argument("--data-dir")


def load_model(path, resonator: str = "brf"):
    if str(path).endswith(".npz"):
        return float_model_from_artifact(*load_int_artifact(path))
    model, _ = load_checkpoint(path, resonator)
    if model.config.neuron.kind != "brf":
        raise UserError(f"{path} holds {model.config.neuron.kind} neurons; NIR export covers BRF networks")
    model.fixed = None  # a QAT checkpoint: export the float network behind it
    return model


def check(model, path: Path, n: int, data_dir=None) -> str:
    from .. import nir_io
    from ..data import load_ecg

    back = nir_io.read(path, kernel="reference")
    model.kernel = "reference"  # both through the plain step loop: the comparison is of the networks
    if model.config.inputs != 4:
        x = torch.randint(0, 2, (200, n, model.config.inputs)).float()
        what = f"{n} random spike sequences"
    else:
        x = load_ecg(data_dir)["test"].inputs[:n].transpose(0, 1)
        what = f"the first {n} ECG test sequences"
    with torch.no_grad():
        a, b = model(x), back(x)
    if not (torch.equal(a.outputs, b.outputs) and torch.equal(a.spikes_per_step, b.spikes_per_step)):
        diff = float((a.outputs - b.outputs).abs().max())
        raise RuntimeError(f"{path}: the imported network differs on {what} (max |output difference| {diff:g})")
    return f"read back: identical outputs and spikes on {what} ({int(a.spikes_per_step.sum())} spikes)"


def run(args) -> None:
    from .. import nir_io

    model = load_model(args.network, args.paper_neuron)
    out = nir_io.write(nir_io.to_nir(model, source=str(args.network)), args.out)
    cfg = model.config
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB): input {cfg.inputs} -> Linear -> BRF {cfg.hidden} "
          f"(custom node, recurrent Linear) -> Linear -> LI {cfg.outputs} -> output")
    if args.check > 0:
        print(check(model, out, args.check, args.data_dir))
