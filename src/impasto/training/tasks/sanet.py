"""Training task ``sanet``: SANet's attention transform + decoder (Park & Lee, CVPR 2019, eq. 5-8).

Frozen encoder to relu5_1 (vgg19-16x by default: the only one reaching relu5_1 here). Trained: a
``SANetTransform(C)`` (sanet4_1, sanet5_1, merge_conv) and a decoder from relu4_1. Loss:
``L = w_c L_c + w_s L_s + l_id1 L_id1 + l_id2 L_id2`` with L_c the MSE of mean-variance-normalised relu4_1 and
relu5_1 features, L_s the mean/std loss over relu1_1..relu5_1, L_id the identity losses of I_cc and I_ss
(pixels; features relu1_1..relu5_1); SANet's weights w_c = 1, w_s = 3, l_id1 = 50, l_id2 = 1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from impasto.backbones import load_decoder, load_encoder
from impasto.decoders.vgg import VGGDecoder
from impasto.encoders.vgg import VGGEncoder
from impasto.errors import ConfigError
from impasto.losses import content_loss, edge_loss, identity_loss, mean_std_style_loss
from impasto.methods.common import load_impasto_checkpoint
from impasto.training.config import TrainConfig
from impasto.training.loop import Task, register_task
from impasto.training.tasks.common import (
    ModelFileMixin,
    check_backbone,
    cpu_state,
    fresh_decoder,
    init_model_decoder,
    model_file,
    task_options,
    trainable_decoder,
    widen_decoder,
    widen_skips,
    widened_widths,
)
from impasto.transforms.sanet import SANetTransform
from impasto.transforms.skips import SKIP_LAYERS, AdaINSkips, adain_skips, sanet_layers

LAYERS5 = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
SANET_DEFAULTS: dict[str, Any] = {
    "encoder": "vgg19-16x",
    "content_weight": 1.0,
    "style_weight": 3.0,
    "identity_pixel_weight": 50.0,
    "identity_feature_weight": 1.0,
    "init_decoder": "pretrained",
    # an impasto model file to start from: its decoder (an adain or sanet file), and its transform if it has one
    "init_checkpoint": "",
    # "passthrough": the attention blocks' out_conv start at zero and merge_conv at the identity, so the untrained
    # transform gives relu4_1 + up(relu5_1) of the content instead of random features; "default": PyTorch's init
    "init_transform": "passthrough",
    "freeze_decoder_steps": 0,  # train only the transform for this many first steps (decoder warm-up)
    "query_chunk": None,
    # the layers of the (mean-variance normalised) content loss, comma-separated: the papers' relu4_1 + relu5_1;
    # adding relu3_1 asks the output to keep finer structure of the photo
    "content_layers": "relu4_1,relu5_1",
    # widen the decoder this many times inside, keeping what it computes (Net2WiderNet; 1 = as it is): more
    # capacity than the vgg19-16x decoder's 16..64 channels. An init_checkpoint already this wide is used as it is
    "decoder_widen": 1,
    # weight of the edge loss (1 - correlation of the output's and the photo's Sobel edge maps; not in the papers,
    # 0 = off): asks the style texture to follow the photo's edges instead of covering its flat areas
    "edge_weight": 0.0,
    # skip connections (not in the papers; comma-separated layers from relu1_1..relu3_1, "" = none): the photo's
    # features at those layers, AdaIN'ed to the painting's statistics, enter the decoder at their level through
    # zero-initialised 1x1 convs (impasto.transforms.skips), so the decoder sees finer structure than relu4_1's.
    # An init_checkpoint with skips keeps its own when this is ""
    "skip_layers": "",
}
SANET_CHOICES = {"init_decoder": ("pretrained", "random"), "init_transform": ("passthrough", "default")}


class SANetGenerator(nn.Module):
    """Transform (+ skips) + decoder: ``forward(fc, fs) -> image`` from feature dicts (B x C x h x w) holding
    relu4_1, relu5_1 and the skips' layers (``layers``)."""

    def __init__(self, transform: SANetTransform, decoder: nn.Module, skips: AdaINSkips | None = None) -> None:
        super().__init__()
        self.transform = transform
        self.decoder = decoder
        self.skips = skips

    @property
    def layers(self) -> list[str]:
        """The encoder layers ``forward`` reads: the skips' and relu4_1, relu5_1."""
        return sanet_layers(self.skips)

    def forward(self, fc: dict[str, torch.Tensor], fs: dict[str, torch.Tensor],
                size: tuple[int, int] | None = None) -> torch.Tensor:
        t = self.transform(fc["relu4_1"], fs["relu4_1"], fc["relu5_1"], fs["relu5_1"])
        adds = None if self.skips is None else self.skips(adain_skips(fc, fs, self.skips.layers))
        return self.decoder(t, size=size, adds=adds)


