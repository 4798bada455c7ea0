"""Channel statistics and adaptive instance normalisation (Huang & Belongie 2017)."""

from __future__ import annotations

from torch import Tensor

from impasto.layers import channel_mean_var

__all__ = ["mean_std", "mean_variance_norm", "adain", "adain_features"]


def _check_4d(name: str, feat: Tensor) -> None:
    if feat.dim() != 4:
        raise ValueError(f"{name} must be a B x C x H x W feature tensor, got shape {tuple(feat.shape)}")


def mean_std(feat: Tensor, eps: float = 1e-5, *, keep_dtype: bool = True) -> tuple[Tensor, Tensor]:
    """Per-sample, per-channel mean and standard deviation over space.

    feat: B x C x H x W (any real values). Returns (mean, std), each B x C x 1 x 1, with
    std = sqrt(unbiased variance + eps), exactly as ``calc_mean_std`` in the official AdaIN/SANet code.
    A 1 x 1 map (no unbiased variance) gets variance 0, so std = sqrt(eps) instead of NaN.
    The statistics are accumulated in float32 (float64 for float64 input); ``keep_dtype`` returns them in
    ``feat``'s dtype, ``keep_dtype=False`` keeps the float32 values (MicroAST's modulation under bf16).
    The one implementation: :mod:`impasto.losses` and :mod:`impasto.models.microast` use this function, and
    :mod:`impasto.evaluation` flattens its result to B x C.
    """
    _check_4d("feat", feat)
    b, c = feat.shape[:2]
    correction = 1 if feat.shape[2] * feat.shape[3] > 1 else 0
    mean, var = channel_mean_var(feat, correction)  # float32 accumulation, faster than torch.var_mean
    mean, std = mean.reshape(b, c, 1, 1), (var + eps).sqrt().reshape(b, c, 1, 1)
    if keep_dtype:
        return mean.to(feat.dtype), std.to(feat.dtype)
    return mean, std


def mean_variance_norm(feat: Tensor, eps: float = 1e-5) -> Tensor:
    """Normalise every channel of every sample to mean 0 and std 1: (x - mu(x)) / sigma(x).

    feat: B x C x H x W. Returns B x C x H x W. This is ``mean_variance_norm`` of the official SANet /
    IEContraAST code (query/key input of SANet, normalised content loss).
    """
    mean, std = mean_std(feat, eps)
    return (feat - mean) / std


def adain(content: Tensor, style_mean: Tensor, style_std: Tensor, eps: float = 1e-5) -> Tensor:
    """Adaptive instance normalisation: sigma(y) * (x - mu(x)) / sigma(x) + mu(y)  (AdaIN paper, eq. 8).

    content: B x C x H x W features x; style_mean, style_std: B x C x 1 x 1 (or 1 x C x 1 x 1, broadcast
    over the batch), e.g. from :func:`mean_std` of style features, so the style side can be cached.
    Returns B x C x H x W features with the style's per-channel mean and std.
    """
    c_mean, c_std = mean_std(content, eps)
    return (content - c_mean) / c_std * style_std + style_mean


def adain_features(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    """AdaIN of content features with the statistics of style features.

    content: B x C x H x W; style: B x C x H' x W' or 1 x C x H' x W' (any spatial size).
    Returns B x C x H x W.
    """
    _check_4d("style", style)
    if style.shape[1] != content.shape[1]:
        raise ValueError(f"content has {content.shape[1]} channels but style has {style.shape[1]}")
    s_mean, s_std = mean_std(style, eps)
    return adain(content, s_mean, s_std, eps)
