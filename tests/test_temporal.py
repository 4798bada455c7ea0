"""Tests of impasto.temporal: flow, warping, occlusion mask, blending, smoother, warping-error metric."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from impasto.errors import ConfigError
from impasto.temporal import (
    FLOW_METHODS,
    TemporalConfig,
    TemporalSmoother,
    blend,
    compute_flow,
    occlusion_mask,
    smooth_step,
    to_gray,
    warp,
    warping_error,
)


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random RGB texture, uint8, with enough detail for optical flow."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 2.0)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (noise * 255).astype(np.uint8)


def _moving(n: int, h: int = 48, w: int = 64, step: int = 1) -> list[np.ndarray]:
    """n frames of a camera panning right over a texture by `step` pixels per frame."""
    big = _texture(h, w + n * step)
    return [np.ascontiguousarray(big[:, t * step:t * step + w]) for t in range(n)]


def _constant_flow(h: int, w: int, dx: float, dy: float = 0.0) -> np.ndarray:
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    return flow


# ------------------------------------------------------------------------------------------------- warp


def test_warp_known_answers() -> None:
    image = np.arange(2 * 5, dtype=np.float32).reshape(2, 5)
    np.testing.assert_array_equal(warp(image, _constant_flow(2, 5, 0)), image)
    # out[y, x] = image[y, x + 2]; the last two columns repeat the border
    np.testing.assert_array_equal(warp(image, _constant_flow(2, 5, 2)),
                                  [[2, 3, 4, 4, 4], [7, 8, 9, 9, 9]])
    # half a pixel: bilinear average of the two neighbours
    np.testing.assert_allclose(warp(image, _constant_flow(2, 5, 0.5))[0, :4], [0.5, 1.5, 2.5, 3.5], atol=1e-3)
    # one row down
    np.testing.assert_array_equal(warp(image, _constant_flow(2, 5, 0, 1))[0], image[1])
    rgb = np.stack([image, image + 10, image + 20], axis=2)
    out = warp(rgb, _constant_flow(2, 5, 1))
    assert out.shape == rgb.shape and out.dtype == rgb.dtype
    np.testing.assert_array_equal(out[..., 1], warp(image + 10, _constant_flow(2, 5, 1)))
    with pytest.raises(ValueError):
        warp(rgb, _constant_flow(3, 5, 0))


@pytest.mark.parametrize(("method", "tol"), [("dis", 0.05), ("farneback", 0.05), ("dis-fast", 0.2)])
def test_shifted_image_is_recovered_by_computed_flow(method: str, tol: float) -> None:
    a = _texture(64, 96)
    b = np.zeros_like(a)
    b[:, 3:] = a[:, :-3]  # b(x) = a(x - 3): the content moved 3 pixels to the right
    flow = compute_flow(a, b, method)
    assert flow.shape == (64, 96, 2) and flow.dtype == np.float32
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(flow[inner][..., 0] - 3.0).mean() < tol
    assert np.abs(flow[inner][..., 1]).mean() < tol
    restored = warp(b.astype(np.float32) / 255, flow)
    assert np.abs(restored - a / 255.0)[inner].mean() < 0.01
    # a wrong flow gives a clearly larger error (the test can fail)
    assert np.abs(warp(b.astype(np.float32) / 255, flow * 0) - a / 255.0)[inner].mean() > 0.03


def test_to_gray_and_unknown_method() -> None:
    rgb = _texture(8, 10)
    gray = to_gray(rgb)
    assert gray.shape == (8, 10) and gray.dtype == np.uint8
    np.testing.assert_array_equal(to_gray(rgb.astype(np.float32) / 255), gray)
    np.testing.assert_array_equal(to_gray(gray), gray)
    with pytest.raises(ConfigError, match="dis"):
        compute_flow(gray, gray, "raft")
    assert set(FLOW_METHODS) == {"dis", "dis-fast", "farneback"}  # all covered by the shift test


# --------------------------------------------------------------------------------------------- occlusion


def test_occlusion_mask_known_answers() -> None:
    h, w = 4, 10
    mask = occlusion_mask(_constant_flow(h, w, 3), _constant_flow(h, w, -3))
    assert mask.shape == (h, w) and mask.dtype == np.float32
    expected = np.ones((h, w), np.float32)
    expected[:, w - 3:] = 0  # their match lies outside the image
    np.testing.assert_array_equal(mask, expected)
    # inconsistent flows: |3 + 3|^2 = 36 > 0.01 * (9 + 9) + 0.5
    assert occlusion_mask(_constant_flow(h, w, 3), _constant_flow(h, w, 3)).sum() == 0
    # threshold: |0.5|^2 = 0.25 <= 0.01 * 0.25 + 0.5, but |1|^2 = 1 > 0.01 * 1 + 0.5
    zero = _constant_flow(h, w, 0)
    assert occlusion_mask(_constant_flow(h, w, 0.5), zero)[:, :5].min() == 1
    assert occlusion_mask(_constant_flow(h, w, 1.0), zero).max() == 0
    assert occlusion_mask(_constant_flow(h, w, 1.0), zero, alpha2=1.5)[:, :5].min() == 1


def test_occlusion_mask_finds_covered_background() -> None:
    background = _texture(64, 96, seed=1)
    square = _texture(20, 20, seed=2) // 2 + 128
    a, b = background.copy(), background.copy()
    a[22:42, 20:40] = square
    b[22:42, 30:50] = square  # the square moved 10 px right and covers background pixels x = 40..49
    mask = occlusion_mask(compute_flow(a, b), compute_flow(b, a))
    covered = mask[24:40, 42:48].mean()
    still = np.concatenate([mask[4:18, 4:90].ravel(), mask[46:60, 4:90].ravel()]).mean()
    assert covered < 0.3 and still > 0.95


# ----------------------------------------------------------------------------------------- blend, smooth


def test_blend_known_answer() -> None:
    current = np.full((1, 2, 3), 0.2, np.float32)
    warped = np.full((1, 2, 3), 0.6, np.float32)
    out = blend(current, warped, np.array([[1.0, 0.0]], np.float32), 0.5)
    np.testing.assert_allclose(out[0, 0], 0.4)  # 0.5 * 0.6 + 0.5 * 0.2
    np.testing.assert_allclose(out[0, 1], 0.2)  # occluded: current frame


def test_smoother_agrees_with_smooth_step() -> None:
    originals = _moving(5)
    rng = np.random.default_rng(1)
    stylized = [np.clip(f * rng.uniform(0.7, 1.3), 0, 255).astype(np.uint8) for f in originals]
    config = TemporalConfig(strength=0.7)
    got = TemporalSmoother(config).process(np.stack(originals), np.stack(stylized))
    assert got.shape == (5, 48, 64, 3) and got.dtype == np.uint8
    prev_out = stylized[0].astype(np.float32) / 255
    expected = [stylized[0]]
    for t in range(1, 5):
        prev_out, mask = smooth_step(originals[t - 1], originals[t], prev_out, stylized[t], config)
        assert mask.shape == (48, 64) and 0.5 < mask.mean() <= 1.0
        expected.append(np.clip(np.rint(prev_out * 255), 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(got, np.stack(expected))
    # batches of any size give the same result as one call per frame
    smoother = TemporalSmoother(config)
    parts = [smoother.process(np.stack(originals[i:i + 2]), np.stack(stylized[i:i + 2])) for i in (0, 2, 4)]
    np.testing.assert_array_equal(np.concatenate(parts), got)


def test_smoother_strength_zero_and_reset() -> None:
    originals = np.stack(_moving(3))
    stylized = 255 - originals
    np.testing.assert_array_equal(TemporalSmoother(TemporalConfig(strength=0.0)).process(originals, stylized),
                                  stylized)
    smoother = TemporalSmoother(TemporalConfig(strength=1.0))
    smoother.process(originals, stylized)
    smoother.reset()
    np.testing.assert_array_equal(smoother(originals[0], stylized[0]), stylized[0])
    with pytest.raises(ValueError):
        smoother(originals[0], stylized[0][:10])


def test_smoother_reduces_warping_error_of_flicker() -> None:
    originals = _moving(10)
    rng = np.random.default_rng(0)
    gains = rng.uniform(0.7, 1.3, size=10)  # per-frame brightness jitter of a flickering stylisation
    stylized = np.stack([np.clip(f.astype(np.float32) * g, 0, 255).astype(np.uint8)
                         for f, g in zip(originals, gains, strict=True)])
    before = warping_error(stylized, originals)
    def smoothed(strength: float) -> np.ndarray:
        return TemporalSmoother(TemporalConfig(strength=strength)).process(np.stack(originals), stylized)

    after = warping_error(smoothed(0.5), originals)
    stronger = warping_error(smoothed(0.9), originals)
    assert before > 0.03
    assert after < 0.6 * before and stronger < after


def test_temporal_config_validation() -> None:
    assert TemporalConfig() == TemporalConfig(strength=0.5, flow="dis")
    bad = ({"strength": 1.5}, {"strength": -0.1}, {"flow": "raft"}, {"alpha1": -1.0}, {"max_error": 0})
    for kwargs in bad:
        with pytest.raises(ConfigError):
            TemporalConfig(**kwargs)


# ---------------------------------------------------------------------------------------- warping_error


def test_warping_error_known_answers() -> None:
    static = [_texture(32, 40)] * 4
    assert warping_error(static, static) == pytest.approx(0.0, abs=1e-6)
    # static input: the flow is zero, so the error is the mean change of the output between frames
    levels = [0.2, 0.5, 0.4]
    outputs = [np.full((32, 40, 3), v, np.float32) for v in levels]
    assert warping_error(outputs, static[:3]) == pytest.approx((0.3 + 0.1) / 2, abs=1e-4)
    assert warping_error(outputs, static[:3], norm="l2") == pytest.approx((3 * 0.09 + 3 * 0.01) / 2, abs=1e-4)
    # a panning video is consistent with itself once the motion is compensated
    moving = _moving(6)
    assert warping_error(moving, moving) < 0.01
    with pytest.raises(ValueError):
        warping_error(static[:1], static[:1])
    with pytest.raises(ValueError):
        warping_error(static[:2], static[:3])
    with pytest.raises(ConfigError):
        warping_error(static, static, norm="l3")


def test_warping_error_of_noise_is_large() -> None:
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (32, 40, 3), dtype=np.uint8) for _ in range(4)]
    assert warping_error(noise, noise) > 0.2
    assert warping_error(noise, [_texture(32, 40)] * 4) == pytest.approx(1 / 3, abs=0.02)  # E|U - V| = 1/3
