"""Decoders that mirror a VGG-topology encoder from ``reluK_1`` back to RGB.

The mirror of encoder conv ``convB_J`` maps its output width back to its input width; nearest 2x upsampling
follows the mirror of every ``convB_1`` with B > 1 (where the encoder pooled). Reflection padding 1 before each
3x3 conv, ReLU after each but the last. This is the layout of the official AdaIN ``decoder.pth``, the WCT
reconstruction decoders, LinearStyleTransfer's decoders and the distilled ``kSD`` decoders.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from impasto.encoders.vgg import VGG19_WIDTHS, _block, conv_names, rename_convs
from impasto.errors import WeightsError
from impasto.layers import (
    as_channels_last,
    conv2d,
    derived_weights,
    fold_input_affine,
    in_autocast_dtype,
    phase_input_weight,
    reflect_conv2d,
    reflect_pad,
    upsample_conv2d,
    upsample_conv2d_pair,
    upsample_phase_taps,
    upsample_phase_weight,
)


def _in_width(name: str, widths: Sequence[int], first_width: int | None) -> int:
    """Input width of encoder conv ``name`` (= output width of its mirror)."""
    b, j = _block(name)
    if (b, j) == (1, 1):
        return 3
    if j == 1:
        return widths[b - 2]
    if first_width and b == 1:
        return first_width
    return widths[b - 1]


class VGGDecoder(nn.Module):
    """Decoder from ``depth`` (e.g. ``relu4_1``) features B x C x h x w to an RGB image B x 3 x H x W.

    Output is not clamped (values near [0, 1]); ``forward`` optionally crops to ``size``.
    """

    def __init__(
        self, widths: Sequence[int] = VGG19_WIDTHS, depth: str = "relu3_1", first_width: int | None = None
    ) -> None:
        super().__init__()
        self.depth = depth
        self.widths = tuple(widths)
        self.convs = nn.ModuleDict()
        for name in reversed(conv_names(depth)):
            b, j = _block(name)
            out_w = first_width if (first_width and (b, j) == (1, 1)) else widths[b - 1]
            self.convs[name] = nn.Conv2d(out_w, _in_width(name, widths, first_width), 3)
        self.in_channels = next(iter(self.convs.values())).in_channels

    def forward(
        self,
        feat: torch.Tensor,
        size: tuple[int, int] | None = None,
        in_affine: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Decode features; if ``size`` (H, W) is given, the output is resized/cropped to exactly that size.

        ``in_affine`` = (A, c) (C x C and C) decodes ``A f + c`` (per pixel) instead of ``feat``, with A and c folded
        into the first conv's weights and bias (exact: reflection padding commutes with a per-pixel map), so the
        transformed features are never written (WCT: :func:`impasto.transforms.wct.wct_affine`).
        """
        # channels-last, as in the encoder: the 3x3 convs and reflection pads run 1.3-1.8x faster on CPU
        # (benchmarks/README.md); values are unchanged
        h = as_channels_last(feat)
        if h.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            h = h.to(torch.get_autocast_dtype("cpu"))  # before the pad: the first conv would cast the padded copy
        n = len(self.convs)
        fast = h.device.type == "cpu" and not torch.is_grad_enabled()
        upsampled = False  # h still has to be up-sampled (2x nearest) before the next conv
        padded = False  # h is already reflection-padded by 1 for the next conv
        for i, (name, conv) in enumerate(self.convs.items()):
            last = i == n - 1
            weight, bias = conv.weight, conv.bias
            if i == 0 and in_affine is not None:
                weight, bias = fold_input_affine(weight, bias, *in_affine)
            fuse = fast and upsampled and not last  # CPU inference: up-sampling, padding and conv as one conv
            if upsampled and not fuse:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            if fuse:
                h, weight, bias = in_autocast_dtype(h, weight, bias)
                taps = 2 if i == n - 2 else upsample_phase_taps(h)  # the pair below runs the compact form
                phase = derived_weights(  # the phase kernels, kept until the parameters change
                    (conv.weight, conv.bias), ("nearest", h.dtype, taps),
                    partial(upsample_phase_weight, weight, bias, taps=taps),
                )
            if fuse and i == n - 2:  # the up-sampling conv and the conv to RGB as one step (impasto.layers)
                final = list(self.convs.values())[-1]
                _, weight2, bias2 = in_autocast_dtype(h, final.weight, final.bias)
                phase2 = derived_weights(
                    (final.weight, final.bias), ("phase input", h.dtype), partial(phase_input_weight, weight2, bias2)
                )
                h = upsample_conv2d_pair(h, weight, bias, weight2, bias2, phase, phase2, dtype=feat.dtype)
                upsampled = False  # done: the loop stops before its last conv, which the pair ran
                break
            if fuse:
                b, j = _block(name)
                padded = not (j == 1 and b > 1)  # the next conv (not the last: see the pair above) reads it padded
                h = upsample_conv2d(h, weight, bias, relu=True, phase=phase, pad_output=padded)
            elif fast and padded:  # the up-sampling conv wrote the reflection-padded map
                h = conv2d(*in_autocast_dtype(h, weight, bias), relu=not last)
                padded = False
            elif fast:  # CPU inference: ReLU fused, no padded copy, the conv to RGB unrolled (impasto.layers)
                h = reflect_conv2d(*in_autocast_dtype(h, weight, bias), relu=not last, narrow=last)
            else:  # the module itself (hooks, autocast, gradients), or the folded weights through F.conv2d
                h = conv(reflect_pad(h, 1)) if weight is conv.weight else F.conv2d(reflect_pad(h, 1), weight, bias)
                h = h if last else F.relu(h, inplace=True)
            b, j = _block(name)
            upsampled = j == 1 and b > 1
        if upsampled:  # a decoder ending on an up-sampling (never for VGG mirrors, whose last conv is conv1_1's)
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        if size is not None and tuple(h.shape[-2:]) != tuple(size):
            h = _fit(h, size)
        h = h.contiguous()  # the 3-channel image back in the default layout (cheap; callers may .view() it)
        return h if h.dtype == feat.dtype else h.to(feat.dtype)  # bf16 autocast: back to the input's dtype


