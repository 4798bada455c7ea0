"""Temporal consistency for stylised video without flow-network weights (OpenCV optical flow).

Each new stylised frame is blended with the previous *output* frame warped onto it by the optical flow of
the ORIGINAL frames, except where the flow is unreliable (occlusions, disocclusions, pixels that come from
outside the image, large warping error of the originals):

    out_t = m * s * warp(out_{t-1}, F_{t->t-1}) + (1 - m * s) * stylised_t

with m the confidence mask in {0, 1} and s the strength in [0, 1]. The occlusion test is the forward-backward
consistency check of Sundaram et al. 2010 as used by Ruder et al. 2016 ("Artistic style transfer for videos",
eq. 5). `warping_error` is the temporal-consistency metric of Lai et al. 2018 ("Learning Blind Video Temporal
Consistency", eq. 8), computed with the same flow and mask.

Conventions: images are numpy arrays H x W x 3 (RGB, uint8 in [0, 255] or float in [0, 1]); grey images are
H x W; a flow is float32 H x W x 2 holding (dx, dy) in pixels; `compute_flow(a, b)` returns the flow F defined
on `a` with a[y, x] ~ b[y + F[y, x, 1], x + F[y, x, 0]], and `warp(b, F)` samples b at x + F(x), so
`warp(b, compute_flow(a, b)) ~ a`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from impasto.errors import ConfigError
from impasto.extras import extra_error

try:  # the [video] extra (optical flow)
    import cv2
except ImportError as exc:
    raise extra_error(exc, "video") from None

__all__ = [
    "FLOW_METHODS",
    "TemporalConfig",
    "TemporalSmoother",
    "blend",
    "compute_flow",
    "occlusion_mask",
    "smooth_step",
    "to_gray",
    "warp",
    "warping_error",
]

FLOW_METHODS = ("dis", "dis-fast", "farneback")
_DIS_PRESETS = {"dis": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, "dis-fast": cv2.DISOPTICAL_FLOW_PRESET_FAST}


@dataclass(frozen=True)
class TemporalConfig:
    """Options of the temporal-consistency mode.

    strength: weight s in [0, 1] of the warped previous output (0 = off, 1 = copy it where reliable).
    flow: optical-flow method, one of FLOW_METHODS: "dis" (OpenCV DIS, preset MEDIUM), "dis-fast" (DIS preset
        FAST: about 5x faster, e.g. 0.02 s instead of 0.12 s per 800x450 flow here), "farneback".
    alpha1, alpha2: forward-backward consistency thresholds of Ruder et al. 2016 (eq. 5).
    max_error: pixels whose ORIGINAL frames still differ by more than this after warping (mean over RGB,
        [0, 1] units) are treated as unreliable (lighting changes, flow failures); None disables the test.
    """

    strength: float = 0.5
    flow: str = "dis"
    alpha1: float = 0.01
    alpha2: float = 0.5
    max_error: float | None = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.strength, (int, float)) or not 0.0 <= float(self.strength) <= 1.0:
            raise ConfigError(f"temporal strength must be a number in [0, 1], got {self.strength!r}")
        _check_method(self.flow)
        if self.alpha1 < 0 or self.alpha2 < 0:
            raise ConfigError(f"alpha1 and alpha2 must be >= 0, got {self.alpha1}, {self.alpha2}")
        if self.max_error is not None and self.max_error <= 0:
            raise ConfigError(f"max_error must be > 0 or None, got {self.max_error}")


def _check_method(method: str) -> None:
    if method not in FLOW_METHODS:
        raise ConfigError(f"unknown optical-flow method {method!r}; choose one of {', '.join(FLOW_METHODS)}")


def _to_float(image: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [0, 1]; float arrays are taken to be in [0, 1] already."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return image.astype(np.float32, copy=False)


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB (H x W x 3) or grey (H x W) image, uint8 or float in [0, 1] -> uint8 grey H x W (BT.601 luma)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim != 2:
        raise ValueError(f"expected an H x W grey or H x W x 3 RGB image, got shape {image.shape}")
    return image


def compute_flow(prev_gray: np.ndarray, cur_gray: np.ndarray, method: str = "dis") -> np.ndarray:
    """Dense optical flow from `prev_gray` to `cur_gray` (OpenCV convention).

    Inputs: grey H x W uint8 (RGB or float [0, 1] images are converted with `to_gray`).
    Returns float32 H x W x 2 flow F (dx, dy) in pixels with prev[y, x] ~ cur[y + F[y,x,1], x + F[y,x,0]].
    Methods: "dis" (Kroeger et al. 2016, DIS, OpenCV preset MEDIUM), "dis-fast" (DIS preset FAST) or
    "farneback" (Farneback 2003).
    """
    _check_method(method)
    a, b = to_gray(prev_gray), to_gray(cur_gray)
    if a.shape != b.shape:
        raise ValueError(f"frames differ in size: {a.shape} vs {b.shape}")
    if method in _DIS_PRESETS:
        flow = cv2.DISOpticalFlow_create(_DIS_PRESETS[method]).calc(a, b, None)
    else:
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 15, 3, 5, 1.2, 0)
    return np.ascontiguousarray(flow, dtype=np.float32)


@lru_cache(maxsize=4)
def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    gx.flags.writeable = False
    gy.flags.writeable = False
    return gx, gy


def _sample_grid(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = _pixel_grid(*flow.shape[:2])
    return gx + flow[..., 0], gy + flow[..., 1]


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward-warp `image` by `flow`: out[y, x] = image[y + F[y,x,1], x + F[y,x,0]] (bilinear).

    image: H x W or H x W x C, any dtype cv2.remap accepts (uint8, float32, float64); flow: H x W x 2.
    Returns an array of the image's shape and dtype; samples outside the image repeat the border pixel
    (`occlusion_mask` flags those pixels as unreliable).
    """
    image = np.asarray(image)
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[:2] != image.shape[:2]:
        raise ValueError(f"flow of shape {flow.shape} does not match image of shape {image.shape}")
    map_x, map_y = _sample_grid(flow)
    squeeze = image.ndim == 3 and image.shape[2] == 1
    out = cv2.remap(image[..., 0] if squeeze else image, map_x, map_y, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return out[..., None] if squeeze else out


def _sq_norm(v: np.ndarray) -> np.ndarray:
    """|v|^2 of an H x W x 2 vector field (faster than summing over the short last axis)."""
    return v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1]


