"""Decoders that mirror a VGG-topology encoder from ``reluK_1`` back to RGB.

The mirror of encoder conv ``convB_J`` maps its output width back to its input width; nearest 2x upsampling
follows the mirror of every ``convB_1`` with B > 1 (where the encoder pooled). Reflection padding 1 before each
3x3 conv, ReLU after each but the last. This is the layout of the official AdaIN ``decoder.pth``, the WCT
reconstruction decoders, LinearStyleTransfer's decoders and the distilled ``kSD`` decoders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from impasto.encoders.vgg import VGG19_WIDTHS, _block, conv_names, rename_convs
from impasto.errors import WeightsError
from impasto.layers import as_channels_last, fold_input_affine, reflect_pad, upsample_nearest2x


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
        adds: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Decode features; if ``size`` (H, W) is given, the output is resized/cropped to exactly that size.

        ``adds`` = {``reluB_1``: B x C_B x h_B x w_B}: added to the decoder's map where it reaches level B (just
        after the up-sampling into it; C_B = ``widths[B-1]``), cropped or zero-padded at the bottom/right to that
        map's size (skip connections: :class:`impasto.transforms.skips.AdaINSkips`).

        ``in_affine`` = (A, c) (C x C and C) decodes ``A f + c`` (per pixel) instead of ``feat``, with A and c folded
        into the first conv's weights and bias (exact: reflection padding commutes with a per-pixel map), so the
        transformed features are never written (WCT: :func:`impasto.transforms.wct.wct_affine`). Under autocast the
        convs run in its dtype and the image is returned in feat's dtype. Faster forms: :mod:`impasto.accel`.
        """
        h = as_channels_last(feat)  # channels-last: oneDNN's 3x3 convs run faster (values unchanged)
        last = list(self.convs)[-1]
        for i, (name, conv) in enumerate(self.convs.items()):
            if i == 0 and in_affine is not None:
                h = F.conv2d(reflect_pad(h, 1), *fold_input_affine(conv.weight, conv.bias, *in_affine))
            else:
                h = conv(reflect_pad(h, 1))
            if name != last:
                h = F.relu(h, inplace=True)
            b, j = _block(name)
            if j == 1 and b > 1:  # the mirror of a conv that followed a pooling
                h = upsample_nearest2x(h)
                h = add_skip(h, skip_at(adds, b))
        if size is not None and tuple(h.shape[-2:]) != tuple(size):
            h = _fit(h, size)
        return h.contiguous().to(feat.dtype)  # the image in the default layout (callers may .view() it)


def skip_at(adds: Mapping[str, torch.Tensor] | None, block: int) -> torch.Tensor | None:
    """The map of ``adds`` that joins the decoder where it up-samples out of block ``block`` (``relu{block-1}_1``)."""
    return adds.get(f"relu{block - 1}_1") if adds else None


def add_skip(h: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
    """``h`` plus ``skip`` fitted to its size (:func:`fit_map`) and dtype; ``h`` itself without a skip."""
    return h if skip is None else h + fit_map(skip, tuple(h.shape[-2:])).to(h.dtype)


def fit_map(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B x C x h x w cropped, or zero-padded at the bottom and right, to exactly ``size`` (an encoder map against the
    decoder's up-sampled map of the same level: they differ by a row or column where ceil-mode pooling rounded)."""
    H, W = size
    x = x[..., :H, :W]
    # no test of the shapes: the exported ONNX graph (impasto.export) keeps this for any size; a zero pad is a copy
    return F.pad(x, (0, W - x.shape[-1], 0, H - x.shape[-2]))


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
