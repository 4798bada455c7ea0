"""Reading, converting, resizing and writing images: the only way impasto touches image files.

Every user-facing failure (missing, empty, corrupt, truncated, oversized, tiny or non-image files,
unwritable outputs) raises :class:`impasto.errors.ImageError` with a message that names the file
and says what to do; nothing here should surface a raw Pillow traceback.

Conventions:
    * Loaded images are 8-bit RGB ``PIL.Image.Image`` objects, upright (EXIF orientation applied).
    * Tensors are float32, shape ``1 x 3 x H x W``, values in ``[0, 1]``, RGB order.
    * Transparency (RGBA, LA, PA, palette or greyscale/RGB images with a transparent colour) is
      composited over ``background`` (white by default): style transfer works on opaque colour.
    * 16-bit greyscale is scaled by 255/65535 (65535 -> 255); float greyscale in [0, 1] is scaled
      by 255, float data already within [0, 255] is kept, anything else is stretched linearly from
      its [min, max] to [0, 255] (never clipped to black or white).
    * Animated images (GIF, APNG, WebP, multi-page TIFF, MPO) are read as their first frame.
    * Embedded ICC colour profiles (e.g. Display P3 photos, CMYK JPEGs) are converted to sRGB when
      Pillow's LittleCMS support is available; otherwise the pixel values are used as they are.

Decompression bombs: a small file can declare an enormous image. ``load_image`` reads the header,
refuses anything above ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`, 100 megapixels) before
decoding, and turns Pillow's own ``DecompressionBombWarning``/``DecompressionBombError`` into
``ImageError``. Pillow's global ``Image.MAX_IMAGE_PIXELS`` is never disabled or lowered: at import it
is raised from Pillow's default (about 89.5 megapixels) to ``DEFAULT_MAX_PIXELS`` so that a 100
megapixel image loads without a warning, and it is raised further only when a caller explicitly
passes a larger ``max_pixels`` (Pillow still refuses images over twice that value process-wide).
"""

from __future__ import annotations

import errno
import glob
import io
import logging
import os
import re
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageColor, ImageOps, UnidentifiedImageError

from impasto.errors import ConfigError, ImageError, ImpastoError
from impasto.io.atomic import atomic_write

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "SAVE_EXTENSIONS",
    "frame_count",
    "image_to_tensor",
    "iter_image_files",
    "load_image",
    "load_tensor",
    "resize_max",
    "resize_short",
    "save_image",
    "tensor_to_image",
]

logger = logging.getLogger(__name__)

#: Largest image (width x height) that ``load_image`` accepts by default: 100 megapixels.
DEFAULT_MAX_PIXELS: int = 100_000_000

#: File extensions (lower case, with the dot) treated as images when expanding folders and globs.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".gif", ".tif", ".tiff",
        ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".pcx", ".sgi", ".qoi",
    }
)  # fmt: skip

#: Output extension -> Pillow format name, for ``save_image``.
SAVE_EXTENSIONS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}

# Largest side each output format can store.
_MAX_SIDE = {"JPEG": 65535, "WEBP": 16383, "PNG": 2**31 - 1, "BMP": 2**31 - 1, "TIFF": 2**32 - 1}
_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}
# Pillow plugins never used for reading: EPS runs Ghostscript as a subprocess on untrusted input.
_EXCLUDED_OPEN_FORMATS = {"EPS"}
_open_lock = threading.Lock()

Color = tuple[int, int, int] | int | str


def _ensure_pillow_limit(max_pixels: int | None) -> None:
    """Raise (never lower, never disable) Pillow's global bomb limit to at least ``max_pixels``."""
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and max_pixels is not None and current < max_pixels:
        Image.MAX_IMAGE_PIXELS = int(max_pixels)


_ensure_pillow_limit(DEFAULT_MAX_PIXELS)


def _open_formats() -> list[str]:
    Image.init()
    return [fmt for fmt in Image.ID if fmt not in _EXCLUDED_OPEN_FORMATS]


# ----------------------------------------------------------------------------- argument checks


