"""The faster CPU ops of impasto.accel.kernels give the plain ops' values (float64 exact, bf16 within rounding)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from impasto.accel import prepare
from impasto.accel.kernels import (
    BORDER_FIX_MIN_SIDE,
    BORDER_FIX_MIN_SIDE_AMX,
    block_diagonal_weight,
    conv2d,
    derived_weights,
    grouped_conv2d,
    halves_order,
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
from impasto.layers import Upsample, as_channels_last, channel_mean_var, reflect_pad

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
@pytest.mark.parametrize("unroll", [None, 3, 4, 5])  # None: 5 for the 9x9 kernel, 4 for 3x3
def test_narrow_conv2d_equals_conv2d(k: int, width: int, unroll: int | None) -> None:
    x = _rand(2, 16, 11 + k - 1, width + k - 1)
    w, b = _rand(3, 16, k, k, seed=1), _rand(3, seed=2)
    out = narrow_conv2d(x, w, b, unroll)
    ref = F.conv2d(x, w, b)
    assert out.shape == ref.shape and out.is_contiguous(memory_format=CL)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(narrow_conv2d(x, w, None), F.conv2d(x, w), rtol=0, atol=1e-12)


@pytest.mark.bf16
@pytest.mark.parametrize(("k", "width"), [(3, 36), (3, 38), (9, 40), (9, 42), (9, 1024)])
def test_narrow_conv2d_bf16_within_rounding(k: int, width: int) -> None:
    """bf16 with the default unroll, widths a multiple of it (no padding) and not. oneDNN's bf16 conv on a Xeon with
    AMX returned wrong values for the 9x9 kernel unrolled by 4 (a 9 x 12 kernel, column stride 4) when the width is a
    multiple of 4 (relative error about 1): the default of 5 for that kernel must stay right."""
    x = _rand(1, 16, 34 + k - 1, width + k - 1, dtype=torch.float32).to(torch.bfloat16).contiguous(memory_format=CL)
    w, b = (_rand(3, 16, k, k, seed=1) * 0.6 / k).to(torch.bfloat16), _rand(3, seed=2).to(torch.bfloat16)
    with torch.no_grad():
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


@pytest.mark.bf16
@pytest.mark.parametrize("relu", [False, True])
def test_grouped_conv2d_halves_bf16(relu: bool) -> None:
    """bf16: the halves-order depthwise form gives the grouped conv's values within one bf16 rounding."""
    x = _rand(1, 32, 20, 24, dtype=torch.float32).bfloat16().contiguous(memory_format=CL)
    w, b = (_rand(16, 2, 3, 3, seed=1, dtype=torch.float32) / 3).bfloat16(), _rand(16, seed=2).bfloat16()
    ref = F.conv2d(x.double(), w.double(), b.double(), groups=16)
    ref = F.relu(ref) if relu else ref
    halves = x.index_select(1, halves_order(32)).contiguous(memory_format=CL)
    with torch.no_grad():
        out = grouped_conv2d(halves, w, b, stride=1, groups=16, halves=True, relu=relu)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=2**-7 * float(ref.abs().max()))


def test_halves_order() -> None:
    assert halves_order(6).tolist() == [0, 2, 4, 1, 3, 5]


@pytest.mark.bf16
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


