"""brf-hw: Balanced resonate-and-fire spiking networks from PyTorch training to bit-exact hardware.

The pipeline, by stage (every name is importable from ``brf_hw``; a name's module is imported when
the name is first used, so ``import brf_hw`` itself is fast and needs neither torch nor Amaranth):

* **Tasks**: ``Task``, ``TASKS`` (the built-in ``ecg``, ``smnist``, ``psmnist``, ``shd``),
  ``register_task``, ``get_task``, ``TaskData``, ``ArraySplit`` (your own data as arrays).
* **Float model and training**: ``ModelConfig``, ``NeuronConfig``, ``RSNN``, ``build_model``,
  ``train_float`` -> ``TrainResult``, ``TrainConfig``, ``Trainer``, ``load_checkpoint_model``.
* **Fixed point**: ``Format``, ``InputFormat``, ``FixedSpec``, ``Readout``, ``ReadoutRule``,
  ``spec_for_model``, ``to_int_network``, ``IntNetwork``; ``quantize`` -> ``QATResult``
  (quantization-aware training and export).
* **Artifact**: ``save_artifact``, ``load_artifact``, ``shipped_artifact``, ``ArtifactError``.
* **Golden model**: ``run_golden`` -> ``GoldenResult``, ``run_golden_stream``,
  ``evaluate_sequences`` (arrays), ``evaluate_network`` (a task's split) -> ``Evaluation``; ``to_stream``,
  ``from_stream``, ``sequence_starts``.
* **Hardware**: ``BRFAccelerator`` (the Amaranth component), ``generate_verilog``, ``simulate``
  -> ``HardwareRun`` (Amaranth's simulator), ``simulate_verilog`` (Verilator / Icarus via cocotb),
  ``cycle_model``, ``period_model``, ``expected_cycles``, ``shape_network``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> (module, attribute in it)
_EXPORTS: dict[str, tuple[str, str]] = {
    # tasks
    "Task": ("brf_hw.tasks", "Task"),
    "TASKS": ("brf_hw.tasks", "TASKS"),
    "register_task": ("brf_hw.tasks", "register_task"),
    "get_task": ("brf_hw.tasks", "get_task"),
    "TaskData": ("brf_hw.tasks", "TaskData"),
    "ArraySplit": ("brf_hw.data.batch", "ArraySplit"),
    # float model and training
    "ModelConfig": ("brf_hw.model", "ModelConfig"),
    "NeuronConfig": ("brf_hw.neurons", "NeuronConfig"),
    "RSNN": ("brf_hw.model", "RSNN"),
    "build_model": ("brf_hw.model", "build_model"),
    "TrainConfig": ("brf_hw.train.trainer", "TrainConfig"),
    "Trainer": ("brf_hw.train.trainer", "Trainer"),
    "TrainingDiverged": ("brf_hw.train.trainer", "TrainingDiverged"),
    "load_checkpoint_model": ("brf_hw.train.trainer", "load_checkpoint_model"),
    "train_float": ("brf_hw.api", "train_float"),
    "TrainResult": ("brf_hw.api", "TrainResult"),
    # fixed point and QAT
    "Format": ("brf_hw.fixed.formats", "Format"),
    "FormatError": ("brf_hw.fixed.formats", "FormatError"),
    "InputFormat": ("brf_hw.fixed.spec", "InputFormat"),
    "FixedSpec": ("brf_hw.fixed.spec", "FixedSpec"),
    "Readout": ("brf_hw.fixed.spec", "Readout"),
    "ReadoutRule": ("brf_hw.fixed.spec", "ReadoutRule"),
    "IntNetwork": ("brf_hw.fixed.spec", "IntNetwork"),
    "spec_for_model": ("brf_hw.fixed.spec", "spec_for_model"),
    "to_int_network": ("brf_hw.fixed.qat", "to_int_network"),
    "quantize": ("brf_hw.api", "quantize"),
    "QATResult": ("brf_hw.train.qat_flow", "QATResult"),
    # artifact
    "save_artifact": ("brf_hw.artifact", "save_artifact"),
    "load_artifact": ("brf_hw.artifact", "load_artifact"),
    "shipped_artifact": ("brf_hw.artifact", "shipped_artifact"),
    "ArtifactError": ("brf_hw.artifact", "ArtifactError"),
    # golden model and scoring
    "run_golden": ("brf_hw.golden", "run"),
    "run_golden_stream": ("brf_hw.golden", "run_stream"),
    "GoldenResult": ("brf_hw.golden", "GoldenResult"),
    "evaluate_sequences": ("brf_hw.evaluate", "evaluate"),
    "evaluate_network": ("brf_hw.api", "evaluate_network"),
    "Evaluation": ("brf_hw.evaluate", "Evaluation"),
    "to_stream": ("brf_hw.stream", "to_stream"),
    "from_stream": ("brf_hw.stream", "from_stream"),
    "sequence_starts": ("brf_hw.stream", "sequence_starts"),
    # hardware
    "BRFAccelerator": ("brf_hw.hw.core", "BRFAccelerator"),
    "cycle_model": ("brf_hw.hw.core", "cycle_model"),
    "period_model": ("brf_hw.hw.core", "period_model"),
    "generate_verilog": ("brf_hw.api", "generate_verilog"),
    "shape_network": ("brf_hw.hw.generate", "shape_network"),
    "simulate": ("brf_hw.hw.simulate", "simulate"),
    "HardwareRun": ("brf_hw.hw.simulate", "HardwareRun"),
    "expected_cycles": ("brf_hw.hw.simulate", "expected_cycles"),
    "simulate_verilog": ("brf_hw.api", "simulate_verilog"),
}

# ``train`` and ``evaluate`` would be shadowed by the subpackage brf_hw.train and the module
# brf_hw.evaluate (importing a submodule sets the package's attribute), hence train_float and
# evaluate_sequences.
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'brf_hw' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # the next access does not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names arrive through __getattr__
    from .api import TrainResult, evaluate_network, generate_verilog, quantize, simulate_verilog, train_float
    from .artifact import ArtifactError, load_artifact, save_artifact, shipped_artifact
    from .data.batch import ArraySplit
    from .evaluate import Evaluation
    from .evaluate import evaluate as evaluate_sequences
    from .fixed.formats import Format, FormatError
    from .fixed.qat import to_int_network
    from .fixed.spec import FixedSpec, InputFormat, IntNetwork, Readout, ReadoutRule, spec_for_model
    from .golden import GoldenResult
    from .golden import run as run_golden
    from .golden import run_stream as run_golden_stream
    from .hw.core import BRFAccelerator, cycle_model, period_model
    from .hw.generate import shape_network
    from .hw.simulate import HardwareRun, expected_cycles, simulate
    from .model import RSNN, ModelConfig, build_model
    from .neurons import NeuronConfig
    from .stream import from_stream, sequence_starts, to_stream
    from .tasks import TASKS, Task, TaskData, get_task, register_task
    from .train.qat_flow import QATResult
    from .train.trainer import TrainConfig, Trainer, TrainingDiverged, load_checkpoint_model