def _check_background(background: Color) -> tuple[int, int, int]:
    """``background`` as an RGB triple of ints in [0, 255] (accepts a grey int or a colour name)."""
    try:
        if isinstance(background, str):
            rgb = ImageColor.getrgb(background)[:3]
        elif isinstance(background, (int, np.integer)):
            rgb = (int(background),) * 3
        else:
            rgb = tuple(int(v) for v in background)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"background={background!r} is not a colour; use an (R, G, B) tuple of 0-255 ints, "
            f"a grey level 0-255 or a colour name such as 'white'"
        ) from exc
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ConfigError(
            f"background={background!r} must be three values between 0 and 255, e.g. (255, 255, 255)"
        )
    return rgb  # type: ignore[return-value]


def _check_positive_int(value: Any, option: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{option}={value!r} must be an integer >= {minimum}")
    return int(value)


# ----------------------------------------------------------------------------- pixel conversion


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Map an integer, boolean or float array to uint8 without clipping its range away.

    bool -> {0, 255}; uint8 unchanged; uint16 -> round(v / 257) (65535 -> 255); other integers:
    kept if within [0, 255], divided by 257 if within [0, 65535]; floats: x 255 if within [0, 1],
    kept if within [0, 255]; anything else is stretched linearly from [min, max] to [0, 255].
    NaN becomes 0 and +-inf the extremes of the finite values.
    """
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind not in "uif":
        raise ImageError(f"unsupported pixel type {arr.dtype}; use 8- or 16-bit integers or floats")
    data = arr.astype(np.float32)  # float32 is exact enough for 8-bit output and halves the memory
    if arr.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            lo_f = float(data[finite].min()) if finite.any() else 0.0
            hi_f = float(data[finite].max()) if finite.any() else 0.0
            data = np.nan_to_num(data, nan=0.0, posinf=hi_f, neginf=lo_f)
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if arr.dtype == np.uint16 or (arr.dtype.kind in "iu" and lo >= 0 and 255 < hi <= 65535):
        data = data / 257.0
    elif arr.dtype.kind == "f" and lo >= 0 and hi <= 1:
        data = data * 255.0
    elif lo >= 0 and hi <= 255:
        pass
    elif hi > lo:
        data = (data - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(data), 0, 255).astype(np.uint8)


def _icc_to_srgb(img: Image.Image) -> Image.Image:
    """Convert an RGB or CMYK image with an embedded non-sRGB ICC profile to sRGB (best effort)."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "CMYK"):
        return img
    try:
        from PIL import ImageCms

        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if img.mode == "RGB" and "srgb" in ImageCms.getProfileDescription(src).lower():
            return img
        out = ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        return out if out is not None else img
    except Exception as exc:  # a broken or unsupported profile: fall back to the raw values
        logger.debug("ignoring unusable ICC profile: %s", exc)
        return img


def _to_rgb(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency is composited over ``background``."""
    mode = img.mode
    if mode.startswith("I") or mode == "F":  # I, I;16, I;16B, I;16L, I;16N, F
        grey = Image.fromarray(_scale_to_uint8(np.asarray(img)))
        return grey.convert("RGB")
    img = _icc_to_srgb(img)
    mode = img.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        try:
            rgba = img.convert("RGBA")
        except (ValueError, OSError):
            rgba = None
        if rgba is not None:
            base = Image.new("RGBA", img.size, (*background, 255))
            return Image.alpha_composite(base, rgba).convert("RGB")
    if mode == "RGB":
        return img.copy()
    return img.convert("RGB")


def _array_to_image(arr: np.ndarray, name: str) -> Image.Image:
    """``H x W``, ``H x W x 1``, ``H x W x 2`` (grey + alpha), ``H x W x 3`` or ``H x W x 4`` -> PIL."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)) or arr.size == 0:
        hint = ""
        if arr.ndim == 3 and arr.shape[0] in (1, 3, 4):
            hint = " (channels-first data: transpose it to H x W x C, or use tensor_to_image)"
        raise ImageError(
            f"{name}: an array of shape {tuple(arr.shape)} is not an image; expected H x W (grey) or "
            f"H x W x C with C = 1, 2, 3 or 4{hint}"
        )
    data = np.ascontiguousarray(_scale_to_uint8(arr))
    mode = "L" if data.ndim == 2 else {2: "LA", 3: "RGB", 4: "RGBA"}[data.shape[2]]
    return Image.frombytes(mode, (data.shape[1], data.shape[0]), data.tobytes())


# ----------------------------------------------------------------------------- loading


def _describe(src: Any, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if isinstance(src, Image.Image):
        return str(getattr(src, "filename", "") or "<PIL image>")
    if isinstance(src, np.ndarray):
        return "<array>"
    return "<bytes>"


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)


def _not_found(text: str, what: str) -> ImageError:
    """The error for a path that does not exist; a URL (whose "//" Path() folds into "/") gets its own hint."""
    url = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]+):/+(.*)", text)
    if url:
        return ImageError(f"{url[1]}://{url[2]}: URLs are not supported; download the image and pass the local file")
    return ImageError(f"{what}: {text}; check the path and the spelling")


