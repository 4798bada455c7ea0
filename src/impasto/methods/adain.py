"""AdaIN (Huang & Belongie 2017): match channel-wise mean/std of content features to the style's, then decode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from impasto import weights
from impasto.backbones import load_decoder
from impasto.decoders.vgg import VGGDecoder, convert_sequential_decoder
from impasto.errors import WeightsError
from impasto.methods.base import Method, blend_features, register
from impasto.methods.common import (
    EncoderConfig,
    checkpoint_encoder,
    load_impasto_checkpoint,
    load_model_decoder,
    packaged_checkpoint,
    resolve_backbone,
)
from impasto.modelfile import describe_model, is_official_transformer
from impasto.transforms.stats import adain, mean_std


@dataclass
class AdaINConfig(EncoderConfig):
    """AdaIN options. checkpoint: a decoder trained by ``impasto train adain`` (or the official ``decoder.pth``);
    default: impasto's packaged trained decoder for the resolved encoder/depth if there is one, else the
    reconstruction decoder of the encoder (trained on photos only: weaker stylisation)."""

    checkpoint: str | None = None


@register
class AdaIN(Method):
    name = "adain"
    summary = "Adaptive instance normalisation (fast, any style)"
    paper = "Huang & Belongie, ICCV 2017"
    Config = AdaINConfig

    def __init__(self, config: AdaINConfig) -> None:
        super().__init__(config)
        ck = None
        if config.checkpoint:
            ck = load_impasto_checkpoint(config.checkpoint, "adain")
            if "decoder" not in ck:  # an official sequential decoder state dict
                if is_official_transformer(ck):
                    raise WeightsError(f"{config.checkpoint} is {describe_model(ck)}, not an AdaIN decoder: it "
                                       "belongs to -m sanet / -m iecontraast (with its decoder_iter_N.pth)")
                self.backbone, self.depth = "vgg19", "relu4_1"
                dec = VGGDecoder(depth="relu4_1")
                sd = weights.load_state_dict(config.checkpoint)
                dec.load_state_dict(convert_sequential_decoder(sd, "relu4_1"), strict=True)
                self.decoder, self.decoder_source = dec.eval(), str(config.checkpoint)
                ck = None
            else:
                self.backbone, self.depth = ck["encoder"], ck["depth"]
        else:
            self.backbone, self.depth = resolve_backbone(config, "relu4_1", "adain")
            path = packaged_checkpoint("adain", self.backbone, self.depth)
            if path is not None:
                ck, config.checkpoint = load_impasto_checkpoint(path), str(path)
        if ck is not None:
            self.decoder, self.decoder_source = (
                load_model_decoder(ck, config.checkpoint),
                str(config.checkpoint),
            )
        elif not config.checkpoint:
            self.decoder, self.decoder_source = (
                load_decoder(self.backbone, self.depth, device=self.device),
                "reconstruction decoder",
            )
        self.encoder = checkpoint_encoder(self.backbone, self.depth, ck, device=self.device)
        self.decoder = self.decoder.to(self.device)  # a no-op for the shared reconstruction decoder (already there)

    @classmethod
    def check_available(cls, config: AdaINConfig) -> None:
        if not config.checkpoint:
            resolve_backbone(config, "relu4_1", "adain")

    def describe(self) -> str:
        return f"adain: encoder {self.backbone} at {self.depth}, decoder: {self.decoder_source}"

    @torch.no_grad()
    def encode_style(self, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the style's features at the AdaIN depth, each 1 x C x 1 x 1."""
        return mean_std(self.encoder.encode(style.to(self.device)))

    @torch.no_grad()
    def content_context(self, content: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole-image content (mean, std) at the AdaIN depth, so that every tile is normalised alike."""
        return mean_std(self.encoder.encode(content.to(self.device)))

    @torch.no_grad()
    def stylize(
        self,
        content: torch.Tensor,
        styles: Sequence[tuple[torch.Tensor, torch.Tensor]],
        mix: torch.Tensor,
        alpha: float = 1.0,
        context: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        fc = self.encoder.encode(content.to(self.device))
        if context is None:
            targets = [adain(fc, m, s) for m, s in styles]
        else:  # a tile: normalise with the whole image's statistics (AdaIN eq. 8 with global mu(x), sigma(x))
            cm, cs = context
            targets = [(fc - cm) / cs * s + m for m, s in styles]
        t = blend_features(fc, targets, mix, alpha)
        return self.decoder(t, size=tuple(content.shape[-2:])).clamp(0, 1)
