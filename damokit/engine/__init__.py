"""Training engine: the fit loop (single process or torchrun DDP), checkpoints, schedules."""

from damokit.engine.checkpoint import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from damokit.engine.loop import FitResult, TrainConfig, build_optimizer, fit, module_device, move_to, seed_everything
from damokit.engine.schedules import SCHEDULES, schedule_factor

__all__ = [
    "CheckpointError",
    "FitResult",
    "SCHEDULES",
    "TrainConfig",
    "build_optimizer",
    "fit",
    "load_checkpoint",
    "load_weights",
    "module_device",
    "move_to",
    "save_checkpoint",
    "schedule_factor",
    "seed_everything",
]
