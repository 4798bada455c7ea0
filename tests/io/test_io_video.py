"""Tests of impasto.io.video: probing, frame-function application, timing, audio, atomic output, errors."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from impasto.errors import ConfigError, VideoError
from impasto.io.video import VideoInfo, iter_frames, probe_video, read_frames, stylize_video
from impasto.temporal import TemporalConfig, warping_error

BUNNY = "pytorch-AdaIN__cutBunny.mp4"  # 640x360, 24 fps, 240 frames, AAC audio
TIMELAPSE = "style-swap__timelapse1_orig.mp4"  # 800x450, 15 fps, 60 frames, no audio
MOUNTAIN = "mountain_2"  # 50 PNG frames 1024x436


def identity(frames: np.ndarray) -> np.ndarray:
    return frames


def _pattern(h: int, w: int, t: int = 0) -> np.ndarray:
    """Smooth colour pattern (compresses well, survives yuv420p) that moves with t."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 128 + 100 * np.sin((x + 2 * t) / 7.0)
    g = 128 + 100 * np.cos((y + t) / 9.0)
    b = 128 + 60 * np.sin((x + y + 3 * t) / 11.0)
    return np.clip(np.stack([r, g, b], axis=2), 0, 255).astype(np.uint8)


def _make_clip(path: Path, frames: list[np.ndarray], *, fps: int = 25, time_base: Fraction | None = None,
               pts: list[int] | None = None, audio_codec: str | None = None, audio_seconds: float = 0.0,
               sample_rate: int = 16000) -> Path:
    """Write an H.264 clip (optionally with a sine-tone audio track) with PyAV."""
    h, w = frames[0].shape[:2]
    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=fps)
    video.width, video.height, video.pix_fmt = w, h, "yuv420p"
    if time_base is not None:
        video.time_base = time_base
        video.codec_context.time_base = time_base
    audio = None
    if audio_codec is not None:
        audio = out.add_stream(audio_codec, rate=sample_rate)
        audio.layout = "mono"
        audio.codec_context.time_base = Fraction(1, sample_rate)
    for i, array in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts = pts[i] if pts is not None else i
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    if audio is not None:
        n = int(audio_seconds * sample_rate)
        fmt = "fltp" if audio_codec == "aac" else "s16"
        tone = np.sin(2 * np.pi * 440 * np.arange(n) / sample_rate)
        samples = (tone * 0.3).astype(np.float32) if fmt == "fltp" else (tone * 10000).astype(np.int16)
        step = 1024
        for start in range(0, n - step + 1, step):
            frame = av.AudioFrame.from_ndarray(samples[None, start:start + step], format=fmt, layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = start
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    out.close()
    return path


def _write_folder(folder: Path, frames: list[np.ndarray], names: list[str] | None = None) -> Path:
    folder.mkdir()
    for i, array in enumerate(frames):
        Image.fromarray(array).save(folder / (names[i] if names else f"f_{i + 1:03d}.png"))
    return folder


def _decode(path: Path) -> tuple[list[np.ndarray], list[float]]:
    with av.open(str(path)) as c:
        frames = [(f.to_ndarray(format="rgb24"), float(f.pts * f.time_base)) for f in c.decode(video=0)]
    return [f for f, _ in frames], [t for _, t in frames]


def _stream_info(path: Path) -> dict[str, object]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info: dict[str, object] = {
            "size": (v.codec_context.width, v.codec_context.height), "pix_fmt": v.codec_context.pix_fmt,
            "rate": v.average_rate, "time_base": v.time_base, "codec": v.codec_context.name,
            "video_seconds": float(v.duration * v.time_base) if v.duration else None,
        }
        if c.streams.audio:
            a = c.streams.audio[0]
            info["audio_codec"] = a.codec_context.name
            info["audio_seconds"] = float(a.duration * a.time_base)
            info["audio_packets"] = [bytes(p) for p in c.demux(a) if p.size][:5]
        return info


def _no_leftovers(folder: Path, expected: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == expected


# ------------------------------------------------------------------------------------------------- probe


def test_probe_real_clips(data_dir: Path) -> None:
    bunny = probe_video(data_dir / "video" / BUNNY)
    assert isinstance(bunny, VideoInfo)
    assert (bunny.width, bunny.height, bunny.fps, bunny.frames) == (640, 360, Fraction(24), 240)
    assert bunny.frames_exact and bunny.duration == pytest.approx(10.0)
    assert bunny.has_audio and bunny.audio_codec == "aac" and bunny.video_codec == "h264"
    lapse = probe_video(data_dir / "video" / TIMELAPSE)
    assert (lapse.width, lapse.height, lapse.fps, lapse.frames, lapse.has_audio) == (800, 450, 15, 60, False)
    folder = probe_video(data_dir / "video" / MOUNTAIN)
    assert (folder.width, folder.height, folder.fps, folder.frames) == (1024, 436, Fraction(25), 50)
    assert folder.is_folder and folder.duration == pytest.approx(2.0)
    assert probe_video(data_dir / "video" / MOUNTAIN, fps=12.5).fps == Fraction(25, 2)


@pytest.mark.parametrize("content", [b"this is not a video\n" * 50, bytes(range(256)) * 40, b""])
def test_probe_garbage_raises_video_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError, match="clip.mp4"):
        probe_video(path)


def test_truncated_and_missing_files_raise_video_error(tmp_path: Path, data_dir: Path) -> None:
    data = (data_dir / "video" / BUNNY).read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="truncated.mp4"):
        probe_video(truncated)
    with pytest.raises(VideoError, match="truncated.mp4"):
        stylize_video(truncated, tmp_path / "out.mp4", identity)
    with pytest.raises(VideoError, match="nothing.mp4"):
        probe_video(tmp_path / "nothing.mp4")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(VideoError, match="notes.txt"):
        stylize_video(text, tmp_path / "out.mp4", identity)
    _no_leftovers(tmp_path, {"truncated.mp4", "notes.txt"})


