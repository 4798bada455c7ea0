"""The faster forms of CPU ops in impasto.layers give the plain ops' values (float64 exact, bf16 within rounding)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from impasto.layers import (
    Upsample,
    as_channels_last,
    channel_mean_var,
    grouped_conv2d,
    halves_order,
    narrow_conv2d,
    reflect_pad,
    upsample_bilinear2x,
)

CL = torch.channels_last


def _rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("correction", [0, 1])
def test_channel_mean_var_matches_var_mean(layout: str, correction: int) -> None:
    x = _rand(2, 5, 7, 9) * 3 + 2
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    mean, var = channel_mean_var(x, correction)
    ref_var, ref_mean = torch.var_mean(x.reshape(2, 5, -1), dim=2, correction=correction)
    assert mean.shape == var.shape == (2, 5) and mean.dtype == torch.float64
    torch.testing.assert_close(mean, ref_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(var, ref_var, rtol=1e-12, atol=0)


def test_channel_mean_var_hand_computed_and_float32_accumulation() -> None:
    x = torch.tensor([1.0, 2.0, 3.0, 6.0]).reshape(1, 1, 2, 2)
    mean, var = channel_mean_var(x)
    assert mean.item() == 3.0 and var.item() == pytest.approx((4 + 1 + 0 + 9) / 3)
    big = (_rand(1, 4, 64, 64, seed=1) * 0.1 + 100).to(torch.bfloat16).contiguous(memory_format=CL)
    mean, var = channel_mean_var(big)
    assert mean.dtype == torch.float32  # statistics of 16-bit features are accumulated in float32
    ref_var, ref_mean = torch.var_mean(big.double().reshape(1, 4, -1), dim=2)
    torch.testing.assert_close(var.double(), ref_var, rtol=1e-4, atol=0)


# ---------------------------------------------------------------------------------------------- convolutions
@pytest.mark.parametrize(("k", "width"), [(3, 24), (3, 27), (9, 40), (9, 13), (3, 3)])
def test_narrow_conv2d_equals_conv2d(k: int, width: int) -> None:
    x = _rand(2, 16, 11 + k - 1, width + k - 1)
    w, b = _rand(3, 16, k, k, seed=1), _rand(3, seed=2)
    out = narrow_conv2d(x, w, b)
    ref = F.conv2d(x, w, b)
    assert out.shape == ref.shape and out.is_contiguous(memory_format=CL)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(narrow_conv2d(x, w, None), F.conv2d(x, w), rtol=0, atol=1e-12)


def test_narrow_conv2d_bf16_within_rounding() -> None:
    x = _rand(1, 16, 34, 38, dtype=torch.float32).to(torch.bfloat16).contiguous(memory_format=CL)
    w, b = (_rand(3, 16, 3, 3, seed=1) * 0.2).to(torch.bfloat16), _rand(3, seed=2).to(torch.bfloat16)
    out = narrow_conv2d(x, w, b).double()
    ref = F.conv2d(x.double(), w.double(), b.double())
    assert (out - ref).abs().max() <= 2 ** -7 * ref.abs().max()  # one bf16 rounding of the output


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_grouped_conv2d_pairs_in_halves_order_equal_grouped_conv(dtype: torch.dtype) -> None:
    x = _rand(2, 32, 13, 17, dtype=dtype)
    w, b = _rand(16, 2, 3, 3, seed=1, dtype=dtype), _rand(16, seed=2, dtype=dtype)
    ref = F.conv2d(x, w, b, groups=16)
    halves = x.index_select(1, halves_order(32))
    out = grouped_conv2d(halves, w, b, stride=1, groups=16, halves=True)
    assert out.shape == ref.shape
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out, ref, rtol=0, atol=tol)
    # a grouped conv without a fast form is still right when given its input in halves order
    w4 = _rand(8, 4, 3, 3, seed=3, dtype=dtype)
    torch.testing.assert_close(grouped_conv2d(halves, w4, None, 1, 8, halves=True), F.conv2d(x, w4, groups=8),
                               rtol=0, atol=tol)


def test_halves_order() -> None:
    assert halves_order(6).tolist() == [0, 2, 4, 1, 3, 5]


@pytest.mark.parametrize("stride", [1, 2])
def test_grouped_conv2d_one_input_two_outputs(stride: int) -> None:
    x = _rand(1, 16, 15, 12, dtype=torch.float32)
    w, b = _rand(32, 1, 3, 3, seed=1, dtype=torch.float32), _rand(32, seed=2, dtype=torch.float32)
    ref = F.conv2d(x, w, b, stride=stride, groups=16)
    torch.testing.assert_close(grouped_conv2d(x, w, b, stride, 16), ref)  # float32: the grouped conv itself
    xb, wb, bb = x.to(torch.bfloat16), w.to(torch.bfloat16), b.to(torch.bfloat16)
    dense = grouped_conv2d(xb.contiguous(memory_format=CL), wb, bb, stride, 16)  # bf16: the block-diagonal conv
    refb = F.conv2d(xb.double(), wb.double(), bb.double(), stride=stride, groups=16)
    assert (dense.double() - refb).abs().max() <= 2 ** -7 * refb.abs().max()


# ---------------------------------------------------------------------------------------------- up-sampling
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 16, 1, 4), (1, 2, 3, 1), (1, 1, 1, 1)])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_upsample_bilinear2x_equals_interpolate(shape: tuple[int, ...], layout: str) -> None:
    x = _rand(*shape)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    ref = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    out = upsample_bilinear2x(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    if shape[1] > 1:  # (one channel: both layouts are the same memory)
        assert out.is_contiguous(memory_format=CL) == (layout == "channels_last")


def test_upsample_hand_computed_and_module_paths() -> None:
    x = torch.tensor([[[[0.0, 4.0]]]])
    # columns: 0, 0.25*0+0.75*4... edges repeated: [0, 1, 3, 4]
    assert upsample_bilinear2x(x)[0, 0, 0].tolist() == [0.0, 1.0, 3.0, 4.0]
    up = Upsample(scale_factor=2, mode="bilinear", align_corners=False)
    y = _rand(1, 4, 6, 5).float().requires_grad_(True)
    out = up(y)  # with autograd: ATen's kernel (the lerp form writes into views)
    out.sum().backward()
    assert y.grad is not None
    with torch.no_grad():
        torch.testing.assert_close(up(y), out)


# ---------------------------------------------------------------------------------------------- layout
def test_as_channels_last_gives_canonical_strides_so_pads_stay_channels_last() -> None:
    rows = _rand(6 * 5, 4)
    odd = rows.reshape(6, 5, 4).permute(2, 0, 1)[None]  # channels-last, but batch stride 4
    assert odd.is_contiguous(memory_format=CL) and odd.stride()[0] == 4
    fixed = as_channels_last(odd)
    assert fixed.stride() == (120, 1, 20, 4) and fixed.data_ptr() == odd.data_ptr()  # no copy
    assert torch.equal(fixed, odd)
    assert reflect_pad(fixed, 1).is_contiguous(memory_format=CL)
