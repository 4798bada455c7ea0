"""Regularisers: total variation (style-swap image optimisation / inverse network) and the feature
regulariser of contrastive encoder refinement (Bai et al., "Improving the Latent Space of Image Style
Transfer", eq. 4)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from impasto.errors import ConfigError
from impasto.losses.style import Features, _check_reduction, _layer_pairs

__all__ = ["total_variation", "feature_regularizer", "TotalVariation", "FeatureRegularizer"]


def total_variation(img: Tensor, p: int = 2, reduction: str = "mean") -> Tensor:
    """Total variation of an image: ``sum (I[y+1,x] - I[y,x])^p + sum (I[y,x+1] - I[y,x])^p``.

    img: ``B x C x H x W`` (any range). ``p=2``: squared differences (the TV prior used with the style-swap
    objective, Chen & Schmidt 2016 eq. 2-3, as in Johnson et al.'s code); ``p=1``: anisotropic absolute
    differences. Sum over channels and pixels per sample; ``reduction="mean"``: mean over the batch
    (scalar), ``"none"``: ``B``. Grows with the image area: scale lambda_TV accordingly.
    """
    if p not in (1, 2):
        raise ConfigError(f"total_variation: p must be 1 or 2, got {p!r}")
    _check_reduction(reduction)
    if img.dim() != 4:
        raise ConfigError(f"total_variation expects a B x C x H x W image, got shape {tuple(img.shape)}")
    dy = img[:, :, 1:, :] - img[:, :, :-1, :]
    dx = img[:, :, :, 1:] - img[:, :, :, :-1]
    if p == 2:
        per = dy.pow(2).flatten(1).sum(1) + dx.pow(2).flatten(1).sum(1)
    else:
        per = dy.abs().flatten(1).sum(1) + dx.abs().flatten(1).sum(1)
    return per.mean() if reduction == "mean" else per


def feature_regularizer(
    new_feats: Features,
    pretrained_feats: Features,
    layers: Sequence[str] | None = None,
    mode: str = "norm",
    reduction: str = "mean",
) -> Tensor:
    """Feature regulariser of encoder refinement, Bai et al. eq. (4): ``sum_i ||F_n^(i) - F_o^(i)||_2``.

    ``new_feats``: features of the encoder being fine-tuned; ``pretrained_feats``: those of the frozen
    pretrained encoder (detached here). Layers: relu4_1 for AdaIN, relu4_1 and relu5_1 for SANet.
    ``mode="norm"`` (default, eq. 4 as written): the L2 norm (not squared) of the flattened
    ``C x H x W`` difference per sample; its gradient is 0 where the features coincide.
    ``mode="mse"``: mean squared difference instead, for runs that read ``||.||_2`` the way SANet and
    IEContraAST do (their equations write ``||.||_2`` where their code uses MSE). Summed over layers;
    ``reduction="mean"``: mean over the batch, ``"none"``: ``B``. The caller applies lambda_d.
    """
    if mode not in ("norm", "mse"):
        raise ConfigError(f"feature_regularizer: unknown mode {mode!r}; known: ['norm', 'mse']")
    _check_reduction(reduction)
    terms = []
    for _, new, old in _layer_pairs(new_feats, pretrained_feats, layers):
        diff = (new - old.detach()).flatten(1)
        if mode == "norm":
            terms.append(torch.linalg.vector_norm(diff, ord=2, dim=1))
        else:
            terms.append(diff.pow(2).mean(1))
    per = torch.stack(terms, 0).sum(0)
    return per.mean() if reduction == "mean" else per


class TotalVariation(nn.Module):
    """Module form of :func:`total_variation`."""

    def __init__(self, p: int = 2, reduction: str = "mean") -> None:
        super().__init__()
        if p not in (1, 2):
            raise ConfigError(f"TotalVariation: p must be 1 or 2, got {p!r}")
        _check_reduction(reduction)
        self.p = p
        self.reduction = reduction

    def forward(self, img: Tensor) -> Tensor:
        return total_variation(img, self.p, self.reduction)


class FeatureRegularizer(nn.Module):
    """Module form of :func:`feature_regularizer` with fixed ``layers``, ``mode`` and ``reduction``."""

    def __init__(
        self, layers: Sequence[str] | None = None, mode: str = "norm", reduction: str = "mean"
    ) -> None:
        super().__init__()
        if mode not in ("norm", "mse"):
            raise ConfigError(f"FeatureRegularizer: unknown mode {mode!r}; known: ['norm', 'mse']")
        _check_reduction(reduction)
        self.layers = None if layers is None else list(layers)
        self.mode = mode
        self.reduction = reduction

    def forward(self, new_feats: Features, pretrained_feats: Features) -> Tensor:
        return feature_regularizer(new_feats, pretrained_feats, self.layers, self.mode, self.reduction)
