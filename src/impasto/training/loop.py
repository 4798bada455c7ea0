"""The generic training loop and the Task interface that each method's trainer implements.

A Task owns its models, losses and optimizers and does one optimisation step per ``training_step``
(the models do not own their training objective: it returns named loss terms incl. "total"). The loop
owns everything else: data streams, learning-rate decay ``lr / (1 + lr_decay * step)``, mixed precision,
logging, sample grids, checkpoints (periodic, at the end, and on Ctrl-C / SIGTERM), exact resumption and
torchrun/DDP.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import logging
import math
import os
import random
import signal
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from impasto.data.datasets import ImageFolderDataset, SeededCropStream
from impasto.data.samplers import InfiniteSampler, mix_seed
from impasto.errors import ConfigError, OutputError
from impasto.hardware import resolve_precision
from impasto.io.atomic import clean_stale_temporaries
from impasto.io.images import save_image
from impasto.training import distributed as D
from impasto.training.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointManager,
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
)
from impasto.training.config import TrainConfig, read_holdout
from impasto.training.logging import JsonlLogger, ProgressBar, make_sample_grid

logger = logging.getLogger("impasto.training")

STREAMS = ("content", "style")
_SALT = {"content": (1, 2), "style": (3, 4)}  # (sampler seed salt, crop seed salt)


# =============================================================================================== Task
class Task(abc.ABC):
    """What a method must provide to be trained by ``train`` (subclass it and ``@register_task(name)``).

    The loop calls, in order: ``build(config, device)`` once, ``trainable_modules()`` and
    ``optimizers()`` (after build), then ``training_step(batch, step)`` for every step, ``sample`` for
    the sample grids, ``model_state`` / ``state_dict`` when checkpointing.

    Inside ``training_step`` use the helpers the loop provides: ``with self.autocast():`` around forward
    passes, ``self.backward(loss)`` and ``self.optimizer_step(opt)`` (they apply the fp16 GradScaler when
    one is active), and in ``build`` wrap every trained module with ``self.wrap_ddp(module)`` (a no-op
    outside torchrun) while keeping the unwrapped module in ``trainable_modules()``.
    """

    name: ClassVar[str] = ""

    # ------------------------------------------------------------------ to implement
    @abc.abstractmethod
    def build(self, config: TrainConfig, device: torch.device) -> None:
        """Create the models (on ``device``), losses and optimizers from ``config`` (and its task_options)."""

    @abc.abstractmethod
    def trainable_modules(self) -> dict[str, nn.Module]:
        """The modules whose parameters are trained (unwrapped, not DDP), by name; saved in checkpoints."""

    @abc.abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name (``{"generator": ..., "discriminator": ...}``), saved in checkpoints."""

    @abc.abstractmethod
    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        """One optimisation step (zero_grad, forward, backward, optimizer steps; possibly several optimizers).

        Args:
            batch: ``{"content": Bc x 3 x crop x crop, "style": Bs x 3 x crop x crop}`` in [0, 1] on the
                device (only the streams ``batch_sizes`` asks for).
            step: number of steps done before this one (0-based).

        Returns:
            named loss terms (floats or 0-d tensors), including ``"total"``.
        """

    @abc.abstractmethod
    def sample(self, contents: torch.Tensor, styles: torch.Tensor | None) -> torch.Tensor:
        """Stylise ``contents[i]`` with ``styles[i]`` (N x 3 x H x W each, [0, 1]) -> N x 3 x H x W in [0, 1].

        Called under ``torch.no_grad()`` with the trainable modules in eval mode; ``styles`` is None when
        the task uses no style images.
        """

    @abc.abstractmethod
    def model_state(self) -> dict[str, Any]:
        """What inference needs to rebuild the trained model (state dicts + architecture options)."""

    # ------------------------------------------------------------------ optional hooks
    def batch_sizes(self, config: TrainConfig) -> dict[str, int]:
        """Images per step drawn from each stream (0 = stream unused). Default: batch_size of each."""
        return {"content": config.batch_size, "style": config.batch_size}

    def lr_factor(self, step: int) -> float:
        """Multiplier of every parameter group's initial lr at ``step``: ``1 / (1 + lr_decay * step)``."""
        return 1.0 / (1.0 + self.config.lr_decay * step)

    def state_dict(self) -> dict[str, Any]:
        """Extra training state to checkpoint besides modules and optimizers (e.g. an EMA, counters)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore ``state_dict()``."""

    def checkpoint_model_state(self) -> dict[str, Any]:
        """The model state stored in a checkpoint (default: ``model_state()``)."""
        return self.model_state()

    def checkpoint_saved(self, model_state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Called after each checkpoint was written, with the model state it holds."""

    # ------------------------------------------------------------------ provided by the loop
    config: TrainConfig
    device: torch.device = torch.device("cpu")
    dist: D.DistInfo = D.DistInfo()
    amp_dtype: torch.dtype | None = None
    scaler: Any = None

    def bind(self, config: TrainConfig, device: torch.device, dist: D.DistInfo | None = None,
             amp_dtype: torch.dtype | None = None, scaler: Any = None) -> None:
        """Give the task its run context (called by the loop before ``build``)."""
        self.config, self.device = config, device
        self.dist = dist if dist is not None else D.DistInfo(device=device)
        self.amp_dtype, self.scaler = amp_dtype, scaler

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context for forward passes (``torch.autocast`` or a no-op for fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """``loss.backward()``, scaled by the GradScaler when fp16 training uses one."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward(**kwargs)

    def optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()`` (through the GradScaler when one is active: skipped on inf/NaN gradients)."""
        if self.scaler is not None:
            self.scaler.step(optimizer)
        else:
            optimizer.step()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Unscale the gradients of ``optimizer`` in place (before gradient clipping under fp16)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def wrap_ddp(self, module: nn.Module, **kwargs: Any) -> nn.Module:
        """``module`` wrapped in DistributedDataParallel under torchrun (unchanged otherwise)."""
        return D.wrap_ddp(module, self.device, **kwargs)


_TASKS: dict[str, type[Task]] = {}
_BUILTIN_TASK_MODULES = ("impasto.methods", "impasto.training.tasks")


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: make a Task subclass trainable as ``task: name``."""

    def deco(cls: type[Task]) -> type[Task]:
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise TypeError(f"register_task({name!r}) expects a Task subclass, got {cls!r}")
        old = _TASKS.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"task name {name!r} is already registered by "
                             f"{old.__module__}.{old.__qualname__}")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return deco


