"""The Stylizer: impasto's single inference entry point (Python API, CLI, video tool and web server use it).

    from impasto import Stylizer
    out = Stylizer("adain").stylize("photo.jpg", "painting.jpg", alpha=0.8)   # -> PIL.Image

It loads images robustly, caches encoded styles, applies the controls (alpha, several styles with weights, one
style per mask region, colour preservation, size limit), tiles images too large for memory with overlap
blending, and always returns an image of the content's size (or of ``max_size`` on its long side).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from impasto import DEFAULT_METHOD
from impasto.accel import accelerate, resolve_backend
from impasto.errors import ConfigError
from impasto.hardware import resolve_device, resolve_precision
from impasto.io.images import DEFAULT_MAX_PIXELS, image_to_tensor, load_image, resize_max, tensor_to_image
from impasto.methods.base import Method, constant_mix, create_method, get_method_class
from impasto.runtime import check_cancelled, reporting

ImageInput = str | Path | Image.Image | torch.Tensor | np.ndarray | bytes
Progress = Callable[[int, int], None]

#: Images smaller than this on their short side are upscaled for processing (deep layers need some pixels).
MIN_SIDE = 64
#: Longest side an image with a side under MIN_SIDE is upscaled to (its aspect ratio is then not kept): very thin
#: images (1 x 5000 px) would otherwise become 64 x 320000 and take gigabytes.
UPSCALE_CAP = 4096
#: The smallest ``max_size`` and ``style_size`` accepted (long side, pixels).
MIN_SIZE_OPTION = 16
#: Images with more pixels than this are processed in overlapping tiles unless ``tile_size`` says otherwise.
AUTO_TILE_PIXELS = 2048 * 2048
#: Side of the automatic tiles for a method whose widest full-resolution feature map has 64 channels (the real
#: VGG-19); narrower methods get tiles holding as much feature data (:func:`auto_tile_size`).
AUTO_TILE_SIZE = 1024
#: Largest automatic tile side: larger tiles barely save time (adain on the distilled VGG at 4000x3000, bf16:
#: 1024 px tiles 3.3 s, 2048 px 2.3 s, untiled 2.2 s) and cost memory (untiled 2.4 GB peak against 1.6 GB).
AUTO_TILE_MAX = 2048
#: Tiles start on multiples of this (the deepest encoders downsample 16x).
TILE_ALIGN = 16
#: Long side of the downscaled whole image from which tiles get shared statistics (``Method.content_context``).
CONTEXT_SIZE = 1024


#: float image tensors with values outside this range are refused (a 0-255 image, or not an image); inside it they are
#: clamped to [0, 1] (resampling overshoots by a few percent)
_TENSOR_RANGE = (-0.5, 1.5)


def tensor_image(t: torch.Tensor, what: str) -> torch.Tensor:
    """An image tensor from the tensor API -> float32 in [0, 1], same shape.

    uint8 is read as 0-255 (the convention of PIL, NumPy and ``torchvision.io``); float tensors must hold values in
    [0, 1] and are clamped to it. Raises ConfigError, naming ``what``, for other dtypes, NaN or infinite values and
    float values far outside [0, 1] (e.g. a 0-255 image in float, which would otherwise be stylized as white).
    """
    t = t.detach()  # inference: no autograd graph through the input (and no warning from reading its range)
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    if not t.is_floating_point():
        raise ConfigError(f"{what} tensor has dtype {t.dtype}; pass uint8 (0-255) or a float tensor in [0, 1]")
    t = t.float()
    if t.numel():
        lo, hi = float(t.min()), float(t.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ConfigError(f"{what} tensor holds NaN or infinite values")
        if lo < _TENSOR_RANGE[0] or hi > _TENSOR_RANGE[1]:
            hint = " (a 0-255 image? divide it by 255 or pass it as uint8)" if hi > 2 else ""
            raise ConfigError(f"{what} tensor values must be in [0, 1], got {lo:g} to {hi:g}{hint}")
    return t.clamp(0, 1)


def _fit_style(t: torch.Tensor, style_size: int | None) -> torch.Tensor:
    """A style image with a side under ``MIN_SIDE`` upscaled (bicubic) so that side is ``MIN_SIDE``, the other side
    scaled alike but at most ``max(style_size, 1024)`` (the deepest layers need pixels; a style is only statistics
    and patches, so a very thin one may be stretched across). Other styles are returned as they are."""
    h, w = t.shape[-2:]
    if min(h, w) >= MIN_SIDE:
        return t
    size = _upscaled_size(h, w, cap=max(style_size or 0, 1024))
    return F.interpolate(t, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def _upscaled_size(h: int, w: int, cap: int | None = None) -> tuple[int, int]:
    """(H, W) scaled so the short side is ``MIN_SIDE`` (aspect kept), each side at most ``cap`` if given."""
    s = MIN_SIDE / min(h, w)
    cap = cap or max(round(h * s), round(w * s))
    return max(MIN_SIDE, min(cap, round(h * s))), max(MIN_SIDE, min(cap, round(w * s)))


def _as_tensor(img: ImageInput, what: str, max_size: int | None = None) -> torch.Tensor:
    """Any image input -> 1 x 3 x H x W float in [0, 1] (long side <= max_size if given)."""
    if isinstance(img, torch.Tensor):
        t = img if img.dim() == 4 else img[None]
        if t.dim() != 4 or t.shape[1] != 3:
            raise ConfigError(f"{what} tensor must be 3 x H x W or 1 x 3 x H x W, got shape {tuple(img.shape)}")
        if t.shape[0] != 1:
            raise ConfigError(f"{what} tensor holds a batch of {t.shape[0]} images; stylize() takes one "
                              "(use stylize_tensor for batches)")
        h, w = t.shape[-2:]
        if h == 0 or w == 0:
            raise ConfigError(f"{what} tensor is empty ({h} x {w} pixels)")
        if h * w > DEFAULT_MAX_PIXELS:  # checked on the shape, before any copy
            raise ConfigError(f"{what} tensor is {w} x {h} = {h * w / 1e6:.0f} megapixels, more than impasto's "
                              f"limit of {DEFAULT_MAX_PIXELS // 1_000_000}; downscale it first")
        t = tensor_image(t, what)
        if max_size and max(t.shape[-2:]) > max_size:
            s = max_size / max(t.shape[-2:])
            size = (max(1, round(t.shape[-2] * s)), max(1, round(t.shape[-1] * s)))
            t = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
        return t.clamp(0, 1)
    return image_to_tensor(resize_max(load_image(img), max_size))


def _style_key(img: ImageInput, style_size: int | None) -> str | None:
    """A cache key identifying a style input (path + mtime + size, or a hash of the pixels)."""
    h = hashlib.sha1(str(style_size).encode())
    if isinstance(img, (str, Path)):
        p = Path(img)
        try:
            st = p.stat()
        except OSError:
            return None
        h.update(f"{p.resolve()}:{st.st_mtime_ns}:{st.st_size}".encode())
    elif isinstance(img, Image.Image):
        h.update(img.mode.encode() + str(img.size).encode() + img.tobytes())
    elif isinstance(img, torch.Tensor):  # the pixels' buffer is hashed in place (no bytes copy)
        h.update(f"{tuple(img.shape)}{img.dtype}".encode())
        h.update(img.detach().cpu().contiguous().numpy().reshape(-1).view(np.uint8))
    elif isinstance(img, np.ndarray):
        h.update(f"{img.shape}{img.dtype}".encode())
        h.update(np.ascontiguousarray(img).reshape(-1).view(np.uint8))
    elif isinstance(img, bytes):
        h.update(img)
    else:
        return None
    return h.hexdigest()


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """B x 3 x H x W RGB in [0, 1] -> YCbCr (ITU-R BT.601, full range, Cb/Cr centred on 0.5)."""
    r, g, b = x.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 0.5 + (b - y) * 0.564
    cr = 0.5 + (r - y) * 0.713
    return torch.stack([y, cb, cr], 1)


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr`."""
    y, cb, cr = x.unbind(1)
    r = y + (cr - 0.5) / 0.713
    b = y + (cb - 0.5) / 0.564
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    return torch.stack([r, g, b], 1)


