"""Training task ``refine-encoder``: contrastive encoder refinement around AdaIN or SANet (Bai et al.).

A trainable encoder E_t encodes content and style for the method; the frozen pretrained encoder E_p stays the
loss network and the feature regulariser's target. With ``layer_split`` (default, the paper's Sec. 3.1/4.1
"we only retain Conv_X_1 layers and the corresponding pooling and ReLU layers of the original VGG-19") E_t is
:class:`~impasto.encoders.split.SplitVGGEncoder`: conv0 and the ConvX_1 convs of E_p (their parameters as
initialisation), pool -> convX_1 -> ReLU per block; ``layer_split=false`` refines a full copy of E_p instead.
Added to the method's losses:
``w_sc L_style-contrast`` (anchor f_s(E_t(I_o)) at the method depth, positives 8 block-reshuffles of the style
image, negatives the batch's contents, tau 0.07), ``w_pc L_patch`` (PatchNCE between E_t(I_cc) and E_t(I_c) on
relu1_1..relu4_1, tau 0.07) and ``lambda_d sum ||E_t(c) - E_p(c)||_2`` at relu4_1 (AdaIN) or relu4_1 + relu5_1
(SANet). The model file stores E_t's state (``encoder_state``) and ``encoder_split`` so that
``impasto stylize -m adain|sanet --checkpoint model.pt`` rebuilds the same encoder.
The weights w_sc = w_pc = 1 and lambda_d = 0.1 are our choice (the paper does not state them all).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from impasto.backbones import load_decoder, load_encoder
from impasto.encoders.split import SplitVGGEncoder
from impasto.encoders.vgg import VGGEncoder
from impasto.errors import ConfigError
from impasto.losses import (
    PatchContentContrastiveLoss,
    RefineStyleContrastiveLoss,
    content_loss,
    feature_regularizer,
    mean_std_style_loss,
    reshuffle,
)
from impasto.training.config import TrainConfig
from impasto.training.loop import Task, register_task
from impasto.training.tasks.adain import style_layers
from impasto.training.tasks.common import (
    ModelFileMixin,
    check_backbone,
    cpu_state,
    fresh_decoder,
    model_file,
    task_options,
    trainable_decoder,
)
from impasto.training.tasks.sanet import LAYERS5, SANET_DEFAULTS, build_generator, sanet_losses
from impasto.transforms.stats import adain, mean_std

REFINE_DEFAULTS: dict[str, Any] = {
    "base": "adain",
    "encoder": "vgg19-16x",
    "content_weight": 1.0,
    "style_weight": None,  # 10 (adain) / 3 (sanet)
    "identity_pixel_weight": 50.0,
    "identity_feature_weight": 1.0,
    "init_decoder": "pretrained",
    "style_contrastive_weight": 1.0,
    "content_contrastive_weight": 1.0,
    "feature_reg_weight": 0.1,
    "feature_reg_mode": "norm",
    "num_positives": 8,
    "reshuffle_blocks": 4,
    "num_patches": 64,
    "tau": 0.07,
    "layer_split": True,
}
REFINE_CHOICES = {"base": ("adain", "sanet"), "init_decoder": ("pretrained", "random"),
                  "feature_reg_mode": ("norm", "mse")}
PATCH_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]


class RefineHeads(nn.Module):
    """The trainable mapping networks: ``style`` (f_s, eq. 2) and ``patch`` (h_c, eq. 3), one forward for DDP."""

    def __init__(self, style: RefineStyleContrastiveLoss, patch: PatchContentContrastiveLoss) -> None:
        super().__init__()
        self.style = style
        self.patch = patch

    def forward(self, anchor: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
                feats_cc: dict[str, torch.Tensor], feats_c: dict[str, torch.Tensor],
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_style-contrast, L_patch), scalars: ``style(anchor B x C x h x w, positives B x P x C x h x w,
        negatives K x C x h x w)`` and ``patch(feats_cc, feats_c)`` ({layer: B x C x h x w} each)."""
        return self.style(anchor, positives, negatives), self.patch(feats_cc, feats_c, generator=generator)