def content_layers(opts: dict[str, Any]) -> list[str]:
    """The layers of ``opts["content_layers"]`` (comma-separated names from relu1_1..relu5_1; ConfigError if not)."""
    given = opts.get("content_layers", SANET_DEFAULTS["content_layers"])  # (refine-encoder's options lack it)
    names = [n.strip() for n in str(given).split(",") if n.strip()]
    bad = [n for n in names if n not in LAYERS5]
    if not names or bad or len(set(names)) != len(names):
        raise ConfigError(f"task_options.content_layers={given!r}: give distinct layer names "
                          f"from {', '.join(LAYERS5)} separated by commas, e.g. relu4_1,relu5_1")
    return names


def sanet_losses(generator: nn.Module, loss_encoder: VGGEncoder, content: torch.Tensor, style: torch.Tensor,
                 fc: dict[str, torch.Tensor], fs: dict[str, torch.Tensor], weights: dict[str, float],
                 identity: bool = True) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
    """SANet's generator losses (Park & Lee eq. 5-8), weighted sum in ``"total"``.

    ``fc``/``fs``: features of content/style (B x 3 x H x W in [0, 1]) at relu1_1..relu5_1 from the encoder the
    generator reads; ``loss_encoder`` (frozen) gives the output's features. Returns (terms, output image
    B x 3 x H x W, output features).
    """
    size = tuple(content.shape[-2:])
    out = generator(fc, fs, size)
    out_feats = loss_encoder(out, LAYERS5)
    lc = content_loss(out_feats, fc, normalize=True, layers=content_layers(weights))
    ls = mean_std_style_loss(out_feats, fs, layers=LAYERS5)
    terms = {"content": lc, "style": ls}
    total = weights["content_weight"] * lc + weights["style_weight"] * ls
    if float(weights.get("edge_weight", 0.0)) > 0:
        terms["edge"] = edge_loss(out, content)
        total = total + float(weights["edge_weight"]) * terms["edge"]
    if identity:
        i_cc = generator(fc, fc, size)
        i_ss = generator(fs, fs, tuple(style.shape[-2:]))
        l_id1, l_id2 = identity_loss(i_cc, i_ss, content, style, loss_encoder(i_cc, LAYERS5),
                                     loss_encoder(i_ss, LAYERS5), fc, fs, layers=LAYERS5)
        terms.update(identity_pixel=l_id1, identity_feature=l_id2)
        total = total + weights["identity_pixel_weight"] * l_id1 + weights["identity_feature_weight"] * l_id2
    terms["total"] = total
    return terms, out, out_feats


def skip_layers(opts: dict[str, Any]) -> list[str]:
    """The layers of ``opts["skip_layers"]`` (comma-separated, from relu1_1..relu3_1; "" = none; ConfigError if not)."""
    given = str(opts.get("skip_layers", ""))
    names = [n.strip() for n in given.split(",") if n.strip()]
    bad = [n for n in names if n not in SKIP_LAYERS]
    if bad or len(set(names)) != len(names):
        raise ConfigError(f"task_options.skip_layers={given!r}: give distinct layer names from "
                          f"{', '.join(SKIP_LAYERS)} separated by commas (e.g. relu3_1), or nothing for no skips")
    return sorted(names)


def passthrough_init(transform: SANetTransform) -> SANetTransform:
    """Set ``out_conv`` of both attention blocks to zero and ``merge_conv`` to the identity (centre tap), in place.

    The residual attention blocks then return their content input, so the transform starts as
    ``c4 + up(c5)``: content features the decoder can already invert, rather than random features."""
    with torch.no_grad():
        for block in (transform.sanet4_1, transform.sanet5_1):
            block.out_conv.weight.zero_()
            block.out_conv.bias.zero_()
        w = transform.merge_conv.weight
        w.zero_()
        w[:, :, 1, 1] = torch.eye(w.shape[0], dtype=w.dtype)
        transform.merge_conv.bias.zero_()
    return transform