def _import_builtin_tasks() -> None:
    for mod in _BUILTIN_TASK_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def _register_plugin_task(name: str, obj: object) -> None:
    """Entry point ``name`` of group ``impasto.tasks``: a Task subclass, or a module that registered its own."""
    if isinstance(obj, type):
        if _TASKS.get(name) is not obj:
            register_task(name)(obj)  # TypeError for a class that is not a Task
    elif not isinstance(obj, types.ModuleType):
        raise TypeError(f"expected a Task subclass or a module, got {obj!r}")


def _load_tasks() -> None:
    """The built-in tasks, then (once per process) the plugins' of entry-point group ``impasto.tasks``."""
    _import_builtin_tasks()
    from impasto.plugins import TASKS_GROUP, load_plugins

    load_plugins(TASKS_GROUP, _register_plugin_task)


def available_tasks() -> list[str]:
    """Names of the registered tasks (built-in and plugins), sorted."""
    _load_tasks()
    return sorted(_TASKS)


def get_task(name: str) -> type[Task]:
    """The Task class registered as ``name``; ConfigError listing the known tasks otherwise."""
    if name not in _TASKS:
        _load_tasks()
    if name not in _TASKS:
        known = ", ".join(sorted(_TASKS)) or "(none registered)"
        raise ConfigError(f"unknown training task {name!r}; known tasks: {known}")
    return _TASKS[name]


