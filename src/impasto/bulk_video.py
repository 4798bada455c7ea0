"""``impasto video --engine ray``: a long clip cut into segments stylised in parallel on a Ray cluster.

    from impasto.bulk_video import stylize_video_on_ray
    result = stylize_video_on_ray("clip.mp4", "out.mp4", "adain", ["painting.jpg"], address="auto")

1. The driver probes the clip and cuts its frames into segments of ``segment_frames`` (the last one runs to the end of
   the stream, whatever the header's frame count says).
2. Ray Data gives each segment to an actor of a pool (one :class:`impasto.pipeline.Stylizer` per actor, the
   paintings encoded once per actor). The actor decodes the clip up to its segment, stylises the ``overlap`` frames
   before the segment first, only to warm up the temporal smoother (their outputs are dropped), then the segment's
   frames, with the same :class:`impasto.video.FrameStylizer` as the local engine, and saves them (``.npy``) in a
   hidden work folder next to the output (``.OUT.PID-TOKEN.tmp``, removed at the end, and by the next run if the
   driver was killed).
3. The driver then writes the video through :func:`impasto.io.video.stylize_video`, replaying the stylised frames:
   frame rate, timestamps, audio, odd sizes and the atomic output are those of the local engine.

Without temporal smoothing (``--no-temporal``) every frame equals the local engine's (same method, precision and
threads per worker). With it, the first segment equals the local run; later segments start from a smoother state
built on ``overlap`` frames instead of the whole clip before them, so they differ slightly from a sequential run
(the smoother's memory of older frames fades geometrically with its strength; tests measure the difference).
The frames pass through the work folder: a shared file system for the workers and the driver, as for
``impasto stylize --engine ray``; every actor decodes the clip from its start up to its segment.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from impasto.bulk import _connect, _pool_size, _worker_env, require_ray
from impasto.errors import ConfigError, VideoError
from impasto.video import VideoResult

__all__ = ["RayVideoResult", "stylize_video_on_ray"]


@dataclass(frozen=True)
class RayVideoResult(VideoResult):
    """A :class:`impasto.video.VideoResult` plus where the work ran: ``segments`` maps each worker (``node:pid``) to
    the segments it stylised, ``nodes`` each node id to its number of frames."""

    segments: dict[str, list[int]] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)


def _frame_file(folder: str | Path, index: int) -> Path:
    return Path(folder) / f"{index:08d}.npy"


class _SegmentWorker:
    """Ray Data actor: stylises whole segments of one clip (with warm-up frames) into the work folder."""

    def __init__(self, method: str, stylizer_kwargs: dict[str, Any], frame_kwargs: dict[str, Any], src: str,
                 fps: Any, folder: str, batch_size: int, threads: int) -> None:
        import warnings

        import ray
        import torch

        from impasto.pipeline import Stylizer
        from impasto.runtime import reuse_freed_memory
        from impasto.video import FrameStylizer

        torch.set_num_threads(max(1, threads))
        reuse_freed_memory()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            stylizer = Stylizer(method, **stylizer_kwargs)
        self.fn = FrameStylizer(stylizer, **frame_kwargs)
        for style in self.fn.styles:
            stylizer.encode_style(style)
        self.src, self.fps, self.folder, self.batch_size = src, fps, folder, batch_size
        self.node = ray.get_runtime_context().get_node_id()
        self.worker = f"{self.node[:8]}:{os.getpid()}"

    def _flush(self, pending: list[tuple[int, np.ndarray]], start: int) -> int:
        """Stylise the pending frames (warm-up ones included, for the smoother) and save those from ``start``."""
        from impasto.io.atomic import atomic_write

        if not pending:
            return 0
        result = self.fn(np.stack([f for _, f in pending]))
        n = 0
        for (i, _), frame in zip(pending, result, strict=True):
            if i >= start:
                with atomic_write(_frame_file(self.folder, i), "wb") as f:
                    np.save(f, frame)
                n += 1
        pending.clear()
        return n

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from impasto.io.video import iter_frames

        out: dict[str, list[Any]] = {k: [] for k in ("segment", "frames", "node", "worker", "seconds", "width",
                                                      "height")}
        for seg, warm, start, end in zip(batch["segment"], batch["warm"], batch["start"], batch["end"], strict=True):
            began = time.perf_counter()
            self.fn.reset()
            end = None if int(end) < 0 else int(end)
            pending: list[tuple[int, np.ndarray]] = []
            written = 0
            for i, frame in enumerate(iter_frames(self.src, fps=self.fps, max_frames=end)):
                if i < warm:
                    continue
                pending.append((i, frame))
                if len(pending) == self.batch_size:
                    written += self._flush(pending, int(start))
            written += self._flush(pending, int(start))
            w, h = self.fn.processed_size or (0, 0)
            for k, v in (("segment", int(seg)), ("frames", written), ("node", self.node), ("worker", self.worker),
                         ("seconds", time.perf_counter() - began), ("width", w), ("height", h)):
                out[k].append(v)
        return {k: np.asarray(v) for k, v in out.items()}


class _Replay:
    """Frame function for :func:`impasto.io.video.stylize_video` that returns the frames the actors saved."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.next = folder, 0

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        out = []
        for _ in range(len(frames)):
            path = _frame_file(self.folder, self.next)
            try:
                out.append(np.load(path))
            except OSError:
                raise VideoError(f"frame {self.next} was not stylised by the Ray workers (missing {path.name}); "
                                 "see the workers' logs, then run again") from None
            self.next += 1
        stacked = np.stack(out)
        if stacked.shape != frames.shape:
            raise VideoError(f"frame {self.next - 1}: the Ray workers returned {stacked.shape[1:]} for a "
                             f"{frames.shape[1:]} frame; the source was read differently on the workers")
        return stacked