def _check_path(path: Path) -> None:
    """Fail early, with a clear message, for paths that cannot hold an image."""
    text = str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _not_found(text, "image file not found") from None
    except PermissionError:
        raise ImageError(f"cannot read {text}: permission denied; check the file's permissions") from None
    except OSError as exc:
        raise ImageError(f"cannot read {text}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(
            f"{text} is a folder, not an image file; pass one image file (folders are accepted "
            f"where several images are expected)"
        )
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{text} is not a regular file (a device, pipe or socket); pass an image file")
    if st.st_size == 0:
        raise ImageError(
            f"{text} is empty (0 bytes); it was probably not saved or copied completely: "
            f"re-export or re-download it"
        )


def _too_large(name: str, size: tuple[int, int], max_pixels: int) -> ImageError:
    w, h = size
    return ImageError(
        f"{name} is {w}x{h} = {w * h:,} pixels, more than the limit of {max_pixels:,} (max_pixels); "
        f"files like this can exhaust memory (a 'decompression bomb'). Downscale the image, or pass "
        f"a larger max_pixels if you trust the file"
    )


def _open_checked(fp: Any, name: str, max_pixels: int | None, head: bytes) -> Image.Image:
    """Image.open with bomb checks; returns the lazily opened image (header read, pixels not)."""
    try:
        # The warnings filter is process-global state in Python <= 3.13: take a lock while it is
        # changed. Only the header is parsed here, so the lock is held very briefly.
        with _open_lock, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp, formats=_open_formats())
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        limit = f"{max_pixels:,} pixels" if max_pixels is not None else "Pillow's limit"
        raise ImageError(
            f"{name} declares an image larger than {limit} ({exc}); files like this can "
            f"exhaust memory (a 'decompression bomb'). Downscale the image, or pass a larger "
            f"max_pixels if you trust the file"
        ) from None
    except UnidentifiedImageError:
        what = "a text file" if _looks_like_text(head) else "not an image format impasto can read"
        raise ImageError(
            f"{name} is {what} (or is corrupt); use a PNG, JPEG, WebP, BMP, TIFF or GIF image"
        ) from None
    except PermissionError:
        raise ImageError(f"cannot read {name}: permission denied; check the file's permissions") from None
    except Exception as exc:
        raise ImageError(
            f"{name} is corrupt or not a readable image ({exc}); re-export it as PNG or JPEG"
        ) from None
    if max_pixels is not None and img.width * img.height > max_pixels:
        img.close()
        raise _too_large(name, img.size, max_pixels)
    return img


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def png_data_complete(fp: Any) -> bool:
    """True unless a PNG's image data (its IDAT chunks, inflated) is shorter than its header's size needs.

    Pillow decodes a PNG whose compressed stream ends properly but early (a header of 9000 x 9000 with 2000 rows of
    data) without an error and leaves the missing rows black. Reads ``fp`` from the start and restores its position;
    anything it cannot parse counts as complete (Pillow's own decoding then reports real corruption).
    """
    pos = fp.tell()
    try:
        fp.seek(0)
        if fp.read(8) != b"\x89PNG\r\n\x1a\n":
            return True
        inflate, got, need = zlib.decompressobj(), 0, None
        while True:
            head = fp.read(8)
            if len(head) < 8:
                break
            length, kind = struct.unpack(">I4s", head)
            data = fp.read(length)
            fp.read(4)  # CRC
            if kind == b"IHDR" and len(data) >= 13:
                w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", data[:13])
                bpp = depth * _PNG_CHANNELS.get(color, 4)
                passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
                need = 0
                for x0, y0, dx, dy in passes:
                    pw, ph = (w - x0 + dx - 1) // dx, (h - y0 + dy - 1) // dy
                    if pw > 0 and ph > 0:
                        need += ph * (1 + (pw * bpp + 7) // 8)
            elif kind == b"IDAT":
                got += len(inflate.decompress(data))
            elif kind == b"IEND":
                break
        return need is None or got >= need
    except (OSError, zlib.error, struct.error):
        return True
    finally:
        fp.seek(pos)


def _decode(img: Image.Image, name: str) -> None:
    """Fully decode the pixels so that truncated and corrupt files fail here, not later."""
    fp = getattr(img, "fp", None)
    if img.format == "PNG" and fp is not None and not png_data_complete(fp):
        raise ImageError(
            f"{name} is truncated: its header says {img.width}x{img.height} but the image data stops early "
            f"(the rest would be black); re-export or re-download it"
        )
    try:
        img.load()
    except MemoryError:
        raise ImageError(
            f"{name} ({img.width}x{img.height}) is too large to decode in the available memory; "
            f"downscale it or lower max_pixels"
        ) from None
    except Exception as exc:
        msg = str(exc)
        if "truncated" in msg.lower() or isinstance(exc, EOFError):
            raise ImageError(
                f"{name} is truncated (the file ends before the image data does); it was probably "
                f"not downloaded or copied completely: re-export or re-download it"
            ) from None
        raise ImageError(
            f"{name} is corrupt and cannot be decoded ({msg or type(exc).__name__}); "
            f"re-export it as PNG or JPEG"
        ) from None


def frame_count(path: str | os.PathLike[str]) -> int:
    """Frames (pages) in an image file: > 1 for an animated GIF/WebP/PNG or a multi-page TIFF, of which
    :func:`load_image` reads the first. 1 for a file Pillow cannot open (``load_image`` reports those)."""
    try:
        with Image.open(path) as img:
            return int(getattr(img, "n_frames", 1))
    except Exception:  # noqa: BLE001 - a count for a note; load_image gives the real error
        return 1


def _finish(img: Image.Image, name: str, background: tuple[int, int, int], min_size: int) -> Image.Image:
    """EXIF orientation, conversion to RGB and the minimum size check."""
    if getattr(img, "n_frames", 1) > 1:
        logger.debug("%s has %d frames; using the first", name, img.n_frames)
    try:
        upright = ImageOps.exif_transpose(img)
    except Exception as exc:  # broken EXIF data must not make an otherwise fine image unreadable
        logger.warning("%s: ignoring unreadable EXIF orientation (%s)", name, exc)
        upright = img
    if upright is None:  # only with in_place=True; kept for type checkers
        upright = img
    try:
        rgb = _to_rgb(upright, background)
    except ImpastoError:
        raise
    except MemoryError:
        raise ImageError(f"{name} is too large to convert in the available memory; downscale it") from None
    except Exception as exc:
        raise ImageError(
            f"{name} uses colour mode {img.mode!r}, which cannot be converted to RGB ({exc}); "
            f"re-export it as an RGB PNG or JPEG"
        ) from None
    if min(rgb.size) < min_size:
        raise ImageError(
            f"{name} is only {rgb.width}x{rgb.height} pixels; images must be at least {min_size} pixels "
            f"on each side: use a larger image"
        )
    return rgb


def load_image(
    src: str | Path | bytes | Image.Image | np.ndarray,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    background: Color = (255, 255, 255),
    min_size: int = 1,
    name: str | None = None,
) -> Image.Image:
    """Read an image from a file, bytes, a PIL image or an array as an upright 8-bit RGB image.

    Args:
        src: a path, the encoded file contents (``bytes``), a ``PIL.Image.Image`` or a numpy array
            (``H x W`` or ``H x W x C`` with C in 1..4; uint8, uint16, bool or float).
        max_pixels: refuse images with more than this many pixels (width x height), checked from
            the header before decoding; ``None`` leaves only Pillow's own global limit.
        background: colour that transparent pixels are composited over: an (R, G, B) tuple,
            a grey level or a colour name.
        min_size: refuse images whose width or height is smaller than this.
        name: how to call the image in error messages (default: the path, ``<bytes>``...).

    Returns:
        A new ``PIL.Image.Image`` of mode ``"RGB"``, fully decoded, EXIF orientation applied;
        animated files give their first frame. See the module docstring for the conversions.

    Raises:
        ImageError: the file is missing, a folder, empty, not an image, corrupt, truncated,
            larger than ``max_pixels``, smaller than ``min_size``, or in an unconvertible mode.
        ConfigError: an invalid ``max_pixels``, ``min_size`` or ``background``.
    """
    if max_pixels is not None:
        max_pixels = _check_positive_int(max_pixels, "max_pixels")
    min_size = _check_positive_int(min_size, "min_size")
    bg = _check_background(background)
    label = _describe(src, name)
    _ensure_pillow_limit(max_pixels)

    if isinstance(src, np.ndarray):
        if max_pixels is not None and src.ndim in (2, 3) and src.shape[0] * src.shape[1] > max_pixels:
            raise _too_large(label, (src.shape[1], src.shape[0]), max_pixels)  # before converting anything
        img = _array_to_image(src, label)
        return _finish(img, label, bg, min_size)

    if isinstance(src, Image.Image):
        if max_pixels is not None and src.width * src.height > max_pixels:
            raise _too_large(label, src.size, max_pixels)
        _decode(src, label)
        return _finish(src, label, bg, min_size)

    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if not data:
            raise ImageError(f"{label} is empty (0 bytes); send or pass the complete image file")
        img = _open_checked(io.BytesIO(data), label, max_pixels, data[:512])
        with img:
            _decode(img, label)
            return _finish(img, label, bg, min_size)

    if not isinstance(src, (str, os.PathLike)):
        raise ImageError(
            f"cannot load an image from a {type(src).__name__}; pass a file path, bytes, "
            f"a PIL image or a numpy array"
        )
    path = Path(src).expanduser()
    _check_path(path)
    try:
        fp = open(path, "rb")  # noqa: SIM115 - closed below, together with the image
    except OSError as exc:
        raise ImageError(
            f"cannot read {label}: {exc.strerror or exc}; check the file's permissions"
        ) from None
    with fp:
        try:
            head = fp.read(512)
            fp.seek(0)
        except OSError as exc:
            raise ImageError(f"cannot read {label}: {exc.strerror or exc}") from None
        img = _open_checked(fp, label, max_pixels, head)
        with img:
            _decode(img, label)
            return _finish(img, label, bg, min_size)


# ----------------------------------------------------------------------------- tensors


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> float32 tensor of shape ``1 x 3 x H x W`` with values in ``[0, 1]``.

    Non-RGB images are converted as by :func:`load_image` (transparency over white).
    """
    if not isinstance(img, Image.Image):
        raise TypeError(f"image_to_tensor expects a PIL image, got {type(img).__name__}")
    if img.mode != "RGB":
        img = _to_rgb(img, (255, 255, 255))
    arr = np.array(img, dtype=np.uint8)  # H x W x 3, a writable copy
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).to(torch.float32).div_(255.0).contiguous()


def tensor_to_image(t: torch.Tensor) -> Image.Image:
    """Tensor ``3 x H x W`` or ``1 x 3 x H x W`` in ``[0, 1]`` -> 8-bit RGB PIL image.

    Values are clamped to [0, 1] (NaN -> 0) and rounded to the nearest of the 256 levels. A single
    channel (``1 x H x W`` or ``1 x 1 x H x W``) is treated as grey and gives an RGB image too.
    Works for any device and floating dtype; gradients are not tracked.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"tensor_to_image expects a torch.Tensor, got {type(t).__name__}")
    x = t.detach()
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(
                f"tensor_to_image takes one image, got a batch of shape {tuple(x.shape)}; index it"
            )
        x = x[0]
    if x.dim() != 3 or x.shape[0] not in (1, 3) or x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"expected a tensor of shape 3xHxW or 1x3xHxW, got {tuple(t.shape)}")
    x = x.to(device="cpu", dtype=torch.float32)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    x = torch.nan_to_num(x, nan=0.0).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    arr = np.ascontiguousarray(x.permute(1, 2, 0).numpy())
    return Image.frombytes("RGB", (arr.shape[1], arr.shape[0]), arr.tobytes())


