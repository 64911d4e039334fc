"""The whole fixed-point flow behind ``training/qat.py``: float training (or --init), integer
formats, quantization-aware fine-tuning, integer evaluation, export, and a golden re-check of the
exported file so the accuracy printed is the hardware's."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import evaluate, golden
from ..artifact import load_artifact, save_artifact
from ..cli_util import NON_NEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, WORD_BITS, UserError
from ..fixed import kinds
from ..fixed.qat import to_int_network
from ..fixed.spec import FixedSpec, IntNetwork, Readout, spec_for_model
from ..model import RSNN
from ..tasks import TASKS, TaskData, get_task
from .cli import add_train_arguments, apply_threads, config_from_args
from .trainer import TrainConfig, Trainer, TrainingDiverged, load_checkpoint_model, load_init_model


def add_qat_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("fixed point")
    g.add_argument("--qat-epochs", type=POSITIVE_INT, default=30, help="quantization-aware fine-tuning epochs")
    g.add_argument("--qat-lr", type=POSITIVE_FLOAT, default=0.01, help="QAT learning rate (linear decay to 0)")
    g.add_argument("--weight-bits", type=WORD_BITS, default=8, help="input and recurrent weights")
    g.add_argument("--weight-frac", type=int, help="input weight fraction bits (default: least quantization error, "
                                                  "clipping included)")
    g.add_argument("--rec-weight-bits", type=WORD_BITS, help="recurrent weights (default: --weight-bits)")
    g.add_argument("--rec-weight-frac", type=int, help="recurrent weight fraction bits (default: least error)")
    g.add_argument("--out-weight-bits", type=WORD_BITS, help="output weights (default: --weight-bits)")
    g.add_argument("--state-bits", type=WORD_BITS, default=16, help="u, v, q")
    g.add_argument("--state-frac", type=NON_NEGATIVE_INT, help="fraction bits of the neuron state (default: --state-bits - 6, Q5.10 at 16 bits; "
                                                             "ALIF, LIF: --state-bits - 4, Q3.12)")
    g.add_argument("--coef-bits", type=WORD_BITS, default=16, help="d, dt*omega, dt, gamma, alpha (1 integer bit)")
    g.add_argument("--output-bits", type=WORD_BITS, default=16, help="LI potentials (7 integer bits)")
    g.add_argument("--artifact", help="where to write the integer network (default RUN_DIR/brf_TASK.npz)")


@dataclass
class QATResult:
    """What quantization-aware training produced: the integer network (as the hardware runs it),
    the QAT model it came from, its formats and readout, its metrics (the golden model's, on the
    task's test and validation splits) and where the artifact was written."""

    network: IntNetwork
    model: RSNN  # the best-validation QAT model (its forward is the integer network)
    spec: FixedSpec
    readout: Readout
    metrics: dict  # test_acc, test_acc_ci95, test_sops, val_acc, float_test_acc, ptq_test_acc, ...
    artifact: Path
    run_dir: Path  # the QAT checkpoints (best.pt, last.pt, metrics.csv)


def quantize_model(float_model: RSNN, base: TrainConfig, qat_dir: str | Path, artifact: str | Path, *,
                   data: TaskData | None = None, epochs: int = 30, lr: float = 0.01, weight_bits: int = 8,
                   weight_frac: int | None = None, rec_weight_bits: int | None = None,
                   rec_weight_frac: int | None = None, out_weight_bits: int | None = None, state_bits: int = 16,
                   state_frac: int | None = None, coef_bits: int = 16, output_bits: int = 16,
                   resume: bool = False, log: Callable[[str], None] | None = None) -> QATResult:
    """A trained float BRF model -> integer formats -> quantization-aware fine-tuning (``epochs`` at
    ``lr``, in ``qat_dir``; ``base`` gives the task, batch size, limits, seed) -> golden-model
    evaluation -> the artifact at ``artifact``, re-loaded and checked bit for bit. ``log`` gets the
    progress lines (the CLI prints them; the Python API stays quiet)."""
    log = log or (lambda line: None)
    task = get_task(base.task)
    spec = spec_for_model(float_model, weight_bits, out_weight_bits, state_bits, coef_bits, output_bits,
                          weight_frac, rec_weight_bits=rec_weight_bits, rec_weight_frac=rec_weight_frac,
                          state_frac=state_frac, inputs=task.input_format())
    readout = task.readout(spec.output.bits)
    log(f"formats: {spec.describe()}; readout {readout.rule}"
        + (f" (running sum {readout.sum_bits} bits)" if readout.keeps_sums else ""))

    qat_dir = Path(qat_dir)
    qat_cfg = dataclasses.replace(base, run_dir=str(qat_dir), epochs=epochs, lr=lr, fixed=spec.to_dict(),
                                  device="cpu")
    qat = Trainer(qat_cfg, data, init_state=float_model.state_dict())
    limit = base.eval_limit  # None: the whole split, which is what the hardware's accuracy means
    float_test = qat.evaluate("test", float_model)
    ptq = evaluate.evaluate_task(to_int_network(float_model, spec, readout), qat.data, "test", limit).metrics
    log(f"float model: test {float_test['acc']:.2f}%, SOPs {float_test['sops']:.0f}; "
        f"post-training rounding: {ptq['acc']:.2f}%, SOPs {ptq['sops']:.0f}")
    if resume and (qat_dir / "last.pt").exists():
        qat.resume()
    try:
        qat.fit()
    except TrainingDiverged as exc:
        raise SystemExit(f"quantization-aware training stopped: {exc}")
    best, ckpt = load_checkpoint_model(qat_dir / "best.pt")

    net = to_int_network(best, spec, readout)
    test = evaluate.evaluate_task(net, qat.data, "test", limit, progress=base.progress and sys.stderr.isatty())
    val = evaluate.evaluate_task(net, qat.data, "val", limit).metrics
    cfg = best.config.neuron
    m = test.metrics
    metrics = {"test_acc": m["acc"], "test_acc_ci95": [m["acc_ci_low"], m["acc_ci_high"]],
               "test_sequences": int(test.predictions.shape[-1]),
               **({"test_acc_annotated": m["acc_annotated"]} if "acc_annotated" in m else {}),
               "test_sops": m["sops"], "test_sops_per_step": m["sops_per_step"], "val_acc": val["acc"],
               "float_test_acc": float_test["acc"], "ptq_test_acc": ptq["acc"], "qat_best_epoch": ckpt["epoch"]}
    path = Path(artifact)
    save_artifact(path, net, task=task.name, dt=cfg.dt, theta=cfg.theta, gamma=cfg.gamma, metrics=metrics)
    check_export(path, best, qat.data, net)
    log(f"integer network (golden model, exported {path}): {task.name} test {evaluate.describe_metrics(m)} "
        f"on {metrics['test_sequences']} sequences")
    return QATResult(net, best, spec, readout, metrics, path, qat_dir)


def run_qat(args: argparse.Namespace) -> dict:
    """Float (or --init) -> QAT -> golden-model evaluation -> export -> reload re-check, for any
    task: the task says the input format and the readout (``tasks.Task``)."""
    if args.neuron not in kinds.KINDS:
        raise UserError(f"the fixed-point flow covers {', '.join(kinds.KINDS)} networks, not --neuron {args.neuron}")
    apply_threads(args)
    base = config_from_args(args)
    task = TASKS[base.task]
    root = Path(base.run_dir)
    float_cfg = dataclasses.replace(base, run_dir=str(root / "float"))
    if args.init:
        float_model = load_init_model(args.init, task, args.neuron, base.kernel)
        data = None
    else:
        trainer = Trainer(float_cfg)
        data = trainer.data
        if args.resume and (root / "float" / "last.pt").exists():
            trainer.resume()
        print(f"float training: {trainer.cfg.epochs} epochs -> {trainer.run_dir}")
        try:
            trainer.fit()
        except TrainingDiverged as exc:
            raise SystemExit(f"float training stopped: {exc}")
        float_model, _ = load_checkpoint_model(root / "float" / "best.pt", kernel=base.kernel)
    result = quantize_model(
        float_model, base, root / "qat", args.artifact or root / f"brf_{args.task}.npz", data=data,
        epochs=args.qat_epochs, lr=args.qat_lr, weight_bits=args.weight_bits, weight_frac=args.weight_frac,
        rec_weight_bits=args.rec_weight_bits, rec_weight_frac=args.rec_weight_frac,
        out_weight_bits=args.out_weight_bits, state_bits=args.state_bits, state_frac=args.state_frac,
        coef_bits=args.coef_bits, output_bits=args.output_bits, resume=args.resume, log=print)
    (root / "qat_summary.json").write_text(json.dumps({"artifact": str(result.artifact), **result.metrics}, indent=2))
    return result.metrics


def check_export(path: Path, model, data, net, sequences: int = 64) -> None:
    """The exported file must hold exactly the network that was evaluated (every array, constant,
    format and the readout: the golden model is deterministic, so it reproduces the evaluation),
    and the QAT model's own integer forward (what training optimised) must equal the golden model
    of the reloaded file on the first ``sequences`` test sequences."""
    reloaded, _ = load_artifact(path)
    for field in dataclasses.fields(net):
        a, b = getattr(reloaded, field.name), getattr(net, field.name)
        if not (np.array_equal(a, b) if isinstance(b, np.ndarray) else a == b):
            raise RuntimeError(f"{path}: the reloaded artifact differs from the evaluated network in {field.name}")
    x, _, _ = data.integer_sequences("test", sequences)
    gold = golden.run(reloaded, x)
    with torch.no_grad():
        own = model(torch.from_numpy(x.astype(np.float64) * reloaded.spec.input.unit))
    if not np.array_equal(own.outputs.numpy() * reloaded.spec.output.scale, gold.outputs):
        raise RuntimeError("QAT integer forward and golden model disagree")


QAT_DESCRIPTION = """The main job: train a BRF network, make it fixed-point, export the integer artifact.

    brf-hw qat --task ecg                       # float (paper settings) -> QAT -> export (= python training/qat.py)
    brf-hw qat --init runs/ecg-brf-seed0/float/best.pt --weight-bits 4

Float training (or --init), quantization-aware fine-tuning with straight-through estimators,
integer evaluation by the golden model (the accuracy printed is the hardware's), export of one
versioned .npz artifact.
"""


def qat_main(argv=None) -> None:
    """``brf-hw qat`` (``python training/qat.py``)."""
    parser = argparse.ArgumentParser(description=QAT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser)
    add_qat_arguments(parser)
    run_qat(parser.parse_args(argv))
