"""Style losses: mean/std (AdaIN, SANet, IEContraAST), Gram (Gatys) and the balanced Gram loss (Cheng et al.).

Features are either one tensor ``B x C x H x W`` or a mapping ``{layer_name: B x C x H x W}`` (e.g. the
output of an encoder asked for ``["relu1_1", "relu2_1", ...]``). Functions that take ``layers`` read those
layers from both mappings; ``layers=None`` means every layer of the target mapping, in its order.

Conventions used throughout (state them when you compare numbers with a paper):

* ``mean_std`` (from :mod:`impasto.transforms.stats`, re-exported): per-channel mean and **unbiased**
  standard deviation over space, ``sqrt(var + 1e-5)``, as ``calc_mean_std`` of the AdaIN / SANet /
  IEContraAST releases.
* ``gram``: ``G = F F^T / (C * H * W)`` with ``F`` the ``C x (H*W)`` feature matrix, shape ``B x C x C``.
* Gram-MSE: mean over the ``C x C`` entries of ``(G_out - G_style)^2``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

import torch
from torch import Tensor, nn

from impasto.errors import ConfigError
from impasto.transforms.stats import mean_std

Features: TypeAlias = Tensor | Mapping[str, Tensor]

__all__ = [
    "Features",
    "mean_std",
    "mean_std_style_loss",
    "gram",
    "gram_style_loss",
    "gram_style_loss_supremum",
    "balanced_style_loss",
    "MeanStdStyleLoss",
    "GramStyleLoss",
    "BalancedStyleLoss",
]

_REDUCTIONS = ("mean", "none")


def _layer_pairs(
    out_feats: Features, target_feats: Features, layers: Sequence[str] | None
) -> list[tuple[str, Tensor, Tensor]]:
    """Return ``[(layer, out, target), ...]`` for tensors or ``{layer: tensor}`` mappings (shapes checked)."""
    if isinstance(out_feats, Tensor) != isinstance(target_feats, Tensor):
        raise ConfigError("loss inputs must both be tensors or both be {layer_name: tensor} mappings")
    if isinstance(out_feats, Tensor):
        if layers is not None and len(layers) != 1:
            raise ConfigError(
                f"got single feature tensors but layers={list(layers)}; pass {{layer_name: tensor}} "
                "mappings to use several layers"
            )
        pairs = [("features" if layers is None else layers[0], out_feats, target_feats)]
    else:
        names = list(target_feats.keys()) if layers is None else list(layers)
        if not names:
            raise ConfigError("no layers given to the loss; pass e.g. layers=['relu1_1', 'relu2_1']")
        pairs = []
        for name in names:
            missing = [
                w for w, feats in (("output", out_feats), ("target", target_feats)) if name not in feats
            ]
            if missing:
                known = sorted(set(out_feats) & set(target_feats))
                raise ConfigError(
                    f"layer {name!r} is missing from the {' and '.join(missing)} features; "
                    f"layers present in both: {known}. Ask the encoder for this layer or change `layers`."
                )
            pairs.append((name, out_feats[name], target_feats[name]))
    for name, a, b in pairs:
        if a.shape != b.shape or a.dim() != 4:
            raise ConfigError(
                f"layer {name!r}: output and target features must both be B x C x H x W with the same "
                f"shape, got {tuple(a.shape)} and {tuple(b.shape)}"
            )
    return pairs


def _check_reduction(reduction: str, allowed: Sequence[str] = _REDUCTIONS) -> None:
    if reduction not in allowed:
        raise ConfigError(f"unknown reduction {reduction!r}; known: {list(allowed)}")


def mean_std_style_loss(
    out_feats: Features,
    style_feats: Features,
    layers: Sequence[str] | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Mean/std style loss: ``sum_l MSE(mu(out_l), mu(style_l)) + MSE(sigma(out_l), sigma(style_l))``.

    Features: ``B x C x H x W`` tensors or ``{layer: tensor}`` mappings (AdaIN: relu1_1..relu4_1; SANet and
    IEContraAST: relu1_1..relu5_1). IEContraAST eq. (1) writes ``||.||_2``; the official releases compute
    the MSE, which is what this returns. ``reduction="mean"``: scalar (MSE over batch and channels,
    summed over layers); ``"none"``: per-sample vector ``B`` (its batch mean equals the scalar).
    No target is detached: detach style features yourself if the encoder is trained.
    """
    _check_reduction(reduction)
    terms = []
    for _, out, style in _layer_pairs(out_feats, style_feats, layers):
        mu_o, sd_o = mean_std(out)
        mu_s, sd_s = mean_std(style)
        terms.append(((mu_o - mu_s) ** 2).flatten(1).mean(1) + ((sd_o - sd_s) ** 2).flatten(1).mean(1))
    total = torch.stack(terms, dim=0).sum(0)
    return total.mean() if reduction == "mean" else total