def load_tensor(src: str | Path | bytes | Image.Image | np.ndarray, **kw: Any) -> torch.Tensor:
    """``image_to_tensor(load_image(src, **kw))``: a ``1 x 3 x H x W`` float32 tensor in [0, 1]."""
    return image_to_tensor(load_image(src, **kw))


# ----------------------------------------------------------------------------- resizing


def _resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    # reducing_gap makes large reductions much faster at a quality indistinguishable from plain LANCZOS.
    gap = 3.0 if size[0] * 3 < img.width or size[1] * 3 < img.height else None
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=gap)


def resize_max(img: Image.Image, max_size: int | None) -> Image.Image:
    """Shrink so that the long side is at most ``max_size`` (aspect ratio kept, LANCZOS).

    Never upscales; returns ``img`` itself when it already fits or ``max_size`` is None. The long
    side becomes exactly ``max_size``, the short one ``round(short * max_size / long)`` (>= 1).
    """
    if max_size is None:
        return img
    max_size = _check_positive_int(max_size, "max_size")
    w, h = img.size
    long_side = max(w, h)
    if long_side <= max_size:
        return img
    scale = max_size / long_side
    size = (max_size, max(1, round(h * scale))) if w >= h else (max(1, round(w * scale)), max_size)
    return _resize(img, size)


