"""Tests of `impasto video` and impasto.video (Stylizer glue around impasto.io.video.stylize_video)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from impasto.cli import app
from impasto.errors import ConfigError, VideoError
from impasto.io.video import probe_video, read_frames
from impasto.pipeline import Stylizer, rgb_to_ycbcr
from impasto.temporal import TemporalConfig, warping_error
from impasto.video import (
    FrameStylizer,
    VideoResult,
    check_video_paths,
    frames_to_tensor,
    stylize_frames,
    stylize_video_file,
    tensor_to_frames,
)

BUNNY = "pytorch-AdaIN__cutBunny.mp4"  # 640x360, 24 fps, 240 frames, AAC audio
MOUNTAIN = "mountain_2"  # 50 PNG frames 1024x436
SMALL = ["--max-size", "128", "--style-size", "128", "--device", "cpu"]


def _run(args: list[str]) -> tuple[int, str, BaseException | None]:
    res = CliRunner().invoke(app, args)
    return res.exit_code, " ".join(res.output.split()), res.exception


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------------------- pure glue


def test_frame_tensor_round_trip_is_exact() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2, 5, 7, 3), dtype=np.uint8)
    x = frames_to_tensor(frames)
    assert x.shape == (2, 3, 5, 7) and x.dtype == torch.float32
    assert float(x[1, 2, 3, 4]) == pytest.approx(frames[1, 3, 4, 2] / 255.0)
    np.testing.assert_array_equal(tensor_to_frames(x), frames)
    # clamping and rounding to the nearest level
    y = torch.tensor([-0.5, 0.0, 1.0 / 255 * 0.49, 1.0 / 255 * 0.51, 1.0, 2.0]).view(1, 3, 1, 2)
    assert tensor_to_frames(y).transpose(0, 3, 1, 2).ravel().tolist() == [0, 0, 0, 1, 255, 255]
    with pytest.raises(ValueError):
        frames_to_tensor(frames.astype(np.float32))


class _HalfSizeStylizer:
    """Stand-in for Stylizer: returns a constant image at half the size, recording its arguments."""

    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []

    def stylize_tensor(self, content: torch.Tensor, styles: object, **kw: object) -> torch.Tensor:
        self.calls.append({"shape": tuple(content.shape), "styles": styles, **kw})
        b, _, h, w = content.shape
        return torch.full((b, 3, h // 2, w // 2), 0.25)


def test_stylize_frames_scales_back_to_the_frame_size() -> None:
    fake = _HalfSizeStylizer()
    frames = np.zeros((3, 8, 12, 3), dtype=np.uint8)
    out, size = stylize_frames(fake, frames, ["s.jpg"], alpha=0.5, style_weights=[1.0],  # type: ignore[arg-type]
                               preserve_color=True, max_size=6)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert size == (6, 4)  # (width, height) at which the method ran
    assert np.all(out == 64)  # 0.25 * 255 = 63.75 -> 64 after bilinear upsampling of a constant
    call = fake.calls[0]
    assert call["shape"] == (3, 3, 8, 12) and call["alpha"] == 0.5 and call["max_size"] == 6
    assert call["preserve_color"] is True and call["style_weights"] == [1.0]


class _NoiseStylizer:
    """Stand-in for Stylizer: fresh random noise at half the size on every call (worst-case flicker)."""

    def __init__(self) -> None:
        self.gen = torch.Generator().manual_seed(0)

    def stylize_tensor(self, content: torch.Tensor, styles: object, **kw: object) -> torch.Tensor:
        b, _, h, w = content.shape
        return torch.rand((b, 3, h // 2, w // 2), generator=self.gen)


def test_frame_stylizer_smooths_at_the_processing_size_across_batches() -> None:
    rng = np.random.default_rng(2)
    still = np.repeat(rng.integers(0, 256, size=(1, 32, 48, 3), dtype=np.uint8), 3, axis=0)  # a static scene
    fn = FrameStylizer(_NoiseStylizer(), "s.jpg", max_size=24,  # type: ignore[arg-type]
                       temporal=TemporalConfig(strength=1.0))
    first, second = fn(still), fn(still[:2])
    assert first.shape == (3, 32, 48, 3) and fn.processed_size == (24, 16)
    # zero flow, every pixel reliable, strength 1: every later output copies the first one, across batches
    for frame in [*first[1:], *second]:
        np.testing.assert_array_equal(frame, first[0])
    fn.reset()  # a new clip starts from a fresh stylisation
    assert np.abs(fn(still[:1])[0].astype(int) - first[0]).mean() > 20
    plain = FrameStylizer(_NoiseStylizer(), "s.jpg", max_size=24)  # type: ignore[arg-type]
    out = plain(still)
    assert np.abs(out[1].astype(int) - out[0]).mean() > 20  # without temporal mode each frame is new noise
    with pytest.raises(ConfigError, match="TemporalConfig"):
        FrameStylizer(_NoiseStylizer(), "s.jpg", temporal=0.5)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- errors


def test_check_video_paths(data_dir: Path, tmp_path: Path) -> None:
    info = check_video_paths(data_dir / "video" / MOUNTAIN, tmp_path / "out.mp4", fps=12)
    assert (info.width, info.height, info.frames, info.fps) == (1024, 436, 50, 12)
    with pytest.raises(VideoError, match=r"'\.avi'.*\.mp4"):
        check_video_paths(data_dir / "video" / BUNNY, tmp_path / "out.avi")
    with pytest.raises(ConfigError, match="only to frame folders"):
        check_video_paths(data_dir / "video" / BUNNY, tmp_path / "out.mp4", fps=25)


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_cli_broken_video_fails_cleanly(kind: str, data_dir: Path, style_path: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken.mp4"
    if kind == "garbage":
        broken.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    else:  # the first 40 kB of a real clip (its index is at the end)
        broken.write_bytes((data_dir / "video" / BUNNY).read_bytes()[:40_000])
    code, out, exc = _run(["video", "broken.mp4", "-s", str(style_path), "-o", "out.mp4", *SMALL])
    assert code == 2 and isinstance(exc, SystemExit)
    assert "error: broken.mp4: cannot be read as a video" in out
    assert "Traceback" not in out
    assert _leftovers(tmp_path) == ["broken.mp4"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-o", "out.avi"], "cannot write '.avi' files; give an .mp4"),
        (["-o", "out.mp4", "--temporal-strength", "1.5"], "temporal strength must be a number in [0, 1]"),
        (["-o", "out.mp4", "--flow", "lucas"], "unknown optical-flow method 'lucas'; choose one of dis"),
        (["-o", "out.mp4", "--fps", "25"], "applies only to frame folders"),
        (["-o", "out.mp4", "--fps", "fast"], "--fps must be a number"),
        (["-o", "out.mp4", "-s", "missing.jpg"], "missing.jpg"),
    ],
)
def test_cli_bad_options_fail_before_any_work(extra: list[str], message: str, data_dir: Path, style_path: Path,
                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, exc = _run(["video", str(data_dir / "video" / BUNNY), "-s", str(style_path), *extra, *SMALL])
    assert code == 2 and isinstance(exc, SystemExit), out
    assert message in out and "Traceback" not in out
    assert _leftovers(tmp_path) == []


@pytest.mark.weights
def test_cli_error_during_stylisation_leaves_no_output(data_dir: Path, style_path: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = _run(["video", str(data_dir / "video" / BUNNY), "-s", str(style_path), "-o", "out.mp4",
                         "-m", "microast", "--max-frames", "2", "--alpha", "2", *SMALL])
    assert code == 2 and "alpha must be in [0, 1]" in out and "Traceback" not in out
    assert _leftovers(tmp_path) == []


# ----------------------------------------------------------------------------------------- end to end


@pytest.mark.weights
def test_cli_video_keeps_rate_size_and_audio(data_dir: Path, style_path: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    src = data_dir / "video" / BUNNY
    code, out, exc = _run(["video", str(src), "-s", str(style_path), "-o", "out.mp4", "-m", "adain",
                           "--max-frames", "6", *SMALL])
    assert code == 0, (out, exc)
    info = probe_video(tmp_path / "out.mp4")
    assert (info.frames, info.fps, info.width, info.height) == (6, 24, 640, 360)
    assert info.has_audio and info.audio_codec == "aac"
    with av.open(str(tmp_path / "out.mp4")) as container:  # the audio is cut to the 6 frames (0.25 s)
        audio = container.streams.audio[0]
        assert float(audio.duration * audio.time_base) < 0.5
    frames = read_frames(tmp_path / "out.mp4")
    original = read_frames(src, max_frames=6)
    assert frames.shape == original.shape == (6, 360, 640, 3)
    assert np.abs(frames.astype(np.float32) - original).mean() > 20  # it was stylised
    assert "wrote out.mp4: 6 frames, 640x360 at 24 fps (stylised at 128x72), audio kept" in out
    assert "temporal 0.5 (dis)" in out and "frames/s)" in out
    assert _leftovers(tmp_path) == ["out.mp4"]


@pytest.mark.weights
def test_cli_frame_folder_to_mp4_with_style_mix_and_colour(data_dir: Path, style_path: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    src = data_dir / "video" / MOUNTAIN
    second = data_dir / "style" / "AdaAttN__feathers.jpg"
    code, out, exc = _run(["video", str(src), "-s", str(style_path), "-s", str(second), "-w", "0.7", "-w", "0.3",
                           "--preserve-color", "--alpha", "0.8", "-o", "mix.mp4", "-m", "microast",
                           "--max-frames", "6", "--fps", "12", "--flow", "dis-fast", *SMALL])
    assert code == 0, (out, exc)
    info = probe_video(tmp_path / "mix.mp4")
    assert (info.frames, info.fps, info.width, info.height, info.has_audio) == (6, 12, 1024, 436, False)
    assert "6 frames, 1024x436 at 12 fps (stylised at 128x54)" in out
    # colour preservation: the chroma of the output follows the video's, not the paintings'
    result = frames_to_tensor(read_frames(tmp_path / "mix.mp4"))
    original = frames_to_tensor(read_frames(src, max_frames=6))
    chroma = (rgb_to_ycbcr(result)[:, 1:] - rgb_to_ycbcr(original)[:, 1:]).abs().mean()
    luma = (rgb_to_ycbcr(result)[:, :1] - rgb_to_ycbcr(original)[:, :1]).abs().mean()
    assert chroma < 0.012 and luma > 0.05  # without --preserve-color the chroma differs by about 0.036


@pytest.fixture(scope="module")
def small_mountain(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 12 frames of mountain_2 shrunk to 192 x 82 (a real clip at test-friendly cost)."""
    folder = tmp_path_factory.mktemp("mountain_small")
    for i, frame in enumerate(read_frames(data_dir / "video" / MOUNTAIN, max_frames=12)):
        Image.fromarray(frame).resize((192, 82), Image.Resampling.LANCZOS).save(folder / f"f{i:03d}.png")
    return folder


