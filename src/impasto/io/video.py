"""Video plumbing for stylisation, independent of the style-transfer model.

`stylize_video(src, dst, fn)` decodes every frame of `src` to RGB, applies a frame function
`fn(frames: uint8 N x H x W x 3) -> uint8 N x H x W x 3` to small batches, optionally smooths the result
over time (`impasto.temporal`), and writes `dst`:

* src: a video file PyAV can read (mp4, mov, webm, mkv, avi, gif...) or a folder of PNG/JPEG frames, sorted
  naturally (frame_2 before frame_10), played at `fps` (default 25).
* dst: an .mp4 (or .m4v, .mov, .mkv) file: H.264 (libx264, yuv420p, crf 18, BT.709 tags) with the source's
  average frame rate, time base and frame timestamps (variable frame rates are kept) and its audio track
  copied without re-encoding when the container accepts the codec (AAC, MP3, AC-3... in mp4), transcoded
  to AAC otherwise; or a folder (no suffix), written as frame_000001.png, ... (no audio).

Notes:
* Odd sizes: H.264 in yuv420p stores chroma at half resolution, so libx264 refuses odd widths or heights
  (checked: avcodec_open2 fails on 65 x 47). With `odd_size="pad"` (default) the frame is padded by one
  pixel on the right and/or bottom, repeating the edge, so a 65 x 47 source gives a 66 x 48 video that any
  player can play. With `odd_size="exact"` the video keeps the exact size by encoding yuv444p (H.264 High
  4:4:4 profile), which browsers, QuickTime and hardware decoders often cannot play. Folder output always
  keeps the exact size.
* Rotation metadata (phone videos): frames are rotated upright as ffmpeg's autorotate does, the output has
  the displayed size and no rotation flag. VideoInfo.width/height are the displayed size.
* Colour: decoding honours the source's colourspace tag (BT.601 when untagged); the output is converted
  and tagged as BT.709 limited range.
* The output is atomic: it is written to a hidden temporary file (or folder) next to `dst` and renamed
  onto `dst` only after success; any exception, KeyboardInterrupt included, removes it and leaves an
  existing `dst` untouched.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from impasto.errors import ConfigError, VideoError
from impasto.extras import extra_error

try:  # the [video] extra
    import av
except ImportError as exc:
    raise extra_error(exc, "video") from None
from impasto.io.atomic import atomic_folder, atomic_path
from impasto.io.images import natural_key
from impasto.temporal import TemporalConfig, TemporalSmoother

__all__ = [
    "FRAME_SUFFIXES",
    "VIDEO_OUTPUT_SUFFIXES",
    "FrameFn",
    "VideoInfo",
    "iter_frames",
    "probe_video",
    "read_frames",
    "stylize_video",
]

FrameFn = Callable[[np.ndarray], np.ndarray]

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_OUTPUT_SUFFIXES = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
DEFAULT_FOLDER_FPS = Fraction(25)
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow", "placebo")
# audio codecs that can be copied (remuxed) into each output container without re-encoding
_AUDIO_COPY_OK = {
    "mp4": {"aac", "mp3", "ac3", "eac3", "alac"},
    "mov": {"aac", "mp3", "ac3", "eac3", "alac"},
    "matroska": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "vorbis", "flac"},
}
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_AAC_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}
_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "tiff_pipe", "webp_pipe", "jpegls_pipe",
                  "j2k_pipe", "ppm_pipe", "pgm_pipe", "pam_pipe", "qoi_pipe"}
_HINT = ("give a complete video file (mp4, mov, webm, mkv, avi...) or a folder of PNG/JPEG frames")


@dataclass(frozen=True)
class VideoInfo:
    """What `probe_video` learns about a video file or a frame folder.

    width, height: displayed size in pixels (after rotation); fps: average frame rate; frames: frame count,
    exact when frames_exact (stored in the container, or counted files), else estimated from the duration;
    duration: seconds; rotation: counter-clockwise degrees (0, 90, 180, 270) applied to decoded frames;
    video_codec: e.g. "h264" ("png"/"jpeg" for folders); audio_codec: None without audio.
    """

    path: Path
    width: int
    height: int
    fps: Fraction
    frames: int
    frames_exact: bool
    duration: float
    has_audio: bool
    video_codec: str
    audio_codec: str | None = None
    rotation: int = 0
    is_folder: bool = False


# ----------------------------------------------------------------------------------------------- probing


def _list_frames(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES
             and not p.name.startswith(".")]
    if not files:
        raise VideoError(f"{folder}: the folder holds no frames ({', '.join(FRAME_SUFFIXES)}); "
                         "put the numbered frame images in it or give a video file")
    return sorted(files, key=lambda p: natural_key(p.name))  # by name: the frames of one folder


def _as_fps(fps: float | Fraction | None) -> Fraction:
    if fps is None:
        return DEFAULT_FOLDER_FPS
    try:
        value = fps if isinstance(fps, Fraction) else Fraction(str(fps))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"fps must be a positive number, got {fps!r}") from e
    if value <= 0 or value > 1000:
        raise ConfigError(f"fps must be a positive number up to 1000, got {value}")  # 0, -5, 30000/1001
    return value


def _read_frame_file(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                # composite on white, as images with alpha are meant to be seen
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, im)
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise VideoError(f"{path}: cannot read this frame ({e}); replace or remove the broken file") from e


def _probe_folder(folder: Path, fps: float | Fraction | None) -> VideoInfo:
    files = _list_frames(folder)
    rate = _as_fps(fps)
    first = _read_frame_file(files[0])
    height, width = first.shape[:2]
    codec = "jpeg" if files[0].suffix.lower() in (".jpg", ".jpeg") else files[0].suffix.lower().lstrip(".")
    return VideoInfo(path=folder, width=width, height=height, fps=rate, frames=len(files), frames_exact=True,
                     duration=float(len(files) / rate), has_audio=False, video_codec=codec, is_folder=True)


def _open_input(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        raise VideoError(f"{path}: cannot be read as a video ({e}); {_HINT}") from e


def _rotation_of(frame: av.VideoFrame) -> int:
    try:
        angle = float(frame.rotation or 0)
    except (AttributeError, TypeError, ValueError):
        return 0
    return int(round(angle / 90.0)) * 90 % 360


def _probe_file(path: Path) -> VideoInfo:
    container = _open_input(path)
    try:
        if container.format.name in _IMAGE_FORMATS:
            raise VideoError(f"{path}: is a still image, not a video; use `impasto stylize` for images, "
                             "or put the frames of a video in a folder")
        if not container.streams.video:
            raise VideoError(f"{path}: has no video stream; {_HINT}")
        stream = container.streams.video[0]
        try:
            first = next(container.decode(stream), None)
        except (av.FFmpegError, ValueError) as e:
            raise VideoError(f"{path}: the video stream cannot be decoded ({e}); the file is corrupt or uses "
                             "an unsupported codec; re-encode it to H.264 mp4") from e
        if first is None:
            raise VideoError(f"{path}: holds no decodable video frames; the file is empty or truncated; "
                             f"{_HINT}")
        rotation = _rotation_of(first)
        width, height = (first.height, first.width) if rotation % 180 else (first.width, first.height)

        duration = 0.0
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not fps or fps <= 0:
            fps = Fraction(stream.frames) / Fraction(duration) if stream.frames and duration else Fraction(25)
        fps = Fraction(fps)
        exact = bool(stream.frames and stream.frames > 0)
        frames = int(stream.frames) if exact else max(1, int(round(duration * fps)))
        if not duration:
            duration = float(frames / fps)
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            path=path, width=width, height=height, fps=fps, frames=frames, frames_exact=exact,
            duration=duration, has_audio=audio is not None, video_codec=stream.codec_context.name,
            audio_codec=audio.codec_context.name if audio is not None else None, rotation=rotation)
    finally:
        container.close()


def probe_video(path: str | os.PathLike[str], *, fps: float | Fraction | None = None) -> VideoInfo:
    """Read size, frame rate, frame count, duration, audio and codecs of a video file or a frame folder.

    fps: frame rate of a frame folder (default 25); not allowed for video files, which carry their own.
    Raises VideoError (naming the file) for missing, broken, truncated, non-video or unsupported inputs.
    """
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder; check the path")
    if path.is_dir():
        return _probe_folder(path, fps)
    if fps is not None:
        raise ConfigError(f"fps={fps!r} applies only to frame folders; {path} is a video file with its own "
                          "frame rate")
    return _probe_file(path)


# ----------------------------------------------------------------------------------------------- reading


def _iter_file(info: VideoInfo) -> Iterator[tuple[np.ndarray, int | None, Fraction]]:
    container = _open_input(info.path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        k = info.rotation // 90
        stored_w, stored_h = (info.height, info.width) if info.rotation % 180 else (info.width, info.height)
        done = 0
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames, None)
            except (av.FFmpegError, ValueError) as e:
                raise VideoError(f"{info.path}: decoding failed after {done} frames ({e}); the file is "
                                 "corrupt or truncated; re-encode it or pass max_frames to stop before the "
                                 "damage") from e
            if frame is None:
                return
            kwargs: dict[str, object] = {}
            if frame.width != stored_w or frame.height != stored_h:  # resolution change mid-stream
                kwargs.update(width=stored_w, height=stored_h)
            if frame.color_range:
                kwargs["src_color_range"] = frame.color_range
            array = frame.to_ndarray(format="rgb24", **kwargs)
            if k:
                array = np.ascontiguousarray(np.rot90(array, k))
            done += 1
            yield array, frame.pts, frame.time_base or stream.time_base
    finally:
        container.close()


def _iter_folder(info: VideoInfo) -> Iterator[tuple[np.ndarray, int | None, Fraction]]:
    time_base = 1 / info.fps
    for i, path in enumerate(_list_frames(info.path)):
        array = _read_frame_file(path)
        if array.shape[:2] != (info.height, info.width):
            raise VideoError(f"{path}: frame is {array.shape[1]}x{array.shape[0]} but the first frame is "
                             f"{info.width}x{info.height}; all frames of a folder must have the same size")
        yield array, i, time_base


def _iter_source(info: VideoInfo) -> Iterator[tuple[np.ndarray, int | None, Fraction]]:
    return _iter_folder(info) if info.is_folder else _iter_file(info)


def iter_frames(src: str | os.PathLike[str], *, fps: float | Fraction | None = None,
                max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield the frames of a video file or frame folder as RGB uint8 arrays H x W x 3 (displayed size).

    The source is probed at once (VideoError / ConfigError raised here), frames are decoded lazily.
    """
    limit = _check_count("max_frames", max_frames)
    info = probe_video(src, fps=fps)

    def frames() -> Iterator[np.ndarray]:
        with closing(_iter_source(info)) as source:
            for i, (array, _, _) in enumerate(source):
                if limit is not None and i >= limit:
                    return
                yield array

    return frames()


