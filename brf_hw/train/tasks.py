"""The paper's tasks: data, network shape, loss mode and training defaults, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple

import torch

from ..data import ecg, mnist, shd
from ..neurons import NeuronConfig


class Batch(NamedTuple):
    x: torch.Tensor  # [T, B, inputs] float
    target: torch.Tensor  # [T, B] per-step labels, or [B] one label per sequence
    annotated: torch.Tensor | None  # [T, B] bool for per-step tasks, else None


# Loss modes. per_step: a label per step, NLL summed over steps, predict argmax o[t] per step.
# every_step: one label per sequence, NLL on every step, predict argmax of the time-mean of o.
# label_last: one label per sequence, NLL and prediction on the last step only.
LOSS_MODES = ("per_step", "every_step", "label_last")
# The integer readout that reads each loss mode's prediction (``fixed.spec.Readout``).
READOUT_FOR_LOSS = {"per_step": "per_step", "every_step": "mean", "label_last": "last"}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    inputs: int
    hidden: int
    outputs: int
    loss_mode: str
    epochs: int
    batch_size: int
    lr: float
    omega_init: tuple[float, float]
    b_offset_init: tuple[float, float]
    tau_o_init: tuple[float, float]
    alif_tau_m_init: tuple[float, float] = (20.0, 5.0)
    alif_tau_adp_init: tuple[float, float] = (200.0, 50.0)
    eval_batch_size: int = 256
    steps: int = 0  # sequence length: sizes the running sum of a mean readout
    input_bits: int = 1  # unsigned bits of one input value (1: spikes)
    input_unit: float = 1.0  # the float value of one input integer step

    @property
    def readout_rule(self) -> str:
        return READOUT_FOR_LOSS[self.loss_mode]

    def input_format(self):
        from ..fixed.spec import InputFormat

        return InputFormat(self.input_bits, self.input_unit)

    def readout(self, output_bits: int):
        from ..fixed.spec import Readout

        return Readout.for_steps(self.readout_rule, output_bits, self.steps)

    def neuron_config(self, kind: str, surrogate: str = "double_gaussian") -> NeuronConfig:
        return NeuronConfig(
            kind=kind,
            omega_init=self.omega_init,
            b_offset_init=self.b_offset_init,
            tau_m_init=self.alif_tau_m_init,
            tau_adp_init=self.alif_tau_adp_init,
            surrogate=surrogate,
        )


TASKS: dict[str, TaskSpec] = {
    "ecg": TaskSpec("ecg", 4, 36, 6, "per_step", epochs=400, batch_size=16, lr=0.1,
                    omega_init=(3.0, 5.0), b_offset_init=(0.1, 1.0), tau_o_init=(20.0, 1.0),
                    alif_tau_m_init=(20.0, 0.5), alif_tau_adp_init=(7.0, 0.2), eval_batch_size=141,
                    steps=ecg.STEPS),
    "smnist": TaskSpec("smnist", 1, 256, 10, "label_last", epochs=300, batch_size=256, lr=0.1,
                       omega_init=(15.0, 50.0), b_offset_init=(0.1, 1.0), tau_o_init=(20.0, 5.0),
                       steps=mnist.STEPS, input_bits=8, input_unit=1 / 255),
    "psmnist": TaskSpec("psmnist", 1, 256, 10, "every_step", epochs=300, batch_size=256, lr=0.1,
                        omega_init=(15.0, 85.0), b_offset_init=(0.1, 1.0), tau_o_init=(20.0, 1.0),
                        steps=mnist.STEPS, input_bits=8, input_unit=1 / 255),
    "shd": TaskSpec("shd", shd.CHANNELS, 128, shd.CLASSES, "every_step", epochs=20, batch_size=32, lr=0.075,
                    omega_init=(5.0, 10.0), b_offset_init=(2.0, 3.0), tau_o_init=(20.0, 5.0),
                    steps=shd.STEPS),
}


class TaskData:
    """The three splits of a task and a batch iterator over each."""

    def __init__(self, spec: TaskSpec, data_dir=None):
        self.spec = spec
        if spec.name == "ecg":
            self.splits = ecg.load_ecg(data_dir)
        elif spec.name in ("smnist", "psmnist"):
            self.splits = mnist.load_mnist(data_dir, permuted=spec.name == "psmnist")
        elif spec.name == "shd":
            self.splits = shd.load_shd(data_dir)
        else:
            raise ValueError(f"no loader for task {spec.name!r}")

    def size(self, split: str) -> int:
        return len(self.splits[split])

    def batches(self, split: str, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None, limit: int | None = None) -> Iterator[Batch]:
        data = self.splits[split]
        n = len(data) if limit is None else min(limit, len(data))
        order = torch.randperm(len(data), generator=generator)[:n] if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            yield self._batch(data.subset(order[start : start + batch_size]))

    def integer_sequences(self, split: str, limit: int | None = None):
        """What the hardware is fed: (x [T, B, inputs] unsigned integers in the task's input
        format, as uint8 or uint16, targets [T, B] or [B], annotated [T, B] or None), numpy."""
        data = self.splits[split]
        if limit is not None:
            data = data.subset(torch.arange(min(limit, len(data))))
        batch = self._batch(data)
        ints = self.spec.input_format().integers(batch.x.numpy())
        annotated = batch.annotated.numpy() if batch.annotated is not None else None
        return ints, batch.target.numpy(), annotated

    def _batch(self, part) -> Batch:
        if isinstance(part, ecg.ECGSplit):
            return Batch(part.inputs.transpose(0, 1), part.labels.t(), part.annotated.t())
        if isinstance(part, shd.SHDSplit):
            return Batch(part.as_sequences(), part.labels, None)
        return Batch(mnist.as_sequences(part.images), part.labels, None)