def gram(feat: Tensor) -> Tensor:
    """Gram matrix normalised by the feature size: ``G = F F^T / (C * H * W)``.

    feat: ``B x C x H x W`` -> ``B x C x C`` (symmetric positive semi-definite). The normalisation is a
    convention (Johnson et al. 2016 use ``C*H*W`` too); the balanced loss does not depend on it.
    """
    b, c, h, w = feat.shape
    flat = feat.reshape(b, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def gram_style_loss(
    out_feats: Features,
    style_feats: Features,
    layers: Sequence[str] | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Classic Gram style loss per sample and layer: ``MSE(G(F_l(S)), G(F_l(P)))`` (Cheng et al. eq. 3/6).

    MSE = mean over the ``C_l x C_l`` Gram entries. ``reduction="none"``: ``B x L`` tensor (column order =
    ``layers``); ``"mean"``: scalar = sum over layers (eq. 5/7 with unit weights) of the batch mean (eq. 8).
    """
    _check_reduction(reduction)
    cols = [
        ((gram(out) - gram(style)) ** 2).flatten(1).mean(1)
        for _, out, style in _layer_pairs(out_feats, style_feats, layers)
    ]
    per = torch.stack(cols, dim=1)
    return per.mean(0).sum() if reduction == "mean" else per


def gram_style_loss_supremum(
    out_feats: Features, style_feats: Features, layers: Sequence[str] | None = None
) -> Tensor:
    """Supremum of the Gram-MSE per sample and layer, Cheng et al. eq. (11): ``(|G_S|^2 + |G_P|^2) / N_l``.

    ``N_l`` = ``C_l^2``, the number of Gram entries the MSE of eq. (6) averages over; with that constant eq.
    (11) is the least upper bound of eq. (6) for PSD Gram matrices, since ``||G_S - G_P||^2 = ||G_S||^2 +
    ||G_P||^2 - 2 tr(G_S G_P)`` and ``tr(G_S G_P) >= 0`` (equality when the features use disjoint
    channels). (The paper calls ``N_l`` "the product of the spatial dimensions of the feature tensor"; read as
    the ``C_l x C_l`` Gram tensor that is the same constant. With ``N_l = H_l * W_l`` instead the ratio of eq.
    (13) would not be bounded by 1.) Returns ``B x L``; frobenius norms use :func:`gram`'s normalisation.
    """
    cols = []
    for _, out, style in _layer_pairs(out_feats, style_feats, layers):
        g_o, g_s = gram(out), gram(style)
        n_l = g_o.shape[1] * g_o.shape[2]
        cols.append((g_s.pow(2).flatten(1).sum(1) + g_o.pow(2).flatten(1).sum(1)) / n_l)
    return torch.stack(cols, dim=1)


def balanced_style_loss(
    out_feats: Features,
    style_feats: Features,
    layers: Sequence[str] | None = None,
    reduction: str = "mean",
    eps: float = 1e-12,
) -> Tensor:
    """Balanced (style-aware normalised) style loss of Cheng et al., CVPR 2021, eq. (13).

    Per sample and layer: ``L_hat_l = L_l / sup(L_l)`` with ``L_l`` the Gram-MSE of eq. (6) (see
    :func:`gram_style_loss`) and ``sup(L_l) = (||G(F_l(S))||^2 + ||G(F_l(P))||^2) / N_l`` of eq. (11),
    ``N_l = C_l^2`` (see :func:`gram_style_loss_supremum`). So ``L_hat_l = ||G_S - G_P||^2 / (||G_S||^2 +
    ||G_P||^2)`` lies in ``[0, 1]`` for any (even signed) features and any Gram normalisation. The
    denominator is detached: "we do not backpropagate gradient through the denominator" (Sec. 5.1), so the
    gradient is ``grad(L_l) / sup(L_l)``. ``eps`` is added to the denominator (an all-zero pair gives 0).

    ``reduction="none"``: ``B x L`` per sample and layer; ``"mean"``: scalar = sum over layers of the
    batch mean (eq. 10 aggregated as eq. 5 and 8 with unit weights).
    """
    _check_reduction(reduction)
    classic = gram_style_loss(out_feats, style_feats, layers, reduction="none")
    sup = gram_style_loss_supremum(out_feats, style_feats, layers).detach()
    per = classic / (sup + eps)
    return per.mean(0).sum() if reduction == "mean" else per


class MeanStdStyleLoss(nn.Module):
    """Module form of :func:`mean_std_style_loss` with fixed ``layers`` and ``reduction``."""

    def __init__(self, layers: Sequence[str] | None = None, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.layers = None if layers is None else list(layers)
        self.reduction = reduction

    def forward(self, out_feats: Features, style_feats: Features) -> Tensor:
        return mean_std_style_loss(out_feats, style_feats, self.layers, self.reduction)


class GramStyleLoss(nn.Module):
    """Module form of :func:`gram_style_loss` with fixed ``layers`` and ``reduction``."""

    def __init__(self, layers: Sequence[str] | None = None, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.layers = None if layers is None else list(layers)
        self.reduction = reduction

    def forward(self, out_feats: Features, style_feats: Features) -> Tensor:
        return gram_style_loss(out_feats, style_feats, self.layers, self.reduction)


class BalancedStyleLoss(nn.Module):
    """Module form of :func:`balanced_style_loss` with fixed ``layers``, ``reduction`` and ``eps``."""

    def __init__(
        self, layers: Sequence[str] | None = None, reduction: str = "mean", eps: float = 1e-12
    ) -> None:
        super().__init__()
        _check_reduction(reduction)
        self.layers = None if layers is None else list(layers)
        self.reduction = reduction
        self.eps = eps

    def forward(self, out_feats: Features, style_feats: Features) -> Tensor:
        return balanced_style_loss(out_feats, style_feats, self.layers, self.reduction, self.eps)
