"""Small building blocks shared by the networks (encoders, decoders, MicroAST, SANet): plain PyTorch.

Faster CPU forms of the same ops live in :mod:`impasto.accel` (the ``fused`` backend), never in model code.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _autocast_off(x: Tensor) -> contextlib.AbstractContextManager:
    """Autocast disabled for x's device while inside, if it is enabled (entering costs nothing otherwise)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()


def reflect_pad(x: Tensor, pad: int | tuple[int, int, int, int]) -> Tensor:
    """Reflection padding of B x C x H x W by ``pad`` pixels per side (or (left, right, top, bottom)), in x's dtype.

    CPU autocast runs ``reflection_pad2d`` in float32, so under bf16 autocast a plain ``F.pad`` turns the
    bf16 activations into a float32 copy that the next conv casts back: two extra copies of every activation
    (about 3x slower; benchmarks/README.md, "Kernel measurements"). Padding is exact in any dtype, so it runs
    with autocast off. Values are identical to ``F.pad(x, pad, mode="reflect")``.
    """
    pads = (pad,) * 4 if isinstance(pad, int) else tuple(pad)
    if not any(pads):
        return x
    with _autocast_off(x):
        return F.pad(x, pads, mode="reflect")


def as_channels_last(x: Tensor) -> Tensor:
    """x (B x C x H x W) in channels-last memory with the canonical strides (C*H*W, 1, W*C, C).

    ``contiguous(memory_format=torch.channels_last)`` accepts a tensor whose size-1 dimensions carry other
    strides (e.g. ``t[None]`` of a C x H x W channels-last map has batch stride C), but ATen's layout
    propagation then picks the default layout for the next op's output (measured: every reflection pad and
    conv of the WCT decoders ran channels-first because of that). The strides are rewritten without a copy.
    """
    x = x.contiguous(memory_format=torch.channels_last)
    b, c, h, w = x.shape
    canonical = (c * h * w, 1, w * c, c)
    if x.stride() != canonical:  # differs only in size-1 dimensions, whose strides address nothing
        x = x.as_strided(x.shape, canonical, x.storage_offset())
    return x


class Upsample(nn.Upsample):
    """``nn.Upsample`` that keeps its input's dtype under autocast.

    CPU autocast runs interpolation in float32 (an extra float32 copy of a bf16 activation, then a cast back by
    the next conv); interpolation accumulates in float32 inside the kernel in any case, so it runs with autocast
    off, on the input's dtype. Same values as ``nn.Upsample`` otherwise.
    """

    def forward(self, x: Tensor) -> Tensor:
        with _autocast_off(x):
            return super().forward(x)


def upsample_nearest2x(x: Tensor) -> Tensor:
    """2x nearest up-sampling of B x C x H x W in x's dtype (autocast off, as :class:`Upsample`)."""
    with _autocast_off(x):
        return F.interpolate(x, scale_factor=2, mode="nearest")


def channel_mean_var(feat: Tensor, correction: int = 1) -> tuple[Tensor, Tensor]:
    """Per-sample, per-channel mean and variance over space, accumulated in float32 (float64 for float64 input).

    feat: B x C x H x W. Returns (mean, var), each B x C, with ``var = sum((x - mean)^2) / (H*W - correction)``
    (two passes: the mean, then the centred squares). Same values as ``torch.var_mean`` over the flattened
    space, 3-5x faster than ATen's one-pass variance in either memory layout (benchmarks/README.md,
    "Kernel measurements"). A channels-last map is read
    in its own layout (no copy).
    """
    b, c = feat.shape[:2]
    acc = torch.float64 if feat.dtype == torch.float64 else torch.float32
    if feat.dim() == 4 and c > 1 and feat.is_contiguous(memory_format=torch.channels_last) and not feat.is_contiguous():
        flat, dim = feat.permute(0, 2, 3, 1).reshape(b, -1, c), 1
    else:
        flat, dim = feat.reshape(b, c, -1), 2
    flat = flat.to(acc)
    n = flat.shape[dim]
    mean = flat.mean(dim, keepdim=True)
    centred = flat - mean
    var = (centred * centred).sum(dim) / max(n - correction, 1)
    return mean.squeeze(dim), var


def fold_input_affine(
    weight: Tensor, bias: Tensor | None, matrix: Tensor, shift: Tensor
) -> tuple[Tensor, Tensor]:
    """Weight and bias of the conv ``x -> conv(matrix @ x + shift)`` (the affine map applied at every pixel):
    ``W' = W A`` over the input channels, ``b' = b + sum of W c`` over channels and taps. Exact for a conv that
    reflection-pads its input (padding commutes with a per-pixel map), not for zero padding. weight: Cout x C x k x
    k, matrix: C x C' (e.g. a 1x1 conv's weight), shift: C. Computed in float64, returned in the weight's dtype.
    """
    w = weight.double()
    folded = torch.einsum("ojhw,ji->oihw", w, matrix.to(w))
    b = torch.einsum("ojhw,j->o", w, shift.to(w))
    if bias is not None:
        b = b + bias.double()
    return folded.to(weight.dtype), b.to(weight.dtype)


#: ITU-R BT.601 luma weights for R, G, B (Y = 0.299 R + 0.587 G + 0.114 B).
BT601 = (0.299, 0.587, 0.114)


def luminance(x: Tensor) -> Tensor:
    """ITU-R BT.601 luma of an RGB batch.

    Args:
        x: B x 3 x H x W RGB in [0, 1] (a B x 1 x H x W input is returned unchanged).
    Returns:
        B x 1 x H x W, Y = 0.299 R + 0.587 G + 0.114 B, in [0, 1]; float64 stays float64, any other dtype
        becomes float32.
    """
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    if x.shape[1] == 1:
        return x
    w = torch.tensor(BT601, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def sobel_magnitude(lum: Tensor, eps: float = 0.0) -> Tensor:
    """Sobel gradient magnitude ``sqrt(gx^2 + gy^2 + eps)`` of B x 1 x H x W, 'valid' region: B x 1 x (H-2) x (W-2).

    ``eps > 0`` keeps the gradient finite where the image is flat (for losses); the metrics use 0.
    """
    kx = torch.tensor(_SOBEL_X, dtype=lum.dtype, device=lum.device).view(1, 1, 3, 3)
    ky = kx.transpose(-1, -2)
    gx = F.conv2d(lum, kx)
    gy = F.conv2d(lum, ky)
    return torch.sqrt(gx * gx + gy * gy + eps)


def pearson_rows(a: Tensor, b: Tensor, eps: float) -> Tensor:
    """Pearson correlation of each row of two B x N tensors: Tensor[B]; ``eps`` guards the division (a constant
    row has correlation 0)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(eps)
