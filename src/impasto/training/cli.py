"""Logic of ``impasto train TASK``: build the TrainConfig from a YAML file, flags and overrides, then train."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from impasto.errors import ConfigError
from impasto.training.config import TrainConfig
from impasto.training.loop import TrainResult, available_tasks, get_task, train


def build_config(task: str, content: str | None = None, style: str | None = None, config_file: str | None = None,
                 out: str | None = None, steps: int | None = None, overrides: Sequence[str] = ()
                 ) -> TrainConfig:
    """The run's TrainConfig: ``config_file`` (YAML), then --content/--style/--out/--steps, then ``key=value``.

    The task name on the command line wins over the file's; a file naming another task is an error.
    Default ``out_dir``: ``runs/<task>``.
    """
    get_task(task)  # unknown task -> ConfigError listing the known ones
    data: dict[str, Any] = {}
    if config_file:
        data = TrainConfig.from_yaml(config_file).to_dict()
        if data.get("task") and data["task"] != task:
            raise ConfigError(f"configuration {config_file} is for task {data['task']!r}, not {task!r}; "
                              f"run 'impasto train {data['task']}' or fix the file")
    data["task"] = task
    for key, value in (("content_dir", content), ("style_dir", style), ("out_dir", out), ("steps", steps)):
        if value is not None:
            data[key] = value
    if out is None and data.get("out_dir", "runs/train") == "runs/train":
        data["out_dir"] = f"runs/{task}"
    for key in ("content_dir", "style_dir"):
        folder = data.get(key)
        if folder and not Path(folder).is_dir():
            flag = "--content" if key == "content_dir" else "--style"
            raise ConfigError(f"{flag} {folder}: not a folder; pass a folder of images")
    return TrainConfig.from_dict(data, overrides)


def run_train(task: str, content: str | None = None, style: str | None = None, config_file: str | None = None,
              out: str | None = None, steps: int | None = None, resume: bool = False,
              overrides: Sequence[str] = (), progress: bool = True, threads: int | None = None,
              max_steps: int | None = None) -> TrainResult:
    """Build the config (see ``build_config``) and train; returns the loop's TrainResult.

    ``threads`` (or the environment variable ``IMPASTO_TRAIN_THREADS``) sets ``torch.set_num_threads``.
    """
    if threads is None and os.environ.get("IMPASTO_TRAIN_THREADS"):  # (--threads 0 was taken as "not given")
        value = os.environ["IMPASTO_TRAIN_THREADS"]
        try:
            threads = int(value)
        except ValueError:
            raise ConfigError(f"IMPASTO_TRAIN_THREADS must be a whole number of threads, got {value!r}") from None
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1 (got {threads})")
        torch.set_num_threads(threads)
    config = build_config(task, content, style, config_file, out, steps, overrides)
    return train(config, resume=resume, max_steps=max_steps, progress=progress)


def describe_tasks() -> str:
    """One line listing the registered tasks."""
    return ", ".join(available_tasks())