# ========================================================================================= precision
#: (autocast dtype or None, use a GradScaler) for each precision :func:`impasto.hardware.resolve_precision` returns
_AMP: dict[str, tuple[torch.dtype | None, bool]] = {
    "fp32": (None, False),
    "bf16": (torch.bfloat16, False),
    "fp16": (torch.float16, True),
}


def amp_settings(precision: str) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, use a GradScaler)`` for a resolved precision (``fp32``, ``bf16`` or ``fp16``).

    The precision itself comes from :func:`impasto.hardware.resolve_precision` with ``training=True``:
    fp32 -> (None, False), bf16 -> (bfloat16, False), fp16 -> (float16, True).
    """
    return _AMP[precision]


# ============================================================================================= data
class _Batches:
    """Endless batch indices ``[k, k+1, ..., k+b-1]`` of a position stream starting at ``start``."""

    def __init__(self, start: int, batch_size: int) -> None:
        self.start, self.batch_size = start, batch_size

    def __iter__(self) -> Iterator[list[int]]:
        k = self.start
        while True:
            yield list(range(k, k + self.batch_size))
            k += self.batch_size


def _ignore_stop_signals(worker_id: int) -> None:
    """Data-loader workers ignore SIGINT/SIGTERM: ``timeout``, Ctrl-C and schedulers signal the whole process
    group, and a worker that died of it broke the final checkpoint. The main process stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@dataclass
class _Stream:
    dataset: ImageFolderDataset
    sampler: InfiniteSampler
    crops: SeededCropStream
    batch_size: int
    iterator: Any = None

    def start(self, num_workers: int, pin_memory: bool) -> None:
        loader = DataLoader(self.crops, batch_sampler=_Batches(self.sampler.index, self.batch_size),
                            num_workers=num_workers, pin_memory=pin_memory,
                            persistent_workers=num_workers > 0, worker_init_fn=_ignore_stop_signals,
                            # its own generator: creating the iterator must not draw from the global RNG
                            generator=torch.Generator().manual_seed(self.crops.seed))
        self.iterator = iter(loader)

    def next(self) -> torch.Tensor:
        batch = next(self.iterator)
        self.sampler.index += self.batch_size
        return batch


def _build_streams(config: TrainConfig, sizes: dict[str, int], info: D.DistInfo) -> dict[str, _Stream]:
    streams = {}
    for name in STREAMS:
        n = int(sizes.get(name, 0))
        if n <= 0:
            continue
        folder = config.content_dir if name == "content" else config.style_dir
        if not folder:
            raise ConfigError(f"task {config.task!r} needs {name} images: "
                              f"set {name}_dir to a folder of images")
        ds = ImageFolderDataset(folder, size=config.size, crop=config.crop, resize=config.resize,
                                exclude=read_holdout(config.holdout))
        salt_sampler, salt_crop = _SALT[name]
        sampler = InfiniteSampler(len(ds), mix_seed(config.seed, salt_sampler), info.rank, info.world_size)
        crops = SeededCropStream(ds, sampler, mix_seed(config.seed, salt_crop))
        streams[name] = _Stream(ds, sampler, crops, n)
    if not streams:
        raise ConfigError(f"task {config.task!r} asks for no images (batch_sizes returned {sizes})")
    return streams


def _sample_inputs(streams: dict[str, _Stream], k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fixed centre crops of k evenly spaced images of each stream, for the sample grids."""
    out: dict[str, torch.Tensor | None] = {"content": None, "style": None}
    for name, s in streams.items():
        n = len(s.dataset)
        idx = sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(min(k, n))})
        out[name] = torch.stack([s.dataset.load(i, None) for i in idx])
    first = out["content"] if out["content"] is not None else out["style"]
    return first, out["style"] if out["content"] is not None else None


# ========================================================================================= signals
class _StopFlag:
    """Sets ``requested`` on SIGINT/SIGTERM (a second SIGINT raises KeyboardInterrupt at once)."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        logger.warning("%s received: stopping after the current step and saving a checkpoint "
                       "(press Ctrl-C again to abort without saving)", self.signal_name)

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous.clear()


