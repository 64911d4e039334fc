"""The training core shared by every CLI in ``training/``.

Adam, learning rate decayed linearly to zero over the epochs, best model by validation loss.
Every epoch writes ``last.pt`` (everything needed to resume) and, when validation improves,
``best.pt``; metrics go to ``metrics.csv`` and TensorBoard. A non-finite loss stops training
with ``TrainingDiverged`` before the optimiser touches the weights, and so does a NaN or infinite
gradient or parameter (the message names the tensor and the step): ``last.pt`` and ``best.pt``
only ever hold finite parameters. Checkpoints are written atomically, ``best.pt`` before
``last.pt``, so a run killed at any moment resumes (``--resume``) from its last finished epoch and
ends bit-identical to a run that was never interrupted; ``metrics.csv`` is rewritten from the
checkpoint's history on resume, so it never holds an epoch twice or misses one.
"""

from __future__ import annotations

import csv
import json
import math
import pickle
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ..cli_util import UserError
from ..model import RSNN, ModelConfig, build_model
from ..neurons.modules import RESONATOR_KINDS
from . import brf_neurons, distributed
from .metrics import Tally, per_step_loss, sequence_loss
from ..tasks import Task, TaskData, get_task


class TrainingDiverged(RuntimeError):
    """The loss, a gradient or a parameter became NaN or infinite."""


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, unreadable, or holds another network."""


def progress_enabled(requested: bool) -> bool:
    """tqdm bars only on a terminal: in a log (CI, nohup) every refresh would be a new line."""
    return requested and sys.stderr.isatty()


@dataclass
class TrainConfig:
    """One training run: the task (by name), neuron kind, the schedule (``None``: the task's paper
    default), the device, the BPTT kernel, ``fixed`` (a FixedSpec as a dict turns on
    quantization-aware training), limits for quick runs, and the run directory."""

    task: str = "ecg"
    neuron: str = "brf"
    epochs: int | None = None  # None: the task's paper default
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    device: str = "cpu"
    surrogate: str = "double_gaussian"
    mask_prob: float = 0.0
    grad_clip: float | None = None
    kernel: str = "auto"  # BPTT implementation: auto, fused or reference
    fixed: dict | None = None  # a FixedSpec (as a dict): train the integer network (QAT)
    tbptt: int = 0  # truncate BPTT every N steps (0: full BPTT)
    spike_penalty: float = 0.0  # added to the loss per hidden spike of a sequence (fewer SOPs)
    train_limit: int | None = None  # use only the first N training sequences per epoch
    eval_limit: int | None = None  # evaluate on the first N val / test sequences
    eval_test: bool = True
    run_dir: str = "runs/default"
    data_dir: str | None = None
    progress: bool = True
    log_epochs: bool = True  # print a line per epoch (the Python API turns it off)

    def resolved(self) -> "TrainConfig":
        spec = get_task(self.task)
        cfg = TrainConfig(**{**asdict(self),
                             "epochs": spec.epochs if self.epochs is None else self.epochs,
                             "batch_size": spec.batch_size if self.batch_size is None else self.batch_size,
                             "lr": self.lr if self.lr is not None else spec.lr})
        for name in ("epochs", "batch_size", "train_limit", "eval_limit"):
            value = getattr(cfg, name)
            if value is not None and value < 1:
                raise UserError(f"{name} must be at least 1, got {value}")
        if not (math.isfinite(cfg.lr) and cfg.lr > 0):
            raise UserError(f"lr must be a positive number, got {cfg.lr}")
        return cfg


def model_config_for(spec: Task, cfg: TrainConfig) -> ModelConfig:
    return ModelConfig(spec.inputs, spec.hidden, spec.outputs,
                       neuron=spec.neuron_config(cfg.neuron, cfg.surrogate),
                       tau_o_init=spec.tau_o_init, mask_prob=cfg.mask_prob)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} requested but torch sees no CUDA device")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"--device {name!r} is not a device torch knows (cpu, cuda, cuda:N, auto)") from exc


def apply_fixed(model: RSNN, fixed: dict | None) -> RSNN:
    if fixed is not None:
        from ..fixed.spec import FixedSpec

        model.fixed = FixedSpec.from_dict(fixed)
    return model


class Trainer:
    """``init_state``: start from these weights (a float model's state dict) instead of random."""

    def __init__(self, cfg: TrainConfig, data: TaskData | None = None, init_state: dict | None = None):
        self.cfg = cfg.resolved()
        self.spec = get_task(self.cfg.task)
        self.device = distributed.local_device(resolve_device(self.cfg.device))
        self.world = distributed.setup(self.device)  # torchrun: data parallel over processes
        self.data = data or TaskData(self.spec, self.cfg.data_dir)
        self.model_config = model_config_for(self.spec, self.cfg)
        self.model = build_model(self.model_config, seed=self.cfg.seed,
                                 kernel=self.cfg.kernel, tbptt=self.cfg.tbptt).to(self.device)
        if init_state is not None:
            self.model.load_state_dict(init_state)
        apply_fixed(self.model, self.cfg.fixed)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)
        epochs = self.cfg.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda e: 1.0 - e / epochs)
        self.shuffle = torch.Generator().manual_seed(self.cfg.seed)
        self.epoch = 0
        self.best_val_loss = math.inf
        self.history: list[dict] = []
        self.run_dir = Path(self.cfg.run_dir)

    # ----------------------------------------------------------------- checkpoints
    def checkpoint(self) -> dict:
        return {
            "format": "brf_hw.checkpoint/1",
            "train_config": asdict(self.cfg),
            "model_config": self.model_config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "shuffle_rng": self.shuffle.get_state(),
            "epoch": self.epoch,
            "best_val_loss": self.best_val_loss,
            "history": self.history,
        }

    def resume(self, path: str | Path | None = None) -> None:
        path = Path(path) if path else self.run_dir / "last.pt"
        ckpt = read_checkpoint(path, self.device)
        kind = ckpt["model_config"].get("neuron", {}).get("kind", "brf")
        if kind != self.cfg.neuron:
            raise CheckpointError(f"{path} holds {kind} neurons, not --neuron {self.cfg.neuron}: a run resumes "
                                  "with the kind it was started with")
        if ckpt["model_config"] != self.model_config.to_dict():
            raise CheckpointError(f"{path} holds a different network ({ckpt['model_config']})")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.shuffle.set_state(ckpt["shuffle_rng"])
        self.epoch = ckpt["epoch"]
        self.best_val_loss = ckpt["best_val_loss"]
        self.history = ckpt["history"]

    def _save(self, name: str) -> None:
        self._check_finite("parameter", self.model.named_parameters(), "the state to be saved as " + name)
        tmp = self.run_dir / (name + ".tmp")
        torch.save(self.checkpoint(), tmp)
        tmp.replace(self.run_dir / name)  # atomic: a crash never leaves a half-written checkpoint

    # ----------------------------------------------------------------- epochs
    def train_epoch(self) -> dict[str, float]:
        self.model.train()
        tally = Tally()
        mode = self.spec.loss_mode
        batches = self.data.batches("train", self.cfg.batch_size, shuffle=True,
                                    generator=self.shuffle, limit=self.cfg.train_limit)
        total = math.ceil(min(self.cfg.train_limit or 10**12, self.data.size("train")) / self.cfg.batch_size)
        bar = tqdm(batches, total=total, desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}",
                   disable=not (self.world.is_main and progress_enabled(self.cfg.progress)), leave=False)
        for index, batch in enumerate(bar, 1):
            where = f"epoch {self.epoch + 1}, batch {index}"
            share = 1.0
            if self.world.active:  # this process's slice of the global batch
                batch, share = distributed.shard(batch, self.world)
            batch = self._to_device(batch)
            out = self.model(batch.x) if batch.x.shape[1] else None
            if out is not None:
                task_loss = sequence_loss(out.outputs, batch, mode)
                loss = task_loss
                if self.cfg.spike_penalty:  # spikes per sequence, mean over the batch: the SOP count
                    loss = loss + self.cfg.spike_penalty * out.spikes_per_step.sum(0).mean()
                loss = loss * share  # shares add up to 1: the summed gradients are the global batch's
            global_loss = loss.detach() if out is not None else torch.zeros((), device=self.device)
            if self.world.active:  # every process sees the same loss, so all stop together
                global_loss = distributed.all_sum(global_loss.clone())
            if not torch.isfinite(global_loss):
                raise self._diverged(f"loss became {global_loss.item()} in {where}")
            self.optimizer.zero_grad(set_to_none=True)
            if out is not None:
                loss.backward()
            if self.world.active:
                distributed.sum_gradients(self.model)
            self._check_finite("gradient of", ((n, p.grad) for n, p in self.model.named_parameters()), where)
            if self.cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            self.model.constrain_()
            # Adam on finite gradients stays finite unless it overflows; the omega projection
            # cannot mend a NaN: say which tensor broke rather than train a silent network.
            self._check_finite("parameter", self.model.named_parameters(), f"the update of {where}")
            if out is not None:
                value = per_step_loss(task_loss.detach(), batch.x.shape[0], mode)  # comparable across penalties
                tally.add(out.outputs.detach(), out.spikes_per_step.detach(), batch, mode, value)
                bar.set_postfix(loss=f"{value:.4f}")
        self.scheduler.step()
        if self.world.active:
            tally = distributed.sum_tally(tally)
        return tally.summary()

    def _diverged(self, what: str) -> TrainingDiverged:
        kept = (f"the last good state is {self.run_dir / 'last.pt'} (epoch {self.epoch})" if self.epoch
                else "no epoch had finished, so no checkpoint was written")
        return TrainingDiverged(f"{what}; nothing of this epoch was saved: {kept}. "
                                f"Try a lower --lr, or --grad-clip.")

    def _check_finite(self, what: str, named_tensors, where: str) -> None:
        for name, tensor in named_tensors:
            if tensor is not None and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise self._diverged(f"{what} {name} has {bad} NaN or infinite value(s) in {where}")

    @torch.no_grad()
    def evaluate(self, split: str, model: RSNN | None = None) -> dict[str, float]:
        model = model or self.model
        model.eval()
        tally = Tally()
        mode = self.spec.loss_mode
        for batch in self.data.batches(split, self.spec.eval_batch_size, limit=self.cfg.eval_limit):
            batch = self._to_device(batch)
            out = model(batch.x)
            loss = sequence_loss(out.outputs, batch, mode)
            tally.add(out.outputs, out.spikes_per_step, batch, mode, per_step_loss(loss, batch.x.shape[0], mode))
        return tally.summary()

    def _to_device(self, batch):
        return type(batch)(*(t.to(self.device) if t is not None else None for t in batch))

    # ----------------------------------------------------------------- the run
    def fit(self) -> list[dict]:
        if not self.world.is_main:  # train in step with rank 0, which evaluates, saves and logs
            while self.epoch < self.cfg.epochs:
                self._run_epoch()
            return self.history
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(
            {"train": asdict(self.cfg), "model": self.model_config.to_dict(),
             "parameters": self.model.parameter_count()}, indent=2))
        # resumed: drop events a killed run logged past its checkpoint, and rewrite metrics.csv
        # from the checkpoint's history, so both hold each finished epoch exactly once
        writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.epoch + 1 if self.epoch else None)
        self._rewrite_metrics()
        try:
            while self.epoch < self.cfg.epochs:
                row = self._run_epoch()
                for key, value in row.items():
                    if key != "epoch":
                        writer.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
                writer.flush()
                self._log(row)
        finally:
            writer.close()
        return self.history

    def _run_epoch(self) -> dict:
        start = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        train = self.train_epoch()
        seconds = time.perf_counter() - start
        if not self.world.is_main:
            self.epoch += 1
            distributed.barrier(self.world)  # rank 0 evaluates and saves this epoch meanwhile
            return {}
        val = self.evaluate("val")
        test = self.evaluate("test") if self.cfg.eval_test else {}
        self.epoch += 1
        row = {"epoch": self.epoch, "lr": lr, "epoch_seconds": seconds,
               "parameters": self.model.parameter_count()}
        row.update({f"train_{k}": v for k, v in train.items()})
        row.update({f"val_{k}": v for k, v in val.items()})
        row.update({f"test_{k}": v for k, v in test.items()})
        self.history.append(row)
        if val["loss"] < self.best_val_loss:
            self.best_val_loss = val["loss"]
            self._save("best.pt")  # before last.pt: a kill in between redoes this epoch and this save
        self._save("last.pt")
        distributed.barrier(self.world)
        return row

    def _log(self, row: dict) -> None:
        path = self.run_dir / "metrics.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.cfg.log_epochs:
            self._print(row)

    def _rewrite_metrics(self) -> None:
        path = self.run_dir / "metrics.csv"
        path.unlink(missing_ok=True)
        if self.history:
            tmp = path.with_suffix(".tmp")
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(self.history[0]))
                writer.writeheader()
                writer.writerows(self.history)
            tmp.replace(path)

    @staticmethod
    def _print(row: dict) -> None:
        test = f" test {row['test_acc']:.2f}% SOPs {row['test_sops']:.0f}" if "test_acc" in row else ""
        tqdm.write(f"epoch {row['epoch']:4d}  {row['epoch_seconds']:.1f}s  train {row['train_loss']:.4f} "
                   f"{row['train_acc']:.2f}%  val {row['val_loss']:.4f} {row['val_acc']:.2f}%{test}")


