"""Training task ``iecontraast``: SANet + internal/external contrastive learning (Chen et al., NeurIPS 2021).

Per step: m = batch_size / 2 contents and styles arranged into 2m pairs (``iecontra_arrange``); a generator step
with D frozen, then a discriminator step (LSGAN: paintings -> 1, stylised -> 0) on the generator's output of that
step (no second forward pass):
``L = 1 L_c + 1 L_s + 50 L_id1 + 1 L_id2 + 0.3 L_style-contrast + 0.3 L_content-contrast + 5 L_gan`` (release).
Trained generator parameters: decoder, SANetTransform, both projection heads (all three DDP-wrapped under
torchrun, so their gradients are averaged over ranks).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from impasto.data.arrangement import iecontra_arrange
from impasto.errors import ConfigError
from impasto.losses import (
    ContentProjector,
    MultiScaleDiscriminator,
    StyleProjector,
    iecontra_content_loss,
    iecontra_style_loss,
    lsgan_d_loss,
    lsgan_g_loss,
)
from impasto.training.config import TrainConfig
from impasto.training.loop import register_task
from impasto.training.tasks.common import requires_grad, task_options
from impasto.training.tasks.sanet import (
    LAYERS5,
    SANET_CHOICES,
    SANET_DEFAULTS,
    SANetTask,
    build_generator,
    drop_frozen_decoder_grads,
    sanet_losses,
)

IECONTRA_DEFAULTS: dict[str, Any] = {
    **SANET_DEFAULTS,
    "style_weight": 1.0,
    "style_contrastive_weight": 0.3,
    "content_contrastive_weight": 0.3,
    "gan_weight": 5.0,
    "tau": 0.2,
    "discriminator_scales": 3,
    "gan_ramp_steps": 0,  # ramp the adversarial weight from 0 over this many steps (0: the release's constant 5)
    "flip_paintings": True,  # random left-right flips of the discriminator's real paintings
    # the learning rate of the discriminator and the projection heads (0: the run's lr, as in the release); a
    # generator fine-tuned at a low lr from a SANet file still needs its new discriminator and heads to learn fast
    "aux_lr": 0.0,
}


class IEContraHeads(nn.Module):
    """The two projection heads: style (relu3_1 -> 128) and content (relu4_1 -> 128), L2-normalised."""

    def __init__(self, c3: int, c4: int) -> None:
        super().__init__()
        self.style = StyleProjector(c3, 128, 128)
        self.content = ContentProjector(c4, 256, 128)

    def forward(self, f3: torch.Tensor, f4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(style embeddings of relu3_1 ``f3`` B x c3 x h x w, content embeddings of relu4_1 ``f4``), each B x 128.

        One forward for both heads, so that DistributedDataParallel averages both heads' gradients.
        """
        return self.style(f3), self.content(f4)


@register_task("iecontraast")
class IEContraASTTask(SANetTask):
    """IEContraAST training (official release's losses and weights); options in ``IECONTRA_DEFAULTS``."""

    method = "iecontraast"

    def batch_sizes(self, config: TrainConfig) -> dict[str, int]:
        m = max(1, config.batch_size // 2)
        return {"content": m, "style": m}

    def build(self, config: TrainConfig, device: torch.device) -> None:
        self.opts = task_options(config, IECONTRA_DEFAULTS, SANET_CHOICES)
        self.backbone = self.opts["encoder"]
        self.encoder, self.generator = build_generator(self.backbone, self.opts, device)
        self.heads = IEContraHeads(self.encoder.channels("relu3_1"), self.encoder.channels("relu4_1")).to(device)
        self.discriminator = MultiScaleDiscriminator(int(self.opts["discriminator_scales"])).to(device)
        self.ddp_generator = self.wrap_ddp(self.generator)
        self.ddp_discriminator = self.wrap_ddp(self.discriminator)
        self.ddp_heads = self.wrap_ddp(self.heads)
        aux_lr = float(self.opts["aux_lr"])
        if aux_lr < 0:
            raise ConfigError(f"task_options.aux_lr={aux_lr} must be >= 0 (0: the run's lr {config.lr})")
        aux_lr = aux_lr or config.lr
        # one parameter group when the heads share the generator's lr, so that runs from before aux_lr resume exactly
        groups = ([{"params": list(self.generator.parameters()) + list(self.heads.parameters())}] if aux_lr == config.lr
                  else [{"params": list(self.generator.parameters())},
                        {"params": list(self.heads.parameters()), "lr": aux_lr}])
        self.opt = torch.optim.Adam(groups, lr=config.lr)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=aux_lr, betas=(0.5, 0.999))
        self.step_done = 0

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "heads": self.heads, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt, "discriminator": self.opt_d}

    def gan_weight(self, step: int) -> float:
        """The adversarial weight at ``step``: ramped linearly from 0 over ``gan_ramp_steps`` (0: constant)."""
        ramp = int(self.opts["gan_ramp_steps"])
        w = float(self.opts["gan_weight"])
        return w if ramp <= 0 else w * min(1.0, (step + 1) / ramp)

    def _real_paintings(self, styles: torch.Tensor) -> torch.Tensor:
        """The discriminator's real images: the batch's paintings, each flipped left-right with probability 1/2
        (``flip_paintings``), so that it cannot learn a fixed set of crops by heart."""
        if not self.opts["flip_paintings"]:
            return styles
        flip = torch.rand(styles.shape[0], device=styles.device) < 0.5
        return torch.where(flip[:, None, None, None], styles.flip(-1), styles)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        c, s = iecontra_arrange(batch["content"], batch["style"])
        with torch.no_grad(), self.autocast():
            fc, fs = self.encoder(c, LAYERS5), self.encoder(s, LAYERS5)
        # ---- generator step, D frozen
        requires_grad(self.discriminator, False)
        self.opt.zero_grad(set_to_none=True)
        gan_w = self.gan_weight(step)
        with self.autocast():
            terms, out, out_feats = sanet_losses(self.ddp_generator, self.encoder, c, s, fc, fs, self.opts)
            z_style, z_content = self.ddp_heads(out_feats["relu3_1"], out_feats["relu4_1"])
            l_sc = iecontra_style_loss(z_style, self.opts["tau"])
            l_cc = iecontra_content_loss(z_content, self.opts["tau"])
            l_gan = lsgan_g_loss(self.ddp_discriminator(out))
            total = (terms["total"] + self.opts["style_contrastive_weight"] * l_sc
                     + self.opts["content_contrastive_weight"] * l_cc + gan_w * l_gan)
        self.backward(total)
        drop_frozen_decoder_grads(self.generator, self.opts, step)
        self.optimizer_step(self.opt)
        # ---- discriminator step (LSGAN: paintings -> 1, stylised -> 0) on the output the generator step made
        requires_grad(self.discriminator, True)
        self.opt_d.zero_grad(set_to_none=True)
        with self.autocast():
            d_loss = lsgan_d_loss(self.ddp_discriminator(self._real_paintings(batch["style"])),
                                  self.ddp_discriminator(out.detach()))
        self.backward(d_loss)
        self.optimizer_step(self.opt_d)
        self.step_done = step + 1
        terms.update(style_contrastive=l_sc, content_contrastive=l_cc, gan_g=l_gan, gan_d=d_loss, total=total)
        return {k: float(v.detach()) for k, v in terms.items()}