# =========================================================================================== train
@dataclass
class TrainResult:
    """What ``train`` returns: the step reached, where things were written, and how the run ended."""

    step: int
    out_dir: Path
    checkpoint: Path | None
    interrupted: bool
    losses: dict[str, float] = field(default_factory=dict)
    task: Task | None = None
    signal: str | None = None  #: "SIGINT" or "SIGTERM" when a signal stopped the run


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % (1 << 32))
    random.seed(seed)


def _resolve_resume(config: TrainConfig | None, resume: bool | str | os.PathLike
                    ) -> tuple[TrainConfig, dict[str, Any] | None]:
    ckpt = None
    if resume is not False and resume is not None and not isinstance(resume, bool):
        path = Path(resume)
        if not path.exists():
            raise ConfigError(f"resume checkpoint {path} not found; pass a checkpoint file or resume=True")
        ckpt = load_checkpoint(path)
        if config is None:
            config = TrainConfig.from_dict(ckpt["config"])
    elif resume:
        if config is None:
            raise ConfigError("resume=True needs a config (its out_dir holds the checkpoints); "
                              "or pass the checkpoint path as resume")
        config.validate()  # a bad out_dir fails before the search for its checkpoints
        found = latest_checkpoint(config.out_dir)
        if found is None:
            logger.warning("resume requested but %s holds no checkpoint: starting from step 0",
                           config.out_dir)
        else:
            ckpt = load_checkpoint(found)
    if config is None:
        raise ConfigError("train() needs a TrainConfig (or resume=<checkpoint path>)")
    config.validate()
    if ckpt is not None:
        if ckpt.get("task") != config.task:
            raise ConfigError(f"the checkpoint was trained with task {ckpt.get('task')!r} but the config "
                              f"says task {config.task!r}; use the same task to resume")
        old = ckpt.get("config", {})
        changed = sorted(k for k, v in config.to_dict().items() if old.get(k) != v)
        if changed:
            logger.warning("resuming with changed settings: %s", ", ".join(changed))
    elif latest_checkpoint(config.out_dir) is not None:
        raise ConfigError(f"{config.out_dir} already holds checkpoints of a run; pass resume=True "
                          "(--resume) to continue it, or choose another out_dir")
    return config, ckpt


def train(config: TrainConfig | None = None, task: Task | type[Task] | None = None,
          resume: bool | str | os.PathLike = False, max_steps: int | None = None,
          progress: bool = True) -> TrainResult:
    """Train ``config.task`` for ``config.steps`` steps (or ``max_steps`` more steps in this call).

    Args:
        config: the run's configuration (None with ``resume=<path>``: the checkpoint's config).
        task: a Task instance or class to use instead of ``get_task(config.task)``.
        resume: False (new run; refuses an out_dir that already has checkpoints), True (continue from
            the latest checkpoint in ``out_dir``, or start if there is none), or a checkpoint path.
        max_steps: run at most this many steps in this call (a checkpoint is saved when it stops).
        progress: show a progress bar (rank 0 only).

    Writes into ``out_dir``: config.yaml, log.jsonl (step, time, elapsed, lr, losses every log_every
    steps), samples/step_XXXXXXX.png, checkpoints/{latest.pt, step_XXXXXXX.pt}. SIGINT/SIGTERM stop the
    run cleanly after the current step with a checkpoint. Resuming reproduces the uninterrupted run
    exactly (same data, crops, RNG streams, optimizer states).
    """
    config, ckpt = _resolve_resume(config, resume)
    if max_steps is not None and int(max_steps) < 0:
        raise ConfigError(f"max_steps must be >= 0 (got {max_steps})")
    info = D.init_distributed(config.device)
    result = None
    try:
        result = _train(config, task, ckpt, max_steps, progress, info)
        return result
    finally:
        if result is not None and info.owns_group:  # a finished run: free the DDP reducers on every rank, in step
            D.release_ddp(result.task)
            torch.distributed.barrier()
        D.cleanup(info)