@pytest.mark.parametrize("relu", [False, True])
def test_grouped_conv2d_fused_relu(relu: bool) -> None:
    x = _rand(1, 32, 11, 14, dtype=torch.float32)
    w, b = _rand(16, 2, 3, 3, seed=1, dtype=torch.float32), _rand(16, seed=2, dtype=torch.float32)
    ref = F.conv2d(x, w, b, groups=16)
    with torch.no_grad():
        out = grouped_conv2d(x.index_select(1, halves_order(32)), w, b, 1, 16, halves=True, relu=relu)
    torch.testing.assert_close(out, F.relu(ref) if relu else ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("cin", "cout", "groups", "hw"), [
    (16, 32, 16, (24, 30)),  # MicroAST's encoder: 1 input, 2 outputs per group; even sides (zero pad + row/col fix)
    (32, 64, 32, (8, 6)),
    (4, 8, 1, (10, 12)),  # dense
    (16, 32, 16, (13, 10)),  # odd height: reflect pad, then conv
    (16, 32, 16, (12, 9)),  # odd width
])
@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.bfloat16, marks=pytest.mark.bf16)])
@pytest.mark.parametrize("relu", [False, True])
def test_reflect_conv2d_stride2_equals_pad_then_conv(
    cin: int, cout: int, groups: int, hw: tuple[int, int], dtype: torch.dtype, relu: bool
) -> None:
    x = _rand(2, cin, *hw, dtype=torch.float32).to(dtype).contiguous(memory_format=CL)
    w = (_rand(cout, cin // groups, 3, 3, seed=1, dtype=torch.float32) / 3).to(dtype)
    b = _rand(cout, seed=2, dtype=torch.float32).to(dtype)
    ref = F.conv2d(F.pad(x.double(), (1,) * 4, mode="reflect"), w.double(), b.double(), stride=2, groups=groups)
    ref = F.relu(ref) if relu else ref
    with torch.no_grad():
        out = reflect_conv2d_stride2(x, w, b, groups, relu=relu)
    assert out.shape == ref.shape and out.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2**-7 * float(ref.abs().max())
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=tol)
    # the fixed first row and column, alone and tightly
    torch.testing.assert_close(out[:, :, 0].double(), ref[:, :, 0], rtol=0, atol=tol)
    torch.testing.assert_close(out[..., 0].double(), ref[..., 0], rtol=0, atol=tol)
    with pytest.raises(ValueError, match="3x3"):
        reflect_conv2d_stride2(x, w[..., :2, :2], b, groups)


def test_reflect_conv2d_stride2_with_autograd() -> None:
    x = _rand(1, 4, 8, 8, dtype=torch.float32).requires_grad_(True)
    w, b = _rand(8, 1, 3, 3, seed=1, dtype=torch.float32), _rand(8, seed=2, dtype=torch.float32)
    out = reflect_conv2d_stride2(x, w, b, groups=4, relu=True)
    torch.testing.assert_close(out, F.relu(F.conv2d(F.pad(x, (1,) * 4, mode="reflect"), w, b, stride=2, groups=4)))
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


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
    up = prepare(Upsample(scale_factor=2, mode="bilinear", align_corners=False), "fused")
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


# ------------------------------------------------------------------------------ fused and padded convs
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize(("stride", "padding", "groups"), [(1, 0, 1), (2, 1, 1), (1, 1, 2)])
def test_conv2d_equals_conv_then_relu(relu: bool, stride: int, padding: int, groups: int) -> None:
    x, w, b = _rand(2, 8, 21, 18, dtype=torch.float32), _rand(6, 8 // groups, 3, 3, seed=1, dtype=torch.float32), None
    b = _rand(6, seed=2, dtype=torch.float32)
    ref = F.conv2d(x, w, b, stride, padding, groups=groups)
    ref = F.relu(ref) if relu else ref
    with torch.no_grad():  # the fused oneDNN call
        out = conv2d(x.contiguous(memory_format=CL), w, b, stride, padding, groups, relu=relu)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert not relu or out.min() >= 0
    x.requires_grad_(True)  # with autograd: the plain ops, gradients flow
    conv2d(x, w, b, stride, padding, groups, relu=relu).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def _reflect_ref(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, relu: bool) -> torch.Tensor:
    p = w.shape[-1] // 2
    out = F.conv2d(F.pad(x, (p,) * 4, mode="reflect"), w, b)
    return F.relu(out) if relu else out


@pytest.mark.parametrize(("k", "cin", "cout", "hw"), [
    (3, 5, 16, (BORDER_FIX_MIN_SIDE + 3, BORDER_FIX_MIN_SIDE)),  # the border-fix path (zero padding + edges)
    (9, 3, 16, (BORDER_FIX_MIN_SIDE, BORDER_FIX_MIN_SIDE + 17)),  # 9x9: 4 rows and columns per side fixed
    (3, 4, 48, (BORDER_FIX_MIN_SIDE, BORDER_FIX_MIN_SIDE)),  # more outputs than the border fix takes: pad, then conv
    (3, 4, 8, (9, 12)),  # a small map: pad, then conv
])
@pytest.mark.parametrize("relu", [False, True])
def test_reflect_conv2d_equals_pad_then_conv(k: int, cin: int, cout: int, hw: tuple[int, int], relu: bool) -> None:
    x = _rand(2, cin, *hw, dtype=torch.float32).contiguous(memory_format=CL)
    w, b = _rand(cout, cin, k, k, seed=1, dtype=torch.float32) / k, _rand(cout, seed=2, dtype=torch.float32)
    ref = _reflect_ref(x, w, b, relu)
    with torch.no_grad():
        out = reflect_conv2d(x, w, b, relu=relu)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)
    # every border row and column was fixed: compare them alone, tightly
    p = k // 2
    for sl in [(slice(None), slice(None), slice(0, p)), (slice(None), slice(None), slice(-p, None)),
               (..., slice(0, p)), (..., slice(-p, None))]:
        torch.testing.assert_close(out[sl], ref[sl], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("k", "hw"), [
    (3, (BORDER_FIX_MIN_SIDE, BORDER_FIX_MIN_SIDE + 2)),  # zero-padded unrolled conv + border fix; width % 4 != 0
    (9, (BORDER_FIX_MIN_SIDE + 1, BORDER_FIX_MIN_SIDE + 5)),  # 9x9 (unroll 5, width % 5 == 4): pad, then conv
    (3, (20, 23)),  # small: pad, then the unrolled conv
])
def test_reflect_conv2d_narrow_equals_pad_then_conv(k: int, hw: tuple[int, int]) -> None:
    x = _rand(1, 16, *hw, dtype=torch.float32).contiguous(memory_format=CL)
    w, b = _rand(3, 16, k, k, seed=1, dtype=torch.float32) / k, _rand(3, seed=2, dtype=torch.float32)
    ref = _reflect_ref(x, w, b, relu=False)
    with torch.no_grad():
        out = reflect_conv2d(x, w, b, narrow=True)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="ReLU"):
        reflect_conv2d(x, w, b, relu=True, narrow=True)