def _unpickler_reason(exc: Exception) -> str:
    """torch's weights-only refusal is a page of advice; keep the line naming the object."""
    for line in str(exc).splitlines():
        if "Unsupported global" in line:
            return line.split("WeightsUnpickler error:")[-1].split(". Please")[0].strip()
    return _first_line(exc)


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _load_file(path: str | Path, device="cpu"):
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        # weights_only: a checkpoint from someone else never runs code; brf-hw's own hold only
        # tensors and plain data, so they need no allow-list
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):
            raise CheckpointError(f"{path} is not a readable checkpoint ({_first_line(exc)})") from exc
        raise CheckpointError(f"{path} refused: it holds objects other than tensors and plain data, "
                              f"which could run code when loaded ({_unpickler_reason(exc)})") from exc
    except Exception as exc:  # torch raises many kinds for a truncated or foreign file
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {_first_line(exc)})") from exc


def _is_brf_hw(ckpt) -> bool:
    return isinstance(ckpt, dict) and ckpt.get("format") == "brf_hw.checkpoint/1"


def read_checkpoint(path: str | Path, device="cpu") -> dict:
    """A brf-hw training checkpoint as saved (what --resume needs: optimiser, history, ...)."""
    ckpt = _load_file(path, device)
    if not _is_brf_hw(ckpt):
        if brf_neurons.state_dict_of(ckpt) is not None:
            raise CheckpointError(f"{path} is a checkpoint of the paper's code (brf-neurons): it can start a run "
                                  "(--init), not resume one")
        raise CheckpointError(f"{path} is not a brf_hw training checkpoint")
    return ckpt


