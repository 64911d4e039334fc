"""Training: task definitions, metrics and the shared training core."""

from .tasks import TASKS, TaskData, TaskSpec
from .trainer import TrainConfig, Trainer, TrainingDiverged, load_checkpoint_model

__all__ = ["TASKS", "TaskData", "TaskSpec", "TrainConfig", "Trainer", "TrainingDiverged", "load_checkpoint_model"]
