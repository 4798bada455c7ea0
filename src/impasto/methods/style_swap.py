"""Style-swap (Chen & Schmidt 2016): replace every relu3_1 content patch by its best-matching style patch.

The swapped activations are turned into an image by an inverse network (feed-forward: impasto's trained one,
``checkpoints/style-swap_vgg19_relu3_1``, for the real VGG-19 at relu3_1; the encoder's reconstruction decoder
where no trained file exists) or, with ``optimize=True``, by minimising
``||E(I) - swap||^2 + tv_weight * TV(I)`` over the pixels (paper eq. 2), initialised from the decoder's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from impasto.backbones import load_decoder, load_encoder
from impasto.errors import ConfigError
from impasto.losses.regularizers import total_variation
from impasto.methods.base import Method, blend_features, optimize_pixels, register
from impasto.methods.common import (
    EncoderConfig,
    load_impasto_checkpoint,
    load_model_decoder,
    packaged_checkpoint,
    resolve_backbone,
)
from impasto.runtime import current_progress
from impasto.transforms.style_swap import MATCHING_ALGORITHMS, StyleSwapPatches, style_swap, style_swap_patches


@dataclass
class StyleSwapConfig(EncoderConfig):
    """Style-swap options: patch_size/stride (content patches)/style_stride (style patches), ``optimize`` for
    the optimisation variant with ``steps`` L-BFGS iterations and ``tv_weight``, ``checkpoint`` for a trained
    inverse network (``impasto train style-swap-inverse``). ``encoder`` auto = the real VGG-19 at relu3_1
    (the paper's layer). ``matching``: ``auto`` (``correlation``, 9x fewer multiply-adds, where both strides
    are 1; else ``direct``), ``direct`` or ``correlation``: same picks (see ``impasto.transforms.style_swap``)."""

    patch_size: int = 3
    stride: int = 1
    style_stride: int = 1
    optimize: bool = False
    steps: int = 60
    tv_weight: float = 1e-6
    checkpoint: str | None = None
    max_memory_mb: float = 256.0
    matching: str = "auto"

    def validate(self) -> None:
        super().validate()
        for k in ("patch_size", "stride", "style_stride", "steps"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"style-swap option {k} must be a positive integer, got {v!r}")
        if self.matching not in MATCHING_ALGORITHMS:
            raise ConfigError(f"style-swap option matching must be one of {MATCHING_ALGORITHMS}, got {self.matching!r}")
        if self.matching == "correlation" and (self.stride != 1 or self.style_stride != 1):
            raise ConfigError("style-swap matching=correlation needs stride=1 and style_stride=1; use matching=auto")
        if self.tv_weight < 0:
            raise ConfigError(f"style-swap tv_weight must be >= 0, got {self.tv_weight}")


@register
class StyleSwap(Method):
    name = "style-swap"
    summary = "Patch swapping at relu3_1 (inverse network, or --optimize)"
    paper = "Chen & Schmidt, 2016"
    Config = StyleSwapConfig

    def __init__(self, config: StyleSwapConfig) -> None:
        super().__init__(config)
        if config.checkpoint:
            ck = load_impasto_checkpoint(config.checkpoint, "style-swap")
            self.backbone, self.depth = ck["encoder"], ck["depth"]
            self.decoder, self.decoder_source = load_model_decoder(ck, config.checkpoint), config.checkpoint
        else:
            self.backbone, self.depth = resolve_backbone(config, "relu3_1", "style-swap")
            path = packaged_checkpoint("style-swap", self.backbone, self.depth)
            if path is not None:
                self.decoder = load_model_decoder(load_impasto_checkpoint(path), path)
                self.decoder_source = f"trained inverse network {path.name}"
            else:
                self.decoder = load_decoder(self.backbone, self.depth, device=self.device)
                self.decoder_source = "reconstruction decoder"
        self.encoder = load_encoder(self.backbone, self.depth, device=self.device)
        self.decoder.to(self.device)
        self.iterative = config.optimize

    @classmethod
    def check_available(cls, config: StyleSwapConfig) -> None:
        if not config.checkpoint:
            resolve_backbone(config, "relu3_1", "style-swap")

    def describe(self) -> str:
        mode = f"optimisation ({self.config.steps} L-BFGS steps)" if self.config.optimize else "feed-forward"
        return f"style-swap: {self.backbone} {self.depth}, {mode}, decoder: {self.decoder_source}"

    @torch.no_grad()
    def encode_style(self, style: torch.Tensor) -> StyleSwapPatches:
        feat = self.encoder.encode(style.to(self.device))
        return style_swap_patches(feat, self.config.patch_size, self.config.style_stride)

    def stylize(
        self,
        content: torch.Tensor,
        styles: Sequence[StyleSwapPatches],
        mix: torch.Tensor,
        alpha: float = 1.0,
        context: Any = None,
    ) -> torch.Tensor:
        size = tuple(content.shape[-2:])
        with torch.no_grad():
            fc = self.encoder.encode(content.to(self.device))
            targets = [
                style_swap(fc, p, stride=self.config.stride, max_memory_mb=self.config.max_memory_mb,
                           compute_dtype=self._matching_dtype(), algorithm=self.config.matching)
                for p in styles
            ]
            target = blend_features(fc, targets, mix, alpha)
            img = self.decoder(target, size=size).clamp(0, 1)
        if not self.config.optimize:
            return img
        return self._optimize(img, target)

    def _matching_dtype(self) -> torch.dtype | None:
        """The dtype of the ``direct`` matching (``correlation`` always scores in float32): bf16 (with the 4 best
        candidates re-scored in fp32) at bf16 precision on the real VGG only.

        Measured at 512 px (benchmarks/results/inference.md): on vgg19's relu3_1 it changes 0.025% of the picks
        (plain bf16 argmax: 10.7%); on vgg19-16x's 64-channel features many style patches nearly tie, and even
        with re-scoring 24.6% of the picks change, so matching stays fp32 there (the convolutions still run in bf16).
        """
        return self.low_dtype if self.backbone == "vgg19" else None

    def _optimize(self, init: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Pixel optimisation of ||E(I) - target||^2 + tv * TV(I) with L-BFGS (paper eq. 2)."""
        n = target.numel()

        def loss_fn(x: torch.Tensor) -> torch.Tensor:
            return ((self.encoder.encode(x) - target) ** 2).sum() / n + self.config.tv_weight * total_variation(x)

        return optimize_pixels(init, loss_fn, self.config.steps, current_progress())
