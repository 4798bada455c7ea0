"""Style augmentation: restyle training images with random paintings, as a transform for data pipelines.

Random artistic restyling makes image classifiers rely less on texture and more on shape (Geirhos et al., ICLR 2019,
Stylized-ImageNet, made with AdaIN; Jackson et al., CVPR-W 2019, "style augmentation"). :class:`StyleAugment` is a
callable for ``torchvision``-style pipelines and ``torch.utils.data.DataLoader`` workers:

    from impasto.augment import StyleAugment
    aug = StyleAugment(styles="paintings/", p=0.5, alpha=(0.3, 1.0), method="adain")
    loader = DataLoader(MyDataset(transform=aug), batch_size=32, num_workers=4)

It is picklable (only the settings and the list of style files travel to the workers); each worker loads its own
model on first use, and draws its random choices from a generator seeded with the worker's seed, so a run with a
seeded DataLoader (``generator=torch.Generator().manual_seed(0)``) sees the same augmentations every time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from impasto.errors import ConfigError

__all__ = ["StyleAugment"]


class StyleAugment:
    """With probability ``p``, restyle an image with a random painting of ``styles`` at a random strength.

    Args:
        styles: a folder of paintings, a glob pattern, or a list of image files.
        p: probability that an image is restyled (else it is returned unchanged).
        alpha: style strength, drawn uniformly from ``(low, high)`` in [0, 1] (a number: fixed).
        method: any impasto method (``impasto methods``); the fast feed-forward ones (adain, microast) suit
            augmentation.
        style_size: long side the paintings are encoded at.
        max_size: cap on the long side the image is stylised at (the output keeps the input's size).
        device, precision: as for :class:`impasto.pipeline.Stylizer`.
        seed: seed of the random choices outside DataLoader workers (in a worker: the worker's seed).
        method_options: passed to the method (e.g. ``checkpoint=...``).

    Call on a PIL image (returns a PIL image), a ``C x H x W`` or ``B x C x H x W`` float tensor in [0, 1] or uint8
    tensor (returns the same type and shape; each image of a batch is decided on its own).
    """

    def __init__(self, styles: str | os.PathLike | Sequence[str | os.PathLike], p: float = 0.5,
                 alpha: float | tuple[float, float] = (0.3, 1.0), method: str = "adain", style_size: int = 256,
                 max_size: int | None = None, device: str = "cpu", precision: str = "auto", seed: int | None = None,
                 **method_options: Any) -> None:
        from impasto.io.images import iter_image_files

        if not 0.0 <= float(p) <= 1.0:
            raise ConfigError(f"StyleAugment: p must be in [0, 1], got {p}")
        lo, hi = (alpha, alpha) if isinstance(alpha, (int, float)) else tuple(alpha)
        if not 0.0 <= lo <= hi <= 1.0:
            raise ConfigError(f"StyleAugment: alpha must be a number or a (low, high) range within [0, 1], got {alpha}")
        items = [styles] if isinstance(styles, (str, os.PathLike)) else list(styles)
        self.styles = [str(s) for s in iter_image_files(items)]
        if not self.styles:
            raise ConfigError(f"StyleAugment: no style images in {styles}")
        self.p, self.alpha = float(p), (float(lo), float(hi))
        self.method, self.style_size, self.max_size = method, style_size, max_size
        self.device, self.precision, self.seed = device, precision, seed
        self.method_options = method_options
        self._stylizer: Any = None
        self._generator: torch.Generator | None = None
        self._worker: int | None = None

    # ---------------------------------------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_stylizer"], state["_generator"], state["_worker"] = None, None, None  # rebuilt in each process
        return state

    # ---------------------------------------------------------------------------------------- lazy parts
    def _rng(self) -> torch.Generator:
        info = torch.utils.data.get_worker_info()
        worker = None if info is None else info.id
        if self._generator is None or worker != self._worker:
            seed = info.seed if info is not None else (self.seed if self.seed is not None else torch.initial_seed())
            self._generator = torch.Generator().manual_seed(int(seed) % (2**63))
            self._worker = worker
        return self._generator

    @property
    def stylizer(self) -> Any:
        """The model, loaded on first use in each process."""
        if self._stylizer is None:
            from impasto.pipeline import Stylizer

            self._stylizer = Stylizer(self.method, device=self.device, precision=self.precision,
                                      style_size=self.style_size, **self.method_options)
        return self._stylizer

    def _draw(self) -> tuple[bool, str, float]:
        g = self._rng()
        apply = bool(torch.rand((), generator=g) < self.p)
        style = self.styles[int(torch.randint(len(self.styles), (), generator=g))]
        lo, hi = self.alpha
        a = lo + (hi - lo) * float(torch.rand((), generator=g))
        return apply, style, a

    # ---------------------------------------------------------------------------------------- the transform
    def __call__(self, img: Image.Image | torch.Tensor) -> Image.Image | torch.Tensor:
        if isinstance(img, Image.Image):
            apply, style, a = self._draw()
            if not apply:
                return img
            out = self.stylizer.stylize(img, style, alpha=a, max_size=self.max_size)
            return out.resize(img.size, Image.BICUBIC) if out.size != img.size else out
        if isinstance(img, torch.Tensor):
            if img.dim() == 3:
                return self._tensor(img[None])[0]
            if img.dim() == 4:
                return self._tensor(img)
        raise ConfigError(f"StyleAugment takes a PIL image or a C x H x W / B x C x H x W tensor, got "
                          f"{type(img).__name__}{tuple(img.shape) if isinstance(img, torch.Tensor) else ''}")

    def _tensor(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.shape[1] != 3:
            raise ConfigError(f"StyleAugment: expected 3 colour channels, got shape {tuple(batch.shape)}")
        out = batch.clone()
        for i in range(batch.shape[0]):
            apply, style, a = self._draw()
            if not apply:
                continue
            y = self.stylizer.stylize_tensor(batch[i : i + 1], style, alpha=a, max_size=self.max_size).float()
            if tuple(y.shape[-2:]) != tuple(batch.shape[-2:]):
                y = torch.nn.functional.interpolate(y, size=batch.shape[-2:], mode="bilinear", align_corners=False)
            if batch.dtype == torch.uint8:
                out[i] = (y[0] * 255).round().clamp(0, 255).to(torch.uint8)
            else:
                out[i] = y[0].to(batch.dtype)
        return out

    def __repr__(self) -> str:
        return (f"StyleAugment({len(self.styles)} styles, p={self.p}, alpha={self.alpha}, method={self.method!r}, "
                f"style_size={self.style_size})")
