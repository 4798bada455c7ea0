"""Image-folder datasets that return random crops drawn from an explicit ``torch.Generator``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from impasto.data.samplers import InfiniteSampler, mix_seed
from impasto.errors import ConfigError, ImageError

logger = logging.getLogger("impasto.data")

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".gif",
)
RESIZE_MODES = ("short_side", "square")


def _readable(path: Path) -> bool:
    """Cheap header check: PIL can identify the file and ``verify()`` finds no structural error."""
    try:
        with Image.open(path) as im:
            im.verify()
        return True
    except Exception:  # any decoder error means "unreadable"
        return False


def list_images(root: str | os.PathLike, recursive: bool = True,
                extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files under ``root`` with one of ``extensions`` (any case), sorted; hidden files skipped."""
    root = Path(root)
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    it = root.rglob("*") if recursive else root.iterdir()
    files = [p for p in it if p.suffix.lower() in exts and not p.name.startswith(".") and p.is_file()]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


class ImageFolderDataset(Dataset):
    """Images of a folder as 3 x crop x crop float tensors in [0, 1], resized then randomly cropped.

    Each image is EXIF-rotated, converted to RGB, resized so its short side is ``size`` (or to
    ``size x size`` with ``resize="square"``, as in the IEContraAST release), upscaled further if needed
    so that a ``crop x crop`` window fits, and cropped at a position drawn from the ``torch.Generator``
    passed to ``load`` (centre crop when none is given). Unreadable files are skipped and counted: at
    scan time (``PIL.Image.verify`` header check) and at load time (the next readable index is loaded
    instead, deterministically).

    Args:
        root: folder of images.
        size: target short side (or square side) before cropping; ``None`` keeps the original size.
        crop: side of the square crop; ``None`` returns the whole resized image.
        recursive: also list sub-folders.
        extensions: accepted file suffixes.
        resize: ``"short_side"`` (keep aspect ratio) or ``"square"``.
        verify: run the header check on every file at construction.
        generator: generator used by ``__getitem__`` (``None``: centre crops).
        exclude: file names (no folder) never to use, e.g. a validation split kept out of training.
    """

    def __init__(self, root: str | os.PathLike, size: int | None = 512, crop: int | None = 256,
                 recursive: bool = True, extensions: Iterable[str] = IMAGE_EXTENSIONS,
                 resize: str = "short_side", verify: bool = True,
                 generator: torch.Generator | None = None, exclude: Iterable[str] = ()) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigError(f"image folder {self.root} does not exist or is not a folder; "
                              "pass a folder that contains images")
        if resize not in RESIZE_MODES:
            raise ConfigError(f"resize={resize!r} is not valid; choose one of {', '.join(RESIZE_MODES)}")
        for name, v in (("size", size), ("crop", crop)):
            if v is not None and int(v) < 1:
                raise ConfigError(f"{name} must be a positive number of pixels or None (got {v})")
        self.size = None if size is None else int(size)
        self.crop = None if crop is None else int(crop)
        self.resize = resize
        self.generator = generator
        self.extensions = tuple(extensions)
        candidates = list_images(self.root, recursive, self.extensions)
        excluded = set(exclude)
        self.excluded = [p for p in candidates if p.name in excluded]
        candidates = [p for p in candidates if p.name not in excluded]
        if verify:
            ok = [_readable(p) for p in candidates]
            self.paths = [p for p, good in zip(candidates, ok, strict=True) if good]
            self.skipped: list[Path] = [p for p, good in zip(candidates, ok, strict=True) if not good]
        else:
            self.paths, self.skipped = candidates, []
        self.load_failures: set[int] = set()
        if self.skipped:
            logger.warning("skipped %d unreadable image file(s) in %s (first: %s)", len(self.skipped),
                           self.root, self.skipped[0].name)
        if not self.paths:
            what = "no readable image files" if candidates else "no image files"
            raise ConfigError(f"image folder {self.root} contains {what} "
                              f"(extensions {', '.join(self.extensions)}, recursive={recursive}); "
                              "add images or point to another folder")

    @property
    def num_skipped(self) -> int:
        """Unreadable files found so far (at scan time plus, in this process, at load time)."""
        return len(self.skipped) + len(self.load_failures)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.load(index, self.generator)

    def _open(self, path: Path) -> Image.Image:
        im = Image.open(path)
        if self.size is not None and im.format == "JPEG":
            im.draft("RGB", (self.size, self.size))  # decode at a reduced scale still >= size
        im = ImageOps.exif_transpose(im)
        return im.convert("RGB")

    def _resize(self, im: Image.Image) -> Image.Image:
        w, h = im.size
        if self.size is not None:
            if self.resize == "square":
                w, h = self.size, self.size
            else:
                s = self.size / min(w, h)
                w, h = max(1, round(w * s)), max(1, round(h * s))
        if self.crop is not None and min(w, h) < self.crop:
            s = self.crop / min(w, h)
            w, h = max(self.crop, round(w * s)), max(self.crop, round(h * s))
        if (w, h) != im.size:
            im = im.resize((w, h), Image.BICUBIC, reducing_gap=3.0)
        return im

    def _crop(self, im: Image.Image, generator: torch.Generator | None) -> Image.Image:
        if self.crop is None:
            return im
        w, h = im.size
        if generator is None:
            top, left = (h - self.crop) // 2, (w - self.crop) // 2
        else:
            top = int(torch.randint(0, h - self.crop + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - self.crop + 1, (1,), generator=generator))
        return im.crop((left, top, left + self.crop, top + self.crop))

    def load(self, index: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Image ``index`` as a 3 x crop x crop float tensor in [0, 1] (crop position from ``generator``).

        If the file cannot be decoded, the following indices are tried in turn (deterministic), and the
        failure is counted and logged. Raises ImageError when no image of the folder can be read.
        """
        n = len(self.paths)
        index = int(index) % n
        for attempt in range(n):
            i = (index + attempt) % n
            if i in self.load_failures:
                continue
            path = self.paths[i]
            try:
                im = self._open(path)
            except Exception as e:  # skip any undecodable file
                self.load_failures.add(i)
                logger.warning("skipped unreadable image %s (%s); %d unreadable file(s) so far in %s",
                               path, e, self.num_skipped, self.root)
                continue
            im = self._crop(self._resize(im), generator)
            arr = np.asarray(im, dtype=np.uint8)
            return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)
        raise ImageError(f"none of the {n} image files in {self.root} can be decoded; check the folder")


class SeededCropStream(Dataset):
    """Position k of one rank's data stream -> the image at ``sampler.index_at(k)``, randomly cropped.

    The crop generator is seeded with ``mix_seed(seed, sampler.global_position(k))``, so the whole stream
    is a pure function of (sampler seed, crop seed, position): resuming needs only the position, and the
    result does not depend on the number of data-loader workers.
    """

    def __init__(self, dataset: ImageFolderDataset, sampler: InfiniteSampler, seed: int) -> None:
        self.dataset = dataset
        self.sampler = InfiniteSampler(sampler.n, sampler.seed, sampler.rank, sampler.world_size)
        self.seed = int(seed)

    def crop_seed(self, k: int) -> int:
        """Seed of the crop generator for position k of this rank's stream."""
        return mix_seed(self.seed, self.sampler.global_position(k))

    def __getitem__(self, k: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.crop_seed(k))
        return self.dataset.load(self.sampler.index_at(k), g)

    def __len__(self) -> int:  # the stream is endless; DataLoader only needs this for len(loader)
        return 1 << 62