def refined_encoder(pretrained: VGGEncoder, layer_split: bool) -> VGGEncoder | SplitVGGEncoder:
    """The trainable E_t initialised from ``pretrained`` (not modified): its ConvX_1 split or a full copy."""
    if not layer_split:
        return copy.deepcopy(pretrained).requires_grad_(True).train()
    try:
        return SplitVGGEncoder.from_encoder(pretrained, frozen=False).train()
    except ConfigError as exc:
        raise ConfigError(f"{exc}; set task_options.layer_split=false to refine the full encoder") from None


@register_task("refine-encoder")
class RefineEncoderTask(ModelFileMixin, Task):
    """Contrastive encoder refinement (Bai et al.) on top of AdaIN or SANet; options in ``REFINE_DEFAULTS``."""

    def build(self, config: TrainConfig, device: torch.device) -> None:
        opts = task_options(config, REFINE_DEFAULTS, REFINE_CHOICES)
        self.opts = opts
        self.base, self.backbone = opts["base"], opts["encoder"]
        check_backbone(self.backbone, "relu4_1")
        self.depth = "relu4_1"
        if opts["style_weight"] is None:
            opts["style_weight"] = 10.0 if self.base == "adain" else 3.0
        reach = "relu4_1" if self.base == "adain" else "relu5_1"
        self.pretrained = load_encoder(self.backbone, reach, device=device)  # frozen loss network
        self.refined = refined_encoder(self.pretrained, bool(opts["layer_split"]))
        if self.base == "adain":
            dec = load_decoder(self.backbone, self.depth)
            self.model: nn.Module = (trainable_decoder(dec) if opts["init_decoder"] == "pretrained"
                                     else fresh_decoder(dec)).to(device)
            self.reg_layers = ["relu4_1"]
            self.layers = style_layers("relu4_1")
        else:
            _, self.model = build_generator(self.backbone, {**SANET_DEFAULTS, "init_transform": "default", **opts},
                                           device)
            self.reg_layers = ["relu4_1", "relu5_1"]
            self.layers = LAYERS5
        n = int(opts["reshuffle_blocks"])
        if config.crop % n:
            raise ConfigError(f"task_options.reshuffle_blocks={n} must divide crop={config.crop}")
        self.style_nce = RefineStyleContrastiveLoss(self.refined.channels(self.depth), tau=opts["tau"]).to(device)
        self.patch_nce = PatchContentContrastiveLoss({k: self.refined.channels(k) for k in PATCH_LAYERS},
                                                     num_patches=int(opts["num_patches"]), tau=opts["tau"]).to(device)
        self.heads = RefineHeads(self.style_nce, self.patch_nce)
        self.ddp_model = self.wrap_ddp(self.model)
        self.ddp_refined = self.wrap_ddp(self.refined)
        self.ddp_heads = self.wrap_ddp(self.heads)
        params = [*self.model.parameters(), *self.refined.parameters(), *self.heads.parameters()]
        self.opt = torch.optim.Adam(params, lr=config.lr)
        self.gen = torch.Generator().manual_seed(config.seed + 17)
        self.step_done = 0

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "encoder": self.refined, "heads": self.heads}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"all": self.opt}

    def state_dict(self) -> dict[str, Any]:
        return {"step_done": self.step_done, "generator": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_done = int(state.get("step_done", 0))
        if "generator" in state:
            self.gen.set_state(state["generator"])

    def _method_losses(self, c: torch.Tensor, s: torch.Tensor, fc: dict[str, torch.Tensor],
                       fs: dict[str, torch.Tensor]
                       ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """The base method's losses with E_t encoding and E_p as loss network; returns (terms, I_o, I_cc)."""
        size = tuple(c.shape[-2:])
        if self.base == "sanet":
            terms, out, _ = sanet_losses(self.ddp_model, self.pretrained, c, s, fc, fs, self.opts)
            i_cc = self.ddp_model(fc, fc, size)
            return terms, out, i_cc
        t = adain(fc[self.depth], *mean_std(fs[self.depth]))
        out = self.ddp_model(t, size=size)
        out_feats = self.pretrained(out, self.layers)
        with torch.no_grad():
            style_feats = self.pretrained(s, self.layers)
        lc = content_loss(out_feats[self.depth], t)
        ls = mean_std_style_loss(out_feats, style_feats)
        i_cc = self.ddp_model(fc[self.depth], size=size)  # AdaIN(c, c) = c
        total = self.opts["content_weight"] * lc + self.opts["style_weight"] * ls
        return {"content": lc, "style": ls, "total": total}, out, i_cc

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        c, s = batch["content"], batch["style"]
        o = self.opts
        self.opt.zero_grad(set_to_none=True)
        with self.autocast():
            enc_layers = sorted(set(self.layers) | set(PATCH_LAYERS))
            fc = self.ddp_refined(c, enc_layers)
            fs = self.ddp_refined(s, self.layers)
            terms, out, i_cc = self._method_losses(c, s, fc, fs)
            # style contrastive: anchor = output, positives = reshuffles of its style, negatives = contents
            p = int(o["num_positives"])
            shuffled = torch.stack([reshuffle(s.cpu(), int(o["reshuffle_blocks"]), self.gen).to(s.device)
                                    for _ in range(p)], 1)
            pos = self.ddp_refined(shuffled.flatten(0, 1), [self.depth])[self.depth]
            pos = pos.view(s.shape[0], p, *pos.shape[1:])
            anchor = self.ddp_refined(out, [self.depth])[self.depth]
            # and the identity-preserving patch contrast between E_t(I_cc) and E_t(I_c)
            feats_cc = self.ddp_refined(i_cc, PATCH_LAYERS)
            l_sc, l_pc = self.ddp_heads(anchor, pos, fc[self.depth], feats_cc, {k: fc[k] for k in PATCH_LAYERS},
                                        generator=self.gen)
            with torch.no_grad():
                fp = self.pretrained(c, self.reg_layers)
            l_reg = feature_regularizer({k: fc[k] for k in self.reg_layers}, fp, mode=o["feature_reg_mode"])
            total = (terms["total"] + o["style_contrastive_weight"] * l_sc
                     + o["content_contrastive_weight"] * l_pc + o["feature_reg_weight"] * l_reg)
        self.backward(total)
        self.optimizer_step(self.opt)
        self.step_done = step + 1
        terms.update(style_contrastive=l_sc, content_contrastive=l_pc, feature_reg=l_reg, total=total)
        return {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def sample(self, contents: torch.Tensor, styles: torch.Tensor | None) -> torch.Tensor:
        size = tuple(contents.shape[-2:])
        if self.base == "adain":
            fc, fs = self.refined.encode(contents, self.depth), self.refined.encode(styles, self.depth)
            return self.model(adain(fc, *mean_std(fs)), size=size).clamp(0, 1)
        fc = self.refined(contents, ["relu4_1", "relu5_1"])
        fs = self.refined(styles, ["relu4_1", "relu5_1"])
        return self.model(fc, fs, size).clamp(0, 1)

    def _model_state(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"encoder_state": cpu_state(self.refined),
                                 "encoder_split": bool(self.opts["layer_split"])}
        decoder = self.model if self.base == "adain" else self.model.decoder
        if self.base == "sanet":
            extra.update(transform=cpu_state(self.model.transform),
                         transform_channels=int(self.model.transform.merge_conv.in_channels))
        return model_file(self.base, self.backbone, self.depth, decoder, self.config, self.step_done, **extra)
