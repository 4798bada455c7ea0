"""Report writing for the evaluation studies: CSV files, matplotlib (Agg) plots and markdown tables.

Nothing here computes a metric; :mod:`impasto.evaluation.studies` passes rows (lists of dicts) and
numbers in, and gets file paths and markdown text back.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from impasto.errors import ConfigError
from impasto.extras import extra_error
from impasto.io.atomic import atomic_path, atomic_write, file_in_the_way

try:  # the [eval] extra
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError as exc:
    raise extra_error(exc, "eval") from None

__all__ = ["fmt", "grid_png", "histogram_png", "md_table", "prepare_report_dir", "save_figure", "scatter_png",
           "write_csv", "write_report"]


def prepare_report_dir(out_dir: str | Path) -> Path:
    """Create the report folder (and its parents) before any study runs; ConfigError naming ``--out`` when it is
    a file or cannot be created, so that a long evaluation does not fail at its end."""
    out = Path(out_dir)
    blocker = file_in_the_way(out)
    if blocker is not None:
        raise ConfigError(f"--out {out}: {blocker} is a file, not a folder; give a folder path for the report")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create the report folder ({exc.strerror or exc}); choose a "
                          "writable folder") from None
    return out


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save a matplotlib figure as PNG atomically (temporary file, then rename) and close it."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)
    return path


def fmt(x: Any, digits: int = 4) -> str:
    """A number as a short string (``%.4g``); other values with ``str``; None as an empty cell."""
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return "nan" if math.isnan(float(x)) else f"{float(x):.{digits}g}"
    return str(x)


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write rows (dicts sharing keys; the union of keys, in first-seen order, is the header) to ``path``."""
    path = Path(path)
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    with atomic_write(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (repr(float(v)) if isinstance(v, (float, np.floating)) else v) for k, v in r.items()})
    return path


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table; numbers formatted with :func:`fmt`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def histogram_png(groups: dict[str, dict[str, Sequence[float]]], path: str | Path, title: str,
                  log: bool = True) -> Path:
    """One subplot per key of ``groups`` ({panel: {label: values}}), overlaid histograms (log10 x if ``log``)."""
    path = Path(path)
    n = max(1, len(groups))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    for ax, (panel, series) in zip(axes[0], groups.items(), strict=False):
        for label, vals in series.items():
            v = np.asarray([x for x in vals if np.isfinite(x) and (x > 0 or not log)], dtype=float)
            if v.size == 0:
                continue
            ax.hist(np.log10(v) if log else v, bins=12, alpha=0.5, label=label)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("log10 value" if log else "value", fontsize=8)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def scatter_png(panels: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, title: str,
                xlabel: str, ylabel: str, log: bool = True) -> Path:
    """One scatter subplot per panel ``{name: (x, y)}`` (log-log axes if ``log``)."""
    path = Path(path)
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.6), squeeze=False)
    for ax, (name, (x, y)) in zip(axes[0], panels.items(), strict=False):
        ax.scatter(x, y, s=8, alpha=0.6)
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def grid_png(rows: Sequence[Sequence[np.ndarray]], col_titles: Sequence[str], path: str | Path,
             row_titles: Sequence[str] | None = None) -> Path:
    """A grid of images (each H x W x 3 in [0, 1]) with column titles, saved as PNG."""
    path = Path(path)
    nr, nc = max(1, len(rows)), len(col_titles)
    fig, axes = plt.subplots(nr, nc, figsize=(2.4 * nc, 2.4 * nr), squeeze=False)
    for i in range(nr):
        for j in range(nc):
            ax = axes[i][j]
            ax.axis("off")
            if i < len(rows) and j < len(rows[i]):
                ax.imshow(np.clip(rows[i][j], 0, 1))
            if i == 0:
                ax.set_title(col_titles[j], fontsize=8)
        if row_titles is not None and i < len(row_titles):
            axes[i][0].text(0, -0.05, row_titles[i], transform=axes[i][0].transAxes, fontsize=6, va="top")
    fig.tight_layout()
    return save_figure(fig, path)


def write_report(out_dir: str | Path, title: str, preamble: str, sections: Sequence[str]) -> Path:
    """Write ``out_dir/report.md``: the title, a preamble (command, settings, findings) and the sections."""
    out = prepare_report_dir(out_dir)
    text = f"# {title}\n\n{preamble.strip()}\n\n" + "\n\n".join(s.strip() for s in sections) + "\n"
    path = out / "report.md"
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path
