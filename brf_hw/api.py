"""The pipeline as Python functions that return what they made: ``train_float`` a float network,
``quantize`` it (quantization-aware training, export of the integer artifact), score an integer
network on a task, write the accelerator's Verilog, and run a network on the accelerator in
Amaranth's simulator or as Verilog under Verilator / Icarus.

Each is the library side of a ``brf-hw`` command (``train``, ``qat``, ``golden``, ``generate``,
``sim``); the commands print, these return result objects and print nothing (``verbose=True`` shows
the per-epoch lines and progress bars)::

    import brf_hw
    trained = brf_hw.train_float("ecg", epochs=5, run_dir="runs/ecg")
    quantized = brf_hw.quantize(trained, epochs=2)            # -> runs/ecg/brf_ecg.npz
    print(quantized.metrics["test_acc"])                      # the golden model's accuracy
    info = brf_hw.generate_verilog(quantized.artifact, "rtl/", lanes=2)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .evaluate import Evaluation, evaluate_task
from .fixed.spec import IntNetwork
from .model import RSNN
from .tasks import TASKS, Task, TaskData, get_task, register_task
from .train.qat_flow import QATResult, quantize_model
from .train.trainer import TrainConfig, Trainer, load_checkpoint_model, load_init_model


@dataclass
class TrainResult:
    """A finished float training run: the best-validation model, its test metrics (``acc``,
    ``loss``, ``sops``, ``sops_per_step``, and ``acc_annotated`` for ECG), the per-epoch history
    (the rows of ``metrics.csv``), the resolved configuration, and the run directory holding
    ``best.pt`` / ``last.pt``."""

    model: RSNN
    test: dict[str, float]
    best_epoch: int
    history: list[dict]
    config: TrainConfig
    run_dir: Path
    data: TaskData  # the task's loaded splits, reused by ``quantize``

    @property
    def task(self) -> Task:
        return get_task(self.config.task)

    @property
    def checkpoint(self) -> Path:
        """The best-validation checkpoint (``brf-hw qat --init`` takes it)."""
        return self.run_dir / "best.pt"


def use_task(task: str | Task) -> Task:
    """A task by name, or your own ``Task``, registered under its name when it is not yet (a new
    definition of one of your own tasks replaces the old; a built-in name cannot be taken)."""
    if isinstance(task, Task):
        if TASKS.get(task.name) is not task:
            register_task(task, replace=True)
        return task
    return get_task(task)


def train_float(task: str | Task, *, epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
          seed: int = 0, neuron: str = "brf", run_dir: str | Path | None = None, data_dir: str | None = None,
          train_limit: int | None = None, eval_limit: int | None = None, device: str = "cpu",
          verbose: bool = False, **options) -> TrainResult:
    """Train a float network on ``task`` (a name, or your own ``Task``) and return the
    best-validation model with its test metrics. ``epochs``, ``batch_size``, ``lr`` default to the
    task's (the paper's); ``train_limit`` / ``eval_limit`` use only the first N sequences (quick
    runs). Checkpoints go to ``run_dir`` (default ``runs/TASK-NEURON-seedS``, as ``brf-hw train``).
    Further ``TrainConfig`` fields (``surrogate``, ``mask_prob``, ``grad_clip``, ``kernel``,
    ``tbptt``, ``spike_penalty``) pass through ``options``. Raises ``TrainingDiverged`` when the
    loss or a parameter stops being finite."""
    spec = use_task(task)
    run_dir = Path(run_dir) if run_dir is not None else Path(f"runs/{spec.name}-{neuron}-seed{seed}")
    cfg = TrainConfig(task=spec.name, neuron=neuron, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                      device=device, train_limit=train_limit, eval_limit=eval_limit, run_dir=str(run_dir),
                      data_dir=data_dir, progress=verbose, log_epochs=verbose, **options)
    trainer = Trainer(cfg)
    trainer.fit()
    model, ckpt = load_checkpoint_model(run_dir / "best.pt", str(trainer.device), trainer.cfg.kernel)
    test = trainer.evaluate("test", model)
    return TrainResult(model, test, ckpt["epoch"], trainer.history, trainer.cfg, run_dir, trainer.data)


def quantize(trained: TrainResult | RSNN | str | Path, task: str | Task | None = None, *, epochs: int = 30,
             lr: float = 0.01, weight_bits: int = 8, rec_weight_bits: int | None = None,
             out_weight_bits: int | None = None, state_bits: int = 16, coef_bits: int = 16, output_bits: int = 16,
             weight_frac: int | None = None, rec_weight_frac: int | None = None, state_frac: int | None = None,
             run_dir: str | Path | None = None, artifact: str | Path | None = None,
             batch_size: int | None = None, train_limit: int | None = None, eval_limit: int | None = None,
             seed: int | None = None, data_dir: str | None = None, verbose: bool = False) -> QATResult:
    """Quantization-aware training of a trained network (a kind in ``fixed.kinds``), then export: ``trained`` is a
    ``TrainResult``, a float ``RSNN`` or a checkpoint path (then ``task`` is required). The formats
    follow ``brf-hw qat``'s options (weights ``weight_bits``, state Q5.10 at 16 bits, ...; fraction
    bits chosen for the least error unless given). QAT checkpoints go to ``run_dir`` (default:
    the training run's ``qat/``), the artifact to ``artifact`` (default ``brf_TASK.npz`` beside
    it). The returned metrics are the golden model's on the exported file."""
    if isinstance(trained, TrainResult):
        model, base, data = trained.model, trained.config, trained.data
        root = trained.run_dir
        if task is not None and use_task(task).name != base.task:
            raise ValueError(f"the network was trained on task {base.task!r}, not {use_task(task).name!r}")
    else:
        if task is None:
            raise ValueError("quantize needs the task of a bare model or checkpoint")
        model = trained if isinstance(trained, RSNN) else load_init_model(trained, use_task(task), "brf")
        base, data = TrainConfig(task=use_task(task).name, data_dir=data_dir), None
        root = Path(run_dir).parent if run_dir is not None else Path(f"runs/{base.task}-brf-seed0")
    from .fixed import kinds

    if model.config.neuron.kind not in kinds.KINDS:
        raise ValueError(f"the fixed-point flow covers {', '.join(kinds.KINDS)} networks, not {model.config.neuron.kind}")
    overrides = {k: v for k, v in {"batch_size": batch_size, "train_limit": train_limit, "eval_limit": eval_limit,
                                   "seed": seed, "data_dir": data_dir}.items() if v is not None}
    base = dataclasses.replace(base, progress=verbose, log_epochs=verbose, **overrides)
    qat_dir = Path(run_dir) if run_dir is not None else root / "qat"
    name = get_task(base.task).name
    return quantize_model(model, base, qat_dir, artifact or qat_dir.parent / f"brf_{name}.npz", data=data,
                          epochs=epochs, lr=lr, weight_bits=weight_bits, weight_frac=weight_frac,
                          rec_weight_bits=rec_weight_bits, rec_weight_frac=rec_weight_frac,
                          out_weight_bits=out_weight_bits, state_bits=state_bits, state_frac=state_frac,
                          coef_bits=coef_bits, output_bits=output_bits, log=print if verbose else None)


