"""Stylise videos with a Stylizer: the glue between `impasto.pipeline` and `impasto.io.video`.

    from impasto import Stylizer
    from impasto.video import stylize_video_file
    result = stylize_video_file("clip.mp4", "out.mp4", Stylizer("adain"), "painting.jpg", max_size=512)

`impasto.io.video.stylize_video` decodes, batches and encodes (frame rate, timestamps and audio kept, atomic
output); this module supplies its frame function, `FrameStylizer`: uint8 frames -> float tensors in [0, 1] ->
`Stylizer.stylize_tensor` (the styles are encoded once and cached for the whole video) -> optional temporal
smoothing (`impasto.temporal.TemporalSmoother`) -> uint8 frames. The CLI (`impasto video`) and the web server
call `stylize_video_file`.

Size: frames are stylised with their long side capped at `max_size`, smoothed over time at that size (the
optical flow of the originals downscaled the same way: several times cheaper than at the source size), and
scaled back (bilinear) to the source size, because `stylize_video` writes the source's size (plus one padding
row/column for odd sizes in H.264).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from impasto.errors import ConfigError, VideoError
from impasto.io.atomic import clean_stale_temporaries
from impasto.io.video import VIDEO_OUTPUT_SUFFIXES, VideoInfo, probe_video, stylize_video
from impasto.pipeline import ImageInput, Stylizer
from impasto.temporal import TemporalConfig, TemporalSmoother

__all__ = [
    "FrameStylizer",
    "VideoResult",
    "check_video_paths",
    "frames_to_tensor",
    "stylize_frames",
    "stylize_video_file",
    "tensor_to_frames",
]


@dataclass(frozen=True)
class VideoResult:
    """What `stylize_video_file` did.

    output: `probe_video` of the written video or frame folder; frames: frames written; seconds: wall-clock time
    of decoding, stylising, smoothing and encoding (model loading and style encoding excluded);
    processed_size: (width, height) at which the frames were stylised (smaller than the output when
    `max_size` shrank them), None when no frame was processed; warnings: what the user should know about a
    result that was written (e.g. a source that ended well before the duration its header states).
    """

    output: VideoInfo
    frames: int
    seconds: float
    processed_size: tuple[int, int] | None = None
    warnings: tuple[str, ...] = ()

    @property
    def frames_per_second(self) -> float:
        """Processing speed in frames per second (0 when nothing was timed)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 RGB frames N x H x W x 3 in [0, 255] -> float32 tensor N x 3 x H x W in [0, 1]."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"expected uint8 frames N x H x W x 3, got {frames.dtype} {frames.shape}")
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """Float tensor N x 3 x H x W in [0, 1] (clamped) -> uint8 RGB frames N x H x W x 3, rounded to nearest."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a tensor N x 3 x H x W, got shape {tuple(x.shape)}")
    y = x.detach().float().cpu().clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8)
    return np.ascontiguousarray(y.permute(0, 2, 3, 1).numpy())


def stylize_frames(
    stylizer: Stylizer,
    frames: np.ndarray,
    styles: ImageInput | Sequence[ImageInput],
    *,
    alpha: float = 1.0,
    style_weights: Sequence[float] | None = None,
    preserve_color: bool = False,
    max_size: int | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Stylise a batch of video frames at most `max_size` on the long side, returned at their own size.

    frames: uint8 RGB N x H x W x 3. styles, alpha, style_weights, preserve_color, max_size: as in
    `Stylizer.stylize_tensor` (several styles are mixed, equal weights by default).
    Returns (uint8 N x H x W x 3, (width, height) at which the method ran). Frames shrunk by `max_size` are
    scaled back to H x W with bilinear interpolation.
    """
    x = frames_to_tensor(frames)
    y = stylizer.stylize_tensor(x, styles, alpha=alpha, style_weights=style_weights,
                                preserve_color=preserve_color, max_size=max_size)
    processed = (int(y.shape[-1]), int(y.shape[-2]))
    if tuple(y.shape[-2:]) != tuple(x.shape[-2:]):
        y = F.interpolate(y, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
    return tensor_to_frames(y), processed


class FrameStylizer:
    """Frame function for `impasto.io.video.stylize_video`: stylise, smooth over time, scale back.

    Calling it on consecutive batches of uint8 frames N x H x W x 3 returns uint8 frames of the same shape.
    Each batch is stylised by `stylize_frames` at most `max_size` on the long side; with `temporal`, the
    stylised frames are then blended with the previous output warped by the optical flow of the original
    frames (`impasto.temporal.TemporalSmoother`, Ruder et al. 2016) AT THAT PROCESSING SIZE, the originals
    being downscaled as the Stylizer does (bilinear, antialiased); finally they are scaled back to H x W.
    Flow at the processing size costs far less than at the source size (e.g. 256 x 109 instead of
    1024 x 436) and smooths the same band-limited content. The smoother keeps state between calls: call
    `reset()` before another clip. `processed_size` is (width, height) of the last batch, None before any.
    """

    def __init__(
        self,
        stylizer: Stylizer,
        styles: ImageInput | Sequence[ImageInput],
        *,
        alpha: float = 1.0,
        style_weights: Sequence[float] | None = None,
        preserve_color: bool = False,
        max_size: int | None = None,
        temporal: TemporalConfig | None = None,
    ) -> None:
        if temporal is not None and not isinstance(temporal, TemporalConfig):
            raise ConfigError(f"temporal must be a TemporalConfig or None, got {type(temporal).__name__}")
        self.stylizer = stylizer
        self.styles = list(styles) if isinstance(styles, (list, tuple)) else [styles]
        self.options: dict[str, Any] = dict(alpha=alpha, style_weights=style_weights,
                                            preserve_color=preserve_color, max_size=max_size)
        self.smoother = TemporalSmoother(temporal) if temporal is not None and temporal.strength > 0 else None
        self.processed_size: tuple[int, int] | None = None

    def reset(self) -> None:
        """Forget the previous frame (start of a new clip)."""
        if self.smoother is not None:
            self.smoother.reset()

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB frames N x H x W x 3 (consecutive) -> stylised uint8 frames N x H x W x 3."""
        x = frames_to_tensor(frames)
        y = self.stylizer.stylize_tensor(x, self.styles, **self.options)
        self.processed_size = (int(y.shape[-1]), int(y.shape[-2]))
        size = tuple(x.shape[-2:])
        if self.smoother is not None:
            small = x if tuple(y.shape[-2:]) == size else F.interpolate(
                x, size=tuple(y.shape[-2:]), mode="bilinear", antialias=True, align_corners=False)
            smoothed = self.smoother.process(tensor_to_frames(small), tensor_to_frames(y))
            if tuple(y.shape[-2:]) == size:
                return smoothed
            y = frames_to_tensor(smoothed)
        if tuple(y.shape[-2:]) != size:
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return tensor_to_frames(y)


def check_video_paths(src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                      fps: float | Fraction | None = None) -> VideoInfo:
    """Probe the input and check the output name before any model is loaded (fast failure).

    src: video file or frame folder; dst: .mp4/.m4v/.mov/.mkv file, or a folder path without suffix for PNG
    frames; fps: frame rate of a frame-folder source. Returns the source's VideoInfo.
    Raises VideoError / ConfigError with a message naming the file and what to do.
    """
    info = probe_video(src, fps=fps)
    dst = Path(dst)
    suffix = dst.suffix.lower()
    if suffix and suffix not in VIDEO_OUTPUT_SUFFIXES and not dst.is_dir():
        raise VideoError(f"{dst}: cannot write {suffix!r} files; give an .mp4 (or .m4v, .mov, .mkv) file name, "
                         "or a folder path without suffix to write PNG frames")
    if dst.exists() and dst.resolve() == Path(src).resolve():
        raise VideoError(f"{dst}: the output would overwrite the input; choose another output path")
    clean_stale_temporaries(dst.parent)  # left by a run that was killed mid-write
    return info


def stylize_video_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    stylizer: Stylizer,
    styles: ImageInput | Sequence[ImageInput],
    *,
    alpha: float = 1.0,
    style_weights: Sequence[float] | None = None,
    preserve_color: bool = False,
    max_size: int | None = None,
    temporal: TemporalConfig | None = None,
    max_frames: int | None = None,
    fps: float | Fraction | None = None,
    batch_size: int = 4,
    progress: Callable[[int, int | None], None] | None = None,
    **writer_options: Any,
) -> VideoResult:
    """Stylise every frame of a video file or frame folder with `stylizer` and write a video or frame folder.

    src, dst, max_frames, fps, batch_size, progress and writer_options (crf, preset, odd_size, audio): as in
    `impasto.io.video.stylize_video` (frame rate, timestamps and audio kept; atomic output).
    styles, alpha, style_weights, preserve_color, max_size: as in `stylize_frames`; temporal: flicker
    reduction (`FrameStylizer`, at the processing size). The output keeps the source's size whatever
    `max_size` (see the module notes).
    The styles are encoded before the first frame is read, so a bad style file fails at once. Returns a
    VideoResult; user errors raise ImpastoError subclasses and leave no output behind.
    """
    info = check_video_paths(src, dst, fps=fps)
    fn = FrameStylizer(stylizer, styles, alpha=alpha, style_weights=style_weights, preserve_color=preserve_color,
                       max_size=max_size, temporal=temporal)
    for style in fn.styles:  # cached by the Stylizer: encoded once for the whole video
        stylizer.encode_style(style)
    start = time.perf_counter()
    written = 0

    def on_progress(done: int, total: int | None) -> None:
        nonlocal written
        written = done
        if progress is not None:
            progress(done, total)

    out = stylize_video(src, dst, fn, batch_size=batch_size, progress=on_progress, max_frames=max_frames,
                        fps=fps, **writer_options)
    seconds = time.perf_counter() - start
    warnings = () if max_frames is not None and written >= max_frames else _short_source_warnings(info, written)
    return VideoResult(output=out, frames=written, seconds=seconds, processed_size=fn.processed_size,
                       warnings=warnings)


def _short_source_warnings(info: VideoInfo, frames: int) -> tuple[str, ...]:
    """A warning when the source's video ended well before its header's duration: a truncated file (an
    interrupted download or copy) whose streamable container (mkv, webm, fragmented mp4) decodes up to the cut
    without an error. Below 90% of the expected frames, and at least 3 missing, so that rounding of the frame
    count estimate and a few dropped frames do not warn. A video stream shorter than the file's audio also warns;
    the message says what was checked."""
    if info.is_folder or frames <= 0 or frames >= 0.9 * info.frames or info.frames - frames < 3:
        return ()
    got = float(frames / info.fps)
    return (f"{info.path}: the video ended after {frames} frames ({got:.1f} s) but the file's header gives "
            f"{info.duration:.1f} s (~{info.frames} frames); if the file was cut short (an interrupted download or "
            "copy), the rest is missing from the output: get the complete file and run again",)
