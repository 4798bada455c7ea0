"""Training-run outputs: JSONL log lines, a progress bar with the loss terms, content x style sample grids."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

# imported eagerly: importing rich draws from python's global RNG (rich.style), which must not happen
# in the middle of a seeded training run
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from impasto.io.atomic import atomic_write


# ---------------------------------------------------------------------------------------------- JSONL
class JsonlLogger:
    """Appends one JSON object per line to ``path`` (only when ``enabled``, i.e. on rank 0)."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, record: dict[str, Any]) -> None:
        """Append ``record`` (non-finite floats written as null) and flush."""
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(_jsonable(record), allow_nan=False) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop lines with ``step > step`` (left by a run that died after its last checkpoint)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [r for r in read_log(self.path) if int(r.get("step", 0)) <= step]
        with atomic_write(self.path, "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in kept))

    def reset(self) -> None:
        """Start an empty log."""
        if self.enabled and self.path.exists():
            self.path.unlink()


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return _jsonable(x.item() if x.numel() == 1 else x.tolist())
    if isinstance(x, (np.floating, np.integer)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a JSONL log (a partial last line, e.g. after a crash, is ignored)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


# ------------------------------------------------------------------------------------------ progress
def format_losses(losses: dict[str, float], limit: int = 6) -> str:
    """``"total 1.234 content 0.5 ..."`` with "total" first and at most ``limit`` terms."""
    keys = sorted(losses, key=lambda k: (k != "total", k))[:limit]
    return "  ".join(f"{k} {losses[k]:.4g}" for k in keys)


class ProgressBar:
    """A rich progress bar over training steps showing the latest loss terms (silent when disabled)."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True,
                 description: str = "train") -> None:
        self.enabled = enabled
        self._progress = None
        if not enabled:
            return
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TimeRemainingColumn(),
                                  TextColumn("{task.fields[losses]}"), transient=False)
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, completed=initial, losses="")

    def update(self, step: int, losses: dict[str, float] | None = None) -> None:
        """Show ``step`` steps done and the given loss terms."""
        if self._progress is not None:
            fields = {"losses": format_losses(losses, limit=4)} if losses else {}
            self._progress.update(self._task, completed=step, **fields)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


# -------------------------------------------------------------------------------------------- images
def make_sample_grid(contents: torch.Tensor, styles: torch.Tensor | None, outputs: torch.Tensor,
                     pad: int = 2) -> torch.Tensor:
    """Grid image: styles along the top row, contents down the left column, stylisations in the cells.

    Args:
        contents: Kc x 3 x H x W in [0, 1].
        styles: Ks x 3 x H x W in [0, 1], or None (no header row, one output per content).
        outputs: (Kc * Ks) x 3 x h x w, output ``i * Ks + j`` = content i in style j (resized to H x W).
        pad: white border between cells, in pixels.

    Returns:
        3 x ((Kc + 1) (H + pad) + pad) x ((Ks + 1) (W + pad) + pad) tensor in [0, 1] (top-left cell white;
        without styles Ks = 1 and there is no header row).
    """
    kc, ks = contents.shape[0], 1 if styles is None else styles.shape[0]
    top = 0 if styles is None else 1
    h, w = contents.shape[-2:]
    if outputs.shape[0] != kc * ks:
        raise ValueError(f"expected {kc * ks} outputs for {kc} contents x {ks} styles, "
                         f"got {outputs.shape[0]}")

    def fit(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().float().cpu()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        return x.clamp(0, 1)

    contents, outputs = fit(contents), fit(outputs)
    grid = torch.ones(3, (kc + top) * (h + pad) + pad, (ks + 1) * (w + pad) + pad)

    def put(r: int, c: int, img: torch.Tensor) -> None:
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[:, y:y + h, x:x + w] = img

    if styles is not None:
        styles = fit(styles)
        for j in range(ks):
            put(0, j + 1, styles[j])
    for i in range(kc):
        put(i + top, 0, contents[i])
        for j in range(ks):
            put(i + top, j + 1, outputs[i * ks + j])
    return grid