def occlusion_mask(fwd: np.ndarray, bwd: np.ndarray, alpha1: float = 0.01, alpha2: float = 0.5) -> np.ndarray:
    """Confidence mask of the flow `fwd` (frame A -> B) by the forward-backward check against `bwd` (B -> A).

    fwd, bwd: float32 H x W x 2 flows. Returns float32 H x W in {0, 1}: 1 where the flow is reliable, 0 where
    A's pixel is occluded in B, i.e. (Ruder et al. 2016, eq. 5, with b~ = bwd sampled at x + fwd(x))
    |fwd + b~|^2 > alpha1 * (|fwd|^2 + |b~|^2) + alpha2, or where x + fwd(x) falls outside the image.
    """
    fwd = np.asarray(fwd, dtype=np.float32)
    bwd = np.asarray(bwd, dtype=np.float32)
    if fwd.shape != bwd.shape or fwd.ndim != 3 or fwd.shape[2] != 2:
        raise ValueError(f"flows must both be H x W x 2, got {fwd.shape} and {bwd.shape}")
    h, w = fwd.shape[:2]
    bwd_at = warp(bwd, fwd)
    lhs = _sq_norm(fwd + bwd_at)
    rhs = alpha1 * (_sq_norm(fwd) + _sq_norm(bwd_at)) + alpha2
    map_x, map_y = _sample_grid(fwd)
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return ((lhs <= rhs) & inside).astype(np.float32)


def blend(current: np.ndarray, warped_prev: np.ndarray, mask: np.ndarray, strength: float) -> np.ndarray:
    """out = mask * strength * warped_prev + (1 - mask * strength) * current.

    current, warped_prev: float32 H x W x 3; mask: H x W in [0, 1]; strength in [0, 1]. Returns float32.
    """
    m = (np.asarray(mask, dtype=np.float32) * np.float32(strength))[..., None]
    return m * warped_prev + (1.0 - m) * current


def _frame_mask(prev_in: np.ndarray, cur_in: np.ndarray, flow_cp: np.ndarray, flow_pc: np.ndarray,
                alpha1: float, alpha2: float, max_error: float | None) -> np.ndarray:
    """Confidence of warping frame t-1 onto frame t (flow_cp: t -> t-1, flow_pc: t-1 -> t); float32 H x W."""
    mask = occlusion_mask(flow_cp, flow_pc, alpha1, alpha2)
    if max_error is not None:
        err = np.abs(warp(_to_float(prev_in), flow_cp) - _to_float(cur_in)).mean(axis=2)
        mask *= (err <= max_error).astype(np.float32)
    return mask


