"""Multi-process training under ``torchrun``: process-group setup, DDP wrapping, rank-0-only side effects.

Launch with ``torchrun --nproc_per_node N -m impasto.cli train ...`` (or any script calling
``impasto.training.train``): the environment variables RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT select the process; gloo is used on CPU and nccl on CUDA. Without them everything here
degrades to single-process no-ops.
"""

from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from impasto.errors import ConfigError
from impasto.hardware import resolve_device

logger = logging.getLogger("impasto.training")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size, local rank, device, and whether it owns the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """True when more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes logs, samples and checkpoints."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} must be an integer") from None


def init_distributed(device: str | torch.device = "auto") -> DistInfo:
    """Join the process group described by the torchrun environment variables (no-op without them).

    Uses nccl when the resolved device is CUDA and gloo otherwise; on CUDA the process is bound to
    ``cuda:LOCAL_RANK``. If a group is already initialised (e.g. by the caller) it is reused.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = _env_int("LOCAL_RANK", rank)
        dev = resolve_device(device, local)
        return DistInfo(rank, world, local, dev, dist.get_backend(), owns_group=False)
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    dev = resolve_device(device, local)
    if world <= 1:
        return DistInfo(0, 1, 0, dev, None, owns_group=False)
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed support")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ConfigError(f"WORLD_SIZE={world} but {name} is not set; launch with torchrun")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    logger.info("joined process group: rank %d of %d (%s, %s)", rank, world, backend, dev)
    return DistInfo(rank, world, local, dev, backend, owns_group=True)


def release_ddp(owner: object) -> None:
    """Replace every DistributedDataParallel attribute of ``owner`` (a Task) by the module inside it, and free them.

    A DDP wrapper's reducer holds the process group: freed only when the caller later drops the returned task, after
    the group was destroyed and the other ranks may have exited, gloo's teardown can hang joining its threads (seen
    in the 2-process test). Freeing them here, on every rank before :func:`cleanup`, keeps the teardown in step.
    """
    for name, value in list(vars(owner).items()):
        if isinstance(value, nn.parallel.DistributedDataParallel):
            setattr(owner, name, value.module)
    gc.collect()


def cleanup(info: DistInfo) -> None:
    """Leave the process group if ``init_distributed`` created it."""
    if info.owns_group and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 outside a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0 (or without a process group)."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if is_distributed():
        dist.barrier()


def any_flag(flag: bool, device: torch.device | None = None) -> bool:
    """True if ``flag`` is set on any rank (an all-reduce MAX; so every rank stops at the same step)."""
    if not is_distributed():
        return bool(flag)
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" \
            else torch.device("cpu")
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` without a process group)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (the module itself otherwise)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def wrap_ddp(module: nn.Module, device: torch.device | None = None, find_unused_parameters: bool = False,
             **kwargs: Any) -> nn.Module:
    """Wrap a module in DistributedDataParallel when training on several processes (else return it as is).

    Gradients of the wrapped module are averaged over ranks during ``backward``; the initial parameters
    and buffers of rank 0 are broadcast to all ranks. Modules without trainable parameters are returned
    unwrapped. Keep using the unwrapped module for state dicts (see ``unwrap``).
    """
    if not is_distributed() or not any(p.requires_grad for p in module.parameters()):
        return module
    if isinstance(module, nn.parallel.DistributedDataParallel):
        return module
    if device is not None and device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        kwargs.setdefault("device_ids", [index])
    return nn.parallel.DistributedDataParallel(module, find_unused_parameters=find_unused_parameters,
                                               **kwargs)