def _optimizer_lrs(optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
    return {name: float(opt.param_groups[0]["lr"]) for name, opt in optimizers.items()}


@dataclass
class _Run:
    """What the helpers of one training run share: its parts, and the step reached."""

    config: TrainConfig
    info: D.DistInfo
    out_dir: Path
    task: Task
    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    scaler: Any
    streams: dict[str, _Stream]
    step: int = 0
    elapsed0: float = 0.0  #: seconds trained before this call (from the checkpoint resumed)
    t_start: float = 0.0  #: ``time.time()`` when this call's steps began
    manager: CheckpointManager | None = None

    @property
    def device(self) -> torch.device:
        return self.info.device


def _set_up(config: TrainConfig, task: Task | type[Task] | None, info: D.DistInfo) -> _Run:
    """Prepare ``out_dir``, the precision, the task (identical initial weights on every rank) and the data."""
    device = info.device
    out_dir = Path(config.out_dir)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        for folder in (out_dir, out_dir / "checkpoints"):  # temporaries of a run that was killed mid-write
            for p in clean_stale_temporaries(folder):
                logger.warning("removed %s, left by an interrupted write", p)
    amp_dtype, use_scaler = amp_settings(resolve_precision(config.precision, device, training=True))
    seed_everything(config.seed)
    if task is None:
        task = get_task(config.task)()
    elif isinstance(task, type):
        task = task()
    if not task.name:
        task.name = config.task
    scaler = torch.amp.GradScaler(device.type) if use_scaler else None
    task.bind(config, device, info, amp_dtype, scaler)
    streams = _build_streams(config, task.batch_sizes(config), info)
    task.build(config, device)
    modules = task.trainable_modules()
    optimizers = task.optimizers()
    for opt in optimizers.values():
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])
    return _Run(config, info, out_dir, task, modules, optimizers, scaler, streams)


def _load_or_explain(target: Any, states: dict[str, Any], name: str, errors: tuple[type[Exception], ...],
                     what: str, todo: str) -> None:
    """``target.load_state_dict(states[name])``; a missing or mismatching state is a ConfigError: what, why, todo."""
    try:
        target.load_state_dict(states[name])
    except errors as exc:
        raise ConfigError(f"{what} ({str(exc).splitlines()[0][:200]}); {todo}") from None


def _resume_state(run: _Run, ckpt: dict[str, Any]) -> None:
    """Load a checkpoint's step, modules, optimizers, task state, GradScaler and sampler positions into ``run``
    (the RNG streams are restored later, by :func:`_seed_steps`)."""
    run.step = int(ckpt["step"])
    run.elapsed0 = float(ckpt.get("elapsed", 0.0))
    for name, module in run.modules.items():
        _load_or_explain(D.unwrap(module), ckpt.get("modules", {}), name, (KeyError, RuntimeError),
                         f"the checkpoint's {name!r} does not match the model this configuration builds",
                         "resume with the run's own config. A refine-encoder run saved before the ConvX_1 layer "
                         "split became the default needs task_options.layer_split=false")
    for name, opt in run.optimizers.items():  # e.g. another number of parameter groups (iecontraast's aux_lr)
        _load_or_explain(opt, ckpt.get("optimizers", {}), name, (KeyError, ValueError),
                         f"the checkpoint's {name!r} optimizer does not match the one this configuration builds",
                         "resume with the run's own config, or start a new run from its model.pt with "
                         "task_options.init_checkpoint (a new optimizer)")
    run.task.load_state_dict(ckpt.get("task_state") or {})
    if run.scaler is not None and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    for name, s in run.streams.items():
        s.sampler.load_state_dict(ckpt["samplers"][name])
    logger.info("resumed from step %d", run.step)


