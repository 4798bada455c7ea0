"""Training checkpoints: atomic writes, ``latest.pt`` + the last k ``step_XXXXXXX.pt``, full RNG capture.

A checkpoint is a plain dict (loadable with ``torch.load(weights_only=True)``):

    format, version, step, task, config (TrainConfig as a dict), model (Task.model_state(): what
    ``impasto stylize`` needs), modules (state dicts of the trainable modules), optimizers, task_state,
    scaler, samplers (data-stream positions), rng (torch / numpy / python / cuda, per rank), data, time.

The config inside makes a checkpoint self-contained: ``load_checkpoint(path)["config"]`` rebuilds the run.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from impasto.errors import WeightsError
from impasto.io.atomic import atomic_path, atomic_write

logger = logging.getLogger("impasto.training")

FORMAT = "impasto-train-checkpoint"
VERSION = 1
LATEST = "latest.pt"
CHECKPOINT_DIR = "checkpoints"
_STEP_RE = re.compile(r"^step_(\d+)\.pt$")


def step_filename(step: int) -> str:
    """``step_0001234.pt`` for step 1234."""
    return f"step_{int(step):07d}.pt"


# ---------------------------------------------------------------------------------------------- RNG
def capture_rng_state() -> dict[str, Any]:
    """The states of torch's CPU generator, numpy's and python's global RNGs, and every CUDA device's.

    Stored as tensors and plain Python values (no numpy objects) so ``weights_only`` loading works.
    """
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(np_state[0]), "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "python": _to_lists(random.getstate()),
        "cuda": [t.cpu() for t in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state`` (CUDA states restored only if the device count matches)."""
    torch.set_rng_state(state["torch"].cpu().to(torch.uint8))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), int(n["pos"]), int(n["has_gauss"]),
                         float(n["cached_gaussian"])))
    random.setstate(_to_tuples(state["python"]))
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([t.cpu().to(torch.uint8) for t in cuda])
        else:
            logger.warning("checkpoint holds RNG states of %d CUDA devices, this machine has %d: "
                           "not restored", len(cuda), torch.cuda.device_count())


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


# ------------------------------------------------------------------------------------------- files
def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` with ``torch.save`` atomically (:func:`impasto.io.atomic.atomic_write`).

    A crash during the write leaves any previous file at ``path`` intact. Returns the path.
    """
    path = Path(path)
    with atomic_write(path) as f:
        torch.save(state, f)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a training checkpoint (tensors on ``map_location``); WeightsError if missing or not one.

    Returns the dict described in the module docstring; ``ckpt["config"]`` is a TrainConfig dict and
    ``ckpt["model"]`` the Task's ``model_state()``.
    """
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise WeightsError(f"no checkpoint (latest.pt or step_*.pt) in {path}; pass a checkpoint file")
        path = found
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} not found; "
                           "pass the path of a .pt file written by impasto train")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise WeightsError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); "
                           "the file is corrupt or not an impasto training checkpoint") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise WeightsError(f"{path} is not an impasto training checkpoint (no format={FORMAT!r} entry)")
    if int(ckpt.get("version", 0)) > VERSION:
        raise WeightsError(f"checkpoint {path} has format version {ckpt['version']}, newer than this impasto "
                           f"({VERSION}); upgrade impasto")
    return ckpt


def list_checkpoints(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(step, path), ...]`` of the ``step_XXXXXXX.pt`` files in ``folder``, sorted by step."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _STEP_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint of a run: ``latest.pt`` (in ``out_dir/checkpoints`` or ``out_dir``), else the
    highest ``step_*.pt``; None if there is none."""
    out_dir = Path(out_dir)
    for folder in (out_dir / CHECKPOINT_DIR, out_dir):
        if (folder / LATEST).is_file():
            return folder / LATEST
    for folder in (out_dir / CHECKPOINT_DIR, out_dir):
        steps = list_checkpoints(folder)
        if steps:
            return steps[-1][1]
    return None


class CheckpointManager:
    """Writes ``step_XXXXXXX.pt`` and ``latest.pt`` into ``out_dir/checkpoints``; keeps the last ``keep``."""

    def __init__(self, out_dir: str | os.PathLike, keep: int = 3) -> None:
        self.folder = Path(out_dir) / CHECKPOINT_DIR
        self.keep = max(1, int(keep))

    @property
    def latest(self) -> Path:
        return self.folder / LATEST

    def save(self, state: dict[str, Any], step: int) -> Path:
        """Save ``state`` as ``step_XXXXXXX.pt``, point ``latest.pt`` at it, prune older step files."""
        path = save_checkpoint(state, self.folder / step_filename(step))
        self._link_latest(path)
        for _, old in list_checkpoints(self.folder)[:-self.keep]:
            try:
                old.unlink()
            except OSError as e:  # pragma: no cover - e.g. removed concurrently
                logger.warning("could not remove old checkpoint %s: %s", old, e)
        return path

    def _link_latest(self, path: Path) -> None:
        with atomic_path(self.latest) as tmp:
            try:
                os.link(path, tmp)  # hard link: no second copy on disk
            except OSError:
                shutil.copyfile(path, tmp)
