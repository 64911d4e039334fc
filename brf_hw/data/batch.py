"""What training and evaluation take from a split: a time-major batch, and a split of arrays for
tasks of your own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch


class Batch(NamedTuple):
    x: torch.Tensor  # [T, B, inputs] float
    target: torch.Tensor  # [T, B] per-step labels, or [B] one label per sequence
    annotated: torch.Tensor | None  # [T, B] bool for per-step tasks, else None


@dataclass(frozen=True)
class ArraySplit:
    """Sequences held as arrays, for a task of your own: inputs [N, T, inputs] (spikes in {0, 1}, or
    values in the task's input format times its unit), targets [N] (a class per sequence) or [N, T]
    (a class per step, with ``annotated`` [N, T] marking the labelled steps where some are not)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    annotated: torch.Tensor | None = None

    def __post_init__(self):
        inputs = torch.as_tensor(np.asarray(self.inputs), dtype=torch.float32)
        targets = torch.as_tensor(np.asarray(self.targets), dtype=torch.int64)
        if inputs.ndim != 3:
            raise ValueError(f"inputs must be [sequences, steps, inputs]; got shape {tuple(inputs.shape)}")
        if targets.shape not in (inputs.shape[:1], inputs.shape[:2]):
            raise ValueError(f"targets must be [sequences] or [sequences, steps] = {tuple(inputs.shape[:2])}; "
                             f"got shape {tuple(targets.shape)}")
        annotated = self.annotated
        if annotated is not None:
            annotated = torch.as_tensor(np.asarray(annotated), dtype=torch.bool)
            if targets.ndim != 2 or annotated.shape != targets.shape:
                raise ValueError(f"annotated must have the per-step targets' shape {tuple(targets.shape)}; "
                                 f"got {tuple(annotated.shape)}")
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "targets", targets)
        object.__setattr__(self, "annotated", annotated)

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def subset(self, index) -> "ArraySplit":
        return ArraySplit(self.inputs[index], self.targets[index],
                          None if self.annotated is None else self.annotated[index])

    def to_batch(self) -> Batch:
        per_step = self.targets.ndim == 2
        annotated = self.annotated
        if per_step and annotated is None:
            annotated = torch.ones_like(self.targets, dtype=torch.bool)
        return Batch(self.inputs.transpose(0, 1), self.targets.t() if per_step else self.targets,
                     annotated.t() if per_step else None)
