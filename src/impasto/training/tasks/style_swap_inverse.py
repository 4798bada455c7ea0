"""Training task ``style-swap-inverse``: the inverse network of style swap (Chen & Schmidt 2016, Sec. 4).

Per step: 2 photos and 2 paintings, their relu3_1 activations and the 4 style-swapped activations
``swap(E(c_i), E(s_j))`` (3x3 patches); the inverse network g (a decoder from relu3_1) minimises
``mean ||E(g(a)) - a||^2 + lambda_tv TV(g(a))`` over those 8 activations ``a`` (paper eq. 5).

Option ``style_weight`` (0 = the paper's loss) adds, for each of the 4 swapped images, the mean/std style loss
against the painting its patches came from at ``style_layers`` (relu1_1, relu2_1 by default). The paper's loss
sees only relu3_1, where many images share the activations, and its minimiser is a blur of them; the painting's
low-level statistics (its strokes' local contrast) tell the network which of those images to draw.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from impasto.backbones import load_decoder, load_encoder
from impasto.errors import ConfigError
from impasto.losses import mean_std_style_loss, total_variation
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
from impasto.transforms.style_swap import style_swap, style_swap_patches

SWAP_DEFAULTS: dict[str, Any] = {
    "encoder": "vgg19",
    "depth": "relu3_1",
    "photos": 2,
    "paintings": 2,
    "patch_size": 3,
    "tv_weight": 1e-6,
    "style_weight": 0.0,  # mean/std style loss of the swapped images against their paintings (not in the paper)
    "style_layers": "relu1_1,relu2_1",
    "init_decoder": "pretrained",
    "init_checkpoint": "",  # a style-swap model file whose decoder starts the run (overrides init_decoder)
}
SWAP_CHOICES = {"init_decoder": ("pretrained", "random")}


def swap_activations(encoder: nn.Module, photos: torch.Tensor, paintings: torch.Tensor, depth: str,
                     patch_size: int = 3) -> torch.Tensor:
    """Training activations: E(photos), E(paintings) and every swap(E(photo_i), E(painting_j)).

    photos P x 3 x H x W, paintings Q x 3 x H x W in [0, 1] -> (P + Q + P*Q) x C x h x w, no gradient.
    """
    with torch.no_grad():
        fc, fs = encoder.encode(photos, depth), encoder.encode(paintings, depth)
        swaps = [style_swap(fc, style_swap_patches(fs[j:j + 1], patch_size)) for j in range(fs.shape[0])]
        return torch.cat([fc, fs, *swaps])


@register_task("style-swap-inverse")
class StyleSwapInverseTask(ModelFileMixin, Task):
    """Inverse network of style swap (Chen & Schmidt 2016); options in ``SWAP_DEFAULTS``."""

    def batch_sizes(self, config: TrainConfig) -> dict[str, int]:
        opts = task_options(config, SWAP_DEFAULTS, SWAP_CHOICES)
        return {"content": int(opts["photos"]), "style": int(opts["paintings"])}

    def build(self, config: TrainConfig, device: torch.device) -> None:
        self.opts = task_options(config, SWAP_DEFAULTS, SWAP_CHOICES)
        self.backbone, self.depth = self.opts["encoder"], self.opts["depth"]
        check_backbone(self.backbone, self.depth, ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"))
        self.encoder = load_encoder(self.backbone, self.depth, device=device)
        self.style_layers = [x.strip() for x in str(self.opts["style_layers"]).split(",") if x.strip()]
        self.style_weight = float(self.opts["style_weight"])
        if self.style_weight < 0:
            raise ConfigError(f"task_options.style_weight must be >= 0, got {self.style_weight}")
        if self.style_weight > 0:
            unknown = [x for x in self.style_layers if x not in self.encoder.layer_names]
            if unknown or not self.style_layers:
                raise ConfigError(f"task_options.style_layers {self.opts['style_layers']!r}: the {self.backbone} "
                                  f"encoder to {self.depth} has layers {self.encoder.layer_names}; "
                                  "give a comma-separated list of them")
        dec = load_decoder(self.backbone, self.depth)
        if self.opts["init_checkpoint"]:
            self.decoder = trainable_decoder(init_model_decoder(self.opts["init_checkpoint"], dec)).to(device)
        else:
            self.decoder = (trainable_decoder(dec) if self.opts["init_decoder"] == "pretrained"
                            else fresh_decoder(dec)).to(device)
        self.ddp_decoder = self.wrap_ddp(self.decoder)
        self.opt = torch.optim.Adam(self.decoder.parameters(), lr=config.lr)
        self.step_done = 0

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"decoder": self.decoder}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"decoder": self.opt}

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        c, s = batch["content"], batch["style"]
        self.opt.zero_grad(set_to_none=True)
        with self.autocast():
            a = swap_activations(self.encoder, c, s, self.depth, int(self.opts["patch_size"]))
            img = self.ddp_decoder(a, size=tuple(c.shape[-2:]))
            style_layers = self.style_layers if self.style_weight > 0 else []
            feats = self.encoder(img, [self.depth, *style_layers])  # one pass serves both losses
            rec = ((feats[self.depth] - a) ** 2).mean()
            tv = total_variation(img)
            total = rec + self.opts["tv_weight"] * tv
            if self.style_weight > 0:
                first_swap = c.shape[0] + s.shape[0]
                style = self.swap_style_loss({k: feats[k][first_swap:] for k in style_layers}, s)
                total = total + self.style_weight * style
        self.backward(total)
        self.optimizer_step(self.opt)
        self.step_done = step + 1
        out = {"activation": float(rec.detach()), "tv": float(tv.detach()), "total": float(total.detach())}
        if self.style_weight > 0:
            out["style"] = float(style.detach())
        return out

    def swap_style_loss(self, swapped: dict[str, torch.Tensor], paintings: torch.Tensor) -> torch.Tensor:
        """Mean/std style loss of the swapped images' features against their paintings' at ``style_layers``.

        swapped: {layer: (Q*P) x C x h x w} features of the swapped images, in the order of ``swap_activations``
        (painting j's P swaps together); paintings Q x 3 x H x W in [0, 1] -> scalar.
        """
        per = next(iter(swapped.values())).shape[0] // paintings.shape[0]
        with torch.no_grad():  # each painting encoded once, its statistics shared by its P swaps
            target = {k: v.repeat_interleave(per, dim=0) for k, v in self.encoder(paintings, self.style_layers).items()}
        return mean_std_style_loss(swapped, target, self.style_layers)

    @torch.no_grad()
    def sample(self, contents: torch.Tensor, styles: torch.Tensor | None) -> torch.Tensor:
        fc, fs = self.encoder.encode(contents, self.depth), self.encoder.encode(styles, self.depth)
        p = int(self.opts["patch_size"])
        t = torch.cat([style_swap(fc[i:i + 1], style_swap_patches(fs[i:i + 1], p)) for i in range(fc.shape[0])])
        return self.decoder(t, size=tuple(contents.shape[-2:])).clamp(0, 1)

    def _model_state(self) -> dict[str, Any]:
        return model_file("style-swap", self.backbone, self.depth, self.decoder, self.config, self.step_done)

    def state_dict(self) -> dict[str, Any]:
        return {"step_done": self.step_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_done = int(state.get("step_done", 0))