def test_still_image_and_empty_folder_raise(tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    Image.fromarray(_pattern(20, 30)).save(image)
    with pytest.raises(VideoError, match="still image"):
        probe_video(image)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no frames"):
        probe_video(tmp_path / "empty")


# -------------------------------------------------------------------------------------- video -> video


def test_identity_keeps_frames_rate_size_and_copies_audio(tmp_path: Path, data_dir: Path) -> None:
    src = data_dir / "video" / BUNNY
    dst = tmp_path / "out.mp4"
    calls: list[tuple[int, int | None]] = []
    info = stylize_video(src, dst, identity, batch_size=4, max_frames=10,
                         progress=lambda done, total: calls.append((done, total)))
    assert calls == [(4, 10), (8, 10), (10, 10)]
    assert (info.width, info.height, info.fps, info.frames) == (640, 360, Fraction(24), 10)
    assert info.has_audio
    out, src_s = _stream_info(dst), _stream_info(src)
    assert out["size"] == (640, 360) and out["pix_fmt"] == "yuv420p" and out["codec"] == "h264"
    assert out["rate"] == Fraction(24) and out["time_base"] == src_s["time_base"] == Fraction(1, 12288)
    # audio copied packet for packet (no re-encoding) and cut to the video's duration (10/24 s)
    assert out["audio_codec"] == "aac" and out["audio_packets"] == src_s["audio_packets"]
    assert out["audio_seconds"] == pytest.approx(10 / 24, abs=0.03)
    # same timestamps and (nearly) the same pixels as the source's first 10 frames
    got, times = _decode(dst)
    ref, ref_times = _decode(src)
    assert times == ref_times[:10] == [i / 24 for i in range(10)]
    diffs = [np.abs(a.astype(np.int16) - b).mean() for a, b in zip(got, ref[:10], strict=False)]
    assert len(got) == 10 and max(diffs) < 3.0
    _no_leftovers(tmp_path, {"out.mp4"})


def test_frame_function_is_applied_in_batches(tmp_path: Path, data_dir: Path) -> None:
    sizes: list[int] = []

    def invert(frames: np.ndarray) -> np.ndarray:
        assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[1:] == (450, 800, 3)
        sizes.append(len(frames))
        return 255 - frames

    src = data_dir / "video" / TIMELAPSE
    dst = tmp_path / "frames"
    info = stylize_video(src, dst, invert, batch_size=2, max_frames=5)
    assert sizes == [2, 2, 1]
    assert info.is_folder and info.frames == 5 and (info.width, info.height) == (800, 450)
    assert sorted(p.name for p in dst.iterdir()) == [f"frame_{i:06d}.png" for i in range(1, 6)]
    ref = read_frames(src, max_frames=5)
    np.testing.assert_array_equal(read_frames(dst), 255 - ref)  # PNG output is lossless


def test_audio_is_transcoded_when_mp4_cannot_hold_it(tmp_path: Path) -> None:
    src = _make_clip(tmp_path / "pcm.mkv", [_pattern(48, 64, t) for t in range(25)], fps=25,
                     audio_codec="pcm_s16le", audio_seconds=1.0)
    assert probe_video(src).audio_codec == "pcm_s16le"
    info = stylize_video(src, tmp_path / "out.mp4", identity, max_frames=12)
    assert info.has_audio and info.audio_codec == "aac" and info.frames == 12
    out = _stream_info(tmp_path / "out.mp4")
    assert out["audio_seconds"] == pytest.approx(12 / 25, abs=0.07)


def test_full_audio_kept_without_max_frames(tmp_path: Path) -> None:
    src = _make_clip(tmp_path / "aac.mp4", [_pattern(32, 48, t) for t in range(10)], fps=10,
                     audio_codec="aac", audio_seconds=1.0)
    src_audio = _stream_info(src)["audio_seconds"]
    stylize_video(src, tmp_path / "out.mp4", identity)
    out = _stream_info(tmp_path / "out.mp4")
    assert out["audio_seconds"] == pytest.approx(src_audio, abs=1e-6)
    assert out["video_seconds"] == pytest.approx(1.0)


def test_variable_frame_timestamps_are_kept(tmp_path: Path) -> None:
    pts = [0, 40, 120, 160, 280, 300]
    src = _make_clip(tmp_path / "vfr.mp4", [_pattern(32, 48, t) for t in range(6)], fps=25,
                     time_base=Fraction(1, 1000), pts=pts)
    _, src_times = _decode(src)
    assert src_times == [p / 1000 for p in pts]
    stylize_video(src, tmp_path / "out.mp4", identity, batch_size=4)
    _, times = _decode(tmp_path / "out.mp4")
    assert times == pytest.approx(src_times)


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:16, :16] = (255, 0, 0)  # red block in the top-left corner of the stored frame
    src = _make_clip(tmp_path / "clip.mp4", [frame] * 3)
    data = bytearray(src.read_bytes())
    at = data.find(b"tkhd")
    offset = at + 8 + (20 if data[at + 4] == 0 else 32) + 16  # to the 3x3 display matrix
    data[offset:offset + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)  # "rotate=90"
    src.write_bytes(bytes(data))
    info = probe_video(src)
    assert (info.width, info.height, info.rotation) == (48, 64, 270)  # shown turned 90 degrees clockwise
    out = read_frames(src)
    assert out.shape == (3, 64, 48, 3)
    assert out[0, 8, 40, 0] > 200 and out[0, 8, 8, 0] < 50  # top-left went to top-right
    written = stylize_video(src, tmp_path / "out.mp4", identity)
    assert (written.width, written.height, written.rotation) == (48, 64, 0)


