"""The ``fused`` backend: CPU inference forwards of impasto's networks built from the exact faster kernels.

Each function here is the inference form of one module's plain ``forward`` (same arguments, same values up to
float rounding; tests/accel compares them): ReLU fused into oneDNN's convolution, no padded copies, the
up-sampling and the conv after it as one conv of the low-resolution map, bf16 colour conv folded into conv1_1,
MicroAST's grouped and narrow convs in their fast forms (:mod:`impasto.accel.kernels`). :func:`prepare` installs
them on a module's instances; with autograd on or off the CPU they run the module's own forward.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impasto.accel.kernels import (
    amx_16bit,
    block_diagonal_weight,
    conv2d,
    derived_weights,
    grouped_conv2d,
    halves_order,
    in_autocast_dtype,
    max_pool2x,
    narrow_conv2d,
    phase_input_weight,
    reflect_conv,
    reflect_conv2d,
    reflect_conv2d_stride2,
    upsample_bilinear2x,
    upsample_conv2d,
    upsample_conv2d_pair,
    upsample_phase_taps,
    upsample_phase_weight,
)
from impasto.decoders.vgg import VGGDecoder, _fit, add_skip, skip_at
from impasto.encoders.vgg import VGGEncoder, _block
from impasto.layers import Upsample, as_channels_last, fold_input_affine, reflect_pad
from impasto.models.microast import (
    EPS,
    MicroASTDecoder,
    MicroASTEncoder,
    MicroASTStyle,
    ReflectConv,
    ResBlock,
    adain,
    modulated_residual,
)


def _cpu_inference(x: Tensor) -> bool:
    return x.device.type == "cpu" and not torch.is_grad_enabled()


# ----------------------------------------------------------------------------------------------------------------
# VGG encoder and decoder
# ----------------------------------------------------------------------------------------------------------------
def vgg_encoder_forward(self: VGGEncoder, x: Tensor, layers: Iterable[str] | None = None) -> dict[str, Tensor]:
    """:meth:`VGGEncoder.forward` for CPU inference: ReLU fused, no padded copies, indices-free pooling; under bf16
    autocast the 1x1 colour conv is folded into conv1_1 (no pass over the image; relative error 2-5e-3 against
    float32, as the plain path's)."""
    if not _cpu_inference(x):
        return type(self).forward(self, x, layers)
    wanted = set(layers) if layers is not None else {self.depth}
    self._check_layers(wanted)
    out: dict[str, Tensor] = {}
    fold = torch.is_autocast_enabled("cpu")
    h = as_channels_last(x)
    if not fold:
        h = self.conv0(h)
    block = 1
    for i, (name, conv) in enumerate(self.convs.items()):
        if len(out) == len(wanted):
            break
        if _block(name)[0] != block:
            h = max_pool2x(h)
            block = _block(name)[0]
        if i == 0 and fold:
            weight, bias = fold_input_affine(conv.weight, conv.bias, self.conv0.weight[:, :, 0, 0], self.conv0.bias)
            h = reflect_conv2d(*in_autocast_dtype(h, weight, bias), relu=True)
        else:
            h = reflect_conv(conv, h, relu=True)
        relu = name.replace("conv", "relu")
        if relu in wanted:
            out[relu] = h if h.dtype == x.dtype else h.to(x.dtype)
    return out


def vgg_decoder_forward(
    self: VGGDecoder, feat: Tensor, size: tuple[int, int] | None = None,
    in_affine: tuple[Tensor, Tensor] | None = None, adds: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """:meth:`VGGDecoder.forward` for CPU inference: each nearest up-sampling, its padding and the next conv as one
    conv of the low-resolution map (:func:`~impasto.accel.kernels.upsample_conv2d`), the last up-sampling conv and
    the conv to RGB as one pair, ReLU fused, no padded copies. A level that takes a skip (``adds``) is up-sampled
    explicitly, the skip added and its conv run on its own (a fused up-sampling conv never holds the up-sampled map
    that a skip is added to); the other levels stay fused."""
    if not _cpu_inference(feat):
        return type(self).forward(self, feat, size, in_affine, adds)
    h = as_channels_last(feat)
    if torch.is_autocast_enabled("cpu"):
        h = h.to(torch.get_autocast_dtype("cpu"))  # before the pad: the first conv would cast the padded copy
    convs = list(self.convs.items())
    n = len(convs)
    upsampled = False  # h still has to be up-sampled (2x nearest) before the next conv
    padded = False  # h is already reflection-padded by 1 for the next conv
    skip = None  # the skip added where h is up-sampled (VGGDecoder.forward: just after the up-sampling)
    for i, (name, conv) in enumerate(convs):
        last = i == n - 1
        weight, bias = conv.weight, conv.bias
        if i == 0 and in_affine is not None:
            weight, bias = fold_input_affine(weight, bias, *in_affine)
        fuse = upsampled and not last and skip is None  # up-sampling, padding and conv as one conv
        if upsampled and not fuse:
            h = add_skip(F.interpolate(h, scale_factor=2, mode="nearest"), skip)
        if fuse:
            h, weight, bias = in_autocast_dtype(h, weight, bias)
            taps = 2 if i == n - 2 else upsample_phase_taps(h)  # the pair below runs the compact form
            phase = derived_weights(  # the phase kernels, kept until the parameters change
                conv, (conv.weight, conv.bias), ("nearest", h.dtype, taps),
                partial(upsample_phase_weight, weight, bias, taps=taps),
            )
            if i == n - 2:  # the up-sampling conv and the conv to RGB as one step
                final = convs[-1][1]
                _, weight2, bias2 = in_autocast_dtype(h, final.weight, final.bias)
                phase2 = derived_weights(
                    final, (final.weight, final.bias), ("phase input", h.dtype),
                    partial(phase_input_weight, weight2, bias2),
                )
                h = upsample_conv2d_pair(h, weight, bias, weight2, bias2, phase, phase2, dtype=feat.dtype)
                upsampled = False
                break
            b, j = _block(name)
            padded = not (j == 1 and b > 1)  # the next conv (not the last: see the pair above) reads it padded
            h = upsample_conv2d(h, weight, bias, relu=True, phase=phase, pad_output=padded)
        elif padded:  # the up-sampling conv wrote the reflection-padded map
            h = conv2d(*in_autocast_dtype(h, weight, bias), relu=not last)
            padded = False
        else:  # ReLU fused, no padded copy, the conv to RGB unrolled
            h = reflect_conv2d(*in_autocast_dtype(h, weight, bias), relu=not last, narrow=last)
        b, j = _block(name)
        upsampled = j == 1 and b > 1
        skip = skip_at(adds, b) if upsampled else None
    if upsampled:  # a decoder ending on an up-sampling (never for VGG mirrors, whose last conv is conv1_1's)
        h = F.interpolate(h, scale_factor=2, mode="nearest")
    if size is not None and tuple(h.shape[-2:]) != tuple(size):
        h = _fit(h, size)
    h = h.contiguous()
    return h if h.dtype == feat.dtype else h.to(feat.dtype)


# ----------------------------------------------------------------------------------------------------------------
# MicroAST
# ----------------------------------------------------------------------------------------------------------------
def reflect_conv_forward(
    self: ReflectConv, x: Tensor, halves_in: bool = False, halves_out: bool = False, relu: bool = False,
    scale: Tensor | None = None, skip: Tensor | None = None, padded: bool = False,
) -> Tensor:
    """:meth:`ReflectConv.forward` for CPU inference, then ReLU if ``relu``.

    ``halves_in``/``halves_out``: x / the output hold their channels in :func:`~impasto.accel.kernels.halves_order`
    (the input order of the fast 2-channels-per-group conv); ``scale`` and ``skip`` (C values, for a conv with C
    inputs and outputs) turn the conv into ``scale * conv(x) + skip * x``, with both folded into the weights
    (MicroAST's filter modulation: the skip term is an identity tap at the kernel centre, which never reads the
    padding); ``padded``: x is already reflection-padded (grouped and 3-output convs).
    """
    conv = self.conv_layer
    if not _cpu_inference(x):
        if halves_in or halves_out or scale is not None or skip is not None or padded:
            raise ValueError("ReflectConv: halves/scale/skip/padded are for CPU inference only")
        out = type(self).forward(self, x)
        return F.relu(out) if relu else out
    weight, bias = conv.weight, conv.bias
    if scale is not None:
        weight, bias = weight * scale.reshape(-1, 1, 1, 1), None if bias is None else bias * scale.reshape(-1)
    if skip is not None:
        idx = torch.arange(weight.shape[0], device=weight.device)
        weight = weight.clone() if scale is None else weight
        weight[idx, idx, self.pad, self.pad] += skip.reshape(-1).to(weight.dtype)
    if halves_out:
        order = halves_order(conv.out_channels).to(weight.device)
        weight, bias = weight.index_select(0, order), None if bias is None else bias.index_select(0, order)
    x, weight, bias = in_autocast_dtype(x, weight, bias)
    pad = 0 if padded else self.pad
    if conv.groups > 1 and conv.stride == (2, 2) and not (padded or halves_in) and self.pad == 1:
        return reflect_conv2d_stride2(x, weight, bias, conv.groups, relu=relu)
    if conv.groups > 1:
        return grouped_conv2d(reflect_pad(x, pad), weight, bias, conv.stride[0], conv.groups, halves_in, relu)
    if conv.out_channels <= 4 and conv.stride == (1, 1):
        out = narrow_conv2d(x, weight, bias) if padded else reflect_conv2d(x, weight, bias, narrow=True)
        return F.relu(out, inplace=True) if relu else out
    if conv.stride == (1, 1):
        return reflect_conv2d(x, weight, bias, relu=relu)
    return conv2d(reflect_pad(x, pad), weight, bias, conv.stride[0], relu=relu)


def upsample_reflect_conv(rc: ReflectConv, x: Tensor, relu: bool = False) -> Tensor:
    """2x bilinear up-sampling of x, then ``rc`` (3x3 stride 1; ReLU if ``relu``), as one dense conv of the
    low-resolution map (:func:`~impasto.accel.kernels.upsample_conv2d`; a grouped conv with its block-diagonal
    weight). CPU inference; B x Cin x h x w -> B x Cout x 2h x 2w, channels-last."""
    conv = rc.conv_layer

    def build() -> tuple[Tensor, ...]:
        weight = block_diagonal_weight(conv.weight, conv.groups) if conv.groups > 1 else conv.weight
        _, weight, bias = in_autocast_dtype(x, weight, conv.bias)
        return (weight, bias, *upsample_phase_weight(weight, bias, "bilinear"))

    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    weight, bias, phase_w, phase_b = derived_weights(rc, (conv.weight, conv.bias), ("bilinear", dtype), build)
    x = x.to(weight.dtype)
    return upsample_conv2d(x, weight, bias, relu=relu, mode="bilinear", phase=(phase_w, phase_b))


def resblock_forward(self: ResBlock, x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
    """:meth:`ResBlock.forward` for CPU inference with one style: the modulation folded into the convs
    (:func:`reflect_conv_forward`'s scale and skip), 2 passes over the map instead of 9."""
    if not _cpu_inference(x) or (weight is not None and weight.shape[0] != 1):
        return modulated_residual(x, self.conv1, self.conv2, weight, bias)
    modulated = weight is not None and bias is not None
    scale, skip = (weight, bias) if modulated else (None, None)
    out = self.conv2(self.conv1(x, relu=True, scale=scale, skip=skip), scale=scale, skip=skip)
    return out.add_(x) if out.dtype == x.dtype else x + out


def _run_fused(layers: nn.Sequential, x: Tensor) -> Tensor:
    """Run a Sequential of ReflectConv / ReLU / other modules, each ReLU fused into the ReflectConv before it."""
    mods = list(layers)
    i = 0
    while i < len(mods):
        fuse = isinstance(mods[i], ReflectConv) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.ReLU)
        x = mods[i](x, relu=True) if fuse else mods[i](x)
        i += 2 if fuse else 1
    return x


def microast_encoder_forward(self: MicroASTEncoder, x: Tensor) -> tuple[Tensor, Tensor]:
    """:meth:`MicroASTEncoder.forward` for CPU inference (ReLUs fused into the convs)."""
    if not _cpu_inference(x):
        return type(self).forward(self, x)
    f1 = _run_fused(self.enc1, x)
    return f1, self.enc2(f1)


def adain_inference(content: Tensor, style_mean: Tensor, style_std: Tensor, eps: float = EPS) -> Tensor:
    """:func:`impasto.models.microast.adain` for 16-bit channels-last maps: statistics and result on one float32
    copy, centred in place (6 passes over the map instead of 10; the same two-pass float32 statistics). The sum of
    squares, not linalg.vector_norm: ATen's norm reduces over the strided pixel dimension without vectorising
    (about 8x slower; benchmarks/README.md)."""
    b, c, h, w = content.shape
    low = content.dtype in (torch.bfloat16, torch.float16)
    if not low or not content.is_contiguous(memory_format=torch.channels_last) or c == 1:
        return adain(content, style_mean, style_std, eps)
    x = content.float()
    flat = x.permute(0, 2, 3, 1).view(b, h * w, c)
    flat.sub_(flat.mean(dim=1, keepdim=True))
    var = flat.square().sum(dim=1) / max(h * w - 1, 1)
    scale = style_std / (var + eps).sqrt().reshape(b, c, 1, 1)
    return torch.addcmul(style_mean.expand(b, c, 1, 1), x, scale.to(x.dtype), out=x).to(content.dtype)


def microast_decoder_forward(self: MicroASTDecoder, c2: Tensor, style: MicroASTStyle, alpha: float = 1.0) -> Tensor:
    """:meth:`MicroASTDecoder.forward` for CPU inference: the modulated blocks as two convs each, the grouped convs
    of the up-sampling tail in their fast forms (bf16 with AMX: each bilinear up-sampling and the conv after it as
    one dense conv of the low-resolution map)."""
    if not _cpu_inference(c2):
        return type(self).forward(self, c2, style, alpha)
    z = self.stylize_features(c2, style, alpha, adain_fn=adain_inference)
    up1, conv1, _, conv2, _, up2, conv3, _, conv4, _, conv5 = self.dec3
    if amx_16bit(z):  # faster with AMX only (benchmarks/README.md, item 27)
        h = upsample_reflect_conv(conv1, z, relu=True)
        h = upsample_reflect_conv(conv3, conv2(h, relu=True), relu=True)
        return conv5(conv4(h, relu=True))
    # the same layers with the grouped convs' inputs in halves order (see reflect_conv_forward), by a strided copy
    # in channels-last memory (an index_select on dim 1 returned a channels-first map; along the last dim it was 3x
    # slower); each up-sampling writes into the reflection-padded buffer that the next conv reads (no pad pass)
    b, c, hh, ww = z.shape
    h = as_channels_last(z).permute(0, 2, 3, 1).reshape(b, hh, ww, c // 2, 2).transpose(3, 4)
    h = h.reshape(b, hh, ww, c).permute(0, 3, 1, 2)  # halves_order(c): channel 2g + k at position k * c/2 + g
    h = conv1(upsample_bilinear2x(h, pad=conv1.pad), halves_in=True, relu=True, padded=True)
    h = conv2(h, halves_out=True, relu=True)
    h = conv3(upsample_bilinear2x(h, pad=conv3.pad), halves_in=True, relu=True, padded=True)
    return conv5(conv4(h, relu=True))


def upsample_forward(self: Upsample, x: Tensor) -> Tensor:
    """:class:`impasto.layers.Upsample` with 2x bilinear (half-pixel) up-sampling by
    :func:`~impasto.accel.kernels.upsample_bilinear2x` (ATen's kernel runs at a sixth of the memory speed on
    channels-last bf16)."""
    if (
        _cpu_inference(x) and self.mode == "bilinear" and not self.align_corners and self.size is None
        and self.scale_factor in (2, 2.0, (2.0, 2.0)) and x.dim() == 4
    ):
        return upsample_bilinear2x(x)
    return type(self).forward(self, x)


#: module class -> its inference forward (subclasses use their nearest registered base's)
FORWARDS: dict[type[nn.Module], Callable[..., Any]] = {
    VGGEncoder: vgg_encoder_forward,
    VGGDecoder: vgg_decoder_forward,
    ReflectConv: reflect_conv_forward,
    ResBlock: resblock_forward,
    MicroASTEncoder: microast_encoder_forward,
    MicroASTDecoder: microast_decoder_forward,
    Upsample: upsample_forward,
}


def forward_for(module: nn.Module) -> Callable[..., Any] | None:
    """The fused forward for ``module``'s class (or its nearest registered base class), None if none."""
    for cls in type(module).__mro__:
        if cls in FORWARDS:
            return FORWARDS[cls]
    return None


def prepare(module: nn.Module) -> int:
    """Install the fused forwards on ``module`` and its submodules (in place, like ``nn.Module.compile``); returns
    how many modules got one. :func:`impasto.accel.prepare` with backend ``eager`` removes them."""
    count = 0
    for m in module.modules():
        fwd = forward_for(m)
        if fwd is not None and "forward" not in m.__dict__:
            m.forward = types.MethodType(fwd, m)
            count += 1
    return count
