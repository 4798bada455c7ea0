"""Training task ``adain``: the AdaIN decoder (Huang & Belongie, ICCV 2017, Sec. 6).

The encoder is frozen; ``t = AdaIN(E(c), E(s))`` at ``depth``; the decoder ``g`` is trained with
``L = L_c + w_s L_s``, ``L_c = MSE(E(g(t))_depth, t)`` (eq. 12) and ``L_s`` either the paper's mean/std loss over
relu1_1..depth (eq. 13, ``style_loss: classic``, w_s = 10) or the balanced Gram loss of Cheng et al. 2021 eq. (13)
(``style_loss: balanced``, see ``BALANCED_STYLE_WEIGHT``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from impasto.backbones import load_decoder, load_encoder
from impasto.encoders.vgg import VGGEncoder
from impasto.errors import ConfigError
from impasto.losses import balanced_style_loss, content_loss, gram_style_loss, mean_std_style_loss
from impasto.training.config import TrainConfig
from impasto.training.loop import Task, register_task
from impasto.training.tasks.common import (
    ModelFileMixin,
    check_backbone,
    fresh_decoder,
    init_model_decoder,
    model_file,
    task_options,
    trainable_decoder,
)
from impasto.transforms.stats import adain, mean_std

#: Style weight of the balanced loss, chosen so that both losses weigh style against content alike at the start.
#: Measured on vgg19-16x at relu4_1 with the pretrained reconstruction decoder, 4 batches of 8 random 128 px crops
#: (256 px short side) of data/content and data/style: content 2.9, classic mean/std style 38.4 (x10 = 384),
#: balanced style 0.46 (4 layers, each in [0, 1]); classic / balanced = 83, so 10 x 83 ~ 800.
BALANCED_STYLE_WEIGHT = 800.0
CLASSIC_STYLE_WEIGHT = 10.0
#: Style weight of the plain Gram loss (``style_loss: gram``), the same calibration against the balanced loss on
#: the corpus (6 batches of 8 random 256 px crops of 512 px images, reconstruction decoder): Gram 5.16, balanced
#: 0.365, so 800 x 0.365 / 5.16 ~ 57 weighs style like the balanced run at the start.
GRAM_STYLE_WEIGHT = 57.0

ADAIN_DEFAULTS: dict[str, Any] = {
    "encoder": "vgg19-16x",
    "depth": None,  # relu4_1 on vgg19-16x, relu3_1 on vgg19 (the deepest level with weights here)
    "style_loss": "balanced",  # what the shipped model uses; it beat classic and gram on 96/96 pairs (docs/models.md)
    "style_weight": None,  # CLASSIC_, BALANCED_ or GRAM_STYLE_WEIGHT by style_loss
    "content_weight": 1.0,
    "init_decoder": "pretrained",
    "init_checkpoint": "",  # an impasto model file whose decoder starts the run (overrides init_decoder)
    "loss_network": "same",
    "betas": None,
}
ADAIN_CHOICES = {"style_loss": ("classic", "balanced", "gram"), "init_decoder": ("pretrained", "random"),
                 "loss_network": ("same", "aux", "vgg19")}


def style_layers(depth: str) -> list[str]:
    """``relu1_1 .. depth`` (the reluK_1 layers), e.g. relu4_1 -> [relu1_1, relu2_1, relu3_1, relu4_1]."""
    return [f"relu{k}_1" for k in range(1, int(depth[4]) + 1)]


def resolve_adain_backbone(opts: dict[str, Any]) -> tuple[str, str]:
    """(encoder, depth) of the options: depth defaults to relu4_1 on vgg19-16x and relu3_1 on vgg19."""
    encoder = opts["encoder"]
    depth = opts["depth"] or ("relu4_1" if encoder == "vgg19-16x" else "relu3_1")
    check_backbone(encoder, depth, ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"))
    return encoder, depth


class LossNetwork(nn.Module):
    """Frozen features for the style loss: the encoder itself, its ``aux`` projections, or the real VGG-19.

    ``forward(x) -> {layer: B x C x h x w}`` for ``layers``; gradients flow to ``x`` only.
    """

    def __init__(self, kind: str, encoder: str, depth: str, device: torch.device | None = None) -> None:
        super().__init__()
        self.kind = kind
        if kind == "same":
            self.net = load_encoder(encoder, depth, device=device)
            self.layers = style_layers(depth)
        elif kind == "aux":
            if encoder != "vgg19-16x":
                raise ConfigError("task_options.loss_network=aux needs task_options.encoder=vgg19-16x "
                                  "(only the distilled encoder has aux projections)")
            self.net = load_encoder(encoder, depth, with_aux=True, device=device)
            self.layers = [lay for lay in style_layers(depth)
                           if lay.replace("relu", "conv") in self.net.aux.convs]
        else:
            self.net = load_encoder("vgg19", "relu3_1", device=device)
            self.layers = style_layers("relu3_1")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.net(x, self.layers)
        return self.net.aux(feats) if self.kind == "aux" else feats


def style_term(kind: str, out_feats: dict[str, torch.Tensor], style_feats: dict[str, torch.Tensor]
               ) -> torch.Tensor:
    """Unweighted style loss summed over layers: mean/std (``classic``, AdaIN's), the Gram MSE (``gram``, the
    classic loss of the balanced-loss paper, its eq. 6) or the balanced Gram loss (``balanced``, its eq. 13)."""
    if kind == "classic":
        return mean_std_style_loss(out_feats, style_feats)
    if kind == "gram":
        return gram_style_loss(out_feats, style_feats)
    return balanced_style_loss(out_feats, style_feats)


@register_task("adain")
class AdaINTask(ModelFileMixin, Task):
    """AdaIN decoder training (Huang & Belongie 2017); options in ``ADAIN_DEFAULTS``."""

    def build(self, config: TrainConfig, device: torch.device) -> None:
        self.opts = task_options(config, ADAIN_DEFAULTS, ADAIN_CHOICES)
        self.backbone, self.depth = resolve_adain_backbone(self.opts)
        self.encoder: VGGEncoder = load_encoder(self.backbone, self.depth, device=device)
        pretrained = load_decoder(self.backbone, self.depth)
        if self.opts["init_checkpoint"]:
            self.decoder = trainable_decoder(init_model_decoder(self.opts["init_checkpoint"], pretrained))
        else:
            self.decoder = (trainable_decoder(pretrained) if self.opts["init_decoder"] == "pretrained"
                            else fresh_decoder(pretrained))
        self.decoder = self.decoder.to(device)
        self.loss_net = LossNetwork(self.opts["loss_network"], self.backbone, self.depth, device)
        self.style_weight = self.opts["style_weight"]
        if self.style_weight is None:
            self.style_weight = {"classic": CLASSIC_STYLE_WEIGHT, "balanced": BALANCED_STYLE_WEIGHT,
                                 "gram": GRAM_STYLE_WEIGHT}[self.opts["style_loss"]]
        self.content_weight = float(self.opts["content_weight"])
        self.ddp_decoder = self.wrap_ddp(self.decoder)
        betas = tuple(self.opts["betas"]) if self.opts["betas"] else (0.9, 0.999)
        self.opt = torch.optim.Adam(self.decoder.parameters(), lr=config.lr, betas=betas)
        self.step_done = 0

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"decoder": self.decoder}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"decoder": self.opt}

    def losses(self, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named loss terms for a batch (content B x 3 x H x W, style B x 3 x H' x W', [0, 1])."""
        with torch.no_grad():
            fc = self.encoder.encode(content)
            if self.loss_net.kind == "same":
                style_feats = self.loss_net(style)
                fs = style_feats[self.depth]
            else:
                fs = self.encoder.encode(style)
                style_feats = self.loss_net(style)
            t = adain(fc, *mean_std(fs))
        out = self.ddp_decoder(t, size=tuple(content.shape[-2:]))
        if self.loss_net.kind == "same":
            out_feats = self.loss_net(out)
            out_t = out_feats[self.depth]
        else:
            out_t = self.encoder.encode(out)
            out_feats = self.loss_net(out)
        lc = content_loss(out_t, t)
        ls = style_term(self.opts["style_loss"], out_feats, style_feats)
        total = self.content_weight * lc + self.style_weight * ls
        return {"content": lc, "style": ls, "total": total}

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        self.opt.zero_grad(set_to_none=True)
        with self.autocast():
            terms = self.losses(batch["content"], batch["style"])
        self.backward(terms["total"])
        self.optimizer_step(self.opt)
        self.step_done = step + 1
        return {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def sample(self, contents: torch.Tensor, styles: torch.Tensor | None) -> torch.Tensor:
        fc = self.encoder.encode(contents)
        fs = self.encoder.encode(styles)
        return self.decoder(adain(fc, *mean_std(fs)), size=tuple(contents.shape[-2:])).clamp(0, 1)

    def _model_state(self) -> dict[str, Any]:
        return model_file("adain", self.backbone, self.depth, self.decoder, self.config, self.step_done)

    def state_dict(self) -> dict[str, Any]:
        return {"step_done": self.step_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_done = int(state.get("step_done", 0))
