"""Quality of a stylisation as issue 21 measures it: how far the style moved, structure kept, no grid.

Three per-image numbers, each with a hand-checkable definition:

* :func:`style_moved` - how far the output's channel mean/std at relu1_1, relu2_1, relu3_1 of the real VGG-19
  moved from the photo's toward the painting's: ``1 - d(out, s) / d(c, s)``, where
  ``d(x, s) = sum_l ||mu_l(x) - mu_l(s)|| + ||sigma_l(x) - sigma_l(s)||`` (the statistics AdaIN's style loss
  matches). 0 = the photo's statistics, 1 = exactly the painting's, negative = moved away.
* :func:`~impasto.evaluation.metrics.edge_correlation` - Pearson correlation of Sobel edge maps with the photo.
* :func:`grid_to_noise` - the share of the output's high-pass energy that repeats with a fixed ``period``-pixel grid,
  divided by the share that pure chance gives (``period / sqrt(pixels)``). Natural photos score about 1-4; a
  decoder that up-samples 4 times by 2 leaves a 16-pixel pattern that raises it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from impasto.errors import ConfigError
from impasto.evaluation.metrics import grid_artifact_score
from impasto.transforms.stats import mean_std

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1")

__all__ = ["STYLE_LAYERS", "grid_to_noise", "style_distance", "style_moved"]


def style_distance(fx: dict[str, Tensor], fs: dict[str, Tensor], layers: Sequence[str] = STYLE_LAYERS) -> Tensor:
    """``sum_l ||mu_l(x) - mu_l(s)||_2 + ||sigma_l(x) - sigma_l(s)||_2`` per sample.

    Args:
        fx, fs: features by layer name, B x C x h x w each (``fs`` may have batch 1; sizes may differ).
    Returns:
        Tensor[B], float32 or float64.
    """
    total = None
    for layer in layers:
        if layer not in fx or layer not in fs:
            raise ConfigError(f"style_distance: layer {layer} is missing from the features")
        (mx, sx), (ms, ss) = mean_std(fx[layer].float()), mean_std(fs[layer].float())
        d = (mx - ms).flatten(1).norm(dim=1) + (sx - ss).flatten(1).norm(dim=1)
        total = d if total is None else total + d
    return total


def style_moved(encode: Callable[[Tensor], dict[str, Tensor]], out: Tensor, content: Tensor, style: Tensor,
                layers: Sequence[str] = STYLE_LAYERS) -> Tensor:
    """``1 - d(out, style) / d(content, style)`` per sample (see the module docstring).

    Args:
        encode: image B x 3 x H x W in [0, 1] -> features by layer name (the real VGG-19 to relu3_1 in the reports).
        out, content: B x 3 x H x W in [0, 1]; style: B or 1 x 3 x H' x W' in [0, 1].
    Returns:
        Tensor[B]; 0 when ``out`` has the content's statistics, 1 when it has the style's.
    """
    with torch.no_grad():
        fs = encode(style)
        d_out = style_distance(encode(out), fs, layers)
        d_content = style_distance(encode(content), fs, layers)
    return 1 - d_out / d_content.clamp_min(1e-12)


def grid_to_noise(x: Tensor, period: int = 16) -> Tensor:
    """:func:`grid_artifact_score` with ``period`` divided by its chance level ``period / sqrt(h w)``.

    ``h x w`` is the size of the high-pass residual the score averages (the image less a ``period`` border and
    cropped to whole periods). Args: x B x 3 x H x W in [0, 1], H, W >= 2 * period + 1. Returns Tensor[B] >= 0.
    """
    score = grid_artifact_score(x, period=period)
    h = (x.shape[-2] - 2 - (period - 1)) // period * period
    w = (x.shape[-1] - 2 - (period - 1)) // period * period
    return score / (period / math.sqrt(h * w))
