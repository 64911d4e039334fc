"""Training: task definitions, metrics and the shared training core."""

from .trainer import TrainConfig, Trainer, TrainingDiverged, load_checkpoint_model

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged", "load_checkpoint_model"]