def read_frames(src: str | os.PathLike[str], *, fps: float | Fraction | None = None,
                max_frames: int | None = None) -> np.ndarray:
    """All (or the first max_frames) frames of a video file or folder as one uint8 array N x H x W x 3."""
    return np.stack(list(iter_frames(src, fps=fps, max_frames=max_frames)))


# ----------------------------------------------------------------------------------------------- writing


class _AudioCopier:
    """Copies (remux) or transcodes (to AAC) the first audio stream of `src` into an output container."""

    def __init__(self, out: av.container.OutputContainer, src: Path, fmt: str) -> None:
        self._out = out
        self._in = _open_input(src)
        self._ist = self._in.streams.audio[0]
        ctx = self._ist.codec_context
        self.copy = ctx.name in _AUDIO_COPY_OK.get(fmt, set())
        self._resampler: av.AudioResampler | None = None
        try:
            if self.copy:
                self._ost = out.add_stream_from_template(self._ist)
            else:
                rate = ctx.sample_rate if ctx.sample_rate in _AAC_RATES else 48000
                layout = _AAC_LAYOUTS.get(ctx.channels, "stereo")
                self._ost = out.add_stream("aac", rate=rate)
                self._ost.layout = layout
                self._ost.codec_context.time_base = Fraction(1, rate)
                self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate, frame_size=1024)
        except BaseException:
            self._in.close()
            raise
        self._packets = self._in.demux(self._ist)
        self._pending: av.Packet | None = None
        self._exhausted = False

    def _next(self) -> av.Packet | None:
        if self._pending is not None:
            packet, self._pending = self._pending, None
            return packet
        if self._exhausted:
            return None
        try:
            packet = next(self._packets, None)
        except (av.FFmpegError, ValueError):  # damaged audio: keep what was copied so far
            packet = None
        if packet is None:
            self._exhausted = True
        return packet

    def feed_until(self, seconds: float | None) -> None:
        """Write every audio packet that starts before `seconds` (all remaining ones for None)."""
        while True:
            packet = self._next()
            if packet is None:
                return
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:  # flush packet
                continue
            if seconds is not None and float(ts * packet.time_base) >= seconds:
                self._pending = packet
                return
            if self.copy:
                packet.stream = self._ost
                self._out.mux(packet)
            else:
                assert self._resampler is not None
                for frame in packet.decode():
                    for resampled in self._resampler.resample(frame):
                        self._out.mux(self._ost.encode(resampled))

    def finish(self, cut: float | None) -> None:
        self.feed_until(cut)
        if self._resampler is not None:
            for resampled in self._resampler.resample(None):
                self._out.mux(self._ost.encode(resampled))
            self._out.mux(self._ost.encode(None))
        self.close()

    def close(self) -> None:
        self._in.close()


