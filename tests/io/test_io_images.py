"""Tests for impasto.io.images: every input mode, every bad file, atomic saving, tensors, resizing.

All images are generated in tmp_path, plus the real photos under data_dir.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from impasto.errors import ConfigError, ImageError
from impasto.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    image_to_tensor,
    iter_image_files,
    load_image,
    load_tensor,
    resize_max,
    resize_short,
    save_image,
    tensor_to_image,
)

WHITE = (255, 255, 255)


def _px(img: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    return tuple(img.getpixel(xy))


def _close(a: tuple[int, ...], b: tuple[int, ...], tol: int) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b, strict=True))


def _header(path: Path) -> tuple[str, tuple[int, int], int]:
    """(mode, size, number of frames) as Pillow sees them, without decoding; closes the file."""
    with Image.open(path) as img:
        return img.mode, img.size, getattr(img, "n_frames", 1)


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bomb(path: Path, side: int) -> Path:
    """A valid 1-bit PNG of side x side black pixels: 30000 x 30000 takes about 0.5 MB."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    row = bytes(1 + (side + 7) // 8)  # filter byte + packed bits, all zero
    comp = zlib.compressobj(1)
    chunks, block = [], row * 1000
    for start in range(0, side, 1000):
        chunks.append(comp.compress(block if side - start >= 1000 else row * (side - start)))
    chunks.append(comp.flush())
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(chunks))
    path.write_bytes(data + _png_chunk(b"IEND", b""))
    return path


# ----------------------------------------------------------------------------- modes


def test_rgba_composited_over_background(tmp_path: Path) -> None:
    img = Image.new("RGBA", (4, 2), (255, 0, 0, 0))  # fully transparent red
    img.putpixel((1, 0), (255, 0, 0, 255))  # opaque red
    img.putpixel((2, 0), (0, 0, 255, 128))  # half-transparent blue
    img.save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.mode == "RGB" and out.size == (4, 2)
    assert _px(out, (0, 0)) == WHITE
    assert _px(out, (1, 0)) == (255, 0, 0)
    assert _close(_px(out, (2, 0)), (127, 127, 255), 1)
    black = load_image(tmp_path / "a.png", background=(0, 0, 0))
    assert _px(black, (0, 0)) == (0, 0, 0)
    assert _px(load_image(tmp_path / "a.png", background="lime"), (0, 0)) == (0, 255, 0)


def test_la(tmp_path: Path) -> None:
    img = Image.new("LA", (2, 1), (100, 0))
    img.putpixel((1, 0), (100, 255))
    img.save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png", background=(10, 20, 30))
    assert _px(out, (0, 0)) == (10, 20, 30)
    assert _px(out, (1, 0)) == (100, 100, 100)


def test_palette_and_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (3, 1))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    img.putdata([0, 1, 2])
    img.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    assert [_px(out, (x, 0)) for x in range(3)] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    img.save(tmp_path / "pt.png", transparency=1)  # green is the transparent index
    out = load_image(tmp_path / "pt.png", background=(7, 8, 9))
    assert [_px(out, (x, 0)) for x in range(3)] == [(255, 0, 0), (7, 8, 9), (0, 0, 255)]


def test_greyscale_l(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 77, 255]], dtype=np.uint8)).save(tmp_path / "l.png")
    out = load_image(tmp_path / "l.png")
    assert [_px(out, (x, 0)) for x in range(3)] == [(0, 0, 0), (77, 77, 77), (255, 255, 255)]


