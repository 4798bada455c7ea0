"""Tests of impasto.evaluation.metrics: known answers on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from impasto.errors import ConfigError
from impasto.evaluation.metrics import (
    balanced_style_distance,
    content_loss_at,
    edge_correlation,
    gram_matrix,
    gram_style_distance,
    grid_artifact_score,
    luminance,
    mean_std_style_distance,
    psnr,
    sharpness,
    ssim,
)


def _smooth_image(b: int = 2, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    """Structured test images in [0.1, 0.9]: low-frequency random patterns (not flat, not pure noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 3, h // 8, w // 8, generator=g)
    img = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return 0.1 + 0.8 * img


def _feats(seed: int = 0, b: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "relu1_1": torch.relu(torch.randn(b, 4, 8, 8, generator=g)),
        "relu2_1": torch.relu(torch.randn(b, 6, 4, 4, generator=g)),
    }


# ---------------------------------------------------------------------------------------------- luminance
def test_luminance_bt601_weights():
    x = torch.zeros(1, 3, 2, 2)
    x[:, 0], x[:, 1], x[:, 2] = 1.0, 0.5, 0.25
    y = luminance(x)
    assert y.shape == (1, 1, 2, 2)
    assert torch.allclose(y, torch.full_like(y, 0.299 + 0.587 * 0.5 + 0.114 * 0.25))


# ---------------------------------------------------------------------------------------------- identical
def test_identical_images_give_perfect_scores():
    x = _smooth_image()
    s = ssim(x, x.clone())
    assert s.shape == (2,)
    assert torch.equal(s, torch.ones(2))  # exactly 1, not approximately
    assert torch.isinf(psnr(x, x.clone())).all()
    assert torch.allclose(edge_correlation(x, x.clone()), torch.ones(2), atol=1e-6)


def test_identical_features_give_zero_losses():
    f = _feats()
    g = {k: v.clone() for k, v in f.items()}
    assert torch.equal(content_loss_at(f, g, "relu2_1"), torch.zeros(2))
    for fn in (gram_style_distance, mean_std_style_distance, balanced_style_distance):
        out = fn(f, g)
        assert set(out) == {"relu1_1", "relu2_1", "total"}
        for v in out.values():
            assert v.shape == (2,)
            assert torch.equal(v, torch.zeros(2)), fn.__name__


# ---------------------------------------------------------------------------------------------- SSIM
def test_ssim_constant_images_hand_value():
    # constant images: variances and covariance are 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b = 0.2, 0.6
    c1 = (0.01 * 1.0) ** 2
    x = torch.full((1, 3, 16, 16), a)
    y = torch.full((1, 3, 16, 16), b)
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(x, y).item() == pytest.approx(expected, rel=1e-5)


def test_ssim_decreases_with_noise():
    x = _smooth_image(b=1, h=48, w=48)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    values = [ssim(x, (x + s * noise).clamp(0, 1)).item() for s in (0.0, 0.02, 0.05, 0.1, 0.2)]
    assert values[0] == 1.0
    assert all(a > b for a, b in zip(values, values[1:], strict=False)), values
    assert values[-1] < 0.6


def test_ssim_is_symmetric_and_per_sample():
    x = _smooth_image(b=2, seed=0)
    y = _smooth_image(b=2, seed=1)
    s_xy, s_yx = ssim(x, y), ssim(y, x)
    assert torch.allclose(s_xy, s_yx, atol=1e-6)
    assert torch.allclose(ssim(x[1:], y[1:]), s_xy[1:], atol=1e-6)


def test_ssim_rejects_bad_inputs():
    with pytest.raises(ConfigError, match="same shape"):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))
    with pytest.raises(ConfigError, match="window"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ConfigError, match="B x 3 x H x W"):
        ssim(torch.rand(3, 16, 16), torch.rand(3, 16, 16))


def test_ssim_gradcheck_float64():
    x = torch.rand(1, 1, 7, 7, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 1, 7, 7, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: ssim(a, y, window=3, sigma=1.0), (x,), fast_mode=True)


# ---------------------------------------------------------------------------------------------- PSNR
def test_psnr_known_values():
    x = torch.zeros(2, 3, 4, 4)
    y = torch.zeros(2, 3, 4, 4)
    y[0] = 0.1  # MSE 0.01 -> 20 dB
    y[1, 0] = 0.5  # MSE = 0.25 / 3 -> 10 log10(12)
    p = psnr(x, y)
    assert p[0].item() == pytest.approx(20.0, abs=1e-4)
    assert p[1].item() == pytest.approx(10 * math.log10(12.0), abs=1e-4)


