"""ImageFolderDataset: listing, resizing, deterministic crops, EXIF, corrupt files; SeededCropStream."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from impasto.data import ImageFolderDataset, InfiniteSampler, SeededCropStream, list_images
from impasto.errors import ConfigError, ImageError


def _save(path: Path, w: int, h: int, mode: str = "RGB", seed: int = 0, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
    Image.fromarray(arr[..., 0] if mode == "L" else arr, mode).save(path, **kw)
    return path


def _position_image(path: Path, w: int, h: int) -> Path:
    """R = 10 x column, G = 10 x row, B = 0: a crop's first pixel tells where it was taken."""
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[..., 0] = (np.arange(w) * 10)[None, :]
    arr[..., 1] = (np.arange(h) * 10)[:, None]
    Image.fromarray(arr, "RGB").save(path)
    return path


def test_lists_images_recursively_sorted_and_returns_crops(tmp_path: Path) -> None:
    _save(tmp_path / "b.png", 40, 30)
    _save(tmp_path / "a.JPG", 50, 40, seed=1)
    _save(tmp_path / "sub" / "c.png", 30, 60, mode="RGBA", seed=2)
    _save(tmp_path / "sub" / "deeper" / "d.jpeg", 32, 32, mode="L", seed=3)
    (tmp_path / "notes.txt").write_text("not an image")
    _save(tmp_path / ".hidden.png", 30, 30)
    ds = ImageFolderDataset(tmp_path, size=32, crop=24)
    assert [p.relative_to(tmp_path).as_posix() for p in ds.paths] == ["a.JPG", "b.png", "sub/c.png",
                                                                     "sub/deeper/d.jpeg"]
    assert len(ds) == 4 and ds.num_skipped == 0
    for i in range(len(ds)):
        x = ds.load(i, torch.Generator().manual_seed(i))
        assert x.shape == (3, 24, 24) and x.dtype == torch.float32
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    flat = ImageFolderDataset(tmp_path, size=32, crop=24, recursive=False)
    assert len(flat) == 2
    assert len(list_images(tmp_path, extensions=("png",))) == 2


def test_random_crop_position_comes_from_the_generator(tmp_path: Path) -> None:
    _position_image(tmp_path / "pos.png", 20, 14)
    ds = ImageFolderDataset(tmp_path, size=None, crop=8)
    for seed in range(5):
        x = ds.load(0, torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed)
        top = int(torch.randint(0, 14 - 8 + 1, (1,), generator=g))
        left = int(torch.randint(0, 20 - 8 + 1, (1,), generator=g))
        assert round(float(x[0, 0, 0]) * 255) == 10 * left
        assert round(float(x[1, 0, 0]) * 255) == 10 * top
        # the crop is the contiguous window: last pixel is 7 columns / rows further
        assert round(float(x[0, 7, 7]) * 255) == 10 * (left + 7)
        assert round(float(x[1, 7, 7]) * 255) == 10 * (top + 7)
    # no generator: centre crop; the same generator seed gives the same crop
    centre = ds.load(0)
    assert round(float(centre[0, 0, 0]) * 255) == 10 * 6 and round(float(centre[1, 0, 0]) * 255) == 10 * 3
    a = ds.load(0, torch.Generator().manual_seed(11))
    assert torch.equal(a, ds.load(0, torch.Generator().manual_seed(11)))
    ds.generator = torch.Generator().manual_seed(11)
    assert torch.equal(ds[0], a)


def test_resize_short_side_square_and_upscale(tmp_path: Path) -> None:
    _save(tmp_path / "wide.png", 80, 40)
    assert ImageFolderDataset(tmp_path, size=20, crop=None)[0].shape == (3, 20, 40)
    assert ImageFolderDataset(tmp_path, size=20, crop=None, resize="square")[0].shape == (3, 20, 20)
    assert ImageFolderDataset(tmp_path, size=None, crop=None)[0].shape == (3, 40, 80)
    small = tmp_path / "small"
    _save(small / "tiny.png", 10, 12)
    # short side 8 after resizing < crop 16: upscaled so that the crop fits
    assert ImageFolderDataset(small, size=8, crop=16)[0].shape == (3, 16, 16)
    assert ImageFolderDataset(small, size=None, crop=30)[0].shape == (3, 30, 30)


