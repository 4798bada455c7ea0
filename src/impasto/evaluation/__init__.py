"""impasto.evaluation: quality metrics, style retrieval and latent-space consistency.

Pure functions on image tensors (B x 3 x H x W in [0, 1]) or on feature dicts ``{layer: B x C x H x W}``;
no encoder is built here, so every metric works with any encoder the caller passes.
"""

from __future__ import annotations

from impasto.evaluation.latent import (
    block_reshuffle,
    consistency_fraction,
    crop_to_multiple,
    gram_distance,
    latent_consistency,
)
from impasto.evaluation.metrics import (
    balanced_style_distance,
    content_loss_at,
    edge_correlation,
    gram_matrix,
    gram_style_distance,
    luminance,
    mean_std_style_distance,
    psnr,
    sharpness,
    ssim,
)
from impasto.evaluation.retrieval import MagentaStyleEncoder, load_artists, retrieval_rate

__all__ = [
    "MagentaStyleEncoder",
    "balanced_style_distance",
    "block_reshuffle",
    "consistency_fraction",
    "content_loss_at",
    "crop_to_multiple",
    "edge_correlation",
    "gram_distance",
    "gram_matrix",
    "gram_style_distance",
    "latent_consistency",
    "load_artists",
    "luminance",
    "mean_std_style_distance",
    "psnr",
    "retrieval_rate",
    "sharpness",
    "ssim",
]