# ---------------------------------------------------------------------------------------------- sharpness
def test_sharpness_of_a_step_edge_by_hand():
    # a vertical step of height 0.5 in a 10-wide image: the two valid columns beside it see |gx| = 4 * 0.5
    x = torch.zeros(1, 1, 6, 10)
    x[..., 5:] = 0.5
    assert sharpness(x).item() == pytest.approx(4 * 0.5 * 2 / 8)
    grey = x.expand(1, 3, 6, 10)  # grey RGB: the same luma
    assert sharpness(grey).item() == pytest.approx(4 * 0.5 * 2 / 8, rel=1e-6)


def test_sharpness_drops_with_blur_ignores_offset_scales_with_contrast():
    x = _smooth_image(seed=3) + 0.05 * torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    x = x.clamp(0, 1)
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    s = sharpness(x)
    assert s.shape == (2,) and (s > 0).all()
    assert (sharpness(blurred) < s).all()
    assert torch.allclose(sharpness(0.5 * x + 0.2), 0.5 * s, rtol=1e-5)
    assert torch.equal(sharpness(torch.full((1, 3, 8, 8), 0.3)), torch.zeros(1))


def test_sharpness_rejects_bad_shapes():
    with pytest.raises(ConfigError, match="sharpness"):
        sharpness(torch.zeros(1, 3, 2, 9))
    with pytest.raises(ConfigError, match="sharpness"):
        sharpness(torch.zeros(3, 8, 8))


# ---------------------------------------------------------------------------------------------- edges
def test_edge_correlation_invariant_to_brightness_scaling():
    x = _smooth_image()
    assert torch.allclose(edge_correlation(x, 0.5 * x), torch.ones(2), atol=1e-5)
    assert torch.allclose(edge_correlation(x, 0.8 * x + 0.1), torch.ones(2), atol=1e-5)


def test_edge_correlation_low_for_unrelated_images():
    x = _smooth_image(seed=0)
    y = _smooth_image(seed=5)
    r = edge_correlation(x, y)
    assert (r < 0.6).all(), r
    # a blurred copy keeps the edges roughly in place
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert (edge_correlation(x, blurred) > 0.8).all()


def test_edge_correlation_flat_image_is_zero():
    flat = torch.full((1, 3, 8, 8), 0.5)
    assert edge_correlation(flat, _smooth_image(b=1, h=8, w=8)).item() == 0.0


# ---------------------------------------------------------------------------------------------- content
def test_content_loss_hand_value_and_errors():
    a = {"relu4_1": torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])}  # 1 x 2 x 1 x 2
    b = {"relu4_1": torch.zeros(1, 2, 1, 2)}
    assert content_loss_at(a, b, "relu4_1").item() == pytest.approx((1 + 4 + 9 + 16) / 4)
    with pytest.raises(ConfigError, match="relu4_1"):
        content_loss_at(a, b, "relu5_1")


# ---------------------------------------------------------------------------------------------- Gram
def _hand_pair() -> tuple[torch.Tensor, torch.Tensor]:
    # 1 x 2 x 2 x 2: channel 0 = [1, 2, 3, 4], channel 1 = [0, 1, 1, 0]
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]]])
    # channel 0 = [1, 1, 1, 1], channel 1 = 0
    b = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    return a, b


def test_gram_matrix_hand_value():
    a, _ = _hand_pair()
    g = gram_matrix(a)
    # F F^T = [[30, 5], [5, 2]], divided by C H W = 8
    assert torch.allclose(g, torch.tensor([[[30.0, 5.0], [5.0, 2.0]]]) / 8)


def test_gram_style_distance_hand_value():
    a, b = _hand_pair()
    out = gram_style_distance({"l": a}, {"l": b})
    # G_a - G_b = [[26, 5], [5, 2]] / 8 -> MSE = (676 + 25 + 25 + 4) / 64 / 4
    assert out["l"].item() == pytest.approx(730 / 256)
    assert out["total"].item() == pytest.approx(730 / 256)
    two = gram_style_distance({"x": a, "y": a}, {"x": b, "y": b})
    assert two["total"].item() == pytest.approx(2 * 730 / 256)


def test_balanced_style_distance_hand_value():
    a, b = _hand_pair()
    out = balanced_style_distance({"l": a}, {"l": b})
    # ||dG||^2 = 730/64, ||G_a||^2 = 954/64, ||G_b||^2 = 16/64
    assert out["l"].item() == pytest.approx(730 / 970)
    # the classic MSE divided by the supremum of eq. 11 with N^l = C^2 entries
    classic = gram_style_distance({"l": a}, {"l": b})["l"].item()
    sup = (gram_matrix(a).pow(2).sum() + gram_matrix(b).pow(2).sum()).item() / 4
    assert out["l"].item() == pytest.approx(classic / sup)


