"""Content and identity losses (AdaIN, SANet, IEContraAST).

Features are ``B x C x H x W`` tensors or ``{layer_name: tensor}`` mappings (see :mod:`.style`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from impasto.errors import ConfigError
from impasto.layers import luminance, pearson_rows, sobel_magnitude
from impasto.losses.style import Features, _check_reduction, _layer_pairs
from impasto.transforms.stats import mean_variance_norm

__all__ = ["mean_variance_norm", "content_loss", "identity_loss", "edge_loss", "ContentLoss", "IdentityLoss",
           "EdgeLoss"]


def content_loss(
    out_feat: Features,
    target_feat: Features,
    normalize: bool = False,
    layers: Sequence[str] | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Content loss: MSE between output and target features, summed over layers.

    AdaIN: ``MSE(E(out)_relu4_1, t)`` with ``t`` the AdaIN target. SANet / IEContraAST (``normalize=True``):
    ``MSE(norm(E(out)_l), norm(E(c)_l))`` for l in relu4_1, relu5_1, ``norm`` = :func:`mean_variance_norm`
    (IEContraAST writes eq. 3 on conv4_2 with ``||.||_2``; the release computes this MSE).
    Inputs: tensors or ``{layer: tensor}`` mappings. ``reduction="mean"``: scalar; ``"none"``: ``B``.
    Nothing is detached.
    """
    _check_reduction(reduction)
    terms = []
    for _, out, tgt in _layer_pairs(out_feat, target_feat, layers):
        if normalize:
            out, tgt = mean_variance_norm(out), mean_variance_norm(tgt)
        terms.append(((out - tgt) ** 2).flatten(1).mean(1))
    per_sample = terms[0]
    for t in terms[1:]:
        per_sample = per_sample + t
    return per_sample.mean() if reduction == "mean" else per_sample


def identity_loss(
    i_cc: Tensor,
    i_ss: Tensor,
    content: Tensor,
    style: Tensor,
    feats_cc: Features,
    feats_ss: Features,
    feats_c: Features,
    feats_s: Features,
    layers: Sequence[str] | None = None,
) -> tuple[Tensor, Tensor]:
    """Identity losses of SANet (Park & Lee 2019) / IEContraAST eq. (4), returned unweighted.

    ``i_cc`` (``i_ss``): the output when content and style are both ``content`` (``style``), ``B x 3 x H x
    W`` in [0, 1]. Returns ``(pixel, feature)`` with ``pixel = MSE(I_cc, I_c) + MSE(I_ss, I_s)`` and
    ``feature = sum_l MSE(phi_l(I_cc), phi_l(I_c)) + MSE(phi_l(I_ss), phi_l(I_s))`` over ``layers``
    (relu1_1..relu5_1 in the papers). The caller applies lambda_identity1 = 50 and lambda_identity2 = 1.
    """
    if i_cc.shape != content.shape or i_ss.shape != style.shape:
        raise ConfigError(
            f"identity loss: I_cc {tuple(i_cc.shape)} must match the content {tuple(content.shape)} and "
            f"I_ss {tuple(i_ss.shape)} the style {tuple(style.shape)}"
        )
    pixel = ((i_cc - content) ** 2).mean() + ((i_ss - style) ** 2).mean()
    feature = content_loss(feats_cc, feats_c, layers=layers) + content_loss(feats_ss, feats_s, layers=layers)
    return pixel, feature


def edge_loss(out: Tensor, content: Tensor, eps: float = 1e-6, reduction: str = "mean") -> Tensor:
    """Edge loss: ``1 - rho``, rho = Pearson correlation of the Sobel edge-magnitude maps of two images' luminances.

    The differentiable form of :func:`impasto.evaluation.metrics.edge_correlation` (BT.601 luma, 3 x 3 Sobel,
    'valid' pixels), with ``eps`` inside the square root so flat regions have a finite gradient. Not from
    the four papers: an impasto addition in the spirit of structure-preserving style transfer (edge or
    Laplacian losses, e.g. Li et al., "Laplacian-Steered Neural Style Transfer", ACM MM 2017). Being a
    correlation it does not ask for less texture, only for texture whose strength follows the photo's
    edges rather than covering flat areas. Computed in float32 (or float64) whatever the autocast dtype.

    Args:
        out, content: B x 3 x H x W in [0, 1], same shape, H, W >= 3.
    Returns:
        scalar (``reduction="mean"``) or Tensor[B] (``"none"``), in [0, 2]; 0 when the edge maps agree up to
        scale and offset.
    """
    _check_reduction(reduction)
    if out.shape != content.shape or out.dim() != 4 or min(out.shape[-2:]) < 3:
        raise ConfigError(f"edge loss: the output {tuple(out.shape)} and the content {tuple(content.shape)} must "
                          "be B x 3 x H x W images of the same shape, at least 3 x 3")
    dtype = torch.promote_types(out.dtype, torch.float32)
    with torch.autocast(out.device.type, enabled=False):  # bf16 Sobel differences would lose the fine edges
        rho = pearson_rows(sobel_magnitude(luminance(out.to(dtype)), eps).flatten(1),
                           sobel_magnitude(luminance(content.to(dtype)), eps).flatten(1), eps)
    per_sample = 1.0 - rho
    return per_sample.mean() if reduction == "mean" else per_sample


class ContentLoss(nn.Module):
    """Module form of :func:`content_loss` with fixed ``normalize``, ``layers`` and ``reduction``."""

    def __init__(
        self, normalize: bool = False, layers: Sequence[str] | None = None, reduction: str = "mean"
    ) -> None:
        super().__init__()
        _check_reduction(reduction)
        self.normalize = normalize
        self.layers = None if layers is None else list(layers)
        self.reduction = reduction

    def forward(self, out_feat: Features, target_feat: Features) -> Tensor:
        return content_loss(out_feat, target_feat, self.normalize, self.layers, self.reduction)


class IdentityLoss(nn.Module):
    """Module form of :func:`identity_loss` with fixed ``layers``; returns ``(pixel, feature)``."""

    def __init__(self, layers: Sequence[str] | None = None) -> None:
        super().__init__()
        self.layers = None if layers is None else list(layers)

    def forward(
        self,
        i_cc: Tensor,
        i_ss: Tensor,
        content: Tensor,
        style: Tensor,
        feats_cc: Features,
        feats_ss: Features,
        feats_c: Features,
        feats_s: Features,
    ) -> tuple[Tensor, Tensor]:
        return identity_loss(i_cc, i_ss, content, style, feats_cc, feats_ss, feats_c, feats_s, self.layers)


class EdgeLoss(nn.Module):
    """Module form of :func:`edge_loss` with fixed ``eps`` and ``reduction``."""

    def __init__(self, eps: float = 1e-6, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.eps = eps
        self.reduction = reduction

    def forward(self, out: Tensor, content: Tensor) -> Tensor:
        return edge_loss(out, content, self.eps, self.reduction)