def resize_short(img: Image.Image, short: int) -> Image.Image:
    """Resize so that the short side is exactly ``short`` (aspect ratio kept, LANCZOS).

    Scales up as well as down (training pipelines resize to 512 on the short side, then crop);
    returns ``img`` itself when the short side already equals ``short``.
    """
    short = _check_positive_int(short, "short")
    w, h = img.size
    short_side = min(w, h)
    if short_side == short:
        return img
    scale = short / short_side
    size = (short, max(1, round(h * scale))) if w <= h else (max(1, round(w * scale)), short)
    return _resize(img, size)


# ----------------------------------------------------------------------------- saving


def _supported_suffixes() -> str:
    return ", ".join(sorted(SAVE_EXTENSIONS))


def _prepare_for_format(img: Image.Image, fmt: str) -> Image.Image:
    if img.mode in ("RGB", "L"):
        return img
    if fmt in _ALPHA_FORMATS and img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return img if img.mode == "RGBA" else img.convert("RGBA")
    return _to_rgb(img, (255, 255, 255))


def save_image(img: Image.Image | torch.Tensor | np.ndarray, path: str | Path, *, quality: int = 95) -> Path:
    """Write an image atomically; the format follows the suffix (png, jpg/jpeg, webp, bmp, tif/tiff).

    Args:
        img: a PIL image, a tensor accepted by :func:`tensor_to_image` or an array accepted by
            :func:`load_image`. RGBA is kept for PNG, WebP and TIFF and composited over white for
            JPEG and BMP; other modes are converted to RGB.
        path: output file; missing parent folders are created.
        quality: JPEG/WebP quality 1-100 (ignored by lossless formats).

    Returns:
        ``Path(path)``.

    Raises:
        ImageError: unknown or missing suffix (the message lists the supported ones), an image too
            large for the format, or a write failure. The output is written to a temporary file
            in the same folder and renamed, so on any failure no partial file exists and a
            previous file at ``path`` is left untouched.
        ConfigError: ``quality`` outside 1-100.
    """
    out = Path(path).expanduser()
    quality = _check_positive_int(quality, "quality")
    if quality > 100:
        raise ConfigError(f"quality={quality} must be between 1 and 100")
    suffix = out.suffix.lower()
    fmt = SAVE_EXTENSIONS.get(suffix)
    if fmt is None:
        what = f"unknown image format {out.suffix!r}" if suffix else "no file extension"
        raise ImageError(f"cannot save {out}: {what}; use one of {_supported_suffixes()}")
    if isinstance(img, torch.Tensor):
        try:
            img = tensor_to_image(img)
        except ValueError as exc:
            raise ImageError(f"cannot save {out}: {exc}") from None
    elif isinstance(img, np.ndarray):
        img = _array_to_image(img, str(out))
    elif not isinstance(img, Image.Image):
        raise ImageError(f"cannot save {out}: expected a PIL image or a tensor, got {type(img).__name__}")
    if max(img.size) > _MAX_SIDE[fmt]:
        raise ImageError(
            f"cannot save {out}: {img.width}x{img.height} is too large for {fmt} (at most "
            f"{_MAX_SIDE[fmt]} pixels per side); use .png or .tif, or downscale the image"
        )
    if out.is_dir():
        raise ImageError(f"cannot save to {out}: it is a folder; give a file name such as {out / 'out.png'}")
    params: dict[str, Any] = {}
    if fmt in ("JPEG", "WEBP"):
        params["quality"] = quality
    try:
        prepared = _prepare_for_format(img, fmt)
        with atomic_write(out, "wb") as f:
            prepared.save(f, format=fmt, **params)
    except ImpastoError:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ImageError(
            f"cannot write {out}: {reason}; check that the folder is writable and the disk is not full "
            f"(nothing was written)"
        ) from None
    except Exception as exc:
        raise ImageError(f"could not save {out} as {fmt}: {exc} (nothing was written)") from None
    return out