def test_16bit_png_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.array([[0, 65535, 128 * 257, 1000]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    assert _header(tmp_path / "g16.png")[0].startswith("I")  # really stored as 16 bit
    out = load_image(tmp_path / "g16.png")
    assert [_px(out, (x, 0))[0] for x in range(4)] == [0, 255, 128, 4]  # 1000 / 257 = 3.9


def test_float_tiff_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32)
    Image.fromarray(arr).save(tmp_path / "f.tif")
    assert _header(tmp_path / "f.tif")[0] == "F"
    out = load_image(tmp_path / "f.tif")
    assert [_px(out, (x, 0))[0] for x in range(4)] == [0, 64, 128, 255]
    # Out-of-range floats are stretched from [min, max], not clipped.
    Image.fromarray(np.array([[-1.0, 0.0, 3.0]], dtype=np.float32)).save(tmp_path / "f2.tif")
    out = load_image(tmp_path / "f2.tif")
    assert [_px(out, (x, 0))[0] for x in range(3)] == [0, 64, 255]


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    out = load_image(tmp_path / "c.jpg")
    assert out.mode == "RGB"
    assert _close(_px(out, (8, 8)), (255, 0, 0), 3)


def test_one_bit(tmp_path: Path) -> None:
    img = Image.new("1", (2, 1), 0)
    img.putpixel((1, 0), 1)
    img.save(tmp_path / "b.png")
    out = load_image(tmp_path / "b.png")
    assert _px(out, (0, 0)) == (0, 0, 0) and _px(out, (1, 0)) == WHITE


def test_ycbcr_and_other_modes_from_pil() -> None:
    ycc = Image.new("RGB", (4, 4), (200, 40, 10)).convert("YCbCr")
    assert _close(_px(load_image(ycc), (1, 1)), (200, 40, 10), 3)
    i32 = Image.fromarray(np.array([[0, 65535]], dtype=np.int32))
    assert i32.mode == "I"
    assert [_px(load_image(i32), (x, 0))[0] for x in range(2)] == [0, 255]


def test_exif_orientation_6(tmp_path: Path) -> None:
    # Stored 40 wide x 20 high: top half red, bottom half blue. Orientation 6 = rotate 90 deg
    # clockwise to display, so the displayed image is 20 x 40 with red on the right.
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 40, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(tmp_path / "rot.jpg")
    assert out.size == (20, 40)
    assert _close(_px(out, (17, 20)), (255, 0, 0), 20)
    assert _close(_px(out, (2, 20)), (0, 0, 255), 20)


def test_tiny_and_min_size(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "tiny.png")
    assert load_image(tmp_path / "tiny.png").size == (8, 8)
    with pytest.raises(ImageError, match=r"tiny\.png.*8x8.*at least 16"):
        load_image(tmp_path / "tiny.png", min_size=16)


def test_very_wide(tmp_path: Path) -> None:
    Image.new("RGB", (10000, 10), (9, 9, 9)).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png")
    assert out.size == (10000, 10)
    assert resize_max(out, 100).size == (100, 1)


def test_animated_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert _header(tmp_path / "anim.gif")[2] == 3
    assert _close(_px(load_image(tmp_path / "anim.gif"), (4, 4)), (255, 0, 0), 2)


def test_12_megapixel_photo_loads(tmp_path: Path) -> None:
    Image.new("RGB", (4000, 3000), (50, 100, 150)).save(tmp_path / "big.jpg", quality=80)
    assert load_image(tmp_path / "big.jpg").size == (4000, 3000)


def test_bytes_array_and_pil_inputs(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGBA", (3, 2), (10, 20, 30, 255)).save(buf, format="PNG")
    assert _px(load_image(buf.getvalue()), (0, 0)) == (10, 20, 30)
    assert _px(load_image(np.full((2, 3, 3), 200, np.uint8)), (2, 1)) == (200, 200, 200)
    assert _px(load_image(np.full((2, 3), 0.5, np.float32)), (0, 0)) == (128, 128, 128)
    assert _px(load_image(np.full((2, 3, 4), [255, 0, 0, 0], np.uint8)), (0, 0)) == WHITE
    assert _px(load_image(np.full((2, 3), 65535, np.uint16)), (0, 0)) == WHITE
    assert _px(load_image(np.ones((2, 3), bool)), (0, 0)) == WHITE
    pil = Image.new("L", (5, 5), 42)
    out = load_image(pil)
    assert out.mode == "RGB" and out is not pil and _px(out, (0, 0)) == (42, 42, 42)
    with pytest.raises(ImageError, match="channels-first"):
        load_image(np.zeros((3, 8, 8), np.float32))


def test_real_photos(content_path: Path, style_path: Path) -> None:
    for path in (content_path, style_path):
        img = load_image(path)
        assert img.mode == "RGB" and min(img.size) >= 64
        t = load_tensor(path)
        assert t.shape == (1, 3, img.height, img.width) and t.dtype == torch.float32
        assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0 and float(t.std()) > 0.05


def test_real_data_folder(data_dir: Path) -> None:
    files = iter_image_files([data_dir / "content"])
    assert len(files) > 10 and all(p.suffix.lower() in IMAGE_EXTENSIONS for p in files)


# ----------------------------------------------------------------------------- errors


def _assert_image_error(src: Path, match: str, **kw: object) -> None:
    with pytest.raises(ImageError) as info:
        load_image(src, **kw)
    msg = str(info.value)
    assert src.name in msg, msg
    assert match in msg.lower(), msg


def test_missing_directory_and_empty(tmp_path: Path) -> None:
    _assert_image_error(tmp_path / "nope.jpg", "not found")
    (tmp_path / "folder.png").mkdir()
    _assert_image_error(tmp_path / "folder.png", "folder")
    (tmp_path / "empty.jpg").write_bytes(b"")
    _assert_image_error(tmp_path / "empty.jpg", "empty")


def test_urls_are_refused_with_a_hint() -> None:
    for url in ("https://example.com/a.jpg", Path("http://example.com/b.png")):  # as a str, or folded by Path
        with pytest.raises(ImageError, match=r"example\.com/.*URLs are not supported; download the image"):
            load_image(url)
        with pytest.raises(ImageError, match=r"example\.com/.*URLs are not supported; download the image"):
            iter_image_files([str(url)])


def test_not_images(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("this is not a picture\n")
    _assert_image_error(tmp_path / "notes.jpg", "text file")
    (tmp_path / "random.png").write_bytes(np.random.default_rng(1).bytes(4096))
    _assert_image_error(tmp_path / "random.png", "not an image")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated(tmp_path: Path, suffix: str) -> None:
    whole = tmp_path / f"whole{suffix}"
    _noise(64, 64).save(whole)
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    assert _header(cut)[1] == (64, 64)  # the header alone looks fine
    with pytest.raises(ImageError) as info:
        load_image(cut)
    msg = str(info.value)
    assert cut.name in msg and "is truncated" in msg and "re-download" in msg, msg


def test_decompression_bomb(tmp_path: Path) -> None:
    bomb = _png_bomb(tmp_path / "bomb.png", 30000)  # 900 megapixels in about 0.5 MB
    assert bomb.stat().st_size < 1_000_000
    _assert_image_error(bomb, "decompression bomb")
    # max_pixels=None disables impasto's own limit but not Pillow's global protection.
    _assert_image_error(bomb, "decompression bomb", max_pixels=None)


def test_bomb_between_pillow_warning_and_error(tmp_path: Path) -> None:
    bomb = _png_bomb(tmp_path / "mid.png", 12000)  # 144 MP: Pillow only warns at this size
    _assert_image_error(bomb, "decompression bomb")


def test_max_pixels_option(tmp_path: Path) -> None:
    Image.new("RGB", (200, 100)).save(tmp_path / "m.png")
    _assert_image_error(tmp_path / "m.png", "20,000 pixels", max_pixels=10_000)
    with pytest.raises(ImageError, match="max_pixels"):
        load_image(np.zeros((200, 100, 3), np.uint8), max_pixels=10_000)
    assert load_image(tmp_path / "m.png", max_pixels=20_000).size == (200, 100)


def test_pillow_global_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS >= DEFAULT_MAX_PIXELS
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("RGB", (40, 40)).save(tmp_path / "p.png")  # 1600 px: a "bomb" for Pillow now
    _assert_image_error(tmp_path / "p.png", "decompression bomb", max_pixels=None)
    assert load_image(tmp_path / "p.png", max_pixels=2000).size == (40, 40)  # explicitly allowed
    assert Image.MAX_IMAGE_PIXELS == 2000  # raised as far as asked...
    load_image(tmp_path / "p.png", max_pixels=1600)
    assert Image.MAX_IMAGE_PIXELS == 2000  # ...and never lowered


def test_bad_options(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "o.png")
    for kw in ({"max_pixels": 0}, {"min_size": 0}, {"background": (1, 2)}, {"background": "nocolour"}):
        with pytest.raises(ConfigError):
            load_image(tmp_path / "o.png", **kw)


# ----------------------------------------------------------------------------- tensors


def test_tensor_round_trip_and_layout() -> None:
    img = _noise(7, 5)
    t = image_to_tensor(img)
    assert t.shape == (1, 3, 5, 7) and t.dtype == torch.float32
    assert float(t[0, 0, 2, 3]) == pytest.approx(img.getpixel((3, 2))[0] / 255.0)
    assert np.array_equal(np.asarray(tensor_to_image(t)), np.asarray(img))
    assert np.array_equal(np.asarray(tensor_to_image(t[0])), np.asarray(img))


def test_tensor_to_image_clamps_and_rounds() -> None:
    t = torch.tensor([-1.0, 0.5, 2.0, float("nan"), 0.1]).view(1, 1, 5).expand(3, 1, 5)
    out = tensor_to_image(t.clone().requires_grad_(True))
    assert [_px(out, (x, 0))[0] for x in range(5)] == [0, 128, 255, 0, 26]
    with pytest.raises(ValueError):
        tensor_to_image(torch.zeros(2, 3, 4, 4))


# ----------------------------------------------------------------------------- resizing


def test_resize_max_and_short() -> None:
    img = Image.new("RGB", (400, 300))
    assert resize_max(img, 200).size == (200, 150)
    assert resize_max(img, 1000) is img  # never upscales
    assert resize_max(img, None) is img
    assert resize_max(Image.new("RGB", (300, 400)), 100).size == (75, 100)
    assert resize_short(img, 150).size == (200, 150)
    assert resize_short(img, 600).size == (800, 600)
    assert resize_short(Image.new("RGB", (30, 90)), 10).size == (10, 30)
    with pytest.raises(ConfigError):
        resize_max(img, 0)


# ----------------------------------------------------------------------------- saving


def test_save_round_trip_png_jpg(tmp_path: Path) -> None:
    img = _noise(32, 24)
    out = save_image(img, tmp_path / "deep" / "er" / "o.png")
    assert out == tmp_path / "deep" / "er" / "o.png"
    assert np.array_equal(np.asarray(load_image(out)), np.asarray(img))
    smooth = Image.new("RGB", (32, 24), (200, 100, 50))
    back = load_image(save_image(image_to_tensor(smooth), tmp_path / "o.jpg"))
    assert np.abs(np.asarray(back, float) - np.asarray(smooth, float)).mean() < 3
    for suffix in (".webp", ".bmp", ".tif", ".tiff", ".jpeg", ".PNG"):
        assert load_image(save_image(smooth, tmp_path / f"x{suffix}")).size == (32, 24)


def test_save_rgba_to_jpeg_composites(tmp_path: Path) -> None:
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert _close(_px(load_image(save_image(img, tmp_path / "a.jpg")), (4, 4)), WHITE, 2)
    assert _header(save_image(img, tmp_path / "a.png"))[0] == "RGBA"  # kept where possible


def test_save_unknown_suffix(tmp_path: Path) -> None:
    for name in ("o.xyz", "noext"):
        with pytest.raises(ImageError) as info:
            save_image(Image.new("RGB", (2, 2)), tmp_path / name)
        assert name in str(info.value) and ".png" in str(info.value) and ".jpg" in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", [OSError("disk full (simulated)"), KeyboardInterrupt()])
def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"previous result")
    other = tmp_path / "new.png"

    def broken_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        fp.write(b"\x89PNG half-written data")  # type: ignore[attr-defined]
        raise error

    monkeypatch.setattr(Image.Image, "save", broken_save)
    expected = ImageError if isinstance(error, Exception) else KeyboardInterrupt
    for path in (target, other):
        with pytest.raises(expected) as info:
            save_image(_noise(8, 8), path)
        if expected is ImageError:
            assert path.name in str(info.value)
    assert target.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temp file, no new.png


# ----------------------------------------------------------------------------- file lists


def test_natural_key_is_one_sort_with_the_callers_view() -> None:
    """One natural sort for image listings and video frame folders: numbers by value, case-insensitively. Image
    listings pass the path relative to the folder (subfolders sort first), frame folders the bare name (the
    frames of one folder); the two views order files of different folders differently."""
    import re

    from impasto.io.images import natural_key

    names = ["frame_10.png", "Frame_2.png", "frame_1.jpg", "frame_01b.png", "f.png", "frame_2a.PNG", "10.png"]
    assert sorted(names, key=natural_key) == [
        "10.png", "f.png", "frame_1.jpg", "frame_01b.png", "Frame_2.png", "frame_2a.PNG", "frame_10.png"]

    def old_frame_key(name: str) -> list[object]:  # io/video.py's former copy, keyed on the name
        return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]

    assert sorted(names, key=natural_key) == sorted(names, key=old_frame_key)
    paths = [Path("b") / "img1.png", Path("a") / "img2.png", Path("a") / "img10.png"]
    assert sorted(paths, key=natural_key) == [paths[1], paths[2], paths[0]]  # image listings: by relative path
    assert sorted(paths, key=lambda p: natural_key(p.name)) == [paths[0], paths[1], paths[2]]  # frames: by name


def test_iter_image_files(tmp_path: Path) -> None:
    for name in ("img10.png", "img2.JPG", "img1.png", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.webp").write_bytes(b"x")
    names = [p.name for p in iter_image_files([tmp_path])]
    assert names == ["img1.png", "img2.JPG", "img10.png"]
    assert [p.name for p in iter_image_files(tmp_path, recursive=True)][-1] == "deep.webp"
    assert [p.name for p in iter_image_files([str(tmp_path / "img*.png")])] == ["img1.png", "img10.png"]
    both = iter_image_files([tmp_path / "notes.txt", tmp_path / "img1.png", tmp_path])
    assert [p.name for p in both] == ["notes.txt", "img1.png", "img2.JPG", "img10.png"]  # no duplicates
    assert iter_image_files([]) == []
    with pytest.raises(ImageError, match="missing.png"):
        iter_image_files([tmp_path / "missing.png"])
    with pytest.raises(ImageError, match="matches no image"):
        iter_image_files([str(tmp_path / "*.gif")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="contains no images"):
        iter_image_files([tmp_path / "empty"])


def _png(arr, interlace: bool = False, keep: float = 1.0) -> bytes:
    """A hand-written RGB PNG (filter 0), optionally Adam7-interlaced; ``keep`` < 1 drops the end of the data
    (still a complete zlib stream and IEND: the header promises more rows than there are)."""
    import struct
    import zlib

    h, w, _ = arr.shape
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    raw = b""
    for x0, y0, dx, dy in passes if interlace else ((0, 0, 1, 1),):
        sub = arr[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\x00" + row.tobytes() for row in sub)
    raw = raw[: int(len(raw) * keep)]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, int(interlace))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("interlace", [False, True])
def test_png_whose_data_stops_early_is_refused(tmp_path, interlace: bool) -> None:
    """A PNG whose header promises more rows than its (properly ended) data holds was decoded with black rows."""
    rng = np.random.default_rng(0)
    arr = (rng.random((37, 29, 3)) * 255).astype(np.uint8)
    good = _png(arr, interlace)
    assert np.array_equal(np.asarray(load_image(good)), arr)  # the hand-written file is a valid PNG
    (tmp_path / "short.png").write_bytes(_png(arr, interlace, keep=0.6))
    with pytest.raises(ImageError, match=r"short.png is truncated: its header says 29x37 but the image data stops"):
        load_image(tmp_path / "short.png")
    with pytest.raises(ImageError, match="truncated"):
        load_image(_png(arr, interlace, keep=0.99))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs symlinks and named pipes (POSIX)")
def test_symlink_loops_fifos_and_dangling_links_say_what_they_are(tmp_path) -> None:
    """They were all reported as 'no such file or folder'."""
    from impasto.io.images import iter_image_files

    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "f.png")
    (tmp_path / "d.jpg").symlink_to(tmp_path / "nothere.jpg")
    with pytest.raises(ImageError, match="a.jpg is a symbolic link that points .in a loop. back to itself"):
        iter_image_files([tmp_path / "a.jpg"])
    with pytest.raises(ImageError, match=r"f.png is a named pipe \(FIFO\), not an image file"):
        iter_image_files([tmp_path / "f.png"])
    with pytest.raises(ImageError, match="d.jpg is a symbolic link to .*nothere.jpg, which does not exist"):
        iter_image_files([tmp_path / "d.jpg"])
    with pytest.raises(ImageError, match="no such file or folder"):
        iter_image_files([tmp_path / "missing.jpg"])