def test_narrow_conv2d_zero_padding_equals_conv2d() -> None:
    x, w, b = _rand(2, 16, 13, 18), _rand(3, 16, 3, 3, seed=1), _rand(3, seed=2)
    torch.testing.assert_close(narrow_conv2d(x, w, b, padding=1), F.conv2d(x, w, b, padding=1), rtol=0, atol=1e-12)


def test_conv_forms_without_onednn_fusion(monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds without oneDNN's fused conv (``kernels._FUSED_CONV`` None) run F.conv2d + ReLU, pad + conv."""
    import impasto.accel.kernels as layers

    monkeypatch.setattr(layers, "_FUSED_CONV", None)
    n = BORDER_FIX_MIN_SIDE
    x = _rand(1, 4, n, n, dtype=torch.float32).contiguous(memory_format=CL)
    w, b = _rand(8, 4, 3, 3, seed=1, dtype=torch.float32), _rand(8, seed=2, dtype=torch.float32)
    with torch.no_grad():
        out = reflect_conv2d(x, w, b, relu=True)
        torch.testing.assert_close(out, _reflect_ref(x, w, b, True), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(conv2d(x, w, b, relu=True), F.relu(F.conv2d(x, w, b)), rtol=1e-5, atol=1e-5)


@pytest.mark.bf16
def test_reflect_conv2d_bf16_equals_pad_then_bf16_conv() -> None:
    """In bf16 the border fix gives the pad-then-conv values bit for bit (each output's products and sums are
    the same; measured equal), here within one bf16 step of them (on a map large enough for the border fix with
    and without AMX)."""
    n = max(BORDER_FIX_MIN_SIDE, BORDER_FIX_MIN_SIDE_AMX)
    x = _rand(1, 16, n, n + 8, dtype=torch.float32).to(torch.bfloat16).contiguous(memory_format=CL)
    w, b = (_rand(16, 16, 3, 3, seed=1) / 4).to(torch.bfloat16), _rand(16, seed=2).to(torch.bfloat16)
    with torch.no_grad():
        out = reflect_conv2d(x, w, b, relu=True)
        ref = F.relu(F.conv2d(F.pad(x, (1,) * 4, mode="reflect"), w, b))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref.float(), rtol=2**-7, atol=2**-7)


@pytest.mark.bf16
@pytest.mark.parametrize("cin", [64, 16])  # 64 x 260 x 250 takes the border fix under bf16 with AMX; 16 x ... pads
def test_reflect_conv2d_narrow_bf16_equals_pad_then_bf16_conv(cin: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The conv to RGB in bf16, by either form (padded copy, or zero padding + border fix), equals pad-then-conv
    within bf16 rounding, also at the first and last rows and columns; under AMX the form follows the map's size."""
    import impasto.accel.kernels as layers

    x = (_rand(1, cin, 260, 250, dtype=torch.float32).abs()).to(torch.bfloat16).contiguous(memory_format=CL)
    w, b = (_rand(3, cin, 3, 3, seed=1) / (3 * cin**0.5)).to(torch.bfloat16), _rand(3, seed=2).to(torch.bfloat16)
    pads: list[tuple[int, ...]] = []
    pad = layers.reflect_pad
    monkeypatch.setattr(layers, "reflect_pad", lambda t, p: pads.append(tuple(t.shape)) or pad(t, p))
    with torch.no_grad():
        out = reflect_conv2d(x, w, b, narrow=True)
        ref = F.conv2d(F.pad(x, (1,) * 4, mode="reflect").float(), w.float(), b.float())
    fixed = all(s[2] < 10 or s[3] < 10 for s in pads)  # only the border strips were padded
    if layers.has_amx():
        assert fixed == (260 * 250 * cin >= layers.NARROW_FIX_MIN_VALUES_AMX)
    for sl in [(...,), (..., slice(0, 1), slice(None)), (..., slice(-1, None), slice(None)), (..., slice(0, 1)),
               (..., slice(-1, None))]:
        torch.testing.assert_close(out[sl].float(), ref[sl], rtol=2**-6, atol=2**-6)


def test_reflect_conv_module_paths_agree() -> None:
    """reflect_conv: the functional form without autograd, the module (hooks, gradients) with it."""
    conv = torch.nn.Conv2d(3, 8, 3)
    x = _rand(1, 3, 72, 66, dtype=torch.float32)
    calls = []
    conv.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        fast = reflect_conv(conv, x, relu=True)
    assert calls == []
    plain = reflect_conv(conv, x, relu=True)
    assert calls == [1] and plain.requires_grad
    torch.testing.assert_close(fast, plain.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pad", [1, 2, 4])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_upsample_bilinear2x_with_padding_equals_upsample_then_pad(pad: int, layout: str) -> None:
    x = _rand(2, 6, 7, 9)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    out = upsample_bilinear2x(x, pad=pad)
    assert torch.equal(out, reflect_pad(upsample_bilinear2x(x), pad))
    with pytest.raises(ValueError, match="reflection padding"):
        upsample_bilinear2x(_rand(1, 2, 1, 1), pad=2)


# even sides, an odd last row and/or column (pooled on their own: ceil mode), and 1-pixel maps (ATen)
@pytest.mark.parametrize(("h", "w"), [(8, 12), (7, 12), (8, 9), (9, 7), (2, 2), (3, 3), (1, 4), (5, 1)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_max_pool2x_equals_max_pool2d(h: int, w: int, dtype: torch.dtype) -> None:
    x = _rand(2, 6, h, w, dtype=torch.float32).to(dtype).contiguous(memory_format=CL)
    out = max_pool2x(x)
    assert torch.equal(out, F.max_pool2d(x, 2, 2, ceil_mode=True))
    assert out.is_contiguous(memory_format=CL) or min(h, w) == 1


# ---------------------------------------------------------------------------------------------- up-sampling + conv
def _upsample_conv_ref(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, relu: bool, mode: str) -> torch.Tensor:
    up = F.interpolate(x, scale_factor=2, mode=mode, **({} if mode == "nearest" else {"align_corners": False}))
    return _reflect_ref(up, w, b, relu)


@pytest.mark.parametrize(("cin", "cout", "hw"), [(3, 2, (5, 7)), (16, 16, (1, 1)), (8, 5, (2, 9)), (16, 32, (40, 33)),
                                                 (4, 4, (3, 3)), (6, 3, (3, 8))])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize(("mode", "taps"), [("nearest", 3), ("nearest", 2), ("nearest", None), ("bilinear", None)])
def test_upsample_conv2d_equals_upsample_pad_conv(
    cin: int, cout: int, hw: tuple[int, int], relu: bool, mode: str, taps: int | None
) -> None:
    """float64: 2x up-sampling, reflection pad 1, 3x3 conv == one phase conv on the replicate-padded low-res map
    (bilinear: with the first and last rows and columns recomputed; below 3 x 3 the explicit form); nearest in both
    forms (3 x 3 phase kernels, compact 2 x 2 ones) and in the one ``upsample_phase_taps`` picks (None)."""
    x = _rand(2, cin, *hw).contiguous(memory_format=CL)
    w, b = _rand(cout, cin, 3, 3, seed=1), _rand(cout, seed=2)
    ref = _upsample_conv_ref(x, w, b, relu, mode)
    phase = None if taps is None else upsample_phase_weight(w, b, mode, taps=taps)
    with torch.no_grad():
        out = upsample_conv2d(x, w, b, relu=relu, mode=mode, phase=phase)
    assert out.shape == ref.shape == (2, cout, 2 * hw[0], 2 * hw[1])
    assert out.is_contiguous(memory_format=CL)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for sl in [(slice(None), slice(None), 0), (slice(None), slice(None), -1), (..., 0), (..., -1)]:  # the borders
        torch.testing.assert_close(out[sl], ref[sl], rtol=1e-12, atol=1e-12)
    with torch.no_grad():  # the result written reflection-padded, for a next conv without padding
        padded = upsample_conv2d(x, w, b, relu=relu, mode=mode, phase=phase, pad_output=True)
    assert padded.shape == (2, cout, 2 * hw[0] + 2, 2 * hw[1] + 2) and padded.is_contiguous(memory_format=CL)
    torch.testing.assert_close(padded, F.pad(ref, (1, 1, 1, 1), mode="reflect"), rtol=1e-12, atol=1e-12)


def test_upsample_phase_weight_hand_computed() -> None:
    """One input and output channel, kernel rows r0, r1, r2. Nearest: phase (0, 0) holds r0 at row 0 and r1 + r2 at
    row 1, with the columns combined the same way (c0, c1 + c2, 0); phase (1, 1) is the mirror image. Bilinear:
    phase (0, 0) row 0 = 0.75 r0 + 0.25 r1, row 2 = 0.25 r2 (then the same along columns)."""
    w = torch.arange(1.0, 10.0, dtype=torch.float64).reshape(1, 1, 3, 3)  # rows (1 2 3), (4 5 6), (7 8 9)
    pw, pb = upsample_phase_weight(w, torch.tensor([0.5], dtype=torch.float64))
    assert pw.shape == (4, 1, 3, 3) and pb.tolist() == [0.5] * 4
    torch.testing.assert_close(pw[0, 0], torch.tensor([[1.0, 5, 0], [11, 28, 0], [0, 0, 0]], dtype=torch.float64))
    torch.testing.assert_close(pw[3, 0], torch.tensor([[0.0, 0, 0], [0, 12, 9], [0, 15, 9]], dtype=torch.float64))
    assert float(pw.sum()) == 4 * float(w.sum())  # each phase uses every tap once
    bw, _ = upsample_phase_weight(w, mode="bilinear")
    row0 = 0.75 * w[0, 0, 0] + 0.25 * w[0, 0, 1]  # (1.75, 2.75, 3.75)
    torch.testing.assert_close(bw[0, 0, 0, 0], 0.75 * row0[0] + 0.25 * row0[1])
    torch.testing.assert_close(bw[0, 0, 2, 2], 0.25 * 0.25 * w[0, 0, 2, 2])
    torch.testing.assert_close(bw.sum((1, 2, 3)), torch.full((4,), float(w.sum()), dtype=torch.float64))
    with pytest.raises(ValueError, match="mode"):
        upsample_phase_weight(w, mode="bicubic")
    cw, cb = upsample_phase_weight(w, torch.tensor([0.5], dtype=torch.float64), taps=2)  # the nonzero 2x2 blocks
    assert cw.shape == (4, 1, 2, 2) and cb.tolist() == [0.5] * 4
    torch.testing.assert_close(cw[0, 0], pw[0, 0, :2, :2])
    torch.testing.assert_close(cw[1, 0], pw[1, 0, :2, 1:])
    torch.testing.assert_close(cw[3, 0], torch.tensor([[12.0, 9], [15, 9]], dtype=torch.float64))
    assert float(cw.sum()) == float(pw.sum())  # nothing nonzero was cut off
    with pytest.raises(ValueError, match="taps=2 needs mode 'nearest'"):
        upsample_phase_weight(w, mode="bilinear", taps=2)


def test_upsample_phase_taps_policy() -> None:
    """Compact kernels for nearest (float32, float64), 3 x 3 for bilinear; bf16 under AMX only from 64 channels."""
    import impasto.accel.kernels as layers

    assert upsample_phase_taps(torch.zeros(1, 16, 4, 4)) == 2
    assert upsample_phase_taps(torch.zeros(1, 64, 4, 4, dtype=torch.float64)) == 2
    assert upsample_phase_taps(torch.zeros(1, 64, 4, 4), "bilinear") == 3
    narrow, wide = torch.zeros(1, 16, 4, 4, dtype=torch.bfloat16), torch.zeros(1, 64, 4, 4, dtype=torch.bfloat16)
    assert upsample_phase_taps(wide) == 2
    assert upsample_phase_taps(narrow) == (3 if layers.has_amx() else 2)


@pytest.mark.bf16
@pytest.mark.parametrize(("mode", "taps"), [("nearest", 3), ("nearest", 2), ("bilinear", 3)])
def test_upsample_conv2d_bf16_within_rounding(mode: str, taps: int) -> None:
    x = _rand(1, 16, 64, 48, dtype=torch.float32).contiguous(memory_format=CL)
    w, b = _rand(16, 16, 3, 3, seed=1, dtype=torch.float32) / 12, _rand(16, seed=2, dtype=torch.float32)
    ref = _upsample_conv_ref(x, w, b, True, mode)
    phase = upsample_phase_weight(w.bfloat16(), b.bfloat16(), mode, taps=taps)
    with torch.no_grad():
        out = upsample_conv2d(x.bfloat16(), w.bfloat16(), b.bfloat16(), relu=True, mode=mode, phase=phase).float()
        plain = _upsample_conv_ref(x.bfloat16(), w.bfloat16(), b.bfloat16(), True, mode).float()
    err, err_plain = float((out - ref).norm() / ref.norm()), float((plain - ref).norm() / ref.norm())
    assert err < 1e-2 and err < 1.5 * err_plain + 1e-3


@pytest.mark.parametrize(("cin", "mid", "cout", "hw"), [(16, 16, 3, (40, 33)), (3, 5, 3, (1, 1)), (8, 4, 2, (2, 9)),
                                                        (6, 8, 3, (7, 2)), (4, 4, 4, (3, 3))])
def test_upsample_conv2d_pair_equals_upsample_pad_conv_pad_conv(
    cin: int, mid: int, cout: int, hw: tuple[int, int]
) -> None:
    """float64: nearest 2x up-sampling, reflection pad, 3x3 conv, ReLU, reflection pad, 3x3 conv == the pair on the
    compact phase layout (borders included: they come from the rows and columns copied into the extra cells)."""
    x = _rand(2, cin, *hw).contiguous(memory_format=CL)
    w, b = _rand(mid, cin, 3, 3, seed=1), _rand(mid, seed=2)
    w2, b2 = _rand(cout, mid, 3, 3, seed=3), _rand(cout, seed=4)
    ref = _reflect_ref(_upsample_conv_ref(x, w, b, True, "nearest"), w2, b2, False)
    with torch.no_grad():
        out = upsample_conv2d_pair(x, w, b, w2, b2)
        given = upsample_conv2d_pair(x, w, b, w2, b2, upsample_phase_weight(w, b, taps=2), phase_input_weight(w2, b2),
                                     dtype=torch.float32)
    assert out.shape == ref.shape == (2, cout, 2 * hw[0], 2 * hw[1]) and out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for sl in [(slice(None), slice(None), 0), (slice(None), slice(None), -1), (..., 0), (..., -1)]:  # the borders
        torch.testing.assert_close(out[sl], ref[sl], rtol=1e-12, atol=1e-12)
    assert given.dtype == torch.float32
    torch.testing.assert_close(given, ref.float(), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="compact"):
        upsample_conv2d_pair(x, w, b, w2, b2, upsample_phase_weight(w, b, taps=3))


def test_phase_input_weight_hand_computed() -> None:
    """One channel in and out, kernel taps 1..9 (rows (1 2 3), (4 5 6), (7 8 9)). Output phase (0, 0) (pixel 2i, 2j)
    reads pixel rows 2i - 1, 2i, 2i + 1: cell i phase 1, cell i phase 0, cell i + 1 phase 1; so its weight for input
    phase (1, 1) at cell (0, 0) is tap (0, 0) = 1 and at cells (1, 1) tap (2, 2) = 9, and input phase (0, 0) appears
    only at cell (0, 0) with the centre tap 5. Every output phase uses each of the 9 taps once (9 of 16 nonzero)."""
    w = torch.arange(1.0, 10.0, dtype=torch.float64).reshape(1, 1, 3, 3)
    pw, pb = phase_input_weight(w, torch.tensor([0.5], dtype=torch.float64))
    assert pw.shape == (4, 4, 2, 2) and pb.tolist() == [0.5] * 4
    # output channel k = a' * 2 + c'; input channel = a * 2 + c (phase a = 1: the cell's first row)
    assert pw[0, 3, 0, 0] == 1 and pw[0, 3, 1, 1] == 9 and pw[0, 0, 0, 0] == 5
    torch.testing.assert_close(pw[0, 0], torch.tensor([[5.0, 0], [0, 0]], dtype=torch.float64))
    torch.testing.assert_close(pw[3, 3], torch.tensor([[0.0, 0], [0, 5]], dtype=torch.float64))
    for k in range(4):
        assert int(torch.count_nonzero(pw[k])) == 9 and float(pw[k].sum()) == float(w.sum())
    with pytest.raises(ValueError, match="3x3"):
        phase_input_weight(torch.zeros(1, 1, 5, 5))


@pytest.mark.bf16
def test_upsample_conv2d_pair_bf16_within_rounding() -> None:
    x = _rand(1, 16, 64, 48, dtype=torch.float32).contiguous(memory_format=CL)
    w, b = _rand(16, 16, 3, 3, seed=1, dtype=torch.float32) / 12, _rand(16, seed=2, dtype=torch.float32)
    w2, b2 = _rand(3, 16, 3, 3, seed=3, dtype=torch.float32) / 12, _rand(3, seed=4, dtype=torch.float32)
    ref = _reflect_ref(_upsample_conv_ref(x, w, b, True, "nearest"), w2, b2, False)
    bf = [t.bfloat16() for t in (x, w, b, w2, b2)]
    with torch.no_grad():
        out = upsample_conv2d_pair(*bf, dtype=torch.float32)
        plain = _reflect_ref(_upsample_conv_ref(bf[0], bf[1], bf[2], True, "nearest"), bf[3], bf[4], False).float()
    assert out.dtype == torch.float32
    err, err_plain = float((out - ref).norm() / ref.norm()), float((plain - ref).norm() / ref.norm())
    assert err < 1e-2 and err < 1.5 * err_plain + 1e-3


@pytest.mark.parametrize(("cout", "cin", "groups"), [(16, 32, 16), (32, 16, 16), (12, 8, 4), (6, 6, 1)])
def test_block_diagonal_weight_equals_grouped_conv(cout: int, cin: int, groups: int) -> None:
    x, w = _rand(2, cin, 7, 9), _rand(cout, cin // groups, 3, 3, seed=1)
    dense = block_diagonal_weight(w, groups)
    assert dense.shape == (cout, cin, 3, 3)
    assert int((dense != 0).sum()) == int((w != 0).sum())  # the MAC counter's nonzero weights: the grouped conv's
    torch.testing.assert_close(F.conv2d(x, dense), F.conv2d(x, w, groups=groups), rtol=0, atol=1e-12)


def test_derived_weights_cached_until_a_source_changes() -> None:
    w, b = torch.randn(4, 3, 3, 3), torch.randn(4)
    calls = []

    def build() -> tuple[torch.Tensor, ...]:
        calls.append(1)
        return upsample_phase_weight(w, b)

    owner, other_owner = torch.nn.Module(), torch.nn.Module()
    first = derived_weights(owner, (w, b), ("t",), build)
    assert derived_weights(owner, (w, b), ("t",), build) is first and len(calls) == 1
    derived_weights(owner, (w, b), ("other",), build)  # another tag: its own entry
    assert len(calls) == 2
    derived_weights(other_owner, (w, b), ("t",), build)  # kept per module: no process-wide cache
    assert len(calls) == 3
    with torch.no_grad():
        w.mul_(2)  # in place (an optimizer step, load_state_dict): rebuilt
    again = derived_weights(owner, (w, b), ("t",), build)
    assert len(calls) == 4 and again is not first
    torch.testing.assert_close(again[0], upsample_phase_weight(w, b)[0])
    w2 = w.clone()  # another tensor (load_state_dict(assign=True), .to()): rebuilt
    derived_weights(owner, (w2, b), ("t",), build)
    assert len(calls) == 5


@pytest.mark.weights
def test_decoder_uses_new_weights_after_load_state_dict() -> None:
    """The decoder's cached phase kernels follow its parameters (no stale kernels after loading other weights)."""
    import copy

    from impasto.backbones import load_decoder

    dec = prepare(copy.deepcopy(load_decoder("vgg19-16x", "relu2_1")), "fused")  # shared module: modify a copy
    feat = torch.rand(1, dec.in_channels, 12, 14, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = dec(feat)
        state = {k: v * 0.5 if k.endswith("weight") else v for k, v in dec.state_dict().items()}
        dec.load_state_dict(state)
        after = dec(feat)
    with torch.enable_grad():
        plain = dec(feat)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, plain.detach(), rtol=0, atol=1e-4)