# ----------------------------------------------------------------------------- file lists


def natural_key(path: str | os.PathLike[str]) -> list[Any]:
    """Sort key that orders ``img2`` before ``img10``, case-insensitively, over the whole ``path`` as given.

    The one natural sort of impasto. Callers choose what it sees: image listings pass the path relative to the
    folder listed (so files sort by subfolder first), video frame folders pass the bare file name.
    """
    parts = re.split(r"(\d+)", os.fspath(path).lower())
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts]


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _images_in_dir(directory: Path, recursive: bool) -> list[Path]:
    found: list[Path] = []
    if recursive:
        for root, dirs, files in os.walk(directory, followlinks=False):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found.extend(Path(root) / f for f in files if _is_image_name(Path(f)))
    else:
        try:
            entries = list(directory.iterdir())
        except OSError as exc:
            raise ImageError(f"cannot list folder {directory}: {exc.strerror or exc}") from None
        found = [p for p in entries if _is_image_name(p)]
    files = [p for p in found if p.is_file()]
    return sorted(files, key=lambda p: natural_key(p.relative_to(directory)))


def iter_image_files(inputs: Sequence[str | Path] | str | Path, recursive: bool = False) -> list[Path]:
    """Expand files, folders and glob patterns into a list of image files.

    * an existing file is taken as it is (whatever its extension: it was named explicitly);
    * a folder gives the files inside with an extension in :data:`IMAGE_EXTENSIONS`
      (case-insensitive; hidden files skipped), in natural order (``2.png`` before ``10.png``),
      including sub-folders when ``recursive``;
    * a pattern with ``*``, ``?`` or ``[`` gives the matching image files (``**`` spans folders
      when ``recursive``).

    Duplicates are removed, keeping the first occurrence. A single path may be passed directly.

    Raises:
        ImageError: a path that does not exist, a pattern that matches no image, or a folder
            that contains no images.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    result: list[Path] = []
    seen: set[Path] = set()

    def add(paths: Iterable[Path]) -> None:
        for p in paths:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                result.append(p)

    for item in inputs:
        text = os.path.expanduser(os.fspath(item))
        path = Path(text)
        if path.is_file():
            add([path])
        elif path.is_dir():
            images = _images_in_dir(path, recursive)
            if not images:
                raise ImageError(
                    f"folder {text} contains no images (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}"
                    f"{' in sub-folders too' if recursive else '; use recursive to include sub-folders'})"
                )
            add(images)
        elif glob.has_magic(text):
            matches = [Path(m) for m in glob.glob(text, recursive=recursive)]
            images = sorted((m for m in matches if m.is_file() and _is_image_name(m)), key=natural_key)
            if not images:
                raise ImageError(
                    f"the pattern {text} matches no image files; check the pattern and the folder"
                )
            add(images)
        else:
            raise _not_a_file(text)
    return result


def _not_a_file(text: str) -> ImageError:
    """The error for an input that is neither a file nor a folder: say what it is (a loop, a pipe...) if it exists."""
    try:
        st = os.stat(text)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return ImageError(f"{text} is a symbolic link that points (in a loop) back to itself; fix or remove the "
                              "link and pass the image file")
        if os.path.islink(text):
            return ImageError(f"{text} is a symbolic link to {os.readlink(text)}, which does not exist; fix the link")
        if isinstance(exc, PermissionError):
            return ImageError(f"cannot read {text}: permission denied; check the permissions of it and its folders")
        return _not_found(text, "no such file or folder")
    kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
            else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
    return ImageError(f"{text} is {kind}, not an image file; pass an image file or a folder of images")
