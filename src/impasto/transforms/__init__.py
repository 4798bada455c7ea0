"""Feature transforms: pure functions on B x C x H x W encoder features, plus SANet attention modules.

AdaIN statistics (:mod:`.stats`), whitening-colouring (:mod:`.wct`), style swap (:mod:`.style_swap`) and
style attention (:mod:`.sanet`). Style-side quantities (mean/std, WCT colouring, style patches) can be
computed once and reused for many contents.
"""

from __future__ import annotations

from impasto.transforms.sanet import SANet, SANetTransform, sanet_attention
from impasto.transforms.stats import adain, adain_features, mean_std, mean_variance_norm
from impasto.transforms.style_swap import (
    StyleSwapPatches,
    style_swap,
    style_swap_features,
    style_swap_patches,
)
from impasto.transforms.wct import WCTStyleStats, wct, wct_features, wct_style_stats

__all__ = [
    "mean_std",
    "mean_variance_norm",
    "adain",
    "adain_features",
    "WCTStyleStats",
    "wct_style_stats",
    "wct",
    "wct_features",
    "StyleSwapPatches",
    "style_swap_patches",
    "style_swap",
    "style_swap_features",
    "sanet_attention",
    "SANet",
    "SANetTransform",
]