def _seed_steps(ckpt: dict[str, Any] | None, seed: int, info: D.DistInfo) -> None:
    """Set the RNG streams of the steps: the checkpoint's (resume) or fresh ones per rank. Called last, so that
    nothing done while setting up can shift them."""
    if ckpt is not None:
        rngs = ckpt["rng"]
        if len(rngs) != info.world_size:
            logger.warning("checkpoint has RNG states of %d ranks, this run has %d", len(rngs),
                           info.world_size)
        restore_rng_state(rngs[info.rank % len(rngs)])
    else:
        seed_everything(mix_seed(seed, 5, info.rank))


def _train_step(run: _Run) -> tuple[dict[str, float], dict[str, float]]:
    """One step: set the decayed learning rates, draw the batch, ``task.training_step``, update the GradScaler.
    Returns (the step's losses as floats, the learning rates it used); ``run.step`` counts it."""
    factor = run.task.lr_factor(run.step)
    for opt in run.optimizers.values():
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * factor
    batch = {n: s.next().to(run.device, non_blocking=True) for n, s in run.streams.items()}
    lrs = _optimizer_lrs(run.optimizers)
    losses = run.task.training_step(batch, run.step)
    if run.scaler is not None:
        run.scaler.update()
    run.step += 1
    return {k: float(v) for k, v in losses.items()}, lrs


def _save_checkpoint(run: _Run) -> Path | None:
    """Write the checkpoint of ``run.step`` (rank 0; every rank joins the RNG gather and the barrier) and let the
    task write its model file after it. A full disk or a folder without write permission is an OutputError."""
    config, task, step = run.config, run.task, run.step
    state = {
        "format": FORMAT, "version": VERSION, "step": step, "task": config.task,
        "config": config.to_dict(),
        "model": task.checkpoint_model_state(),
        "modules": {n: D.unwrap(m).state_dict() for n, m in run.modules.items()},
        "optimizers": {n: o.state_dict() for n, o in run.optimizers.items()},
        "task_state": task.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "samplers": {n: s.sampler.state_dict() for n, s in run.streams.items()},
        "data": {n: {"crop_seed": s.crops.seed, "position": s.sampler.index} for n, s in run.streams.items()},
        "rng": D.all_gather_objects(capture_rng_state()),
        "world_size": run.info.world_size,
        "elapsed": run.elapsed0 + time.time() - run.t_start,
        "time": time.time(),
    }
    try:
        path = run.manager.save(state, step) if run.info.is_main else None
        task.checkpoint_saved(state["model"])  # e.g. model.pt, written after the checkpoint: never ahead of it
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        last = latest_checkpoint(run.out_dir) or "the start"
        raise OutputError(f"cannot write the checkpoint of step {step} in {run.out_dir} ({reason}); free disk space "
                          f"or check the folder's permissions, then continue with --resume (from {last})") from None
    D.barrier()
    return path


def _save_samples(run: _Run, contents: torch.Tensor, styles: torch.Tensor | None) -> None:
    """Write samples/step_XXXXXXX.png (rank 0): the task's stylisations of the fixed sample inputs, made in eval
    mode without shifting the training RNG streams."""
    device = run.device
    states = {n: m.training for n, m in run.modules.items()}
    rng = capture_rng_state()  # sampling must not shift the training RNG streams
    with torch.no_grad(), run.task.autocast():
        for m in run.modules.values():
            m.eval()
        c, s = contents, styles
        if s is not None:
            ks = s.shape[0]
            c, s = c.repeat_interleave(ks, 0), s.repeat(c.shape[0], 1, 1, 1)
            s = s.to(device)
        out = run.task.sample(c.to(device), s).float()
    restore_rng_state(rng)
    for n, m in run.modules.items():
        m.train(states[n])
    if run.info.is_main:
        grid = make_sample_grid(contents, styles, out)
        save_image(grid, run.out_dir / "samples" / f"step_{run.step:07d}.png")