@pytest.mark.weights
def test_temporal_mode_reduces_warping_error(small_mountain: Path, style_path: Path, tmp_path: Path) -> None:
    stylizer = Stylizer("adain", device="cpu", style_size=128)
    original = read_frames(small_mountain)
    errors: dict[str, float] = {}
    outputs: dict[str, np.ndarray] = {}
    for name, temporal in (("off", None), ("on", TemporalConfig(strength=0.8))):
        res = stylize_video_file(small_mountain, tmp_path / name, stylizer, str(style_path), temporal=temporal,
                                 batch_size=5)
        assert isinstance(res, VideoResult) and res.frames == 12 and res.output.is_folder
        assert res.processed_size == (192, 82) and res.frames_per_second > 0
        outputs[name] = read_frames(tmp_path / name)  # PNG frames: no codec noise in the comparison
        errors[name] = warping_error(outputs[name], original)
    assert stylizer.cache_misses == 1  # the style was encoded once for both videos
    np.testing.assert_array_equal(outputs["on"][0], outputs["off"][0])  # nothing to blend with at frame 0
    floor = warping_error(original, original)
    assert floor < errors["on"] < 0.8 * errors["off"], (floor, errors)


def _write_mkv(path: Path, frames: np.ndarray, fps: int = 24) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.mark.weights
def test_cli_warns_when_a_streamable_video_was_cut_short(data_dir: Path, style_path: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # a Matroska file keeps its header's duration when its end is cut off (an interrupted download), and decodes
    # without an error up to the cut: the output is written, with a warning that frames are missing
    monkeypatch.chdir(tmp_path)
    frames = read_frames(data_dir / "video" / BUNNY, max_frames=48)[:, ::4, ::4].copy()  # 160x90
    _write_mkv(tmp_path / "full.mkv", frames)
    data = (tmp_path / "full.mkv").read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    assert probe_video(tmp_path / "cut.mkv").frames == 48  # from the header's 2.0 s

    code, out, exc = _run(["video", "cut.mkv", "-s", str(style_path), "-o", "cut_out.mp4", "-m", "adain", *SMALL])
    assert code == 0, (out, exc)
    written = probe_video(tmp_path / "cut_out.mp4").frames
    assert 0 < written < 40
    assert f"wrote cut_out.mp4: {written} frames" in out
    assert f"warning: cut.mkv: the video ended after {written} frames" in out
    assert "header gives 2.0 s (~48 frames)" in out and "get the complete file" in out

    # the complete file, and a run that stops early on purpose, do not warn
    code, out, exc = _run(["video", "full.mkv", "-s", str(style_path), "-o", "full_out.mp4", "-m", "adain", *SMALL])
    assert code == 0 and "wrote full_out.mp4: 48 frames" in out and "warning" not in out, (out, exc)
    stylizer = Stylizer("adain", device="cpu", style_size=128)
    result = stylize_video_file(tmp_path / "cut.mkv", tmp_path / "part.mp4", stylizer, style_path, max_size=128,
                                max_frames=5)
    assert result.frames == 5 and result.warnings == ()
