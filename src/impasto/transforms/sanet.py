"""Style-attentional network (SANet, Park & Lee 2019), laid out as the official SANet/IEContraAST code."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impasto.layers import reflect_pad
from impasto.transforms.stats import mean_variance_norm

__all__ = ["sanet_attention", "SANet", "SANetTransform"]


def sanet_attention(
    content: Tensor,
    style: Tensor,
    f_weight: Tensor,
    f_bias: Tensor | None,
    g_weight: Tensor,
    g_bias: Tensor | None,
    h_weight: Tensor,
    h_bias: Tensor | None,
    out_weight: Tensor,
    out_bias: Tensor | None,
    query_chunk: int | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Style attention of SANet: O = out_conv(H softmax(F^T G)^T) + content  (Park & Lee 2019, eqs. 1-2).

    F = f(mvn(content)), G = g(mvn(style)), H = h(style), with f, g, h, out_conv 1x1 convolutions given by
    their C x C x 1 x 1 weights and C biases, mvn = :func:`mean_variance_norm`, and the softmax taken over
    the style positions (no 1/sqrt(C) scaling, as in the official code).

    content: B x C x Hc x Wc; style: B x C x Hs x Ws or 1 x C x Hs x Ws (shared by the batch).
    Returns B x C x Hc x Wc. query_chunk: number of content positions attended at once (None = all);
    bounds the Hc*Wc x Hs*Ws attention matrix to query_chunk x Hs*Ws per sample, same result.
    """
    if content.dim() != 4 or style.dim() != 4:
        raise ValueError(
            f"content and style must be B x C x H x W, got {tuple(content.shape)} and {tuple(style.shape)}"
        )
    if style.shape[1] != content.shape[1] or style.shape[0] not in (1, content.shape[0]):
        raise ValueError(
            f"style {tuple(style.shape)} must have the content's channels and batch size 1 or "
            f"{content.shape[0]} (content {tuple(content.shape)})"
        )
    if query_chunk is not None and query_chunk < 1:
        raise ValueError(f"query_chunk must be a positive integer or None, got {query_chunk!r}")
    b, c, hc, wc = content.shape
    q = F.conv2d(mean_variance_norm(content, eps), f_weight, f_bias).flatten(2).transpose(1, 2)  # B x Nc x C
    k = F.conv2d(mean_variance_norm(style, eps), g_weight, g_bias).flatten(2)  # b' x C x Ns
    v = F.conv2d(style, h_weight, h_bias).flatten(2).transpose(1, 2)  # b' x Ns x C
    if k.shape[0] != b:
        k, v = k.expand(b, -1, -1), v.expand(b, -1, -1)
    n = q.shape[1]
    step = n if query_chunk is None else query_chunk
    outs = [torch.softmax(q[:, i : i + step] @ k, dim=-1) @ v for i in range(0, n, step)]
    o = (outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)).transpose(1, 2).reshape(b, c, hc, wc)
    return F.conv2d(o, out_weight, out_bias) + content


class SANet(nn.Module):
    """One style-attention block; parameters named like the official ``SANet`` (f, g, h, out_conv).

    forward(content B x C x H x W, style B|1 x C x H' x W') -> B x C x H x W; see :func:`sanet_attention`.
    """

    def __init__(self, channels: int = 512, query_chunk: int | None = None) -> None:
        super().__init__()
        self.f = nn.Conv2d(channels, channels, 1)
        self.g = nn.Conv2d(channels, channels, 1)
        self.h = nn.Conv2d(channels, channels, 1)
        self.out_conv = nn.Conv2d(channels, channels, 1)
        self.query_chunk = query_chunk

    def forward(self, content: Tensor, style: Tensor) -> Tensor:
        return sanet_attention(
            content,
            style,
            self.f.weight,
            self.f.bias,
            self.g.weight,
            self.g.bias,
            self.h.weight,
            self.h.bias,
            self.out_conv.weight,
            self.out_conv.bias,
            query_chunk=self.query_chunk,
        )


class SANetTransform(nn.Module):
    """SANet at relu4_1 and relu5_1, merged: merge_conv(pad(sanet4_1(c4, s4) + up(sanet5_1(c5, s5)))).

    Keys of state_dict() match the official ``transformer_iter_N.pth``: ``sanet4_1.{f,g,h,out_conv}``,
    ``sanet5_1.{...}`` (1x1 convs C->C) and ``merge_conv`` (3x3 conv C->C after reflection padding 1).
    channels: 512 for the official VGG-19, 128 for the 16x-distilled encoder. ``up`` is nearest upsampling
    to relu4_1's size (the official scale_factor=2 for even sizes; also handles odd sizes).
    forward(c4 B x C x H x W, s4, c5 B x C x H/2 x W/2, s5) -> B x C x H x W (style batch B or 1).
    """

    def __init__(self, channels: int = 512, query_chunk: int | None = None) -> None:
        super().__init__()
        self.sanet4_1 = SANet(channels, query_chunk)
        self.sanet5_1 = SANet(channels, query_chunk)
        self.merge_conv = nn.Conv2d(channels, channels, 3)

    @property
    def query_chunk(self) -> int | None:
        return self.sanet4_1.query_chunk

    @query_chunk.setter
    def query_chunk(self, value: int | None) -> None:
        self.sanet4_1.query_chunk = value
        self.sanet5_1.query_chunk = value

    def forward(self, content4_1: Tensor, style4_1: Tensor, content5_1: Tensor, style5_1: Tensor) -> Tensor:
        o4 = self.sanet4_1(content4_1, style4_1)
        o5 = F.interpolate(self.sanet5_1(content5_1, style5_1), size=o4.shape[-2:], mode="nearest")
        return self.merge_conv(reflect_pad(o4 + o5, 1))
