"""Tests of impasto.transforms.stats: mean/std, mean-variance normalisation, AdaIN."""

from __future__ import annotations

import math

import pytest
import torch

from impasto.transforms import adain, adain_features, mean_std, mean_variance_norm


def test_mean_std_hand_computation() -> None:
    feat = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[-1.0, -1.0], [-1.0, 5.0]]]])  # 1 x 2 x 2 x 2
    mean, std = mean_std(feat)
    assert mean.shape == (1, 2, 1, 1) and std.shape == (1, 2, 1, 1)
    # channel 0: mean 2.5, unbiased var = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3
    # channel 1: mean 0.5, unbiased var = (3 * 2.25 + 20.25) / 3 = 9
    assert mean.flatten().tolist() == pytest.approx([2.5, 0.5])
    assert std.flatten().tolist() == pytest.approx([math.sqrt(5 / 3 + 1e-5), math.sqrt(9 + 1e-5)], rel=1e-6)


def test_mean_std_single_pixel_is_finite() -> None:
    mean, std = mean_std(torch.randn(2, 3, 1, 1))
    assert torch.isfinite(std).all()
    assert torch.allclose(std, torch.full_like(std, math.sqrt(1e-5)))


def test_mean_variance_norm() -> None:
    feat = torch.randn(2, 4, 5, 6) * 3 + 7
    out = mean_variance_norm(feat)
    flat = out.flatten(2)
    assert torch.allclose(flat.mean(2), torch.zeros(2, 4), atol=1e-5)
    assert torch.allclose(flat.std(2), torch.ones(2, 4), atol=1e-4)


def test_adain_hand_computation() -> None:
    content = torch.tensor([[[[0.0, 2.0], [4.0, 6.0]]]])  # mean 3, unbiased var 20/3
    s_mean = torch.tensor([10.0]).view(1, 1, 1, 1)
    s_std = torch.tensor([2.0]).view(1, 1, 1, 1)
    out = adain(content, s_mean, s_std)
    c_std = math.sqrt(20 / 3 + 1e-5)
    expected = torch.tensor([-3.0, -1.0, 1.0, 3.0]) / c_std * 2 + 10
    assert torch.allclose(out.flatten(), expected, atol=1e-6)


def test_adain_output_has_style_statistics() -> None:
    torch.manual_seed(0)
    content = torch.randn(3, 8, 6, 7) * 2 - 1
    style = torch.randn(3, 8, 9, 5) * 5 + 3
    out = adain_features(content, style)
    assert out.shape == content.shape
    o_mean, o_std = mean_std(out)
    s_mean, s_std = mean_std(style)
    assert torch.allclose(o_mean, s_mean, atol=1e-4)
    assert torch.allclose(o_std, s_std, rtol=1e-4)


def test_adain_features_broadcasts_one_style_and_matches_cached_stats() -> None:
    content, style = torch.randn(4, 3, 5, 5), torch.randn(1, 3, 8, 8)
    cached = mean_std(style)
    out = adain_features(content, style)
    assert torch.equal(out, adain(content, *cached))
    for i in range(4):
        assert torch.allclose(out[i : i + 1], adain_features(content[i : i + 1], style), atol=1e-6)


def test_adain_gradcheck() -> None:
    content = torch.randn(2, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    s_mean = torch.randn(2, 3, 1, 1, dtype=torch.float64, requires_grad=True)
    s_std = torch.rand(2, 3, 1, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(adain, (content, s_mean, s_std))
    style = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(adain_features, (content, style))


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="B x C x H x W"):
        mean_std(torch.randn(3, 4, 4))
    with pytest.raises(ValueError, match="channels"):
        adain_features(torch.randn(1, 3, 4, 4), torch.randn(1, 4, 4, 4))


def test_mean_std_keep_dtype_false_keeps_float32_statistics() -> None:
    """The one mean_std serves AdaIN (statistics in the features' dtype) and MicroAST (float32 under bf16)."""
    feat = (torch.randn(2, 3, 6, 5) * 3 + 1).to(torch.bfloat16)
    mean, std = mean_std(feat)
    mean32, std32 = mean_std(feat, keep_dtype=False)
    assert mean.dtype == std.dtype == torch.bfloat16 and mean32.dtype == std32.dtype == torch.float32
    torch.testing.assert_close(mean32.to(torch.bfloat16), mean)
    torch.testing.assert_close(std32.to(torch.bfloat16), std)
    ref = feat.float()
    torch.testing.assert_close(mean32, ref.mean((2, 3), keepdim=True))
    torch.testing.assert_close(std32, (ref.var((2, 3), keepdim=True) + 1e-5).sqrt())