def build_generator(encoder: str, opts: dict[str, Any], device: torch.device) -> tuple[VGGEncoder, SANetGenerator]:
    """(frozen encoder to relu5_1, trainable SANetGenerator with ``C = channels(relu4_1)``)."""
    check_backbone(encoder, "relu4_1")
    content_layers(opts)  # a bad option fails here, before any weights load
    skips = skip_layers(opts)
    if float(opts.get("edge_weight", 0.0)) < 0:
        raise ConfigError(f"task_options.edge_weight={opts['edge_weight']!r}: give a weight >= 0 (0 = no edge loss)")
    enc = load_encoder(encoder, "relu5_1", device=device)
    pretrained = load_decoder(encoder, "relu4_1")
    base = pretrained if opts["init_decoder"] == "pretrained" else fresh_decoder(pretrained)
    transform = SANetTransform(enc.channels("relu4_1"), query_chunk=opts.get("query_chunk"))
    if opts.get("init_transform", "default") == "passthrough":
        passthrough_init(transform)
    widen = int(opts.get("decoder_widen", 1))
    already = False  # the decoder is already ``widen`` times as wide
    if opts.get("init_checkpoint"):
        ck = load_impasto_checkpoint(opts["init_checkpoint"])
        # a file already this wide (e.g. IEContraAST started from a widened SANet) is used as it is
        wide = widened_widths(pretrained, widen)
        already = widen > 1 and list(ck.get("decoder_widths", [])) == wide and not ck.get("decoder_first_width")
        base = init_model_decoder(opts["init_checkpoint"], VGGDecoder(wide, pretrained.depth) if already
                                  else pretrained, ck)
        if "transform" in ck:
            try:
                transform.load_state_dict(ck["transform"], strict=True)
            except RuntimeError as exc:
                raise ConfigError(f"task_options.init_checkpoint {opts['init_checkpoint']}: its transform does "
                                  f"not fit this run's ({exc})") from None
    decoder = trainable_decoder(base) if already else widen_decoder(base, widen)
    skip_module = None
    if not skips and opts.get("init_checkpoint") and "skips" in ck:  # a model file with skips keeps them
        skips = sorted(ck["skip_channels"])
    if skips:  # built at the width of the decoder as loaded, then widened with it
        skip_module = AdaINSkips({n: (enc.channels(n), base.widths[SKIP_LAYERS.index(n)]) for n in skips})
        if opts.get("init_checkpoint") and "skips" in ck:
            try:
                skip_module.load_state_dict(ck["skips"], strict=True)
            except RuntimeError as exc:
                raise ConfigError(f"task_options.init_checkpoint {opts['init_checkpoint']}: its skips do not fit "
                                  f"this run's skip_layers={opts['skip_layers']!r} ({exc})") from None
        if not already:
            skip_module = widen_skips(skip_module, widen)
    return enc, SANetGenerator(transform, decoder, skip_module).to(device).train()


def drop_frozen_decoder_grads(generator: SANetGenerator, opts: dict[str, Any], step: int) -> None:
    """During the first ``freeze_decoder_steps`` steps, drop the decoder's gradients (Adam skips it)."""
    if step < int(opts.get("freeze_decoder_steps", 0)):
        for p in generator.decoder.parameters():
            p.grad = None


@register_task("sanet")
class SANetTask(ModelFileMixin, Task):
    """SANet training (Park & Lee 2019); options in ``SANET_DEFAULTS``."""

    method = "sanet"

    def build(self, config: TrainConfig, device: torch.device) -> None:
        self.opts = task_options(config, SANET_DEFAULTS, SANET_CHOICES)
        self.backbone = self.opts["encoder"]
        self.encoder, self.generator = build_generator(self.backbone, self.opts, device)
        self.ddp_generator = self.wrap_ddp(self.generator)
        self.opt = torch.optim.Adam(self.generator.parameters(), lr=config.lr)
        self.step_done = 0

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt}

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        c, s = batch["content"], batch["style"]
        self.opt.zero_grad(set_to_none=True)
        with self.autocast():
            with torch.no_grad():
                fc, fs = self.encoder(c, LAYERS5), self.encoder(s, LAYERS5)
            terms, _, _ = sanet_losses(self.ddp_generator, self.encoder, c, s, fc, fs, self.opts)
        self.backward(terms["total"])
        drop_frozen_decoder_grads(self.generator, self.opts, step)
        self.optimizer_step(self.opt)
        self.step_done = step + 1
        return {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def sample(self, contents: torch.Tensor, styles: torch.Tensor | None) -> torch.Tensor:
        fc = self.encoder(contents, self.generator.layers)
        fs = self.encoder(styles, self.generator.layers)
        return self.generator(fc, fs, tuple(contents.shape[-2:])).clamp(0, 1)

    def _model_state(self) -> dict[str, Any]:
        tr = self.generator.transform
        extra = {}
        if self.generator.skips is not None:
            extra = {"skips": cpu_state(self.generator.skips), "skip_channels": self.generator.skips.channels()}
        return model_file(self.method, self.backbone, "relu4_1", self.generator.decoder, self.config,
                          self.step_done, transform=cpu_state(tr),
                          transform_channels=int(tr.merge_conv.in_channels), **extra)

    def state_dict(self) -> dict[str, Any]:
        return {"step_done": self.step_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_done = int(state.get("step_done", 0))