class _LossWindow:
    """The loss terms of the steps since the last log line, averaged into the next one."""

    def __init__(self) -> None:
        self.terms: dict[str, list[float]] = {}
        self.since = time.time()

    def add(self, losses: dict[str, float]) -> None:
        for k, v in losses.items():
            self.terms.setdefault(k, []).append(v)

    def log_line(self, run: _Run, lrs: dict[str, float]) -> dict[str, Any]:
        """The log.jsonl record of ``run.step`` (mean losses, seconds per step over the window); starts a new window."""
        now = time.time()
        n = len(next(iter(self.terms.values()))) if self.terms else 1
        line = {"step": run.step, "time": now, "elapsed": run.elapsed0 + now - run.t_start, "lr": lrs,
                "losses": {k: sum(v) / len(v) for k, v in self.terms.items()},
                "sec_per_step": (now - self.since) / max(1, n)}
        self.terms, self.since = {}, now
        return line


def _train(config: TrainConfig, task: Task | type[Task] | None, ckpt: dict[str, Any] | None,
           max_steps: int | None, progress: bool, info: D.DistInfo) -> TrainResult:
    run = _set_up(config, task, info)
    if ckpt is not None:
        _resume_state(run, ckpt)
    device, out_dir, main = run.device, run.out_dir, info.is_main
    for s in run.streams.values():
        s.start(config.num_workers, pin_memory=device.type == "cuda")
    jsonl = JsonlLogger(out_dir / "log.jsonl", enabled=main)
    if ckpt is not None:
        jsonl.truncate_after(run.step)
    else:
        jsonl.reset()
    if main:
        config.to_yaml(out_dir / "config.yaml")
    run.manager = CheckpointManager(out_dir, keep=config.keep_checkpoints)
    sample_contents, sample_styles = _sample_inputs(run.streams, config.num_samples)

    end = config.steps if max_steps is None else min(config.steps, run.step + int(max_steps))
    run.t_start = time.time()
    last_path: Path | None = None
    last_losses: dict[str, float] = {}
    window = _LossWindow()
    interrupted = False
    warned_nonfinite = False
    bar = ProgressBar(config.steps, run.step, enabled=progress and main, description=f"train {config.task}")
    _seed_steps(ckpt, config.seed, info)
    try:
        with _StopFlag() as stop:
            while run.step < end:
                last_losses, lrs = _train_step(run)
                step = run.step
                if not warned_nonfinite and not all(math.isfinite(v) for v in last_losses.values()):
                    warned_nonfinite = True
                    logger.warning("non-finite loss at step %d: %s", step, last_losses)
                window.add(last_losses)
                stopping = D.any_flag(stop.requested, device if info.backend == "nccl" else None)
                if step % config.log_every == 0 or step == end or stopping:
                    jsonl.log(window.log_line(run, lrs))
                bar.update(step, last_losses)
                if config.sample_every and step % config.sample_every == 0:
                    _save_samples(run, sample_contents, sample_styles)
                periodic = config.checkpoint_every and step % config.checkpoint_every == 0
                if periodic or step == end or stopping:
                    last_path = _save_checkpoint(run)
                if stopping:
                    interrupted = True
                    logger.warning("stopped at step %d (%s); checkpoint %s", step, stop.signal_name or "stop",
                                   last_path)
                    break
        if last_path is None and main and run.manager.latest.is_file():
            last_path = run.manager.latest  # nothing left to do: the run was already complete
    except KeyboardInterrupt:
        logger.error("interrupted during step %d; the last checkpoint is %s", run.step + 1,
                     latest_checkpoint(out_dir))
        raise
    finally:
        bar.close()
        for s in run.streams.values():
            s.iterator = None
    D.barrier()
    return TrainResult(step=run.step, out_dir=out_dir, checkpoint=last_path, interrupted=interrupted,
                       losses=last_losses, task=run.task, signal=stop.signal_name if interrupted else None)