def evaluate_network(network: IntNetwork, task: str | Task, split: str = "test", limit: int | None = None,
                     data_dir: str | None = None, data: TaskData | None = None) -> Evaluation:
    """The golden model's score of an integer network on a task's split, fed as the hardware is fed:
    accuracy by the task's readout with a 95 % bootstrap interval over sequences, SOPs per
    sequence and per step (``Evaluation.metrics``), and the predicted classes."""
    data = data or TaskData(use_task(task), data_dir)
    return evaluate_task(network, data, split, limit)


def _artifact_path(artifact: str | Path | QATResult) -> Path:
    return artifact.artifact if isinstance(artifact, QATResult) else Path(artifact)


def generate_verilog(artifact: str | Path | QATResult, out: str | Path = "rtl", lanes: int = 1,
                     segments: int | None = None) -> dict:
    """Write the accelerator for an artifact as Verilog: ``out/brf_rsnn.v`` (memories initialised
    inside), the memory images ``out/brf_rsnn_mem_*.hex`` and ``out/brf_rsnn.json``, which is also
    returned: ports and payload fields, formats, readout, lanes, segments, and cycles per step
    (silent and busiest) with their formulas."""
    from .hw.generate import generate

    return generate(_artifact_path(artifact), lanes, Path(out), {}, segments)


def simulate_verilog(artifact: str | Path | QATResult, x: np.ndarray, first: np.ndarray | None = None, *,
                     simulator: str = "verilator", lanes: int = 1, segments: int | None = None,
                     build_dir: str | Path = "build/sim-api", name: str = "stream") -> dict:
    """Generate the Verilog of an artifact, compile it under ``simulator`` (verilator or icarus,
    which must be on PATH) and stream x [T, inputs] through it with cocotb (sequences back to back,
    ``first`` marking their starts; default: one sequence). Every step's spikes, potentials,
    labels and cycle count are compared with the golden model; a difference raises ``Mismatch``.
    Returns the RTL's per-step outputs (``labels``, ``outputs``, ``spikes``, ``cycles``, ...)."""
    from .hw import rtl_sim
    from .stream import sequence_starts

    x = np.asarray(x)
    design = rtl_sim.build(simulator, _artifact_path(artifact), lanes, Path(build_dir), segments=segments)
    return rtl_sim.run_stream(design, x, sequence_starts(len(x)) if first is None else np.asarray(first), name)