def load_checkpoint_model(path: str | Path, device: str = "cpu", kernel: str = "auto",
                          resonator: str = "brf") -> tuple[RSNN, dict]:
    """Rebuild the network stored in a training checkpoint (best.pt or last.pt), or in a checkpoint
    of the paper's code (``brf_neurons``; ``resonator`` names its RF/BRF/BHRF cell, which the file
    does not record)."""
    ckpt = _load_file(path, device)
    state = None if _is_brf_hw(ckpt) else brf_neurons.state_dict_of(ckpt)
    if state is not None:
        try:
            model = brf_neurons.to_model(state, resonator, kernel).to(device)
        except brf_neurons.BrfNeuronsError as exc:
            raise CheckpointError(f"{path} (a brf-neurons checkpoint): {exc}") from exc
        return model, brf_neurons.checkpoint_info(ckpt, model)
    if not _is_brf_hw(ckpt):
        raise CheckpointError(f"{path} is neither a brf_hw training checkpoint nor one of the paper's code "
                              "(brf-neurons)")
    try:
        model = RSNN(ModelConfig.from_dict(ckpt["model_config"]), kernel=kernel).to(device)
        model.load_state_dict(ckpt["model"])
        apply_fixed(model, ckpt["train_config"].get("fixed"))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild its network ({exc})") from exc
    return model, ckpt