# ------------------------------------------------------------------------------------- folders, odd size


def test_frame_folder_to_mp4(tmp_path: Path, data_dir: Path) -> None:
    src = data_dir / "video" / MOUNTAIN
    info = stylize_video(src, tmp_path / "out.mp4", lambda x: 255 - x, max_frames=4, fps=12,
                         preset="veryfast")
    assert (info.width, info.height, info.fps, info.frames, info.has_audio) == (1024, 436, 12, 4, False)
    got, times = _decode(tmp_path / "out.mp4")
    assert times == pytest.approx([i / 12 for i in range(4)])
    ref = read_frames(src, max_frames=4)
    assert np.abs(np.stack(got).astype(np.int16) - (255 - ref)).mean() < 3.0


def test_natural_sort_of_frame_names(tmp_path: Path) -> None:
    names = ["frame_10.png", "frame_2.png", "frame_1.jpg", "notes.txt"]
    colours = [np.full((8, 8, 3), v, np.uint8) for v in (30, 20, 10, 0)]
    folder = _write_folder(tmp_path / "frames", colours[:3], names[:3])
    (folder / "notes.txt").write_text("ignored")
    means = [round(float(f.mean()) / 10) * 10 for f in iter_frames(folder)]
    assert means == [10, 20, 30]


@pytest.mark.parametrize("odd_size", ["pad", "exact"])
def test_odd_sized_frames(tmp_path: Path, odd_size: str) -> None:
    frames = [_pattern(47, 65, t) for t in range(5)]
    src = _write_folder(tmp_path / "odd", frames)
    info = stylize_video(src, tmp_path / "out.mp4", identity, odd_size=odd_size)
    stream = _stream_info(tmp_path / "out.mp4")
    if odd_size == "pad":  # yuv420p needs even sizes: one edge-repeated column and row are added
        assert (info.width, info.height) == (66, 48) and stream["pix_fmt"] == "yuv420p"
    else:
        assert (info.width, info.height) == (65, 47) and stream["pix_fmt"] == "yuv444p"
    got, _ = _decode(tmp_path / "out.mp4")
    assert len(got) == 5
    crop = np.stack(got)[:, :47, :65].astype(np.int16)
    assert np.abs(crop - np.stack(frames)).mean() < 4.0
    # folder output keeps the exact size
    stylize_video(src, tmp_path / "png", identity)
    np.testing.assert_array_equal(read_frames(tmp_path / "png"), np.stack(frames))


def test_mixed_frame_sizes_raise(tmp_path: Path) -> None:
    src = _write_folder(tmp_path / "mixed", [_pattern(20, 30), _pattern(20, 30), _pattern(22, 30)])
    with pytest.raises(VideoError, match="f_003.png"):
        stylize_video(src, tmp_path / "out.mp4", identity)
    _no_leftovers(tmp_path, {"mixed"})