class _VideoWriter:
    """H.264 writer keeping the source's frame rate, time base and timestamps, plus its audio."""

    def __init__(self, path: Path, dst: Path, fmt: str, info: VideoInfo, *, crf: int, preset: str,
                 odd_size: str, audio: bool) -> None:
        self._dst = dst
        self._exact = odd_size == "exact" and (info.width % 2 or info.height % 2)
        self._pad = (0, 0) if self._exact else (info.height % 2, info.width % 2)
        self._pix_fmt = "yuv444p" if self._exact else "yuv420p"
        self._fps = info.fps
        self._time_base: Fraction | None = None
        self._last_pts: int | None = None
        self._audio: _AudioCopier | None = None
        self._n = 0
        options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        try:
            self._out = av.open(str(path), mode="w", format=fmt, options=options)
        except (av.FFmpegError, OSError) as e:
            raise VideoError(f"{dst}: cannot create the video file ({e}); check the folder is "
                             "writable") from e
        try:
            self._stream = self._out.add_stream("libx264", rate=info.fps)
            self._stream.width = info.width + self._pad[1]
            self._stream.height = info.height + self._pad[0]
            self._stream.pix_fmt = self._pix_fmt
            self._stream.options = {"crf": str(crf), "preset": preset}
            ctx = self._stream.codec_context
            # tag BT.709 limited range, matching the conversion in write()
            ctx.colorspace, ctx.color_range, ctx.color_primaries, ctx.color_trc = 1, 1, 1, 1
            if audio and info.has_audio and not info.is_folder:
                self._audio = _AudioCopier(self._out, info.path, fmt)
        except BaseException:
            self.abort()
            raise

    def _set_time_base(self, time_base: Fraction) -> None:
        self._time_base = Fraction(time_base)
        self._stream.time_base = self._time_base
        self._stream.codec_context.time_base = self._time_base

    def write(self, frames: np.ndarray, pts: list[int | None], time_base: Fraction) -> None:
        if self._time_base is None:
            self._set_time_base(time_base)
        if any(self._pad):
            frames = np.pad(frames, ((0, 0), (0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        assert self._time_base is not None
        try:
            for array, p in zip(frames, pts, strict=True):
                if p is None:  # no timestamp: derive one from the frame index
                    p = int(round(self._n / self._fps / self._time_base))
                if self._last_pts is not None and p <= self._last_pts:
                    p = self._last_pts + 1
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
                frame = frame.reformat(format=self._pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")
                frame.pts = p
                frame.time_base = self._time_base
                self._out.mux(self._stream.encode(frame))
                self._last_pts = p
                self._n += 1
            if self._audio is not None and self._last_pts is not None:
                self._audio.feed_until(float(self._last_pts * self._time_base))
        except (av.FFmpegError, OSError) as e:
            raise VideoError(f"{self._dst}: writing the video failed ({e}); check the free disk space") from e

    def end_time(self) -> float | None:
        """Seconds at which the last written frame ends."""
        if self._last_pts is None or self._time_base is None:
            return None
        return float(self._last_pts * self._time_base + 1 / self._fps)

    def finish(self, cut_audio: bool) -> None:
        try:
            self._out.mux(self._stream.encode(None))
            if self._audio is not None:
                self._audio.finish(self.end_time() if cut_audio else None)
                self._audio = None
            self._out.close()
        except (av.FFmpegError, OSError) as e:
            self.abort()
            raise VideoError(f"{self._dst}: writing the video failed ({e}); check the free disk space") from e

    def abort(self) -> None:
        if self._audio is not None:
            self._audio.close()
            self._audio = None
        try:
            self._out.close()
        except Exception:  # noqa: BLE001 - the file is being thrown away anyway
            pass


class _FolderWriter:
    """Writes frames as frame_000001.png, frame_000002.png, ... into a new folder."""

    def __init__(self, path: Path, dst: Path) -> None:
        self._path, self._dst, self._n = path, dst, 0
        try:
            path.mkdir()
        except OSError as e:
            raise VideoError(f"{dst}: cannot create the output folder ({e}); check the path is "
                             "writable") from e

    def write(self, frames: np.ndarray, pts: list[int | None], time_base: Fraction) -> None:
        for array in frames:
            self._n += 1
            try:
                Image.fromarray(array).save(self._path / f"frame_{self._n:06d}.png", compress_level=3)
            except OSError as e:
                raise VideoError(f"{self._dst}: writing frame {self._n} failed ({e}); check the free disk "
                                 "space") from e

    def finish(self, cut_audio: bool) -> None:
        pass

    def abort(self) -> None:
        pass


@contextmanager
def _atomic_output(dst: Path, folder: bool) -> Iterator[Path]:
    """Yield a hidden temporary path next to `dst`, renamed onto `dst` on success: `impasto.io.atomic.atomic_path`
    for a file (same suffix), `atomic_folder` for a folder of frames (an existing `dst` must be empty)."""
    with (atomic_folder(dst) if folder else atomic_path(dst)) as tmp:
        yield tmp


def _check_count(name: str, value: int | None, *, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _output_format(dst: Path) -> str | None:
    """Container format name for a video dst, None for a frame folder."""
    suffix = dst.suffix.lower()
    if suffix in VIDEO_OUTPUT_SUFFIXES:
        return VIDEO_OUTPUT_SUFFIXES[suffix]
    if dst.is_dir() or suffix == "":
        return None
    raise VideoError(f"{dst}: cannot write {suffix!r} files; give an .mp4 (or .m4v, .mov, .mkv) file name, "
                     "or a folder path without suffix to write PNG frames")


def _check_dst(dst: Path, src: Path, fmt: str | None) -> None:
    if dst.resolve() == src.resolve():
        raise VideoError(f"{dst}: the output would overwrite the input; choose another output path")
    if fmt is None and dst.exists():
        if not dst.is_dir():
            raise VideoError(f"{dst}: exists and is not a folder; choose a new folder for the frames")
        if any(dst.iterdir()):
            raise VideoError(f"{dst}: the output folder is not empty; choose a new or empty folder")
    if fmt is not None and dst.is_dir():
        raise VideoError(f"{dst}: is a folder; give a file name ending in {dst.suffix} or another path")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VideoError(f"{dst}: cannot create the output folder {dst.parent} ({e})") from e


def _batches(frames: Iterator[tuple[np.ndarray, int | None, Fraction]], batch_size: int, limit: int | None
             ) -> Iterator[tuple[np.ndarray, list[int | None], Fraction]]:
    arrays: list[np.ndarray] = []
    pts: list[int | None] = []
    time_base = Fraction(1)
    for i, (array, p, tb) in enumerate(frames):
        if limit is not None and i >= limit:
            break
        arrays.append(array)
        pts.append(p)
        time_base = tb
        if len(arrays) == batch_size:
            yield np.stack(arrays), pts, time_base
            arrays, pts = [], []
    if arrays:
        yield np.stack(arrays), pts, time_base


def stylize_video(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    fn: FrameFn,
    *,
    batch_size: int = 4,
    temporal: TemporalConfig | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    max_frames: int | None = None,
    fps: float | Fraction | None = None,
    crf: int = 18,
    preset: str = "medium",
    odd_size: str = "pad",
    audio: bool = True,
) -> VideoInfo:
    """Apply a frame function to every frame of a video (or frame folder) and write the result.

    fn: uint8 RGB batch N x H x W x 3 (N <= batch_size) -> uint8 array of the same shape.
    temporal: optional flicker reduction (`impasto.temporal.TemporalConfig`) applied to fn's outputs.
    progress(done, total): called after every batch; total is the frame count (estimated for containers that
        store none, capped by max_frames), or None when unknown.
    max_frames: stop after this many frames (the audio is cut to the same duration).
    fps: frame rate of a frame-folder source (default 25). crf, preset: libx264 quality and speed.
    odd_size: "pad" (add one edge-repeated row/column to odd sizes, yuv420p, plays everywhere) or "exact"
        (keep the size, yuv444p, limited player support); see the module notes.
    audio: copy the source's audio track into a video output (ignored for folder outputs).
    Returns the VideoInfo of the written output. User errors raise VideoError / ConfigError; exceptions of
    fn propagate unchanged; in every failure case no output and no temporary file are left behind.
    """
    batch_size = _check_count("batch_size", batch_size, allow_none=False)
    max_frames = _check_count("max_frames", max_frames)
    if odd_size not in ("pad", "exact"):
        raise ConfigError(f"odd_size must be 'pad' or 'exact', got {odd_size!r}")
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
        raise ConfigError(f"crf must be an integer in [0, 51] (lower = better, 18 ~ visually lossless), "
                          f"got {crf!r}")
    if preset not in X264_PRESETS:
        raise ConfigError(f"unknown x264 preset {preset!r}; choose one of {', '.join(X264_PRESETS)}")
    if temporal is not None and not isinstance(temporal, TemporalConfig):
        raise ConfigError(f"temporal must be a TemporalConfig or None, got {type(temporal).__name__}")

    src, dst = Path(src), Path(dst)
    info = probe_video(src, fps=fps)
    fmt = _output_format(dst)
    _check_dst(dst, src, fmt)
    total: int | None = info.frames if info.frames > 0 else None
    if max_frames is not None and total is not None:
        total = min(total, max_frames)
    smoother = TemporalSmoother(temporal) if temporal is not None and temporal.strength > 0 else None

    done = 0
    with _atomic_output(dst, folder=fmt is None) as tmp:
        writer: _VideoWriter | _FolderWriter
        if fmt is None:
            writer = _FolderWriter(tmp, dst)
        else:
            writer = _VideoWriter(tmp, dst, fmt, info, crf=int(crf), preset=preset, odd_size=odd_size,
                                  audio=audio)
        try:
            with closing(_iter_source(info)) as frames:
                for batch, pts, time_base in _batches(frames, batch_size, max_frames):
                    out = fn(batch.copy() if smoother is not None else batch)
                    if not isinstance(out, np.ndarray) or out.shape != batch.shape or out.dtype != np.uint8:
                        shape = getattr(out, "shape", None)
                        dtype = getattr(out, "dtype", type(out).__name__)
                        raise ValueError(f"the frame function returned {shape} {dtype}; expected a uint8 "
                                         f"array of shape {batch.shape}")
                    if smoother is not None:
                        out = smoother.process(batch, out)
                    writer.write(out, pts, time_base)
                    done += len(batch)
                    if progress is not None:
                        progress(done, total)
            if done == 0:
                raise VideoError(f"{src}: holds no decodable video frames; {_HINT}")
            writer.finish(cut_audio=max_frames is not None and done >= max_frames)
        except BaseException:
            writer.abort()
            raise
    return probe_video(dst, fps=info.fps if fmt is None else None)

