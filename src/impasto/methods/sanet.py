"""SANet (Park & Lee 2019) and IEContraAST (Chen et al. 2021): style attention at relu4_1 + relu5_1, then decode.

IEContraAST has SANet's architecture at inference (its contributions are training losses), so both methods share
this module and differ in the weights they load: by default impasto's own trained models shipped in the package
(``checkpoints/{sanet,iecontraast}_vgg19-16x_relu4_1.safetensors``, docs/models.md), or any model file from
``impasto train sanet`` / ``impasto train iecontraast`` (``checkpoint=``), or the official ``decoder_iter_N.pth`` +
``transformer_iter_N.pth`` files, which need the full VGG-19 (``vgg_normalised.pth``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from impasto import weights
from impasto.backbones import candidate_backbones
from impasto.decoders.vgg import VGGDecoder, convert_sequential_decoder
from impasto.errors import ConfigError, WeightsError
from impasto.methods.base import Method, MethodUnavailable, blend_features, register
from impasto.methods.common import (
    EncoderConfig,
    checkpoint_encoder,
    load_impasto_checkpoint,
    load_model_decoder,
    packaged_checkpoint,
)
from impasto.transforms.stats import adain_features


@dataclass
class SANetConfig(EncoderConfig):
    """checkpoint: an impasto model file; or decoder + transformer: the official release's two files."""

    checkpoint: str | None = None
    decoder: str | None = None
    transformer: str | None = None


def _official_pair(method: str, cfg: SANetConfig) -> tuple[Path, Path] | None:
    if cfg.decoder and cfg.transformer:
        return Path(cfg.decoder), Path(cfg.transformer)
    dec, tr = weights.find(f"{method}-decoder"), weights.find(f"{method}-transformer")
    if dec[1] == "present" and tr[1] == "present" and dec[0] and tr[0]:
        return dec[0], tr[0]
    return None


class _SANetFamily(Method):
    Config = SANetConfig

    def __init__(self, config: SANetConfig) -> None:
        from impasto.transforms.sanet import SANetTransform
        from impasto.transforms.skips import AdaINSkips, sanet_layers

        super().__init__(config)
        ck_path = config.checkpoint or self._packaged(config)
        ck = None
        self.skips: AdaINSkips | None = None
        if ck_path:
            ck = load_impasto_checkpoint(ck_path, self.name, ("sanet", "iecontraast"))
            try:
                self.backbone = ck["encoder"]
                channels = ck["transform_channels"]
                self.transform = SANetTransform(channels)
                self.transform.load_state_dict(ck["transform"], strict=True)
                if "skips" in ck:  # trained with task_options.skip_layers
                    self.skips = AdaINSkips({n: tuple(c) for n, c in ck["skip_channels"].items()})
                    self.skips.load_state_dict(ck["skips"], strict=True)
            except (KeyError, RuntimeError, ConfigError) as exc:
                raise WeightsError(f"{ck_path} is not a valid {self.name} checkpoint ({exc})") from None
            self.decoder = load_model_decoder(ck, ck_path)
            self.source = str(ck_path)
        else:
            pair = _official_pair(self.name, config)
            if pair is None:
                raise MethodUnavailable(self._missing_message())
            self.backbone = "vgg19"
            self.transform = SANetTransform(512)
            self.transform.load_state_dict(weights.load_state_dict(pair[1]), strict=True)
            self.decoder = VGGDecoder(depth="relu4_1")
            self.decoder.load_state_dict(
                convert_sequential_decoder(weights.load_state_dict(pair[0]), "relu4_1"), strict=True
            )
            self.source = f"{pair[0].name} + {pair[1].name}"
        self.encoder = checkpoint_encoder(self.backbone, "relu5_1", ck, device=self.device)
        self.transform.requires_grad_(False).eval().to(self.device)
        self.decoder.requires_grad_(False).eval().to(self.device)
        if self.skips is not None:
            self.skips.requires_grad_(False).eval().to(self.device)
        #: the encoder layers a stylisation reads: the skips' and relu4_1, relu5_1
        self.layers = sanet_layers(self.skips)

    def _packaged(self, config: SANetConfig) -> Path | None:
        for bb in candidate_backbones(config.encoder):
            p = packaged_checkpoint(self.name, bb, "relu4_1")
            if p:
                return p
        return None

    @classmethod
    def _missing_message(cls) -> str:
        return (
            f"{cls.name} needs trained weights, and none are present: train them with 'impasto train {cls.name} "
            f"--content DIR --style DIR' and pass --checkpoint RUN/model.pt, or put the official release's "
            f"decoder and transformer files ({weights.get(cls.name + '-decoder').url}) in IMPASTO_WEIGHTS_DIR "
            f"as {weights.get(cls.name + '-decoder').path} and {weights.get(cls.name + '-transformer').path} "
            f"(they also need the full VGG-19, vgg_normalised.pth)."
        )

    @classmethod
    def check_available(cls, config: SANetConfig) -> None:
        if config.checkpoint:
            if not Path(config.checkpoint).is_file():
                raise WeightsError(f"checkpoint {config.checkpoint} does not exist")
            return
        for bb in candidate_backbones(config.encoder):
            if packaged_checkpoint(cls.name, bb, "relu4_1"):
                return
        if _official_pair(cls.name, config) is None:
            raise MethodUnavailable(cls._missing_message())
        if weights.find("vgg19")[1] != "present":
            raise MethodUnavailable(
                f"{cls.name}'s official weights need the full VGG-19: "
                + weights._message(weights.get("vgg19"), "was not found")
            )

    def describe(self) -> str:
        return f"{self.name}: encoder {self.backbone} relu4_1+relu5_1, weights {self.source}"

    @torch.no_grad()
    def encode_style(self, style: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.encoder(style.to(self.device), self.layers)

    @torch.no_grad()
    def stylize(
        self,
        content: torch.Tensor,
        styles: Sequence[dict[str, torch.Tensor]],
        mix: torch.Tensor,
        alpha: float = 1.0,
        context: Any = None,
    ) -> torch.Tensor:
        fc = self.encoder(content.to(self.device), self.layers)
        targets = [self.transform(fc["relu4_1"], s["relu4_1"], fc["relu5_1"], s["relu5_1"]) for s in styles]
        t = blend_features(fc["relu4_1"], targets, mix, alpha)
        adds = None
        if self.skips is not None:  # each skip's AdaIN targets blended like the attention's
            adds = self.skips({n: blend_features(fc[n], [adain_features(fc[n], s[n]) for s in styles], mix, alpha)
                               for n in self.skips.layers})
        return self.decoder(t, size=tuple(content.shape[-2:]), adds=adds).clamp(0, 1)


@register
class SANet(_SANetFamily):
    name = "sanet"
    summary = "Style-attentional network at relu4_1 + relu5_1 (impasto's trained weights ship with it)"
    paper = "Park & Lee, CVPR 2019"


@register
class IEContraAST(_SANetFamily):
    name = "iecontraast"
    summary = "SANet trained with internal-external contrastive learning (impasto's trained weights ship with it)"
    paper = "Chen et al., NeurIPS 2021"