# --------------------------------------------------------------------------------- failures, atomicity


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
@pytest.mark.parametrize("dst_name", ["out.mp4", "out_frames"])
def test_failure_midway_leaves_nothing(tmp_path: Path, error: type[BaseException], dst_name: str) -> None:
    src = _make_clip(tmp_path / "src.mp4", [_pattern(32, 48, t) for t in range(12)], audio_codec="aac",
                     audio_seconds=0.5)
    seen = []

    def fails_on_third_batch(frames: np.ndarray) -> np.ndarray:
        seen.append(len(frames))
        if len(seen) == 3:
            raise error("stop")
        return frames

    dst = tmp_path / dst_name
    with pytest.raises(error):
        stylize_video(src, dst, fails_on_third_batch, batch_size=2)
    assert seen == [2, 2, 2]
    _no_leftovers(tmp_path, {"src.mp4"})


def test_failure_leaves_existing_output_untouched(tmp_path: Path) -> None:
    src = _write_folder(tmp_path / "src", [_pattern(16, 16, t) for t in range(6)])
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"previous result")

    def wrong_shape(frames: np.ndarray) -> np.ndarray:
        return frames[:, :8]

    with pytest.raises(ValueError, match="expected a uint8 array"):
        stylize_video(src, dst, wrong_shape)
    with pytest.raises(ValueError, match="expected a uint8 array"):
        stylize_video(src, dst, lambda x: x.astype(np.float32))
    assert dst.read_bytes() == b"previous result"
    _no_leftovers(tmp_path, {"src", "out.mp4"})
    # success replaces it
    stylize_video(src, dst, identity)
    assert probe_video(dst).frames == 6
    _no_leftovers(tmp_path, {"src", "out.mp4"})


def test_bad_options_and_destinations(tmp_path: Path, data_dir: Path) -> None:
    src = _write_folder(tmp_path / "src", [_pattern(16, 16)])
    video = data_dir / "video" / TIMELAPSE
    with pytest.raises(VideoError, match=r"\.avi"):
        stylize_video(src, tmp_path / "out.avi", identity)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(VideoError, match="not empty"):
        stylize_video(src, tmp_path / "full", identity)
    assert (tmp_path / "full" / "keep.txt").read_text() == "x"
    with pytest.raises(VideoError, match="overwrite the input"):
        stylize_video(src, src, identity)
    with pytest.raises(ConfigError, match="fps"):
        stylize_video(video, tmp_path / "out.mp4", identity, fps=10)
    with pytest.raises(ConfigError, match="up to 1000, got -1$"):  # the number, not Fraction(-1, 1)
        probe_video(src, fps=-1)
    with pytest.raises(ConfigError, match="up to 1000, got 1000000000$"):
        probe_video(src, fps=Fraction(10**9))
    for kwargs in ({"batch_size": 0}, {"max_frames": 0}, {"odd_size": "crop"}, {"crf": 60}, {"preset": "x"},
                   {"temporal": 0.5}):
        with pytest.raises(ConfigError):
            stylize_video(src, tmp_path / "out.mp4", identity, **kwargs)
    # an empty existing folder is a valid destination
    (tmp_path / "empty").mkdir()
    assert stylize_video(src, tmp_path / "empty", identity).frames == 1
    _no_leftovers(tmp_path, {"src", "full", "empty"})


# -------------------------------------------------------------------------------------------- temporal


def test_temporal_mode_reduces_flicker(tmp_path: Path) -> None:
    src = _write_folder(tmp_path / "src", [_pattern(48, 64, t) for t in range(8)])
    gains = np.random.default_rng(0).uniform(0.6, 1.4, size=8)
    index = [0]

    def flicker(frames: np.ndarray) -> np.ndarray:  # a "stylisation" with per-frame brightness jitter
        out = []
        for f in frames:
            out.append(np.clip(f.astype(np.float32) * gains[index[0]], 0, 255).astype(np.uint8))
            index[0] += 1
        return np.stack(out)

    stylize_video(src, tmp_path / "plain", flicker, batch_size=3)
    index[0] = 0
    stylize_video(src, tmp_path / "smooth", flicker, batch_size=3, temporal=TemporalConfig(strength=0.6))
    originals = read_frames(src)
    plain = warping_error(read_frames(tmp_path / "plain"), originals)
    smooth = warping_error(read_frames(tmp_path / "smooth"), originals)
    assert smooth < 0.7 * plain
    # the first frame has no predecessor and passes through unchanged
    np.testing.assert_array_equal(read_frames(tmp_path / "smooth")[0], read_frames(tmp_path / "plain")[0])
