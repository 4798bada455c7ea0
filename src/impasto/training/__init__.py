"""impasto.training: typed configs, the Task interface, the training loop, checkpoints, torchrun support."""

from __future__ import annotations

from impasto.training.checkpoint import CheckpointManager, latest_checkpoint, load_checkpoint, save_checkpoint
from impasto.training.config import TrainConfig
from impasto.training.distributed import (
                                         DistInfo,
                                         barrier,
                                         get_rank,
                                         get_world_size,
                                         init_distributed,
                                         is_main_process,
                                         unwrap,
                                         wrap_ddp,
)
from impasto.training.loop import (
                                         Task,
                                         TrainResult,
                                         amp_settings,
                                         available_tasks,
                                         get_task,
                                         register_task,
                                         train,
)

__all__ = [
    "CheckpointManager",
    "DistInfo",
    "Task",
    "TrainConfig",
    "TrainResult",
    "amp_settings",
    "available_tasks",
    "barrier",
    "get_rank",
    "get_task",
    "get_world_size",
    "init_distributed",
    "is_main_process",
    "latest_checkpoint",
    "load_checkpoint",
    "register_task",
    "save_checkpoint",
    "train",
    "unwrap",
    "wrap_ddp",
]
