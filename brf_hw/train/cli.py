"""Command-line front end shared by the scripts in ``training/``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..cli_util import NON_NEGATIVE_FLOAT, NON_NEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, UserError, float_range
from ..neurons import NEURON_KINDS, SURROGATES
from ..tasks import TASKS
from .distributed import shutdown
from .trainer import TrainConfig, Trainer, TrainingDiverged, load_checkpoint_model, load_init_model


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training")
    g.add_argument("--task", choices=sorted(TASKS), default="ecg")
    g.add_argument("--neuron", choices=NEURON_KINDS, default="brf")
    g.add_argument("--epochs", type=POSITIVE_INT, help="default: the paper's (ecg 400, (ps)mnist 300, shd 20)")
    g.add_argument("--batch-size", type=POSITIVE_INT, help="default: the paper's (ecg 16, (ps)mnist 256, shd 32)")
    g.add_argument("--lr", type=POSITIVE_FLOAT, help="Adam learning rate, decayed linearly to 0 (default 0.1)")
    g.add_argument("--seed", type=NON_NEGATIVE_INT, default=0)
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    g.add_argument("--surrogate", choices=sorted(SURROGATES), default="double_gaussian")
    g.add_argument("--mask-prob", type=float_range(0.0, 1.0, high_open=True), default=0.0, help="fraction of recurrent weights pruned")
    g.add_argument("--grad-clip", type=POSITIVE_FLOAT, help="clip the gradient norm (off by default, as the paper)")
    g.add_argument("--kernel", choices=["auto", "fused", "reference"], default="auto",
                   help="BPTT implementation: fused whole-sequence kernel where available (auto), "
                        "insist on it (fused), or the plain autograd loop (reference)")
    g.add_argument("--tbptt", type=NON_NEGATIVE_INT, default=0, help="truncate BPTT every N steps (0: full BPTT)")
    g.add_argument("--spike-penalty", type=NON_NEGATIVE_FLOAT, default=0.0,
                   help="loss term per hidden spike of a sequence, trading accuracy for fewer SOPs (default 0)")
    g.add_argument("--train-limit", type=POSITIVE_INT, help="train on the first N sequences of each shuffled epoch")
    g.add_argument("--eval-limit", type=POSITIVE_INT, help="evaluate on the first N validation / test sequences")
    g.add_argument("--no-test-eval", action="store_true", help="skip the per-epoch test evaluation")
    g.add_argument("--run-dir", help="where checkpoints and logs go (default runs/TASK-NEURON-seedS)")
    g.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    g.add_argument("--init", help="start from this network: a checkpoint (brf-hw's own or one of the paper's code "
                                  "(brf-neurons; its RF/BRF/BHRF cell is the one --neuron names)) or a BRF integer "
                                  "artifact (.npz, dequantized)")
    g.add_argument("--data-dir", help="data directory (default: $BRF_HW_DATA or ~/.cache/brf_hw/data)")
    g.add_argument("--no-progress", action="store_true",
                   help="no tqdm progress bars (they are off anyway when stderr is not a terminal)")
    g.add_argument("--threads", type=POSITIVE_INT,
                   help="CPU threads for torch and numba (default: brf_hw.threads' choice; results do not depend on it)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        task=args.task, neuron=args.neuron, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, seed=args.seed, device=args.device, surrogate=args.surrogate,
        mask_prob=args.mask_prob, grad_clip=args.grad_clip, kernel=args.kernel, tbptt=args.tbptt,
        spike_penalty=args.spike_penalty,
        train_limit=args.train_limit,
        eval_limit=args.eval_limit, eval_test=not args.no_test_eval,
        run_dir=args.run_dir or f"runs/{args.task}-{args.neuron}-seed{args.seed}",
        data_dir=args.data_dir, progress=not args.no_progress,
    )


def apply_threads(args: argparse.Namespace) -> None:
    """Set torch's and numba's thread counts before anything is computed."""
    from ..threads import available_cpus, set_threads
    from .distributed import launched_size

    wanted = getattr(args, "threads", None)
    if wanted is None and launched_size() > 1:  # torchrun: the processes share the machine's CPUs
        wanted = max(1, available_cpus() // int(os.environ.get("LOCAL_WORLD_SIZE", launched_size())))
    used = set_threads(wanted)
    print(f"threads: {used}")


def train_float(args: argparse.Namespace) -> dict:
    """Train (or resume) a float network, then report the best-validation model on the test set."""
    apply_threads(args)
    cfg = config_from_args(args)
    init = None
    if args.init:
        if args.resume:
            raise UserError("--init starts a run and --resume continues one: give one of them")
        init = load_init_model(args.init, TASKS[cfg.task], cfg.neuron, cfg.kernel).state_dict()
    trainer = Trainer(cfg, init_state=init)
    if args.init:
        print(f"initialised from {args.init}")
    if args.resume:
        trainer.resume()
        print(f"resumed {trainer.run_dir / 'last.pt'} at epoch {trainer.epoch}")
    print(f"{trainer.cfg.task} {trainer.cfg.neuron} {trainer.model_config.inputs}-"
          f"{trainer.model_config.hidden}-{trainer.model_config.outputs}, "
          f"{trainer.model.parameter_count()} parameters, {trainer.cfg.epochs} epochs, run dir {trainer.run_dir}")
    try:
        summary = _fit_and_report(trainer)
    except BaseException:
        shutdown(wait=False)  # a peer that failed differently never reaches a barrier
        raise
    shutdown()
    return summary


def _fit_and_report(trainer: Trainer) -> dict:
    try:
        trainer.fit()
    except TrainingDiverged as exc:
        sys.exit(f"training stopped: {exc}")  # exit code 1: the run failed, its checkpoints are good
    if not trainer.world.is_main:
        return {}
    best, ckpt = load_checkpoint_model(trainer.run_dir / "best.pt", str(trainer.device), trainer.cfg.kernel)
    test = trainer.evaluate("test", best)
    summary = {"task": trainer.cfg.task, "neuron": trainer.cfg.neuron, "best_epoch": ckpt["epoch"],
               "parameters": best.parameter_count(), **{f"test_{k}": v for k, v in test.items()}}
    (Path(trainer.run_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
    annotated = f", annotated steps {test['acc_annotated']:.2f}%" if "acc_annotated" in test else ""
    print(f"best model (epoch {ckpt['epoch']}): test accuracy {test['acc']:.2f}%{annotated}, "
          f"SOPs {test['sops']:.1f} ({test['sops_per_step']:.2f}/step), {summary['parameters']} parameters")
    return summary


TRAIN_DESCRIPTION = """Train a float BRF / RF / BHRF / ALIF network on a task.

    brf-hw train --task ecg --neuron brf --epochs 400     # = python training/train.py ...
"""


def train_main(argv=None) -> None:
    """``brf-hw train`` (``python training/train.py``)."""
    parser = argparse.ArgumentParser(description=TRAIN_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser)
    train_float(parser.parse_args(argv))
