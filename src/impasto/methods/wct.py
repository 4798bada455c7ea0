"""WCT (Li et al. 2017): whitening and colouring of features, coarse to fine over several encoder levels."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from impasto.backbones import BACKBONES, LEVELS, available_depths, candidate_backbones, load_decoder, load_encoder
from impasto.errors import ConfigError
from impasto.methods.base import Method, MethodUnavailable, blend_features, register
from impasto.methods.common import EncoderConfig
from impasto.runtime import check_cancelled, report_progress
from impasto.transforms.wct import WCTStyleStats, wct, wct_affine, wct_style_stats

#: Under bf16, levels whose feature map has fewer pixels per channel than this are encoded in fp32 (see _encode).
FP32_PIXELS_PER_CHANNEL = 16


@dataclass
class WCTConfig(EncoderConfig):
    """WCT options. depth = the coarsest level (default: the deepest present: relu5_1 on vgg19-16x, relu3_1 on
    vgg19 here); levels run from it down to relu1_1. ``auto`` prefers the distilled encoder when it reaches
    deeper than the real one (it does here)."""

    def validate(self) -> None:
        super().validate()


def _levels(cfg: WCTConfig) -> tuple[str, list[str]]:
    choices = candidate_backbones(cfg.encoder)
    best: tuple[str, list[str]] | None = None
    for bb in choices:
        depths = available_depths(bb)
        if cfg.depth:
            need = LEVELS[: LEVELS.index(cfg.depth) + 1]
            if all(d in depths for d in need):
                return bb, list(reversed(need))
            continue
        chain = []
        for d in LEVELS:
            if d not in depths:
                break
            chain.append(d)
        if chain and (best is None or len(chain) > len(best[1])):
            best = (bb, list(reversed(chain)))
    if best is None:
        levels = f"every level from {cfg.depth} down to relu1_1" if cfg.depth else "at least relu1_1"
        raise MethodUnavailable(
            f"wct needs encoder/decoder pairs for {levels} of {' or '.join(choices)}; they are not all present. "
            "Run 'impasto weights list'."
        )
    return best


@register
class WCT(Method):
    name = "wct"
    summary = "Whitening-colouring transform, multi-level (universal, training-free)"
    paper = "Li et al., NeurIPS 2017"
    Config = WCTConfig

    def __init__(self, config: WCTConfig) -> None:
        super().__init__(config)
        self.backbone, self.levels = _levels(config)
        self.encoders = {d: load_encoder(self.backbone, d, device=self.device) for d in self.levels}
        self.decoders = {d: load_decoder(self.backbone, d, device=self.device) for d in self.levels}

    @classmethod
    def check_available(cls, config: WCTConfig) -> None:
        if config.encoder not in ("auto", *BACKBONES):
            raise ConfigError(f"unknown encoder {config.encoder!r}")
        _levels(config)

    def describe(self) -> str:
        return f"wct: encoder {self.backbone}, levels {' -> '.join(self.levels)}"

    def _encode(self, img: torch.Tensor, level: str) -> torch.Tensor:
        """Features of ``img`` at ``level``.

        At bf16 precision a level whose map has fewer than ``FP32_PIXELS_PER_CHANNEL`` pixels per channel is
        encoded in fp32: whitening such a small, ill-conditioned covariance amplifies bf16 rounding (measured at
        512 px, PSNR against fp32: 30 dB with vgg19-16x's relu5_1 (8 pixels per channel) in bf16, 35.4 dB with
        it in fp32; the levels with >= 32 pixels per channel cost < 1 dB; vgg19's 3 levels all in bf16: 42.6 dB).
        """
        encoder = self.encoders[level]
        stride = 2 ** (int(level[4]) - 1)
        pixels = math.ceil(img.shape[-2] / stride) * math.ceil(img.shape[-1] / stride)
        if self.low_dtype is not None and pixels < FP32_PIXELS_PER_CHANNEL * encoder.channels(level):
            with torch.autocast(self.device.type, enabled=False):
                return encoder.encode(img.float())
        # under bf16 the features stay bf16 (the encoder returns its input's dtype): no float32 copy of each level's
        # map that the decoder would cast back; the first conv rounds the image to bf16 in either case
        return encoder.encode(img if self.low_dtype is None else img.to(self.low_dtype))

    @staticmethod
    def _affine(
        f: torch.Tensor, stats: Sequence[WCTStyleStats], mix: torch.Tensor, alpha: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, c) with ``A f + c`` = :func:`blend_features` of f and its WCT targets, for a mix constant over space:
        ``alpha * sum_k m_k (T_k f + c_k) + (1 - alpha * sum_k m_k) f``."""
        weights = mix.flatten(1)[:, 0].double()
        a = (1 - alpha * float(weights.sum())) * torch.eye(f.shape[1], dtype=torch.float64, device=f.device)
        c = torch.zeros(f.shape[1], dtype=torch.float64, device=f.device)
        for m, s in zip(weights.tolist(), stats, strict=True):
            if m:
                t, shift = wct_affine(f, s)
                a, c = a + alpha * m * t, c + alpha * m * shift
        return a, c

    @torch.no_grad()
    def encode_style(self, style: torch.Tensor) -> dict[str, WCTStyleStats]:
        """WCT statistics of the style at every level (each level has its own encoder on vgg19-16x)."""
        style = style.to(self.device)
        return {d: wct_style_stats(self._encode(style, d)) for d in self.levels}

    @torch.no_grad()
    def stylize(
        self,
        content: torch.Tensor,
        styles: Sequence[dict[str, WCTStyleStats]],
        mix: torch.Tensor,
        alpha: float = 1.0,
        context: Any = None,
    ) -> torch.Tensor:
        img = content.to(self.device)
        size = tuple(content.shape[-2:])
        # one sample and a mix that is the same everywhere: WCT and the blend are one affine map of the features,
        # which the decoder folds into its first conv (the transformed features are never written)
        uniform = img.shape[0] == 1 and bool((mix == mix.flatten(1)[:, :1, None]).all())
        for d in self.levels:
            f = self._encode(img, d)
            if uniform:
                img = self.decoders[d](f, size=size, in_affine=self._affine(f, [s[d] for s in styles], mix, alpha))
            else:
                targets = [wct(f, s[d]) for s in styles]
                img = self.decoders[d](blend_features(f, targets, mix, alpha), size=size)
            check_cancelled()
            report_progress(self.levels.index(d) + 1, len(self.levels))
        return img.float().clamp(0, 1)
