"""Tasks: what a network learns (data, shape, loss) and how the hardware is fed and read (input
format, readout). Training, the golden model's evaluation, synthesis, simulation and the host all
take a task from here; nothing downstream asks which task it is.

The paper's four tasks are built in (``TASKS``). A task of your own is a ``Task`` whose ``load``
returns its splits (``data.ArraySplit`` holds arrays), registered under its name::

    import brf_hw
    task = brf_hw.Task("blink", inputs=2, hidden=16, outputs=2, loss_mode="every_step", steps=100,
                       load=lambda data_dir: {"train": ..., "val": ..., "test": ...})
    brf_hw.register_task(task)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Protocol

import torch

from .cli_util import UserError
from .data import ecg, mnist, shd
from .data.batch import Batch
from .neurons import NeuronConfig


class Split(Protocol):
    """What a task's loader returns per split: sized, indexable by a tensor of positions, and
    turned into one time-major batch."""

    def __len__(self) -> int: ...

    def subset(self, index) -> "Split": ...

    def to_batch(self) -> Batch: ...


# Loss modes. per_step: a label per step, NLL summed over steps, predict argmax o[t] per step.
# every_step: one label per sequence, NLL on every step, predict argmax of the time-mean of o.
# label_last: one label per sequence, NLL and prediction on the last step only.
LOSS_MODES = ("per_step", "every_step", "label_last")
# The integer readout that reads each loss mode's prediction (``fixed.spec.Readout``).
READOUT_FOR_LOSS = {"per_step": "per_step", "every_step": "mean", "label_last": "last"}

Loader = Callable[[str | None], Mapping[str, Split]]


@dataclass(frozen=True)
class Task:
    """A task: its network shape, loss mode, training defaults (the paper's), neuron initialisation,
    sequence length, input format (``input_bits`` unsigned bits of ``input_unit`` each; 1 bit:
    spikes) and ``load(data_dir)`` -> {"train", "val", "test"} splits."""

    name: str
    inputs: int
    hidden: int
    outputs: int
    loss_mode: str
    load: Loader = field(compare=False, repr=False)
    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.1
    omega_init: tuple[float, float] = (5.0, 10.0)
    b_offset_init: tuple[float, float] = (0.1, 1.0)
    tau_o_init: tuple[float, float] = (20.0, 5.0)
    alif_tau_m_init: tuple[float, float] = (20.0, 5.0)
    alif_tau_adp_init: tuple[float, float] = (200.0, 50.0)
    eval_batch_size: int = 256
    steps: int = 0  # sequence length: sizes the running sum of a mean readout
    input_bits: int = 1  # unsigned bits of one input value (1: spikes)
    input_unit: float = 1.0  # the float value of one input integer step

    def __post_init__(self):
        if self.loss_mode not in LOSS_MODES:
            raise ValueError(f"task {self.name!r}: loss_mode {self.loss_mode!r} is not one of {', '.join(LOSS_MODES)}")
        if min(self.inputs, self.hidden, self.outputs) < 1:
            raise ValueError(f"task {self.name!r}: shape {self.inputs}-{self.hidden}-{self.outputs} needs every size >= 1")
        if self.readout_rule == "mean" and self.steps < 1:
            raise ValueError(f"task {self.name!r}: a {self.loss_mode} task needs its sequence length (steps) "
                             f"to size the running sum of its mean readout")

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.inputs, self.hidden, self.outputs

    @property
    def readout_rule(self) -> str:
        return READOUT_FOR_LOSS[self.loss_mode]

    def input_format(self):
        from .fixed.spec import InputFormat

        return InputFormat(self.input_bits, self.input_unit)

    def readout(self, output_bits: int):
        from .fixed.spec import Readout

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


TASKS: dict[str, Task] = {
    "ecg": Task("ecg", 4, 36, 6, "per_step", ecg.load_ecg, epochs=400, batch_size=16, lr=0.1,
                omega_init=(3.0, 5.0), b_offset_init=(0.1, 1.0), tau_o_init=(20.0, 1.0),
                alif_tau_m_init=(20.0, 0.5), alif_tau_adp_init=(7.0, 0.2), eval_batch_size=141,
                steps=ecg.STEPS),
    "smnist": Task("smnist", 1, 256, 10, "label_last", mnist.load_mnist, epochs=300, batch_size=256, lr=0.1,
                   omega_init=(15.0, 50.0), b_offset_init=(0.1, 1.0), tau_o_init=(20.0, 5.0),
                   steps=mnist.STEPS, input_bits=8, input_unit=1 / 255),
    "psmnist": Task("psmnist", 1, 256, 10, "every_step", lambda d: mnist.load_mnist(d, permuted=True),
                    epochs=300, batch_size=256, lr=0.1, omega_init=(15.0, 85.0), b_offset_init=(0.1, 1.0),
                    tau_o_init=(20.0, 1.0), steps=mnist.STEPS, input_bits=8, input_unit=1 / 255),
    "shd": Task("shd", shd.CHANNELS, 128, shd.CLASSES, "every_step", shd.load_shd, epochs=20, batch_size=32,
                lr=0.075, omega_init=(5.0, 10.0), b_offset_init=(2.0, 3.0), tau_o_init=(20.0, 5.0),
                steps=shd.STEPS),
}
BUILT_IN = tuple(TASKS)


def register_task(task: Task, replace: bool = False) -> Task:
    """Make ``task`` known by its name to training, QAT, evaluation, synthesis and simulation.
    A built-in task cannot be replaced; your own can with ``replace=True``."""
    if task.name in BUILT_IN or (task.name in TASKS and not replace):
        raise ValueError(f"a task named {task.name!r} is already registered"
                         + ("" if task.name in BUILT_IN else "; pass replace=True to replace it"))
    TASKS[task.name] = task
    return task


def get_task(task: str | Task) -> Task:
    """A task by name (or the task itself); an unknown name is a user error listing the known ones."""
    if isinstance(task, Task):
        return task
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; choose one of {', '.join(sorted(TASKS))} "
                        f"(or brf_hw.register_task your own)")
    return TASKS[task]


def task_for_shape(inputs: int, outputs: int) -> Task | None:
    """The first task whose inputs and outputs match (S-MNIST for 1-H-10), or None."""
    return next((t for t in TASKS.values() if (t.inputs, t.outputs) == (inputs, outputs)), None)


class TaskData:
    """The three splits of a task and a batch iterator over each."""

    def __init__(self, task: str | Task, data_dir=None):
        self.spec = get_task(task)
        self.splits = dict(self.spec.load(data_dir))
        missing = {"train", "val", "test"} - set(self.splits)
        if missing:
            raise ValueError(f"task {self.spec.name!r}: its loader returned no {', '.join(sorted(missing))} split")

    def size(self, split: str) -> int:
        return len(self.splits[split])

    def batches(self, split: str, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None, limit: int | None = None) -> Iterator[Batch]:
        data = self.splits[split]
        n = len(data) if limit is None else min(limit, len(data))
        order = torch.randperm(len(data), generator=generator)[:n] if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            yield data.subset(order[start : start + batch_size]).to_batch()

    def integer_sequences(self, split: str, limit: int | None = None):
        """What the hardware is fed: (x [T, B, inputs] unsigned integers in the task's input
        format, as uint8 or uint16, targets [T, B] or [B], annotated [T, B] or None), numpy."""
        data = self.splits[split]
        if limit is not None:
            data = data.subset(torch.arange(min(limit, len(data))))
        batch = data.to_batch()
        ints = self.spec.input_format().integers(batch.x.numpy())
        annotated = batch.annotated.numpy() if batch.annotated is not None else None
        return ints, batch.target.numpy(), annotated