def luminance_transfer(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Luminance-only transfer (Gatys et al. 2016, "Preserving color"): the stylised image's luminance with the
    content's chrominance. Both B x 3 x H x W in [0, 1]; returns the same shape, clamped."""
    s, c = rgb_to_ycbcr(stylized), rgb_to_ycbcr(content)
    return ycbcr_to_rgb(torch.cat([s[:, :1], c[:, 1:]], 1)).clamp(0, 1)


def _align(v: int) -> int:
    """Round ``v`` down to a multiple of :data:`TILE_ALIGN`."""
    return v - v % TILE_ALIGN


def _ramp(n: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """1-d blending weights of a tile: linear ramps over ``overlap`` pixels on inner edges, 1 elsewhere."""
    w = torch.ones(n)
    k = min(overlap, n // 2)
    if k > 0:
        ramp = (torch.arange(k, dtype=torch.float32) + 0.5) / k
        if not at_start:
            w[:k] = ramp
        if not at_end:
            w[n - k :] = ramp.flip(0)
    return w


def auto_tile_size(channels: int) -> int:
    """The automatic tile side for a method whose widest full-resolution map has ``channels`` channels: tiles hold
    as much feature data as :data:`AUTO_TILE_SIZE` px tiles at 64 channels (16 channels, the distilled VGG and
    MicroAST: 2048 px), a multiple of :data:`TILE_ALIGN` in [512, :data:`AUTO_TILE_MAX`]."""
    side = AUTO_TILE_SIZE * math.sqrt(64 / max(1, channels))
    return _align(int(min(AUTO_TILE_MAX, max(512, side))))


def balanced_tile(length: int, tile: int, overlap: int) -> int:
    """The smallest tile length that covers ``length`` with as many tiles as ``tile`` needs, overlapping by at
    least ``overlap`` (tiles of the largest size would overlap by far more than asked, which is wasted work:
    4000 px with 1024 px tiles and 64 px overlap -> 5 tiles of 852 px instead of 5 of 1024)."""
    if length <= tile:
        return length
    n = math.ceil((length - overlap) / (tile - overlap))
    return min(tile, math.ceil((length + (n - 1) * overlap) / n))


def tile_grid(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap`` overlap."""
    if length <= tile:
        return [0]
    step = tile - overlap
    n = math.ceil((length - overlap) / step)
    starts = [round(i * (length - tile) / (n - 1)) for i in range(n)] if n > 1 else [0]
    return sorted(set(starts))


class Stylizer:
    """Stylise images with one method; keeps the loaded model and a cache of encoded styles.

    One Stylizer serves concurrent calls from several threads: each call's progress goes to its own callback
    (:func:`impasto.runtime.reporting`) and the style cache is locked. It changes nothing process-wide (the CLI
    and the server, not the library, tune glibc malloc: :func:`impasto.runtime.reuse_freed_memory`).

    Args:
        method: a registered method name (``impasto methods`` lists them).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        precision: ``auto`` (bf16 where the device computes it natively and the method allows it, else fp32),
            ``fp32`` (exact) or ``bf16`` (convolutions and matrix products in bfloat16: about 2x faster on such
            CPUs; outputs differ from fp32 by about 1/300 of the pixel range, see benchmarks/README.md).
        style_size: largest long side of the style images: larger ones are shrunk to it before encoding (None:
            keep); any with a side under ``MIN_SIDE`` are upscaled to it on that side (:func:`_fit_style`).
        cache_size: number of encoded styles kept.
        backend: how the networks run (:mod:`impasto.accel`): ``auto`` (``fused`` on a CPU with oneDNN, else
            ``eager``), ``eager`` (the plain modules), ``fused`` (exact faster CPU kernels), ``compile``
            (torch.compile; the first call of each image size compiles) or ``onnxruntime`` (float32 ONNX graphs,
            exported once and cached).
        **options: method options (e.g. ``encoder="vgg19-16x"``, ``depth="relu3_1"``, ``checkpoint=...``).
    """

    def __init__(
        self,
        method: str = DEFAULT_METHOD,
        *,
        device: str = "auto",
        precision: str = "auto",
        style_size: int | None = 512,
        cache_size: int = 32,
        backend: str = "auto",
        **options: Any,
    ) -> None:
        self.device = str(resolve_device(device))
        if style_size is not None and (not isinstance(style_size, int) or style_size < MIN_SIZE_OPTION):
            raise ConfigError(f"style_size must be an integer >= {MIN_SIZE_OPTION} (or None), got {style_size!r}")
        self.precision = resolve_precision(precision, self.device,
                                           supports_bf16=get_method_class(method).supports_bf16)
        backend = resolve_backend(backend, self.device)  # an unknown or unavailable one fails before any loading
        self.method: Method = create_method(method, device=self.device, precision=self.precision, **options)
        self.backend = accelerate(self.method, backend)
        self.style_size = style_size
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self.cache_hits = 0
        self.cache_misses = 0

    @property
    def name(self) -> str:
        return self.method.name

    def describe(self) -> str:
        """One line describing the method's resolved configuration and precision."""
        return f"{self.method.describe()}, precision {self.precision}, backend {self.backend}"

    # -- styles --------------------------------------------------------------------------------------------
    def encode_style(self, style: ImageInput) -> Any:
        """Encode a style image (cached: the same file, image or tensor is encoded once)."""
        key = _style_key(style, self.style_size)
        with self._cache_lock:
            if key is not None and key in self._cache:
                self._cache.move_to_end(key)
                self.cache_hits += 1
                return self._cache[key]
            self.cache_misses += 1
        img = _fit_style(_as_tensor(style, "style", self.style_size), self.style_size)
        with self.method.autocast():
            code = self.method.encode_style(img.to(self.device))
        if key is not None:
            with self._cache_lock:
                self._cache[key] = code
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return code

    # -- public API ----------------------------------------------------------------------------------------
    def stylize(
        self,
        content: ImageInput,
        style: ImageInput | Sequence[ImageInput],
        *,
        alpha: float = 1.0,
        style_weights: Sequence[float] | None = None,
        mask: ImageInput | Sequence[ImageInput] | None = None,
        preserve_color: bool = False,
        max_size: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int = 64,
        progress: Progress | None = None,
    ) -> Image.Image:
        """Stylise one image; returns a PIL RGB image of the content's size (long side capped by ``max_size``).

        Args:
            content: path, PIL image, numpy array (H x W x 3 uint8), bytes or tensor (3 x H x W in [0, 1]).
            style: one style image or several (mixed with ``style_weights``, or one per ``mask`` region).
            alpha: style strength in [0, 1] (0 = the content reconstructed, 1 = full style).
            style_weights: one non-negative weight per style (interpolation); default equal weights.
            mask: with one style, a greyscale image (white = stylised, black = content kept); with two styles,
                white = first style, black = second; or one mask per style. Masks must have the content's size.
            preserve_color: keep the content's colours (luminance-only transfer).
            max_size: cap on the long side of the processed and returned image (default: none, the content's full
                size; methods with a ``work_size``, i.e. Gatys at 512 px, process at that size and return the result
                resized to the content's size).
            tile_size: process in tiles of this size with ``tile_overlap`` blending (default: automatic above
                4 megapixels, with tiles of 1024 px for the real VGG-19 and 2048 px for the distilled VGG and
                MicroAST, see :func:`auto_tile_size`; 0: never tile).
        """
        content_t = _as_tensor(content, "content")
        out = self.stylize_tensor(
            content_t,
            style,
            alpha=alpha,
            style_weights=style_weights,
            mask=mask,
            preserve_color=preserve_color,
            max_size=max_size,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            progress=progress,
        )
        return tensor_to_image(out[0])

    def stylize_tensor(
        self,
        content: torch.Tensor,
        style: ImageInput | Sequence[ImageInput],
        *,
        alpha: float = 1.0,
        style_weights: Sequence[float] | None = None,
        mask: ImageInput | Sequence[ImageInput] | None = None,
        preserve_color: bool = False,
        max_size: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int = 64,
        progress: Progress | None = None,
    ) -> torch.Tensor:
        """Tensor API: B x 3 x H x W in [0, 1] (or uint8 0-255) -> B x 3 x H' x W' float in [0, 1] (the same styles
        for every item)."""
        if content.dim() == 3:
            content = content[None]
        if content.dim() != 4 or content.shape[1] != 3:
            raise ConfigError(f"content must be B x 3 x H x W, got shape {tuple(content.shape)}")
        if content.shape[0] == 0:
            raise ConfigError("the content batch is empty (0 images); pass at least one image")
        alpha = _check_alpha(alpha)
        styles = list(style) if isinstance(style, (list, tuple)) else [style]
        if not styles:
            raise ConfigError("at least one style image is needed")
        H0, W0 = content.shape[-2:]
        mix = self._mix(len(styles), style_weights, mask, (H0, W0))
        if max_size is not None and (not isinstance(max_size, int) or max_size < MIN_SIZE_OPTION):
            raise ConfigError(f"max_size must be an integer >= {MIN_SIZE_OPTION}, got {max_size!r}")
        work = max_size if max_size is not None else self.method.work_size
        codes = [self.encode_style(s) for s in styles]
        outs = []
        for i in range(content.shape[0]):
            full = tensor_image(content[i : i + 1], "content")
            c = _as_tensor(full, "content", work) if work is not None and max(H0, W0) > work else full
            out = self._run(c, codes, mix, alpha, tile_size, tile_overlap, progress)
            if max_size is None and out.shape[-2:] != full.shape[-2:]:  # the method's work size: back to the photo's
                out = F.interpolate(out, size=(H0, W0), mode="bicubic", align_corners=False).clamp(0, 1)
                c = full
            if preserve_color:
                out = luminance_transfer(out, c)
            outs.append(out.cpu())
        return torch.cat(outs)

    # -- internals -----------------------------------------------------------------------------------------
    def _mix(self, k: int, weights: Sequence[float] | None, mask: Any, size: tuple[int, int]) -> torch.Tensor:
        """Build the K x H x W style-weight map from weights or masks (see :meth:`stylize`)."""
        if mask is not None and weights is not None:
            raise ConfigError("use either style weights or masks, not both")
        if mask is None:
            if weights is None:
                weights = [1.0] * k
            weights = [float(w) for w in weights]
            if len(weights) != k:
                raise ConfigError(f"got {len(weights)} style weight(s) for {k} style image(s); give one per style")
            if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
                raise ConfigError(f"style weights must be non-negative with a positive sum, got {weights}")
            return constant_mix(weights, size)
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask]
        maps = [self._load_mask(m, size) for m in masks]
        if len(maps) == 1 and k == 1:
            return maps[0][None]
        if len(maps) == 1 and k == 2:
            return torch.stack([maps[0], 1 - maps[0]])
        if len(maps) != k:
            raise ConfigError(
                f"got {len(maps)} mask(s) for {k} style(s): give one mask per style (or one mask for one or two styles)"
            )
        stack = torch.stack(maps)
        total = stack.sum(0, keepdim=True)
        return torch.where(total > 1, stack / total.clamp_min(1e-8), stack)

    @staticmethod
    def _load_mask(m: Any, size: tuple[int, int]) -> torch.Tensor:
        if isinstance(m, torch.Tensor):
            t = m.detach().float()
            t = t.mean(0) if t.dim() == 3 else t
            if t.dim() != 2:
                raise ConfigError(f"a mask tensor must be H x W or C x H x W, got shape {tuple(m.shape)}")
            if not bool(torch.isfinite(t).all()):
                raise ConfigError("the mask tensor holds NaN or infinite values; masks are in [0, 1]")
        else:
            img = load_image(m)
            t = torch.from_numpy(np.asarray(img.convert("L"), dtype=np.float32) / 255.0)
        if tuple(t.shape[-2:]) != tuple(size):
            name = m if isinstance(m, (str, Path)) else "the mask"
            raise ConfigError(
                f"mask {name} is {t.shape[-1]}x{t.shape[-2]} but the content image is "
                f"{size[1]}x{size[0]}; resize the mask to the photo's size"
            )
        return t.clamp(0, 1)

    def _run(
        self,
        c: torch.Tensor,
        codes: list[Any],
        mix: torch.Tensor,
        alpha: float,
        tile_size: int | None,
        overlap: int,
        progress: Progress | None,
    ) -> torch.Tensor:
        H, W = c.shape[-2:]
        mix = (
            F.interpolate(mix[None], size=(H, W), mode="bilinear", align_corners=False)[0]
            if tuple(mix.shape[-2:]) != (H, W)
            else mix
        )
        if tile_size is None:
            tile_size = auto_tile_size(self.method.full_res_channels()) if H * W > AUTO_TILE_PIXELS else 0
        if tile_size and (tile_size < 128 or overlap < 0 or overlap >= tile_size // 2):
            raise ConfigError(f"tile_size must be >= 128 and overlap in [0, tile_size/2), got {tile_size}, {overlap}")
        if not tile_size or (H <= tile_size and W <= tile_size):
            with reporting(progress):
                return self._run_one(c, codes, mix, alpha)
        tile_h, tile_w = balanced_tile(H, tile_size, overlap), balanced_tile(W, tile_size, overlap)
        ys, xs = tile_grid(H, tile_h, overlap), tile_grid(W, tile_w, overlap)
        with self.method.autocast():
            context = self.method.content_context(_as_tensor(c, "content", CONTEXT_SIZE).to(self.device))
        # the blending weights are separable (a row ramp times a column ramp) and the tiles form a grid, so their
        # sum at each pixel is the product of 1-d sums: each tile is added with its weights already normalised
        # (one fused multiply-add pass per tile, no weight-sum image, no final division)
        heights, widths = [min(tile_h, H - y) for y in ys], [min(tile_w, W - x) for x in xs]
        ramps_y = [_ramp(h, overlap, y == 0, y + h >= H) for y, h in zip(ys, heights, strict=True)]
        ramps_x = [_ramp(w, overlap, x == 0, x + w >= W) for x, w in zip(xs, widths, strict=True)]
        sum_y, sum_x = torch.zeros(H), torch.zeros(W)
        for y, h, r in zip(ys, heights, ramps_y, strict=True):
            sum_y[y : y + h] += r
        for x, w, r in zip(xs, widths, ramps_x, strict=True):
            sum_x[x : x + w] += r
        acc = torch.zeros(1, 3, H, W)
        total, done = len(ys) * len(xs), 0
        for y, h, ry in zip(ys, heights, ramps_y, strict=True):
            for x, w, rx in zip(xs, widths, ramps_x, strict=True):
                # Each tile is stylised with at least `overlap` pixels of context on every side (where the image has
                # them), then cropped, so border effects of the convolutions fall outside the kept part. The context
                # starts on a multiple of TILE_ALIGN, so the encoder's pooling grid (and with it the decoder's texture)
                # lines up with the untiled image's.
                y0, x0 = _align(max(0, y - overlap)), _align(max(0, x - overlap))
                y1, x1 = min(H, y + h + overlap), min(W, x + w + overlap)
                check_cancelled()
                tile, tile_mix = c[..., y0:y1, x0:x1], mix[:, y0:y1, x0:x1]
                with reporting(None):  # progress counts tiles here, not a method's inner steps
                    out = self._run_one(tile, codes, tile_mix, alpha, context).cpu()
                out = out[..., y - y0 : y - y0 + h, x - x0 : x - x0 + w]
                wt = (ry / sum_y[y : y + h])[:, None] * (rx / sum_x[x : x + w])[None, :]
                acc[..., y : y + h, x : x + w].addcmul_(out, wt)
                done += 1
                if progress:
                    progress(done, total)
        return acc

    def _run_one(
        self, c: torch.Tensor, codes: list[Any], mix: torch.Tensor, alpha: float, context: Any = None
    ) -> torch.Tensor:
        """Run the method on one image/tile, upscaling tiny inputs to MIN_SIDE and restoring the size."""
        H, W = c.shape[-2:]
        if min(H, W) < MIN_SIDE:
            size = _upscaled_size(H, W, cap=UPSCALE_CAP)  # a 1 x 5000 image: 64 x 4096, not 64 x 320000
            up = F.interpolate(c, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
            upmix = F.interpolate(mix[None], size=size, mode="nearest")[0]
            with self.method.autocast():
                out = self.method.stylize(up.to(self.device), codes, upmix, alpha, context).float()
            return F.interpolate(out, size=(H, W), mode="area").clamp(0, 1)
        with self.method.autocast():
            out = self.method.stylize(c.to(self.device), codes, mix, alpha, context).float()
        if tuple(out.shape[-2:]) != (H, W):  # every method should keep the size; this is a safety net
            out = F.interpolate(out, size=(H, W), mode="bilinear", align_corners=False)
        return out


def _check_alpha(alpha: float) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ConfigError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
    if not 0.0 <= a <= 1.0 or math.isnan(a):
        raise ConfigError(f"alpha must be in [0, 1] (0 = photo, 1 = full style), got {alpha}")
    return a
