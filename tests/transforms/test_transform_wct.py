"""Tests of impasto.transforms.wct: whitening-colouring transform with cacheable style statistics."""

from __future__ import annotations

import pytest
import torch

from impasto.transforms import WCTStyleStats, wct, wct_features, wct_style_stats
from impasto.transforms.wct import wct_affine


def _mean_cov(feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = feat[0].reshape(feat.shape[1], -1).double()
    mean = flat.mean(1, keepdim=True)
    centred = flat - mean
    return mean, centred @ centred.T / (flat.shape[1] - 1)


def _correlated(c: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(c, c, generator=g)
    x = mix @ torch.randn(c, h * w, generator=g) + torch.randn(c, 1, generator=g) * 3
    return x.reshape(1, c, h, w)


def test_output_has_style_mean_and_covariance() -> None:
    content, style = _correlated(8, 10, 12, 0), _correlated(8, 9, 7, 1)
    out = wct_features(content, style)
    assert out.shape == content.shape and out.dtype == torch.float32
    o_mean, o_cov = _mean_cov(out)
    s_mean, s_cov = _mean_cov(style)
    assert torch.allclose(o_mean, s_mean, atol=1e-4)
    assert torch.allclose(o_cov, s_cov, atol=1e-3 * s_cov.abs().max().item())


def test_one_channel_is_standardisation_hand_computation() -> None:
    content = torch.tensor([[[[0.0, 1.0, 2.0, 5.0]]]])  # mean 2, unbiased var 14/3
    style = torch.tensor([[[[10.0, 14.0]]]])  # mean 12, unbiased var 8
    out = wct_features(content, style)
    expected = (torch.tensor([-2.0, -1.0, 0.0, 3.0]) / (14 / 3) ** 0.5) * 8**0.5 + 12
    assert torch.allclose(out.flatten(), expected, atol=1e-5)


def test_style_stats_are_cacheable_and_match() -> None:
    content, style = _correlated(6, 5, 5, 2), _correlated(6, 7, 4, 3)
    stats = wct_style_stats(style)
    assert isinstance(stats, WCTStyleStats)
    assert stats.mean.shape == (6, 1) and stats.colour.shape == (6, 6)
    assert stats.colour.dtype == torch.float64
    # colour is the symmetric square root of the style covariance
    _, s_cov = _mean_cov(style)
    assert torch.allclose(stats.colour @ stats.colour, s_cov, atol=1e-8)
    assert torch.equal(wct(content, stats), wct_features(content, style))


def test_content_equal_to_style_is_identity_even_when_rank_deficient() -> None:
    for c, h, w in [(5, 6, 6), (16, 2, 3)]:  # full rank, then H*W = 6 < C = 16
        feat = _correlated(c, h, w, 4)
        out = wct_features(feat, feat)
        assert torch.isfinite(out).all()
        assert torch.allclose(out, feat, atol=1e-4)


def test_rank_deficient_style_still_matches_covariance() -> None:
    content = _correlated(8, 6, 6, 5)  # 36 pixels: full rank
    style = _correlated(8, 1, 4, 6)  # 4 pixels: covariance of rank 3
    out = wct_features(content, style)
    assert torch.isfinite(out).all()
    o_mean, o_cov = _mean_cov(out)
    s_mean, s_cov = _mean_cov(style)
    assert torch.allclose(o_mean, s_mean, atol=1e-4)
    assert torch.allclose(o_cov, s_cov, atol=1e-3 * s_cov.abs().max().item())


def test_rank_deficient_content_is_finite() -> None:
    content = _correlated(32, 2, 2, 7)  # H*W = 4 < C = 32
    style = _correlated(32, 3, 3, 8)  # H*W = 9 < C = 32
    out = wct_features(content, style)
    assert torch.isfinite(out).all()
    o_mean, _ = _mean_cov(out)
    s_mean, _ = _mean_cov(style)
    assert torch.allclose(o_mean, s_mean, atol=1e-4)
    constant = torch.ones(1, 4, 3, 3)  # zero covariance: whitening keeps nothing, output = style mean
    assert torch.allclose(
        wct_features(constant, style[:, :4]),
        _mean_cov(style[:, :4])[0].float().view(1, 4, 1, 1).expand(1, 4, 3, 3),
        atol=1e-5,
    )


def test_batch_and_per_sample_styles() -> None:
    content = torch.cat([_correlated(4, 5, 5, 9), _correlated(4, 5, 5, 10)])
    style = torch.cat([_correlated(4, 6, 6, 11), _correlated(4, 6, 6, 12)])
    shared = wct_features(content, style[:1])
    per = wct_features(content, style)
    for i in range(2):
        assert torch.allclose(shared[i : i + 1], wct_features(content[i : i + 1], style[:1]), atol=1e-6)
        assert torch.allclose(per[i : i + 1], wct_features(content[i : i + 1], style[i : i + 1]), atol=1e-6)


def test_content_ridge_damps_whitening() -> None:
    content, style = _correlated(4, 6, 6, 13), _correlated(4, 6, 6, 14)
    stats = wct_style_stats(style)
    flat = content[0].reshape(4, -1).double()
    mean = flat.mean(1, keepdim=True)
    cov = (flat - mean) @ (flat - mean).T / (flat.shape[1] - 1) + torch.eye(4, dtype=torch.float64)
    evals, evecs = torch.linalg.eigh(cov)
    expected = stats.colour @ (evecs @ torch.diag(evals.rsqrt()) @ evecs.T) @ (flat - mean) + stats.mean
    out = wct(content, stats, content_ridge=1.0)
    assert torch.allclose(out[0].reshape(4, -1).double(), expected, atol=1e-5)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="1 x C x H x W"):
        wct_style_stats(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="channels"):
        wct(torch.randn(1, 3, 4, 4), wct_style_stats(torch.randn(1, 4, 4, 4)))


def _wct_float64_reference(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Eqs. 2-3 of Li et al. written directly in float64 (no chunking, no float32 products)."""
    c_mean, c_cov = _mean_cov(content)
    s_mean, s_cov = _mean_cov(style)
    ce, cv = torch.linalg.eigh(c_cov)
    se, sv = torch.linalg.eigh(s_cov)
    whiten = (cv * ce.rsqrt()) @ cv.T
    colour = (sv * se.sqrt()) @ sv.T
    flat = content[0].reshape(content.shape[1], -1).double()
    return (colour @ whiten @ (flat - c_mean) + s_mean).reshape(content.shape)


@pytest.mark.parametrize(("channels_last", "block"), [(False, None), (True, None), (True, 20000)])
def test_large_maps_use_float32_products_and_match_float64(
    channels_last: bool, block: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 210 x 200 = 42000 pixels > the chunk size: the float32 path with float64 accumulation across chunks (with
    # block 20000: centred in 3 blocks, the last one shorter than a chunk)
    if block:
        import sys

        monkeypatch.setattr(sys.modules["impasto.transforms.wct"], "_CENTRE_BLOCK", block)
    content, style = _correlated(16, 210, 200, 11), _correlated(16, 150, 180, 12)
    if channels_last:
        content = content.contiguous(memory_format=torch.channels_last)
    out = wct_features(content, style)
    ref = _wct_float64_reference(content, style)
    err = (out.double() - ref).abs().max() / ref.abs().max()
    assert err < 1e-5
    assert out.dtype == torch.float32


def test_wct_ignores_bf16_autocast() -> None:
    content, style = _correlated(16, 150, 150, 13), _correlated(16, 60, 60, 14)
    exact = wct_features(content, style)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = wct_features(content, style)
    assert auto.dtype == torch.float32
    assert torch.allclose(auto, exact, atol=1e-5, rtol=1e-5)


def test_wct_output_is_canonical_channels_last() -> None:
    """The output's strides are the canonical channels-last ones, so the decoder's pads and convs stay channels-last
    (with a batch stride of C, ATen ran every decoder layer channels-first)."""
    g = torch.Generator().manual_seed(0)
    content = torch.randn(1, 8, 10, 12, generator=g).contiguous(memory_format=torch.channels_last)
    out = wct(content, wct_style_stats(torch.randn(1, 8, 9, 9, generator=g)))
    assert out.stride() == (8 * 10 * 12, 1, 12 * 8, 8)


@pytest.mark.parametrize(("h", "w"), [(12, 10), (210, 200)])  # float64 path and chunked float32 path
def test_wct_affine_reproduces_wct(h: int, w: int) -> None:
    """wct(f) = T f + shift at every pixel: the form a decoder folds into its first conv."""
    content, style = _correlated(16, h, w, 21), _correlated(16, 40, 50, 22)
    stats = wct_style_stats(style)
    t, shift = wct_affine(content, stats)
    assert t.shape == (16, 16) and shift.shape == (16,) and t.dtype == shift.dtype == torch.float64
    flat = content[0].reshape(16, -1).double()
    via_affine = (t @ flat + shift[:, None]).reshape(content.shape)
    ref = _wct_float64_reference(content, style)
    assert (via_affine - ref).abs().max() / ref.abs().max() < 1e-5  # as wct itself (float32 covariance products)
    assert (wct(content, stats).double() - via_affine).abs().max() / ref.abs().max() < 1e-5  # float32 products
    with pytest.raises(ValueError, match="channels"):
        wct_affine(content[:, :8], stats)


@pytest.mark.parametrize(("weights", "alpha"), [([1.0], 1.0), ([1.0], 0.6), ([0.3, 0.7], 0.8)])
def test_wct_method_affine_equals_blending_the_targets(weights: list[float], alpha: float) -> None:
    """The wct method folds WCT + style interpolation + alpha into one affine map when the mix is uniform."""
    from impasto.methods.base import blend_features
    from impasto.methods.wct import WCT

    f = _correlated(8, 30, 20, 31)
    stats = [wct_style_stats(_correlated(8, 25, 25, 32 + k)) for k in range(len(weights))]
    mix = torch.tensor(weights)[:, None, None].expand(-1, 30, 20)
    a, c = WCT._affine(f, stats, mix, alpha)
    folded = torch.einsum("ji,bihw->bjhw", a, f.double()) + c[None, :, None, None]
    ref = blend_features(f, [wct(f, s) for s in stats], mix, alpha)
    torch.testing.assert_close(folded.float(), ref, rtol=1e-4, atol=1e-4)