def stylize_video_on_ray(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    method: str,
    styles: Sequence[str | os.PathLike[str]],
    *,
    stylizer_kwargs: dict[str, Any] | None = None,
    alpha: float = 1.0,
    style_weights: Sequence[float] | None = None,
    preserve_color: bool = False,
    max_size: int | None = None,
    temporal: Any = None,
    max_frames: int | None = None,
    fps: float | Fraction | None = None,
    batch_size: int = 4,
    segment_frames: int = 48,
    overlap: int = 8,
    address: str | None = None,
    workers: int | None = None,
    worker_cpus: float = 1,
    ray_init_kwargs: dict[str, Any] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    **writer_options: Any,
) -> RayVideoResult:
    """Stylise a video (or frame folder) on Ray in segments; returns a :class:`RayVideoResult`.

    The options are those of :func:`impasto.video.stylize_video_file`, plus ``segment_frames`` (frames per segment),
    ``overlap`` (warm-up frames stylised before each segment for the temporal smoother; 0 without smoothing) and the
    Ray options of :func:`impasto.bulk.run_jobs`. ``progress(done, total)`` counts stylised frames, then written ones.
    """
    from impasto.io.atomic import temp_path
    from impasto.io.video import stylize_video
    from impasto.video import _short_source_warnings, check_video_paths

    ray = require_ray()
    if segment_frames < 1 or overlap < 0:
        raise ConfigError(f"segment_frames must be >= 1 and overlap >= 0, got {segment_frames} and {overlap}")
    info = check_video_paths(src, dst, fps=fps)
    total = info.frames if info.frames > 0 else None
    if max_frames is not None:
        total = max_frames if total is None else min(total, max_frames)
    smoothing = temporal is not None and temporal.strength > 0
    warm_frames = overlap if smoothing else 0
    starts = list(range(0, total or 1, segment_frames))
    # the last segment runs to the end (-1): a header's frame count may be an estimate
    ends = [*starts[1:], max_frames if max_frames is not None else -1]
    segments = [{"segment": k, "warm": max(0, s - warm_frames), "start": s, "end": e}
                for k, (s, e) in enumerate(zip(starts, ends, strict=True))]
    work = temp_path(dst)
    work.mkdir()
    started = time.perf_counter()
    owns = False
    try:
        owns = _connect(ray, address, ray_init_kwargs)
        workers = _pool_size(ray, workers, worker_cpus, len(segments))
        frame_kwargs = {"styles": [str(s) for s in styles], "alpha": alpha,
                        "style_weights": list(style_weights) if style_weights else None,
                        "preserve_color": preserve_color, "max_size": max_size, "temporal": temporal}
        ds = ray.data.from_items(segments, override_num_blocks=len(segments)).map_batches(
            _SegmentWorker,
            fn_constructor_kwargs={"method": method, "stylizer_kwargs": dict(stylizer_kwargs or {}),
                                   "frame_kwargs": frame_kwargs, "src": str(src), "fps": fps, "folder": str(work),
                                   "batch_size": batch_size, "threads": max(1, int(worker_cpus))},
            compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
            batch_size=1,
            batch_format="numpy",
            num_cpus=worker_cpus,
            runtime_env={"env_vars": _worker_env()},
        )
        per_worker: dict[str, list[int]] = {}
        nodes: Counter[str] = Counter()
        stylised, size = 0, None
        for row in ds.iter_rows():
            per_worker.setdefault(str(row["worker"]), []).append(int(row["segment"]))
            nodes[str(row["node"])] += int(row["frames"])
            stylised += int(row["frames"])
            if int(row["width"]):
                size = (int(row["width"]), int(row["height"]))
            if progress is not None:
                progress(stylised, total)
        if owns:
            ray.shutdown()
            owns = False
        written = 0

        def on_written(done: int, n: int | None) -> None:
            nonlocal written
            written = done
            if progress is not None:
                progress(done, n)

        out = stylize_video(src, dst, _Replay(work), batch_size=batch_size, progress=on_written,
                            max_frames=max_frames, fps=fps, **writer_options)
    finally:
        if owns:
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - started
    warnings = () if max_frames is not None and written >= max_frames else _short_source_warnings(info, written)
    return RayVideoResult(output=out, frames=written, seconds=seconds, processed_size=size, warnings=warnings,
                          segments=per_worker, nodes=dict(nodes))