def load_init_model(path: str | Path, task: Task, neuron: str, kernel: str = "auto") -> RSNN:
    """The network ``--init`` starts from: a brf-hw or brf-neurons checkpoint, or a BRF integer
    artifact (.npz, dequantized), whose shape is the task's and whose hidden neurons are ``neuron``.

    An artifact is what survives of a run once its run directory is gone (the shipped networks):
    starting from it continues that network's training without its optimiser state."""
    if Path(path).suffix == ".npz":
        model = _artifact_model(Path(path))
    else:
        model, _ = load_checkpoint_model(path, kernel=kernel,
                                         resonator=neuron if neuron in RESONATOR_KINDS else "brf")
    c = model.config
    if (c.inputs, c.hidden, c.outputs) != (task.inputs, task.hidden, task.outputs):
        raise CheckpointError(f"--init {path} is a {c.inputs}-{c.hidden}-{c.outputs} network; task {task.name} is "
                              f"{task.inputs}-{task.hidden}-{task.outputs}")
    if c.neuron.kind != neuron:
        raise CheckpointError(f"--init {path} holds {c.neuron.kind} neurons, not --neuron {neuron}")
    return model


def _artifact_model(path: Path) -> RSNN:
    from ..analyze.common import float_model_from_artifact
    from ..artifact import ArtifactError, load_artifact

    if not path.is_file():
        raise CheckpointError(f"no artifact at {path}")
    try:
        net, manifest = load_artifact(path)
    except ArtifactError as exc:
        raise CheckpointError(f"--init {exc}") from exc
    if net.neuron != "brf":
        raise CheckpointError(f"--init {path}: an artifact of {net.neuron} neurons; only a BRF artifact can be "
                              "dequantized into a float network to start from")
    return float_model_from_artifact(net, manifest)