def _fit(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop (encoder ceil-mode pooling can add a row/column) or resize to exactly ``size``."""
    H, W = size
    if img.shape[-2] >= H and img.shape[-1] >= W:
        return img[..., :H, :W]
    return F.interpolate(img, size=(H, W), mode="bilinear", align_corners=False)


def _sequential_decoder_indices(depth: str) -> dict[str, int]:
    """Index of each conv in the official decoder ``nn.Sequential`` (pad, conv, relu[, upsample])."""
    idx = {}
    i = 1
    for name in reversed(conv_names(depth)):
        idx[name] = i
        b, j = _block(name)
        i += 3 + (1 if (j == 1 and b > 1) else 0)
    return idx


def convert_sequential_decoder(sd: dict[str, torch.Tensor], depth: str) -> dict[str, torch.Tensor]:
    """Map official decoder keys (AdaIN ``decoder.pth``: ``1,5,8,11,14,18,21,25,28``; WCT r31: ``1,5,8,12,15``)."""
    keys = {name: str(i) for name, i in _sequential_decoder_indices(depth).items()}
    return rename_convs(sd, keys, "decoder", f"; is it a {depth} decoder?")


def convert_lst_decoder(sd: dict[str, torch.Tensor], depth: str) -> dict[str, torch.Tensor]:
    """Map LinearStyleTransfer decoder keys (dec_r31: ``conv7..conv11``; dec_r41: ``conv11..conv19``)."""
    names = list(reversed(conv_names(depth)))
    first = {"relu3_1": 7, "relu4_1": 11}.get(depth)
    if first is None:
        raise WeightsError(f"no LinearStyleTransfer decoder format for depth {depth}")
    keys = {name: f"conv{k}" for k, name in enumerate(names, start=first)}
    return rename_convs(sd, keys, "LinearStyleTransfer decoder")


def convert_cd16x_decoder(sd: dict[str, torch.Tensor], depth: str) -> dict[str, torch.Tensor]:
    """Map Collaborative Distillation decoder keys (``conv41``, ``conv34``, ... ``conv11``) to impasto names."""
    return rename_convs(sd, {name: name.replace("_", "") for name in conv_names(depth)}, "distilled decoder")