def smooth_step(prev_in: np.ndarray, cur_in: np.ndarray, prev_out: np.ndarray, cur_stylized: np.ndarray,
                config: TemporalConfig) -> tuple[np.ndarray, np.ndarray]:
    """One temporal-consistency step: blend the stylised frame t with output t-1 warped onto frame t.

    prev_in, cur_in: ORIGINAL frames t-1 and t, H x W x 3 (uint8 or float [0, 1]); prev_out: output t-1 and
    cur_stylized: stylised frame t, H x W x 3 (uint8 or float [0, 1]).
    Returns (out float32 H x W x 3 in [0, 1], mask float32 H x W in {0, 1}).
    """
    flow_cp = compute_flow(cur_in, prev_in, config.flow)
    flow_pc = compute_flow(prev_in, cur_in, config.flow)
    mask = _frame_mask(prev_in, cur_in, flow_cp, flow_pc, config.alpha1, config.alpha2, config.max_error)
    warped = warp(_to_float(prev_out), flow_cp)
    return blend(_to_float(cur_stylized), warped, mask, config.strength), mask


class TemporalSmoother:
    """Stateful wrapper of `smooth_step` for a stream of frames: call it on each frame in order.

    `smoother(original, stylized)` takes H x W x 3 uint8 frames and returns the uint8 output frame; the
    previous original and (unrounded float) output are kept between calls; `reset()` starts a new clip.
    """

    def __init__(self, config: TemporalConfig | None = None) -> None:
        self.config = config if config is not None else TemporalConfig()
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (the next frame is passed through unchanged)."""
        self._prev_in: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None

    def __call__(self, original: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        """Smooth one frame. original, stylized: H x W x 3 uint8 (same size). Returns H x W x 3 uint8."""
        original = np.asarray(original)
        stylized = np.asarray(stylized)
        if original.shape != stylized.shape or original.ndim != 3 or original.shape[2] != 3:
            raise ValueError(f"original {original.shape} and stylised {stylized.shape} frames must both be "
                             "H x W x 3 of the same size")
        if (self._prev_in is None or self._prev_out is None or self._prev_in.shape != original.shape
                or self.config.strength == 0):
            out = _to_float(stylized)
        else:
            out, _ = smooth_step(self._prev_in, original, self._prev_out, stylized, self.config)
        self._prev_in = original.copy()
        self._prev_out = out
        return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)

    def process(self, originals: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        """Smooth a batch of consecutive frames. originals, stylized: N x H x W x 3 uint8 -> N x H x W x 3."""
        return np.stack([self(o, s) for o, s in zip(originals, stylized, strict=True)])


def warping_error(frames_out: Sequence[np.ndarray] | np.ndarray, frames_in: Sequence[np.ndarray] | np.ndarray,
                  flow: str = "dis", *, norm: str = "l1", alpha1: float = 0.01, alpha2: float = 0.5) -> float:
    """Temporal warping error of a processed video (Lai et al. 2018, eq. 8), lower = more stable.

    frames_out, frames_in: T >= 2 frames each, H x W x 3 RGB (uint8 [0, 255] or float [0, 1]); the flow and
    the occlusion mask are computed on the INPUT frames. For t = 1..T-1 the output frame t-1 is warped onto
    frame t and compared over non-occluded pixels M_t:
        E_t = sum_i M_t(i) d(O_t(i), warp(O_{t-1})(i)) / sum_i M_t(i),   E = mean_t E_t,
    with d = mean absolute difference over RGB in [0, 1] units (norm="l1", default) or the squared L2 norm
    of the RGB difference (norm="l2", Lai et al.'s definition). Pairs without reliable pixels are skipped.
    """
    _check_method(flow)
    if norm not in ("l1", "l2"):
        raise ConfigError(f"unknown norm {norm!r}; choose l1 or l2")
    if len(frames_out) != len(frames_in):
        raise ValueError(f"{len(frames_out)} output frames but {len(frames_in)} input frames")
    if len(frames_in) < 2:
        raise ValueError("warping_error needs at least 2 frames")
    errors = []
    for t in range(1, len(frames_in)):
        prev_in, cur_in = np.asarray(frames_in[t - 1]), np.asarray(frames_in[t])
        prev_out, cur_out = _to_float(np.asarray(frames_out[t - 1])), _to_float(np.asarray(frames_out[t]))
        if prev_out.shape[:2] != cur_in.shape[:2] or cur_out.shape[:2] != cur_in.shape[:2]:
            raise ValueError(f"frame {t}: output size {cur_out.shape[:2]} differs from the input size "
                             f"{cur_in.shape[:2]}")
        flow_cp = compute_flow(cur_in, prev_in, flow)
        flow_pc = compute_flow(prev_in, cur_in, flow)
        mask = occlusion_mask(flow_cp, flow_pc, alpha1, alpha2)
        if mask.sum() == 0:
            continue
        diff = cur_out - warp(prev_out, flow_cp)
        d = np.abs(diff).mean(axis=2) if norm == "l1" else (diff**2).sum(axis=2)
        errors.append(float((d * mask).sum() / mask.sum()))
    return float(np.mean(errors)) if errors else 0.0