def test_balanced_style_distance_bounded_by_one():
    g = torch.Generator().manual_seed(3)
    for trial in range(20):
        signed = trial % 2 == 1  # the bound holds for any features (Grams are PSD), not only ReLU outputs
        fa = torch.randn(3, 5, 6, 6, generator=g) * 10 ** (trial % 4)
        fb = torch.randn(3, 5, 4, 7, generator=g)
        if not signed:
            fa, fb = torch.relu(fa), torch.relu(fb)
        out = balanced_style_distance({"a": fa, "b": fb}, {"a": fb, "b": fa})
        for k in ("a", "b"):
            assert ((out[k] >= 0) & (out[k] <= 1)).all(), out[k]
        assert (out["total"] <= 2).all()


def test_balanced_style_distance_reaches_one_for_orthogonal_grams():
    # S lives only in channel 0, P only in channel 1: <G_S, G_P> = 0, the supremum is attained
    s = torch.zeros(1, 2, 3, 3)
    s[:, 0] = torch.rand(3, 3) + 0.1
    p = torch.zeros(1, 2, 3, 3)
    p[:, 1] = torch.rand(3, 3) + 0.1
    assert balanced_style_distance({"l": p}, {"l": s})["l"].item() == pytest.approx(1.0)


def test_balanced_is_scale_invariant_but_classic_is_not():
    f, g = _feats(0), _feats(1)
    f10 = {k: 10 * v for k, v in f.items()}
    g10 = {k: 10 * v for k, v in g.items()}
    bal, bal10 = balanced_style_distance(f, g), balanced_style_distance(f10, g10)
    assert torch.allclose(bal["total"], bal10["total"], rtol=1e-5)
    cla, cla10 = gram_style_distance(f, g), gram_style_distance(f10, g10)
    assert torch.allclose(cla10["total"], 1e4 * cla["total"], rtol=1e-4)


def test_style_reference_batch_of_one_broadcasts():
    f = _feats(0, b=3)
    s = _feats(1, b=1)
    for fn in (gram_style_distance, mean_std_style_distance, balanced_style_distance):
        out = fn(f, s)
        single = fn({k: v[2:3] for k, v in f.items()}, s)
        assert out["total"].shape == (3,)
        assert torch.allclose(out["total"][2], single["total"][0])


def test_layers_argument_and_errors():
    f, g = _feats(0), _feats(1)
    out = gram_style_distance(f, g, layers=["relu2_1"])
    assert set(out) == {"relu2_1", "total"}
    assert torch.equal(out["total"], out["relu2_1"])
    with pytest.raises(ConfigError, match="available layers"):
        gram_style_distance(f, g, layers=["relu5_1"])
    with pytest.raises(ConfigError, match="no layer"):
        gram_style_distance({"a": f["relu1_1"]}, {"b": g["relu1_1"]})


# ---------------------------------------------------------------------------------------------- mean/std
def test_mean_std_style_distance_hand_value():
    a = {"l": torch.tensor([[[[0.0, 2.0]]]])}  # mean 1, unbiased var 2
    b = {"l": torch.tensor([[[[1.0, 1.0]]]])}  # mean 1, var 0
    expected = (math.sqrt(2 + 1e-5) - math.sqrt(1e-5)) ** 2
    assert mean_std_style_distance(a, b)["l"].item() == pytest.approx(expected, rel=1e-5)
    c = {"l": torch.tensor([[[[3.0, 5.0]]]])}  # mean 4, same std as a
    assert mean_std_style_distance(a, c)["total"].item() == pytest.approx(9.0, rel=1e-5)


# ---------------------------------------------------------------------------------------------- grid artefacts
def test_grid_artifact_score_of_a_pure_grid_pattern_is_one():
    g = torch.Generator().manual_seed(0)
    tile = torch.rand(1, 1, 8, 8, generator=g)
    img = tile.repeat(1, 3, 16, 16)  # 128 x 128, the same 8 x 8 pattern everywhere
    assert float(grid_artifact_score(img)[0]) == pytest.approx(1.0, abs=1e-6)


def test_grid_artifact_score_separates_grid_locked_detail_from_noise():
    g = torch.Generator().manual_seed(1)
    noise = 0.5 + 0.1 * torch.randn(2, 3, 256, 256, generator=g)  # fine detail, not locked to any grid
    floor = grid_artifact_score(noise)
    assert (floor < 3 * 8 / 256).all()  # about period / sqrt(H W) = 0.031
    stripes = torch.zeros(1, 1, 1, 8)
    stripes[..., ::2] = 0.05  # a faint period-2 column stripe, as nearest up-sampling leaves
    marked = noise + stripes.repeat(1, 1, 256, 32)
    assert (grid_artifact_score(marked) > 5 * floor).all()
    # invariant to a brightness offset; the period must fit the image
    assert torch.allclose(grid_artifact_score(noise + 0.1), floor, atol=1e-6)
    with pytest.raises(ConfigError, match="period"):
        grid_artifact_score(noise[..., :4, :4])