def test_exif_orientation_and_modes(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    _save(tmp_path / "rot.jpg", 40, 20, exif=exif.tobytes())
    x = ImageFolderDataset(tmp_path, size=None, crop=None)[0]
    assert x.shape == (3, 40, 20)
    grey = tmp_path / "grey"
    _save(grey / "g.png", 16, 16, mode="L")
    y = ImageFolderDataset(grey, size=None, crop=None)[0]
    assert y.shape == (3, 16, 16) and torch.equal(y[0], y[1]) and torch.equal(y[1], y[2])


def test_corrupt_files_are_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    _save(tmp_path / "a_good.png", 30, 30)
    (tmp_path / "b_garbage.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    good_png = _save(tmp_path / "c_tmp.png", 30, 30, seed=4).read_bytes()
    (tmp_path / "c_truncated.png").write_bytes(good_png[: len(good_png) // 2])
    (tmp_path / "c_tmp.png").unlink()
    full = _save(tmp_path / "d_tmp.jpg", 64, 64, seed=5, quality=90).read_bytes()
    (tmp_path / "d_truncated.jpg").write_bytes(full[: len(full) // 2])  # header fine, data cut
    (tmp_path / "d_tmp.jpg").unlink()
    _save(tmp_path / "e_good.png", 30, 30, seed=6)
    with caplog.at_level(logging.WARNING, logger="impasto.data"):
        ds = ImageFolderDataset(tmp_path, size=32, crop=16)
    # scan time: the garbage and the truncated PNG fail the header check
    assert sorted(p.name for p in ds.skipped) == ["b_garbage.jpg", "c_truncated.png"]
    assert [p.name for p in ds.paths] == ["a_good.png", "d_truncated.jpg", "e_good.png"]
    assert ds.num_skipped == 2 and "skipped 2 unreadable" in caplog.text
    # load time: the truncated JPEG passes the header check but cannot be decoded -> the next image
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="impasto.data"):
        x = ds.load(1, None)
    assert torch.equal(x, ds.load(2, None))
    assert ds.num_skipped == 3 and ds.load_failures == {1} and "d_truncated.jpg" in caplog.text
    assert torch.equal(ds.load(1, None), x)  # deterministic, and not retried


def test_empty_missing_or_all_corrupt_folders_raise(tmp_path: Path) -> None:
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(ConfigError, match="empty_folder.*no image files"):
        ImageFolderDataset(empty)
    with pytest.raises(ConfigError, match="missing_folder"):
        ImageFolderDataset(tmp_path / "missing_folder")
    bad = tmp_path / "bad_folder"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"nope")
    with pytest.raises(ConfigError, match="bad_folder.*no readable image files"):
        ImageFolderDataset(bad)
    with pytest.raises(ConfigError, match="crop"):
        ImageFolderDataset(tmp_path, crop=0)
    with pytest.raises(ConfigError, match="resize"):
        ImageFolderDataset(tmp_path, resize="stretch")


def test_all_files_failing_at_load_time_raise_image_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    full = _save(tmp_path / "x.jpg", 64, 64, quality=90).read_bytes()
    (tmp_path / "x.jpg").write_bytes(full[: len(full) // 2])
    ds = ImageFolderDataset(tmp_path, size=32, crop=16)
    with pytest.raises(ImageError, match="none of the 1 image files"):
        ds.load(0)


def test_seeded_crop_stream_is_a_pure_function_of_position(tmp_path: Path) -> None:
    for i in range(3):
        _save(tmp_path / f"{i}.png", 40, 36, seed=i)
    ds = ImageFolderDataset(tmp_path, size=36, crop=16)
    sampler = InfiniteSampler(len(ds), seed=1)
    stream = SeededCropStream(ds, sampler, seed=5)
    forward = [stream[k] for k in range(8)]
    backward = [stream[k] for k in reversed(range(8))][::-1]
    for a, b in zip(forward, backward, strict=True):
        assert torch.equal(a, b)
    # positions k and k + 3 show the same image (epoch of 3) with different crops
    assert sampler.index_at(0) == InfiniteSampler(3, 1).index_at(0)
    assert any(not torch.equal(forward[k], forward[k + 3]) for k in range(3))
    # another rank gets other positions
    other = SeededCropStream(ds, InfiniteSampler(len(ds), seed=1, rank=1, world_size=2), seed=5)
    assert other.crop_seed(0) != stream.crop_seed(0)
    assert other.crop_seed(0) == stream.crop_seed(1)  # global position 1 either way


def test_exclude_keeps_the_holdout_out(tmp_path) -> None:
    """``exclude`` (TrainConfig.holdout) removes the named files; a holdout file's folder prefixes are ignored."""
    import numpy as np
    from PIL import Image

    from impasto.data.datasets import ImageFolderDataset
    from impasto.training.config import TrainConfig, read_holdout

    for i in range(4):
        Image.fromarray(np.full((20, 20, 3), i * 40, np.uint8)).save(tmp_path / f"p{i}.png")
    hold = tmp_path / "split.txt"
    hold.write_text("# validation\nphotos/p1.png\np3.png  # another\n\n")
    names = read_holdout(hold)
    assert names == {"p1.png", "p3.png"}
    ds = ImageFolderDataset(tmp_path, size=16, crop=8, exclude=names)
    assert [p.name for p in ds.paths] == ["p0.png", "p2.png"] and len(ds.excluded) == 2
    import pytest

    from impasto.errors import ConfigError

    with pytest.raises(ConfigError, match="holdout .*missing.txt: file not found"):
        TrainConfig(task="adain", holdout=str(tmp_path / "missing.txt"))
