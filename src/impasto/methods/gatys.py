"""Gatys et al. 2016: optimise the pixels to match the photo's features and the painting's Gram matrices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from impasto.backbones import candidate_backbones, encoder_depths, load_encoder
from impasto.errors import ConfigError
from impasto.losses.style import gram
from impasto.methods.base import Method, MethodUnavailable, optimize_pixels, register, resize_mix
from impasto.methods.common import EncoderConfig
from impasto.runtime import current_progress


@dataclass
class GatysConfig(EncoderConfig):
    """Gatys options: L-BFGS ``steps``, ``style_weight`` (relative to content weight 1), ``init`` (content |
    noise). Style layers are relu1_1 .. the depth, the content layer is the depth. ``encoder`` auto = the real
    VGG-19 (relu3_1 here); ``--encoder vgg19-16x`` reaches relu5_1."""

    steps: int = 100
    style_weight: float = 1e5
    init: str = "content"
    seed: int = 0

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"gatys steps must be a positive integer, got {self.steps!r}")
        if self.init not in ("content", "noise"):
            raise ConfigError(f"gatys init must be 'content' or 'noise', got {self.init!r}")


def _resolve(cfg: GatysConfig) -> tuple[str, str]:
    for bb in candidate_backbones(cfg.encoder):
        depths = encoder_depths(bb)
        if cfg.depth:
            if cfg.depth in depths:
                return bb, cfg.depth
        elif depths:
            return bb, depths[-1] if bb == "vgg19" else ("relu4_1" if "relu4_1" in depths else depths[-1])
    raise MethodUnavailable(
        f"gatys needs a VGG encoder{f' at {cfg.depth}' if cfg.depth else ''}; none is "
        f"present. Run 'impasto weights list'."
    )


@register
class Gatys(Method):
    name = "gatys"
    summary = "Pixel optimisation of Gram losses (slow, the classic)"
    paper = "Gatys et al., CVPR 2016"
    Config = GatysConfig
    work_size = 512
    iterative = True
    supports_bf16 = False  # L-BFGS pixel optimisation needs fp32 losses and gradients

    def __init__(self, config: GatysConfig) -> None:
        super().__init__(config)
        self.backbone, self.depth = _resolve(config)
        self.encoder = load_encoder(self.backbone, self.depth, device=self.device)
        self.style_layers = [f"relu{k}_1" for k in range(1, int(self.depth[4]) + 1)]

    @classmethod
    def check_available(cls, config: GatysConfig) -> None:
        _resolve(config)

    def describe(self) -> str:
        return (
            f"gatys: {self.backbone}, style layers {', '.join(self.style_layers)}, content {self.depth}, "
            f"{self.config.steps} L-BFGS steps"
        )

    @torch.no_grad()
    def encode_style(self, style: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.encoder(style.to(self.device), self.style_layers)
        return {k: gram(v) for k, v in feats.items()}

    def stylize(
        self,
        content: torch.Tensor,
        styles: Sequence[dict[str, torch.Tensor]],
        mix: torch.Tensor,
        alpha: float = 1.0,
        context: Any = None,
    ) -> torch.Tensor:
        content = content.to(self.device)
        layers = sorted(set(self.style_layers) | {self.depth})
        with torch.no_grad():
            fc = self.encoder(content, layers)
        # Spatial mixes are applied as per-style masked Gram targets (Gatys et al. 2017, spatial control).
        weights = mix.flatten(1).mean(1)
        gen = torch.Generator().manual_seed(self.config.seed)
        if self.config.init == "content":
            x0 = content.clone()
        else:
            x0 = torch.rand(content.shape, generator=gen).to(self.device)
        sw = self.config.style_weight * alpha

        def loss_fn(x: torch.Tensor) -> torch.Tensor:
            f = self.encoder(x, layers)
            loss = ((f[self.depth] - fc[self.depth]) ** 2).mean()
            for layer in self.style_layers:
                feat = f[layer]
                m = resize_mix(mix.to(feat), tuple(feat.shape[-2:]))
                for k, s in enumerate(styles):
                    if weights[k] <= 0:
                        continue
                    masked = feat * m[k].sqrt()[None, None]
                    g = gram(masked) / m[k].mean().clamp_min(1e-8)
                    loss = loss + sw * weights[k] * ((g - s[layer]) ** 2).sum() / len(self.style_layers)
            return loss

        return optimize_pixels(x0, loss_fn, self.config.steps, current_progress())
