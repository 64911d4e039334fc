"""Loss and accuracy for the three loss modes, and the spike-operation counts (SOPs)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.batch import Batch


def sequence_loss(outputs: torch.Tensor, batch: Batch, mode: str) -> torch.Tensor:
    """Training objective. per_step / every_step: NLL of log-softmax(o[t]), mean over the batch,
    summed over steps (as the paper's code); label_last: NLL at the last step."""
    log_p = F.log_softmax(outputs, dim=-1)  # [T, B, C]
    steps = outputs.shape[0]
    if mode == "per_step":
        return F.nll_loss(log_p.flatten(0, 1), batch.target.flatten(), reduction="mean") * steps
    if mode == "every_step":
        target = batch.target.expand(steps, -1)
        return F.nll_loss(log_p.flatten(0, 1), target.flatten(), reduction="mean") * steps
    if mode == "label_last":
        return F.nll_loss(log_p[-1], batch.target, reduction="mean")
    raise ValueError(f"unknown loss mode {mode!r}")


def per_step_loss(loss: torch.Tensor, steps: int, mode: str) -> float:
    """The loss as logged: per step for the summed modes, so numbers compare across lengths."""
    return float(loss) / (steps if mode in ("per_step", "every_step") else 1)


@dataclass
class Tally:
    """Accumulates correct predictions and spikes over batches."""

    correct: int = 0
    total: int = 0
    correct_annotated: int = 0
    total_annotated: int = 0
    spikes: float = 0.0
    samples: int = 0
    steps: int = 0
    loss_sum: float = 0.0

    def add(self, outputs: torch.Tensor, spikes_per_step: torch.Tensor, batch: Batch, mode: str,
            loss_value: float) -> None:
        steps, size = outputs.shape[:2]
        self.spikes += float(spikes_per_step.sum())
        self.samples += size
        self.steps = steps
        self.loss_sum += loss_value * size
        if mode == "per_step":
            hit = outputs.argmax(-1) == batch.target
            self.correct += int(hit.sum())
            self.total += hit.numel()
            self.correct_annotated += int((hit & batch.annotated).sum())
            self.total_annotated += int(batch.annotated.sum())
            return
        pred = outputs[-1].argmax(-1) if mode == "label_last" else outputs.mean(0).argmax(-1)
        self.correct += int((pred == batch.target).sum())
        self.total += size

    def summary(self) -> dict[str, float]:
        out = {
            "loss": self.loss_sum / max(self.samples, 1),
            "acc": 100.0 * self.correct / max(self.total, 1),
            "sops": self.spikes / max(self.samples, 1),
            "sops_per_step": self.spikes / max(self.samples * self.steps, 1),
        }
        if self.total_annotated:
            out["acc_annotated"] = 100.0 * self.correct_annotated / self.total_annotated
        return out
