"""Faster exact forms of the ops that oneDNN/ATen run far below the machine's convolution rate on CPU.

The kernels of the ``fused`` backend (:mod:`impasto.accel.fused`): each gives the values of the plain op of
:mod:`impasto.layers` (tests/accel/test_accel_kernels.py compares them), some through oneDNN's fused convolution
(``torch.ops.mkldnn._convolution_pointwise``, what torch.compile's CPU backend emits) and with size thresholds
measured on the CPUs in benchmarks/README.md ("Kernel measurements"). Model code never imports this module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impasto.layers import _autocast_off, as_channels_last, reflect_pad


def narrow_conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, unroll: int | None = None, padding: int = 0
) -> Tensor:
    """A stride-1, unpadded conv with few output channels (e.g. a decoder's last conv to RGB), computed faster.

    x: B x Cin x H' x W' (already padded); weight: Cout x Cin x kh x kw; returns B x Cout x (H'-kh+1) x
    (W'-kw+1), the values of ``F.conv2d(x, weight, bias)``. oneDNN computes 16 output channels at a time, so a
    conv to 3 channels costs as much as one to 16 (measured: 16->3 3x3 at 1024 px takes as long as 16->16).
    Here ``unroll`` neighbouring output columns become channels: one conv with ``unroll * Cout`` outputs,
    kernel kh x (kw + unroll - 1) and column stride ``unroll``, whose channels-last output is already the
    B x H x W x Cout image (no copy when the width is a multiple of ``unroll``): at 1024 px in bf16 MicroAST's 9x9
    16->3 conv runs in about a third of the time, a 3x3 16->3 conv in two thirds. The output is channels-last.
    ``unroll`` defaults to the fastest measured: 5 for kernels 7 wide and more, 4 for smaller ones (6 and 8 were
    slower for both; numbers in benchmarks/README.md, "Kernel measurements"). ``padding``: zeros on
    every side, as in ``F.conv2d`` (:func:`reflect_conv2d` fixes the border for reflection padding).
    """
    cout, _, kh, kw = weight.shape
    unroll = unroll or (5 if kw >= 7 else 4)
    b, _, hp, wp = x.shape
    h, w = hp + 2 * padding - kh + 1, wp + 2 * padding - kw + 1
    wide = weight.new_zeros(unroll * cout, weight.shape[1], kh, kw + unroll - 1)
    for d in range(unroll):
        wide[d * cout : (d + 1) * cout, :, :, d : d + kw] = weight
    wide = wide.contiguous(memory_format=torch.channels_last)
    wide_bias = None if bias is None else bias.repeat(unroll)
    rem = w % unroll
    if rem and not padding and w > unroll:
        # width not a multiple of unroll: the unrolled conv on the first w - rem output columns, the last rem by
        # the plain conv of a thin strip (faster than the zero-column form below; benchmarks/README.md)
        main = w - rem
        x_cl = x.contiguous(memory_format=torch.channels_last)
        z = F.conv2d(x_cl, wide, wide_bias, stride=(1, unroll))  # main // unroll columns (no sliced copy of x)
        out = torch.empty(b, h, w, cout, dtype=z.dtype, device=z.device)
        out[:, :, :main] = z.permute(0, 2, 3, 1).reshape(b, h, main, cout)
        out[:, :, main:] = F.conv2d(x_cl[..., main:], weight, bias).permute(0, 2, 3, 1)
        return out.permute(0, 3, 1, 2)
    # width not a multiple of unroll with zero padding: zero columns on both sides, the first ``unroll`` output
    # columns and those past w are discarded (otherwise the slice and the final contiguous() are no-ops)
    pad = 0 if rem == 0 else unroll
    z = F.conv2d(
        x.contiguous(memory_format=torch.channels_last), wide, wide_bias, stride=(1, unroll),
        padding=(padding, padding + pad),
    )
    z = z.contiguous(memory_format=torch.channels_last)
    out = z.permute(0, 2, 3, 1).reshape(b, h, -1, cout)[:, :, pad : pad + w]
    return out.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def in_autocast_dtype(x: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """x, weight and bias cast to the autocast dtype when autocast is on for x's device, as ``nn.Conv2d`` would be
    (for the functional conv forms above, which take their weights explicitly); unchanged otherwise."""
    if not torch.is_autocast_enabled(x.device.type):
        return x, weight, bias
    dtype = torch.get_autocast_dtype(x.device.type)
    return x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)


def halves_order(channels: int) -> Tensor:
    """Channel permutation that puts the channels (2g + k) of pairs g in the order (k, g): all even, then all odd.

    ``x.index_select(1, halves_order(C))`` is the input :func:`grouped_conv2d` takes with ``halves=True``.
    """
    return torch.arange(channels).reshape(-1, 2).T.reshape(-1)


def grouped_conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, groups: int, halves: bool = False,
    relu: bool = False,
) -> Tensor:
    """``F.conv2d(x, weight, bias, stride, groups=groups)`` for unpadded input, in the form that runs fastest, then
    ReLU if ``relu`` (fused into the conv for CPU inference, see :func:`conv2d`).

    oneDNN runs grouped convs with 1-2 channels per group at 3-10 GMAC/s on this CPU (dense convs: 100-200).
    Two exact rewrites (measured at MicroAST's shapes, 1024 px):

    * 2 inputs and 1 output per group (MicroAST's decoder, 32->16 and 64->32), stride 1, with ``halves=True``:
      x holds the channels in the order (k, g) (:func:`halves_order`), so in channels-last memory the pair
      of group g sits in two neighbouring "pixels" of a B x G x H x 2W view (no copy), and the grouped conv
      is one depthwise conv with a kh x 2kw kernel and column stride 2 on that view (6-7x faster in bf16
      and float32). Same products and sums as the grouped conv;
    * 1 input and 2 outputs per group (its encoder, 16->32 and 32->64, stride 2), in 16-bit precision only:
      the dense conv with a block-diagonal weight (:func:`fast_grouped_weight`; about 3x faster in bf16; in
      float32 the grouped conv is the faster one). Bit-identical to the grouped conv.

    Other shapes run the plain grouped conv (with ``halves=True``, after restoring the channel order).
    x: B x Cin x H x W; returns B x Cout x H' x W' (channels-last for the rewrites).
    """
    cout, per_group = weight.shape[:2]
    cin = per_group * groups
    if halves:
        x_cl = x.contiguous(memory_format=torch.channels_last)
        if per_group == 2 and cout == groups and stride == 1 and groups > 1:
            b, _, h, w = x_cl.shape
            view = x_cl.permute(0, 2, 3, 1).reshape(b, h, 2 * w, groups).permute(0, 3, 1, 2)
            wide = weight.permute(0, 2, 3, 1).reshape(cout, 1, weight.shape[2], 2 * weight.shape[3])
            return conv2d(view, wide, bias, stride=(1, 2), groups=groups, relu=relu)
        x = x_cl.index_select(1, torch.argsort(halves_order(cin)).to(x.device))
    weight, groups = fast_grouped_weight(weight, groups, x)
    return conv2d(x, weight, bias, stride=stride, groups=groups, relu=relu)


_HAS_AMX: bool | None = None  # has_amx(), probed once


def has_amx() -> bool:
    """Whether this CPU has AMX tiles (Intel Xeon since Sapphire Rapids), where oneDNN runs bf16 convs of 64+
    channels 6-7x faster than float32 (measured on a 2-core Xeon: 1270 against 170-190 GMAC/s) and narrow ones far
    below that rate, so some layers pick other exact forms there."""
    global _HAS_AMX
    if _HAS_AMX is None:
        try:
            _HAS_AMX = bool(torch.cpu._is_amx_tile_supported())
        except (AttributeError, RuntimeError):
            _HAS_AMX = False
    return _HAS_AMX


def amx_16bit(x: Tensor) -> bool:
    """A CPU tensor computed in bf16 (its dtype or autocast) on a CPU with AMX."""
    low = torch.is_autocast_enabled("cpu") or x.dtype == torch.bfloat16
    return x.device.type == "cpu" and low and has_amx()


def block_diagonal_weight(weight: Tensor, groups: int) -> Tensor:
    """The dense weight (Cout x Cin x kh x kw, zeros off the diagonal blocks) of a grouped conv's weight (Cout x
    Cin/groups x kh x kw): ``F.conv2d(x, block_diagonal_weight(w, g))`` equals ``F.conv2d(x, w, groups=g)``."""
    cout, per_group, kh, kw = weight.shape
    out_per_group = cout // groups
    dense = weight.new_zeros(groups, out_per_group, groups, per_group, kh, kw)
    idx = torch.arange(groups, device=weight.device)
    dense[idx, :, idx] = weight.reshape(groups, out_per_group, per_group, kh, kw)
    return dense.reshape(cout, groups * per_group, kh, kw)


def fast_grouped_weight(weight: Tensor, groups: int, x: Tensor) -> tuple[Tensor, int]:
    """(weight, groups) of the fastest exact form of a grouped conv of x: for 1 input and 2 outputs per group in
    16-bit precision (x bf16/fp16 or autocast on), the dense block-diagonal weight (groups 1, channels-last);
    otherwise unchanged. weight: Cout x Cin/groups x kh x kw."""
    cout, per_group = weight.shape[:2]
    low = torch.is_autocast_enabled(x.device.type) or x.dtype in (torch.bfloat16, torch.float16)
    if not (groups > 1 and per_group == 1 and cout == 2 * groups and low):
        return weight, groups
    return block_diagonal_weight(weight, groups).contiguous(memory_format=torch.channels_last), 1


def reflect_conv2d_stride2(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, groups: int = 1, relu: bool = False
) -> Tensor:
    """Stride-2 3x3 conv of x reflection-padded by 1, then ReLU if ``relu``: the values of
    ``F.relu(F.conv2d(F.pad(x, (1,) * 4, mode="reflect"), weight, bias, stride=2, groups=groups))``.

    For even H and W on CPU when nothing needs a gradient, no padded copy of x is made: the conv pads with zeros
    (the bottom and right padding is never read when the sides are even), and only output row 0 and column 0,
    whose windows read padding row / column -1 (= row / column 1), are recomputed from 5-row / 5-column reflected
    strips. The ReLU is fused and grouped convs run in the form of :func:`fast_grouped_weight` (15-35% faster for
    MicroAST's encoder at 1024 px; benchmarks/README.md, "Kernel measurements").
    x: B x Cin x H x W, weight: Cout x Cin/groups x 3 x 3 (one dtype); returns B x Cout x ceil(H/2) x ceil(W/2).
    """
    h, w = x.shape[-2:]
    if weight.shape[-2:] != (3, 3):
        raise ValueError(f"reflect_conv2d_stride2 takes 3x3 kernels, got {tuple(weight.shape[-2:])}")
    weight, groups = fast_grouped_weight(weight, groups, x)
    if h % 2 or w % 2 or h < 4 or w < 4 or not _fused(x, weight, bias):  # _fused: CPU, one dtype, no gradient
        return conv2d(reflect_pad(x, 1), weight, bias, stride=2, groups=groups, relu=relu)
    out = conv2d(x, weight, bias, stride=2, padding=1, groups=groups, relu=relu)
    # row 0, then column 0, from strips 4 rows / columns deep (2 output rows / columns, the first kept): oneDNN's
    # bf16 conv on a Xeon with AMX returned garbage for a stride-2 conv whose output is 1 pixel wide (torch 2.13)
    def edge(strip: Tensor) -> Tensor:
        return conv2d(as_channels_last(reflect_pad(strip, (1, 0, 1, 0))), weight, bias, 2, groups=groups, relu=relu)

    out[:, :, :1] = edge(x[:, :, :4])[:, :, :1]
    out[:, :, :, :1] = edge(x[:, :, :, :4])[:, :, :, :1]
    return out


def upsample_bilinear2x(x: Tensor, pad: int = 0) -> Tensor:
    """2x bilinear up-sampling with ``align_corners=False``: the values of ``F.interpolate(x, scale_factor=2,
    mode="bilinear", align_corners=False)``, in x's dtype and memory layout.

    Output row 2i = 0.25 x[i-1] + 0.75 x[i], row 2i+1 = 0.75 x[i] + 0.25 x[i+1] (edge rows repeated), the
    same along columns: four ``lerp`` writes into strided views. ATen's kernel runs at about a sixth of the
    memory speed on channels-last bf16 (it takes over 5x as long as a copy of the output;
    benchmarks/README.md). In bf16 the column pass is rounded once before the row pass (one bf16 step).
    x: B x C x H x W; returns B x C x 2H x 2W, or with ``pad`` > 0 that image reflection-padded by ``pad``
    (``reflect_pad(upsample_bilinear2x(x), pad)``, written in place around it: no second pass over the map).
    """
    b, c, h, w = x.shape
    fmt = torch.channels_last if (x.is_contiguous(memory_format=torch.channels_last) and c > 1) else None
    fmt = fmt or torch.contiguous_format
    cols = torch.empty(b, c, h, 2 * w, dtype=x.dtype, device=x.device, memory_format=fmt)
    _lerp2x(x, cols, dim=3)
    p = pad
    if p and (p >= 2 * h or p >= 2 * w):
        raise ValueError(f"reflection padding {p} needs an up-sampled map larger than {p}, got {2 * h} x {2 * w}")
    out = torch.empty(b, c, 2 * h + 2 * p, 2 * w + 2 * p, dtype=x.dtype, device=x.device, memory_format=fmt)
    inner = out[:, :, p : p + 2 * h, p : p + 2 * w]
    _lerp2x(cols, inner, dim=2)
    for i in range(1, p + 1):  # reflected columns (interior rows), then reflected full rows (corners included)
        out[:, :, p : p + 2 * h, p - i] = inner[:, :, :, i]
        out[:, :, p : p + 2 * h, p + 2 * w - 1 + i] = inner[:, :, :, 2 * w - 1 - i]
    for i in range(1, p + 1):
        out[:, :, p - i] = out[:, :, p + i]
        out[:, :, p + 2 * h - 1 + i] = out[:, :, p + 2 * h - 1 - i]
    return out


def _lerp2x(x: Tensor, out: Tensor, dim: int) -> None:
    """Write the 2x linear interpolation of x along ``dim`` (half-pixel centres, edges repeated) into out."""
    n = x.shape[dim]
    even, odd = out.narrow(dim, 0, 2 * n).unflatten(dim, (n, 2)).unbind(dim + 1)
    with _autocast_off(x):
        if n == 1:
            even.copy_(x)
            odd.copy_(x)
            return
        lo, hi = x.narrow(dim, 0, n - 1), x.narrow(dim, 1, n - 1)
        torch.lerp(lo, hi, 0.75, out=even.narrow(dim, 1, n - 1))  # 0.25 x[i-1] + 0.75 x[i]
        torch.lerp(hi, lo, 0.75, out=odd.narrow(dim, 0, n - 1))  # 0.75 x[i] + 0.25 x[i+1]
        even.narrow(dim, 0, 1).copy_(x.narrow(dim, 0, 1))
        odd.narrow(dim, n - 1, 1).copy_(x.narrow(dim, n - 1, 1))


# oneDNN's convolution with a fused element-wise post-op (what torch.compile's CPU backend emits); absent from
# builds without oneDNN, where conv2d() falls back to F.conv2d and F.relu.
_FUSED_CONV = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
if _FUSED_CONV is not None and not torch.backends.mkldnn.is_available():
    _FUSED_CONV = None
#: reflect_conv2d pads through oneDNN's zero padding plus a border fix only for maps at least this large and convs
#: with at most this many outputs (measured in bf16, time against pad + conv: 16->16 at 1024 px 0.81x, at 512 px
#: 0.93x, 3->16 at 512 px 0.70x, but 16->32 at 256 px 1.14x and 128->128 at 128 px 1.10x: on smaller maps and
#: wider convs the three border convs cost more than the padded copy they save)
BORDER_FIX_MIN_SIDE = 384
BORDER_FIX_MAX_OUT = 32
#: The same threshold under bf16 with AMX, where the border convs cost relatively more (Xeon with AMX, bf16, time
#: against pad + conv: 32->32 at 512 px 1.32x, 16->16 at 512 px 1.02x, but 32->32 at 1024 px 0.77x, 16->16 at 1024 px
#: 0.61x, 3->16 at 1024 px 0.50x)
BORDER_FIX_MIN_SIDE_AMX = 768
#: Under bf16 with AMX the narrow conv to RGB (``reflect_conv2d(narrow=True)``) takes the border fix from this many
#: input values (H x W x Cin) instead: its padded copy costs more than its conv (measured there, time against pad +
#: conv, pairs of runs interleaved: 64->3 at 256 px 0.90x, 384 px 0.69x, 512 px 0.56x, 1024 px 0.48x; 32->3 at 512 px
#: 0.85x; 16->3 at 512 px 0.96x, 768 px 0.94x, but 16->3 at 256 px 1.31x, 384 px 1.22x)
NARROW_FIX_MIN_VALUES_AMX = 4_000_000


def _fused(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> bool:
    """Whether oneDNN's fused conv can run: CPU, float32 or bf16 throughout, no gradient needed."""
    return (
        _FUSED_CONV is not None
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and weight.dtype == x.dtype
        and (bias is None or bias.dtype == x.dtype)
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
    )


def conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | tuple[int, int] = 1, padding: int = 0,
    groups: int = 1, relu: bool = False,
) -> Tensor:
    """``F.conv2d`` (zero padding), then ReLU if ``relu``; for CPU inference one oneDNN call with the ReLU fused.

    The separate ReLU is a full read and write of the activation; fused, it is applied to the output while it is
    still in cache. x, weight and bias must have one dtype (see :func:`in_autocast_dtype`). Same values as
    ``F.relu(F.conv2d(...))``; with autograd on (and a tensor that needs a gradient) it is exactly that.
    """
    if _fused(x, weight, bias):
        pad, st = [padding, padding], list(stride) if isinstance(stride, tuple) else [stride, stride]
        return _FUSED_CONV(x, weight, bias, pad, st, [1, 1], groups, "relu" if relu else "none", [], "")
    out = F.conv2d(x, weight, bias, stride, padding, groups=groups)
    return F.relu(out) if relu else out


def reflect_conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, relu: bool = False, narrow: bool = False
) -> Tensor:
    """Stride-1 conv of x reflection-padded by k // 2 (an odd k x k kernel), then ReLU if ``relu``: the values of
    ``F.relu(F.conv2d(F.pad(x, (k // 2,) * 4, mode="reflect"), weight, bias))``.

    For large maps with few output channels on CPU without autograd, no padded copy of x is made: oneDNN pads
    with zeros inside the conv, and only the output's border (k // 2 rows and columns on each side, the pixels
    whose windows reach the padding) is recomputed from small reflection-padded strips and written over it
    (10-15% faster at 1024 px in bf16; benchmarks/README.md, "Kernel measurements").
    ``narrow``: the interior runs as :func:`narrow_conv2d` (a conv to 3 channels; no ReLU), also on CPU with autograd
    off, for 3x3 kernels (for a 16-channel map to RGB the padded copy was over a quarter of the time); wider kernels
    pad, then convolve (MicroAST's 9x9 16->3: its border strips are 3p rows tall for p output rows, and the
    zero-padded unrolled conv ran slower than the unpadded one).
    x: B x Cin x H x W, weight: Cout x Cin x k x k (one dtype); returns B x Cout x H x W.
    """
    p = weight.shape[-1] // 2
    if p == 0:
        return conv2d(x, weight, bias, relu=relu)
    h, w = x.shape[-2:]
    amx = amx_16bit(x)
    big = min(h, w) >= max(BORDER_FIX_MIN_SIDE_AMX if amx else BORDER_FIX_MIN_SIDE, 4 * p)
    if narrow:
        if amx:
            big = min(h, w) >= 4 * p and h * w * x.shape[1] >= NARROW_FIX_MIN_VALUES_AMX
        if relu:
            raise ValueError("reflect_conv2d: narrow=True has no fused ReLU")
        if not (big and p == 1 and x.device.type == "cpu" and not torch.is_grad_enabled()):
            return narrow_conv2d(reflect_pad(x, p), weight, bias)
        out = narrow_conv2d(x, weight, bias, padding=p)
    elif not (big and _fused(x, weight, bias) and weight.shape[0] <= BORDER_FIX_MAX_OUT):
        return conv2d(reflect_pad(x, p), weight, bias, relu=relu)
    else:
        out = conv2d(x, weight, bias, padding=p, relu=relu)
    b = x.shape[0]
    # output rows 0..p-1 read input rows -p..2p-1: the p reflected rows, then the first 2p (likewise at the bottom);
    # top and bottom strips run as one batch, then the left and right ones (whose full height covers the corners)
    rows = torch.cat([
        torch.cat([x[:, :, 1 : p + 1].flip(2), x[:, :, : 2 * p]], 2),
        torch.cat([x[:, :, h - 2 * p :], x[:, :, h - 1 - p : h - 1].flip(2)], 2),
    ])
    edge = conv2d(as_channels_last(reflect_pad(rows, (p, p, 0, 0))), weight, bias, relu=relu)
    out[:, :, :p] = edge[:b]
    out[:, :, h - p :] = edge[b:]
    cols = torch.cat([
        torch.cat([x[:, :, :, 1 : p + 1].flip(3), x[:, :, :, : 2 * p]], 3),
        torch.cat([x[:, :, :, w - 2 * p :], x[:, :, :, w - 1 - p : w - 1].flip(3)], 3),
    ])
    edge = conv2d(as_channels_last(reflect_pad(cols, (0, 0, p, p))), weight, bias, relu=relu)
    out[:, :, :, :p] = edge[:b]
    out[:, :, :, w - p :] = edge[b:]
    return out


#: Per output phase (even, odd) along one axis: how the taps (w0, w1, w2) of a 3x3 conv of the 2x up-sampled map act on
#: low-resolution rows (i-1, i, i+1). Nearest: output 2i reads up rows 2i-1, 2i, 2i+1 = low rows i-1, i, i; output 2i+1
#: reads low rows i, i, i+1. Bilinear (half-pixel centres): up row 2i = 0.25 x[i-1] + 0.75 x[i], up row 2i+1 =
#: 0.75 x[i] + 0.25 x[i+1]. Rows: low row offset -1, 0, +1; columns: taps w0, w1, w2.
_PHASE_MAPS = {
    "nearest": ([[1.0, 0, 0], [0, 1, 1], [0, 0, 0]], [[0.0, 0, 0], [1, 1, 0], [0, 0, 1]]),
    "bilinear": (
        [[0.75, 0.25, 0], [0.25, 0.75, 0.75], [0, 0, 0.25]], [[0.25, 0, 0], [0.75, 0.75, 0.25], [0, 0.25, 0.75]]
    ),
}


def upsample_phase_weight(
    weight: Tensor, bias: Tensor | None = None, mode: str = "nearest", taps: int = 3
) -> tuple[Tensor, Tensor | None]:
    """Weight and bias of :func:`upsample_conv2d`'s conv: a 3x3 kernel (Cout x Cin x 3 x 3) becomes the four 3x3
    "phase" kernels (4 Cout x Cin x 3 x 3, channels ordered (row phase, column phase, Cout)) that compute, on the
    low-resolution map, the outputs at the even/odd rows and columns of the conv of its 2x up-sampling (``mode``
    ``nearest`` or ``bilinear``, see ``_PHASE_MAPS``): W_ab = M_a W M_b^T over the kernel's rows and columns.
    Computed in float64, returned in the weight's dtype, channels-last; the bias is repeated for the 4 phases.
    ``taps=2`` (nearest only): each phase kernel cut to its 2 x 2 nonzero block (rows and columns a, a + 1 for phase
    a), the kernels of :func:`upsample_conv2d`'s compact form (4 Cout x Cin x 2 x 2).
    """
    if weight.shape[-2:] != (3, 3):
        raise ValueError(f"upsample_phase_weight takes 3x3 kernels, got {tuple(weight.shape[-2:])}")
    if mode not in _PHASE_MAPS:
        raise ValueError(f"upsample_phase_weight: mode must be one of {sorted(_PHASE_MAPS)}, got {mode!r}")
    if taps not in (2, 3):
        raise ValueError(f"upsample_phase_weight: taps must be 2 or 3, got {taps}")
    if taps == 2 and mode != "nearest":
        raise ValueError(
            f"upsample_phase_weight: taps=2 needs mode 'nearest' (bilinear kernels are full 3x3), got {mode!r}"
        )
    m = torch.tensor(_PHASE_MAPS[mode], dtype=torch.float64, device=weight.device)  # phase x new tap x old tap
    w = weight.double()
    # rows, then columns, as broadcast products and sums (weight preparation, not counted as the method's MACs)
    rows = (m[:, None, None, :, :, None] * w[None, :, :, None, :, :]).sum(4)  # a x Cout x Cin x y x old column
    out = (m[None, :, None, None, None, :, :] * rows[:, None, :, :, :, None, :]).sum(-1).flatten(0, 2)
    if taps == 2:
        cout = weight.shape[0]
        out = torch.cat([out[k * cout : (k + 1) * cout, :, k // 2 : k // 2 + 2, k % 2 : k % 2 + 2] for k in range(4)])
    out = out.to(weight.dtype).contiguous(memory_format=torch.channels_last)
    return out, None if bias is None else bias.repeat(4)


#: The compact (2 x 2) phase kernels need this many input channels under bf16 with AMX, where narrower convs ran
#: slower in that form (time against the 3 x 3 form, Xeon with AMX, pairs of runs interleaved: bf16 16->16 from 512
#: px 1.37x, 32->32 from 256 px 1.05x, but 64->64 from 128 px 0.74x, from 256 px 0.84x, 128->128 from 256 px 0.85x;
#: float32 0.59x (64 from 512 px) to 0.93x (16 from 512 px))
COMPACT_PHASE_MIN_CHANNELS_AMX = 64


def upsample_phase_taps(x: Tensor, mode: str = "nearest") -> int:
    """The phase-kernel size :func:`upsample_conv2d` runs fastest with for x (the low-resolution map): 2 (the
    compact form, nearest only) unless x is bf16 under AMX with fewer than ``COMPACT_PHASE_MIN_CHANNELS_AMX``
    channels, else 3."""
    if mode != "nearest" or (amx_16bit(x) and x.shape[1] < COMPACT_PHASE_MIN_CHANNELS_AMX):
        return 3
    return 2


def derived_weights(
    owner: nn.Module, sources: tuple[Tensor | None, ...], tag: tuple, build: Callable[[], tuple[Tensor | None, ...]]
) -> tuple[Tensor | None, ...]:
    """``build()`` (weights computed from the ``sources``, e.g. a conv's weight and bias) cached on ``owner`` (the
    module whose parameters they are) until a source changes.

    Inference rebuilt the phase kernels of every up-sampling conv on every call; they depend only on the module's
    parameters, so they are kept per ``tag`` with the sources they were built from and their in-place versions:
    an optimizer step or ``load_state_dict`` bumps a version (or replaces the tensor) and the next call rebuilds
    them. The cache lives in the module (``_accel_derived``), so it goes with it; no process-wide state.
    """
    cache = owner.__dict__.setdefault("_accel_derived", {})
    versions = tuple(None if t is None else t._version for t in sources)
    hit = cache.get(tag)
    if hit is not None and hit[1] == versions and all(a is b for a, b in zip(hit[0], sources, strict=True)):
        return hit[2]
    value = build()
    cache[tag] = (sources, versions, value)
    return value


def upsample_conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, relu: bool = False, mode: str = "nearest",
    phase: tuple[Tensor, Tensor | None] | None = None, pad_output: bool = False,
) -> Tensor:
    """2x up-sampling (``nearest``, or ``bilinear`` with half-pixel centres), reflection padding 1 and a 3x3 conv (then
    ReLU if ``relu``) as one conv on the low-resolution map: the values of ``reflect_conv2d(F.interpolate(x,
    scale_factor=2, mode=mode), weight, bias, relu)``, up to the rounding of the combined taps.

    Each of the four output phases (even/odd rows and columns) is a 3x3 conv of the replicate-padded low-resolution map
    (:func:`upsample_phase_weight`): one conv with 4 Cout outputs, then one depth-to-space copy. The up-sampled map and
    its padded copy are never written, and the conv is 4x wider at a quarter of the pixels (oneDNN, above all with AMX,
    runs narrow convs far below its rate; about 30% faster on a Xeon with AMX in bf16, benchmarks/README.md). Nearest
    phase kernels have 2 x 2 nonzero taps each: with ``phase`` 2 x 2
    kernels (``upsample_phase_weight(taps=2)``, the default where :func:`upsample_phase_taps` picks it) the conv
    executes only those, on an output one row and column larger (phase (a, c) is read shifted by (a, c)), and 4
    strided copies interleave the phases (float32 0.59-0.93x the time of the 3 x 3 form).
    Nearest: reflection padding of the up-sampled map is the up-sampling of the replicate-padded map (row -1 reflects
    to row 1, a copy of low row 0), so every pixel is exact; the 3 x 3 form executes as many multiply-adds as the
    explicit form, 16 in 36 of them nonzero, the compact form those 16. Bilinear: the phase kernels are full 3x3, so
    the multiply-adds are the explicit form's; only the output's first and last rows and columns read reflected rows
    that no padding of the low-resolution map reproduces, and they are recomputed from 3-row / 3-column strips.
    ``weight``: Cout x Cin x 3 x 3 (the conv's own kernel), ``bias``: Cout, in x's dtype; ``phase``: their
    :func:`upsample_phase_weight`, if already computed (:func:`derived_weights`). x: B x Cin x h x w (h, w >= 3 for
    bilinear); returns B x Cout x 2h x 2w, channels-last.
    ``pad_output``: the result reflection-padded by 1 (B x Cout x (2h + 2) x (2w + 2)), for a next 3x3 conv that then
    runs unpadded: the phases are written into the padded buffer, whose border rows and columns are then copied
    from the reflected ones, so the padded copy of the map (a full pass over it) is never made.
    """
    b, _, h, w = x.shape
    cout = weight.shape[0]
    if mode == "bilinear" and (h < 3 or w < 3):
        out = reflect_conv2d(upsample_bilinear2x(x), weight, bias, relu=relu)
        return as_channels_last(reflect_pad(out, 1)) if pad_output else out
    if phase is None:
        phase = upsample_phase_weight(weight, bias, mode, taps=upsample_phase_taps(x, mode))
    phase_w, phase_b = phase
    if phase_w.shape[-1] == 2:  # compact: phase (a, c) at output (i, j) is Y_ac[i + a, j + c] of the 2x2 conv
        y = _compact_phase_conv(x, phase_w, phase_b, relu)
        if pad_output:  # Y's extra row and column are output rows -1 and 2h (and columns): the padded buffer's border
            full = torch.empty((b, 2 * h + 2, 2 * w + 2, cout), dtype=y.dtype, device=y.device)
            cells = full.view(b, h + 1, 2, w + 1, 2, cout)  # buffer row 2I + t is output row 2I - 1 + t: phase 1 - t
            for k in range(4):
                a, c = divmod(k, 2)
                cells[:, :, 1 - a, :, 1 - c] = y[..., k * cout : (k + 1) * cout]
            return _reflect_border(full)
        out = torch.empty((b, 2 * h, 2 * w, cout), dtype=y.dtype, device=y.device)
        phases = out.view(b, h, 2, w, 2, cout)
        for k in range(4):
            a, c = divmod(k, 2)
            phases[:, :, a, :, c] = y[:, a : a + h, c : c + w, k * cout : (k + 1) * cout]
        return out.permute(0, 3, 1, 2)
    with _autocast_off(x):
        padded = as_channels_last(F.pad(x, (1, 1, 1, 1), mode="replicate"))
    y = conv2d(padded, phase_w, phase_b, relu=relu).contiguous(memory_format=torch.channels_last)  # B x 4Cout x h x w
    cells = y.permute(0, 2, 3, 1).view(b, h, w, 2, 2, cout).transpose(2, 3)
    if pad_output:
        full = torch.empty((b, 2 * h + 2, 2 * w + 2, cout), dtype=y.dtype, device=y.device)
        full[:, 1:-1, 1:-1].view(b, h, 2, w, 2, cout).copy_(cells)
        out = full[:, 1:-1, 1:-1].permute(0, 3, 1, 2)
    else:
        out = cells.reshape(b, 2 * h, 2 * w, cout).permute(0, 3, 1, 2)
    if mode == "bilinear":

        def strip(part: Tensor) -> Tensor:  # explicit up-sampling + reflection padding + conv of a 3-row/column strip
            return conv2d(as_channels_last(upsample_bilinear2x(part, pad=1)), weight, bias, relu=relu)

        out[:, :, :1] = strip(x[:, :, :3])[:, :, :1]
        out[:, :, -1:] = strip(x[:, :, -3:])[:, :, -1:]
        out[:, :, :, :1] = strip(x[:, :, :, :3])[:, :, :, :1]
        out[:, :, :, -1:] = strip(x[:, :, :, -3:])[:, :, :, -1:]
    return _reflect_border(full) if pad_output else out


def _compact_phase_conv(x: Tensor, phase_w: Tensor, phase_b: Tensor | None, relu: bool) -> Tensor:
    """The compact (2 x 2) phase conv of the replicate-padded x: B x (h + 1) x (w + 1) x 4 Cout (a channels-last
    view), phase (a, c) of output pixel (2i + a, 2j + c) at [i + a, j + c]."""
    with _autocast_off(x):
        padded = as_channels_last(F.pad(x, (1, 1, 1, 1), mode="replicate"))
    return as_channels_last(conv2d(padded, phase_w, phase_b, relu=relu)).permute(0, 2, 3, 1)


def _reflect_border(full: Tensor) -> Tensor:
    """A B x H x W x C buffer whose interior (rows and columns 1 .. -2) holds a map, with its border set to the
    reflection padding of that map (row 0 := row 2, row -1 := row -3, then the columns, which fills the corners);
    returned as the B x C x H x W channels-last map."""
    full[:, 0] = full[:, 2]
    full[:, -1] = full[:, -3]
    full[:, :, 0] = full[:, :, 2]
    full[:, :, -1] = full[:, :, -3]
    return full.permute(0, 3, 1, 2)


def phase_input_weight(weight: Tensor, bias: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Weight and bias of the second conv of :func:`upsample_conv2d_pair`: a 3x3 kernel (Cout x Cin x 3 x 3) that
    reads the compact phase layout of a full-resolution map and writes its four output phases.

    The input is the map as the compact up-sampling conv leaves it, (h + 1) x (w + 1) cells of 4 Cin channels ordered
    (a, c, Cin): cell (I, J) holds pixels (2I - a, 2J - c), i.e. rows 2I - 1 (a = 1) and 2I (a = 0). The output cell
    (i, j) holds pixels (2i + a', 2j + c') in channels (a', c', Cout), and reads cells i, i + 1 and j, j + 1, so the
    kernel is 2 x 2 with 4 Cin inputs: tap (dy, dx) of the 3x3 kernel lands on the cell and phase holding pixel row
    2i + a' + dy - 1 (9 of each output's 16 cell taps are nonzero, the MACs of the 3x3 conv). Computed in float64,
    returned in the weight's dtype, channels-last (4 Cout x 4 Cin x 2 x 2); the bias is repeated for the 4 phases.
    """
    if weight.shape[-2:] != (3, 3):
        raise ValueError(f"phase_input_weight takes 3x3 kernels, got {tuple(weight.shape[-2:])}")
    cout, cin = weight.shape[:2]
    w = weight.double()
    out = w.new_zeros(2, 2, cout, 2, 2, cin, 2, 2)  # a' c' Cout | a c Cin (input phase channels) | cell row, column
    for a2 in range(2):
        for c2 in range(2):
            for a in range(2):
                for c in range(2):
                    for bi in range(2):  # cell i + bi, phase a: pixel row 2i + 2 bi - a = 2i + a' + dy - 1
                        dy = 2 * bi - a - a2 + 1
                        for bj in range(2):
                            dx = 2 * bj - c - c2 + 1
                            if 0 <= dy <= 2 and 0 <= dx <= 2:
                                out[a2, c2, :, a, c, :, bi, bj] = w[:, :, dy, dx]
    out = out.reshape(4 * cout, 4 * cin, 2, 2).to(weight.dtype).contiguous(memory_format=torch.channels_last)
    return out, None if bias is None else bias.repeat(4)


def upsample_conv2d_pair(
    x: Tensor, weight: Tensor, bias: Tensor | None, weight2: Tensor, bias2: Tensor | None,
    phase: tuple[Tensor, Tensor | None] | None = None, phase2: tuple[Tensor, Tensor | None] | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """A decoder's last two layers, 2x nearest up-sampling + reflection padding + 3x3 conv + ReLU, then reflection
    padding + a 3x3 conv (to RGB, no ReLU), without ever writing the full-resolution map in pixel order: the values
    of ``reflect_conv2d(upsample_conv2d(x, weight, bias, relu=True), weight2, bias2)`` up to rounding.

    The first conv runs in :func:`upsample_conv2d`'s compact form (2 x 2 phase kernels, ``phase`` =
    ``upsample_phase_weight(weight, bias, taps=2)``), whose (h + 1) x (w + 1) x 4 Cout output already is the
    full-resolution map in 2 x 2 cells shifted by one pixel, with one extra row and column on each side. Those extra
    pixels (rows -1 and 2h, columns -1 and 2w) are overwritten with the rows and columns the reflection padding
    puts there (rows 1 and 2h - 2, columns likewise: four thin strided copies), and the second conv reads the cells
    with 2 x 2 kernels over 4 Cout channels (``phase2`` = :func:`phase_input_weight`), writing its four output
    phases as 4 x Cout2 channels; one copy interleaves them into the image. So the depth-to-space copy of the
    full-resolution map, the reflection padding (or border fix) of the conv to RGB and that conv's narrow shape
    (oneDNN computes 16 outputs at a time) are all gone; the second conv executes 16/9 of its multiply-adds (the
    zero taps of ``phase2``). Measured for the tail alone against ``upsample_conv2d`` + ``reflect_conv2d(narrow=True)``
    (pairs interleaved, loaded Xeon with AMX): 16 -> 16 -> 3 to 1024 px 0.64x float32, 0.67x bf16; 64 -> 64 -> 3 to
    1024 px 0.81x float32, 0.79x bf16.
    x: B x Cin x h x w; weight: Cout x Cin x 3 x 3; weight2: Cout2 x Cout x 3 x 3 (one dtype). Returns B x Cout2 x 2h
    x 2w, contiguous (channels-first), in ``dtype`` (default x's).
    """
    b, _, h, w = x.shape
    cout, cout2 = weight.shape[0], weight2.shape[0]
    phase_w, phase_b = phase if phase is not None else upsample_phase_weight(weight, bias, taps=2)
    if phase_w.shape[-1] != 2:
        raise ValueError("upsample_conv2d_pair: phase must be the compact (taps=2) phase kernels")
    phase2_w, phase2_b = phase2 if phase2 is not None else phase_input_weight(weight2, bias2)
    y = _compact_phase_conv(x, phase_w, phase_b, relu=True)  # B x (h+1) x (w+1) x 4 Cout
    cells = y.view(b, h + 1, w + 1, 2, 2, cout)  # cell row, column, a, c, Cout
    cells[:, 0, :, 1] = cells[:, 1, :, 1]  # pixel row -1 := row 1
    cells[:, h, :, 0] = cells[:, h - 1, :, 0]  # row 2h := row 2h - 2
    cells[:, :, 0, :, 1] = cells[:, :, 1, :, 1]  # column -1 := column 1 (after the rows: the corners follow)
    cells[:, :, w, :, 0] = cells[:, :, w - 1, :, 0]  # column 2w := column 2w - 2
    z = conv2d(y.permute(0, 3, 1, 2), phase2_w, phase2_b)  # B x 4 Cout2 x h x w, channels (a', c', Cout2)
    out = torch.empty((b, cout2, 2 * h, 2 * w), dtype=dtype or z.dtype, device=z.device)
    out.view(b, cout2, h, 2, w, 2).copy_(z.permute(0, 2, 3, 1).view(b, h, w, 2, 2, cout2).permute(0, 5, 1, 3, 2, 4))
    return out


def reflect_conv(conv: nn.Conv2d, x: Tensor, relu: bool = False) -> Tensor:
    """``conv`` (stride 1, odd square kernel, no padding of its own) applied to x reflection-padded by k // 2, then
    ReLU if ``relu``. CPU inference runs :func:`reflect_conv2d` in the autocast dtype; otherwise (autograd, other
    devices) the module itself runs, so hooks, autocast and gradients behave as usual. Same values either way.
    """
    if x.device.type == "cpu" and not torch.is_grad_enabled():
        return reflect_conv2d(*in_autocast_dtype(x, conv.weight, conv.bias), relu=relu)
    out = conv(reflect_pad(x, conv.kernel_size[0] // 2))
    return F.relu(out, inplace=True) if relu else out


def max_pool2x(x: Tensor) -> Tensor:
    """2x2 max-pooling with stride 2 (``ceil_mode``, as the VGG encoders pool): the values of ``F.max_pool2d(x, 2, 2,
    ceil_mode=True)``.

    A channels-last map without autograd is pooled by two ``torch.maximum`` over strided views (row pairs, then
    column pairs), which writes no indices (about 2x faster in bf16, a few percent in float32; benchmarks/README.md).
    An odd last row or column (ceil mode: pooled on its own) is pooled the same way into the output's last row or
    column. Other maps run ``F.max_pool2d``.
    Returns B x C x ceil(H/2) x ceil(W/2).
    """
    b, c, h, w = x.shape
    if torch.is_grad_enabled() or not x.is_contiguous(memory_format=torch.channels_last) or c == 1 or h < 2 or w < 2:
        return F.max_pool2d(x, 2, 2, ceil_mode=True)
    if h % 2 == 0 and w % 2 == 0:
        return _pool_even(x)
    he, we = h - h % 2, w - w % 2
    shape = (b, c, (h + 1) // 2, (w + 1) // 2)
    out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    out[:, :, : he // 2, : we // 2] = _pool_even(x[:, :, :he, :we])
    if w % 2:  # the last column: maximum over row pairs (and the last row's single pixel)
        col = x[:, :, :, w - 1]
        out[:, :, : he // 2, -1] = torch.maximum(col[:, :, 0:he:2], col[:, :, 1:he:2])
        if h % 2:
            out[:, :, -1, -1] = col[:, :, h - 1]
    if h % 2:  # the last row: maximum over column pairs
        row = x[:, :, h - 1]
        out[:, :, -1, : we // 2] = torch.maximum(row[:, :, 0:we:2], row[:, :, 1:we:2])
    return out


def _pool_even(x: Tensor) -> Tensor:
    """:func:`max_pool2x` of a channels-last map (or a view of one) with even sides."""
    b, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(b, h // 2, 2, w // 2, 2 * c)
    pairs = torch.maximum(rows[:, :, 0], rows[:, :, 1]).view(b, h // 2, w // 2, 2, c)
    return torch.maximum(pairs[:, :, :, 0], pairs[:, :, :, 1]).permute(0, 3, 1, 2)
