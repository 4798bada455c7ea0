"""Image-quality and feature-statistics metrics for evaluating stylised images.

Every function here is pure (no encoder is built): image metrics take B x 3 x H x W tensors in [0, 1];
feature metrics take dicts ``{layer name: B x C x H x W tensor}`` produced by any encoder, so the same
code scores the real VGG-19, the distilled one, or a refined encoder. All return one value per sample
(a ``Tensor[B]``), never a batch mean, so callers can aggregate as they like (mean, median, per style).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from impasto.errors import ConfigError
from impasto.layers import BT601, luminance, pearson_rows, sobel_magnitude
from impasto.losses.style import gram as _gram
from impasto.transforms.stats import mean_std

__all__ = [
    "BT601",
    "balanced_style_distance",
    "content_loss_at",
    "edge_correlation",
    "gram_matrix",
    "gram_style_distance",
    "grid_artifact_score",
    "luminance",
    "mean_std_style_distance",
    "psnr",
    "sharpness",
    "sobel_magnitude",
    "ssim",
]

#: Stabilising constants of SSIM (Wang et al. 2004, eq. 7 and 9): K1 = 0.01, K2 = 0.03.
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03

FeatureDict = Mapping[str, Tensor]


# ----------------------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------------------
def _check_images(x: Tensor, y: Tensor, name: str) -> None:
    for label, t in (("first", x), ("second", y)):
        if not isinstance(t, Tensor) or t.dim() != 4 or t.shape[1] not in (1, 3):
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ConfigError(
                f"{name}: the {label} image must be a B x 3 x H x W (or B x 1 x H x W) tensor in [0, 1], "
                f"got {shape}; load images with impasto.io and add a batch dimension"
            )
    if x.shape != y.shape:
        raise ConfigError(
            f"{name}: both images must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}; "
            "resize the output to the reference size before comparing"
        )


def _float(x: Tensor) -> Tensor:
    """Promote integer/half inputs to float32 (metrics are computed in at least float32)."""
    if x.dtype in (torch.float32, torch.float64):
        return x
    return x.float()


def _layer(feats: FeatureDict, layer: str, what: str) -> Tensor:
    if layer not in feats:
        raise ConfigError(
            f"layer {layer!r} is missing from the {what} features; available layers: {sorted(feats)}. "
            "Encode with an encoder that returns this layer, or choose one of the available ones"
        )
    f = feats[layer]
    if f.dim() != 4:
        raise ConfigError(f"features of layer {layer!r} ({what}) must be B x C x H x W, got {tuple(f.shape)}")
    return _float(f)


def _resolve_layers(a: FeatureDict, b: FeatureDict, layers: Sequence[str] | None) -> list[str]:
    if layers is None:
        layers = [k for k in a if k in b]
        if not layers:
            raise ConfigError(
                f"the two feature dicts share no layer (got {sorted(a)} and {sorted(b)}); "
                "encode both images with the same encoder"
            )
    elif isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ConfigError("layers must name at least one layer, e.g. ['relu1_1', 'relu2_1', 'relu3_1']")
    if "total" in layers:
        raise ConfigError("'total' is reserved for the sum over layers and cannot be a layer name")
    return layers


def _check_batch(a: Tensor, b: Tensor, layer: str) -> None:
    if a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]):
        raise ConfigError(
            f"layer {layer!r}: batch sizes {a.shape[0]} and {b.shape[0]} differ; pass equal batches "
            "or a single reference (batch 1) to compare against every sample"
        )
    if a.shape[1] != b.shape[1]:
        raise ConfigError(
            f"layer {layer!r}: channel counts {a.shape[1]} and {b.shape[1]} differ; "
            "encode both images with the same encoder"
        )


# ----------------------------------------------------------------------------------------------------------
# image metrics
# ----------------------------------------------------------------------------------------------------------
def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return g.to(dtype=dtype, device=device)


def _blur(x: Tensor, g: Tensor) -> Tensor:
    """Separable Gaussian filtering of B x 1 x H x W, 'valid' region only (no padding)."""
    x = F.conv2d(x, g.view(1, 1, 1, -1))
    return F.conv2d(x, g.view(1, 1, -1, 1))


def ssim(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """Structural similarity (SSIM) of the luminances, one value per sample.

    Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to structural
    similarity", IEEE TIP 2004, eq. 13:
    ``SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))``
    with local statistics from a normalised Gaussian window (11 x 11, sigma 1.5), C1 = (0.01 L)^2,
    C2 = (0.03 L)^2, L = ``data_range`` = 1 for [0, 1] data, averaged over the 'valid' positions (where the
    whole window fits, as in the authors' reference code). RGB inputs are converted to BT.601 luma first.
    Computed in float64 internally, returned in the inputs' float dtype.

    Args:
        x, y: B x 3 x H x W (or B x 1 x H x W) in [0, 1], same shape, H and W >= ``window``.
    Returns:
        Tensor[B] in [-1, 1]; exactly 1 for identical images.
    """
    _check_images(x, y, "ssim")
    if window < 1 or window % 2 == 0:
        raise ConfigError(f"ssim: window must be a positive odd integer, got {window}")
    if sigma <= 0:
        raise ConfigError(f"ssim: sigma must be > 0, got {sigma}")
    h, w = x.shape[-2:]
    if h < window or w < window:
        raise ConfigError(
            f"ssim: images of {h}x{w} are smaller than the {window}x{window} window; "
            "compare larger images or pass a smaller window"
        )
    out_dtype = torch.promote_types(_float(x).dtype, _float(y).dtype)
    # float64 inside: E[x^2] - mu^2 cancels badly in float32 next to C2 = 9e-4 (errors ~1e-4)
    lx, ly = luminance(x).double(), luminance(y).double()
    g = _gaussian_window(window, sigma, lx.dtype, lx.device)
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _blur(lx, g), _blur(ly, g)
    var_x = _blur(lx * lx, g) - mu_x * mu_x
    var_y = _blur(ly * ly, g) - mu_y * mu_y
    cov = _blur(lx * ly, g) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return (num / den).flatten(1).mean(dim=1).to(out_dtype)


def edge_correlation(x: Tensor, y: Tensor, eps: float = 1e-12) -> Tensor:
    """Pearson correlation of the Sobel gradient-magnitude maps of two images' luminances.

    A content-preservation score: ``rho = cov(|grad Y_x|, |grad Y_y|) / (std * std)`` over the 'valid'
    pixels (no padding, so no artificial border edges), with 3 x 3 Sobel kernels on BT.601 luma.
    Invariant to brightness scaling and offset of either image. A flat image (no edges at all) has an
    undefined correlation; it is reported as 0 (``eps`` guards the division).

    Args:
        x, y: B x 3 x H x W (or B x 1 x H x W) in [0, 1], same shape, H, W >= 3.
    Returns:
        Tensor[B] in [-1, 1]; 1 for an image with itself or with a brightness-scaled copy.
    """
    _check_images(x, y, "edge_correlation")
    if min(x.shape[-2:]) < 3:
        raise ConfigError(f"edge_correlation: images must be at least 3x3, got {tuple(x.shape[-2:])}")
    out_dtype = torch.promote_types(_float(x).dtype, _float(y).dtype)
    lx, ly = luminance(x).double(), luminance(y).double()
    return pearson_rows(sobel_magnitude(lx).flatten(1), sobel_magnitude(ly).flatten(1), eps).to(out_dtype)


def sharpness(x: Tensor) -> Tensor:
    """Mean Sobel gradient magnitude of an image's luminance: how much fine edge contrast it has.

    ``mean |grad Y|`` over the 'valid' pixels (no padding), with the 3 x 3 Sobel kernels of
    :func:`edge_correlation` on BT.601 luma. Blurring lowers it, a brightness offset leaves it unchanged and a
    contrast factor ``k`` scales it by ``k``; compare images of the same scene (e.g. two decoders' outputs for
    the same input), not across scenes. A vertical step of height ``h`` in an image of width ``W`` scores
    ``4 h * 2 / (W - 2)`` (two valid columns see the step, each with magnitude ``4 h``).

    Args:
        x: B x 3 x H x W (or B x 1 x H x W) in [0, 1], H, W >= 3.
    Returns:
        Tensor[B], >= 0.
    """
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ConfigError(f"sharpness: expected B x 3 x H x W, got {tuple(x.shape)}")
    if min(x.shape[-2:]) < 3:
        raise ConfigError(f"sharpness: images must be at least 3x3, got {tuple(x.shape[-2:])}")
    out_dtype = _float(x).dtype
    return sobel_magnitude(luminance(x).double()).mean(dim=(1, 2, 3)).to(out_dtype)


def grid_artifact_score(x: Tensor, period: int = 8, eps: float = 1e-12) -> Tensor:
    """How much of an image's fine detail repeats with a fixed pixel grid: the checkerboard and stripe artefacts
    of decoders that up-sample by 2 three times (period 8 covers periods 2, 4 and 8).

    The luminance's high-pass residual ``r = Y - box3(Y)`` (3 x 3 mean, interior pixels) is averaged over the
    pixels of each of the ``period x period`` grid phases (the pixels ``(i, j)`` with the same ``(i mod p, j mod
    p)``). Detail that is not locked to the grid averages out; a grid pattern survives. Score = RMS of those
    phase means (their overall mean removed) / RMS of r. An image without grid-locked detail scores about
    ``period / sqrt(H W)`` (the averaging noise: 0.016 at 512 x 512); a pure grid pattern scores 1.

    Args:
        x: B x 3 x H x W (or B x 1 x H x W) in [0, 1], H, W >= 2 * period + 1 (the residual is cropped to whole
            periods).
    Returns:
        Tensor[B] in [0, 1].
    """
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ConfigError(f"grid_artifact_score: expected B x 3 x H x W, got {tuple(x.shape)}")
    if period < 2 or min(x.shape[-2:]) < 2 * period + 1:
        raise ConfigError(f"grid_artifact_score: need period >= 2 and images of at least 2 * period + 1 px, got "
                          f"period {period}, size {tuple(x.shape[-2:])}")
    out_dtype = _float(x).dtype
    lum = luminance(x).double()
    # the residual of the interior pixels (i, j >= 1: no padding), from pixel (period, period) on, so that its
    # row and column k are phase k mod period of the image grid
    r = (lum[..., 1:-1, 1:-1] - F.avg_pool2d(lum, 3, stride=1))[:, 0, period - 1 :, period - 1 :]
    b, h, w = r.shape
    h, w = h - h % period, w - w % period
    r = r[:, :h, :w]
    phases = r.reshape(b, h // period, period, w // period, period).mean(dim=(1, 3))
    phases = phases - phases.mean(dim=(1, 2), keepdim=True)
    num = phases.pow(2).mean(dim=(1, 2)).sqrt()
    den = r.pow(2).mean(dim=(1, 2)).sqrt()
    return (num / den.clamp_min(eps)).to(out_dtype)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB over all RGB values, one value per sample.

    ``PSNR = 10 log10(L^2 / MSE)``, L = ``data_range`` = 1 for [0, 1] data.

    Args:
        x, y: B x C x H x W in [0, 1], same shape.
    Returns:
        Tensor[B] in dB; ``inf`` for identical images.
    """
    _check_images(x, y, "psnr")
    x, y = _float(x), _float(y)
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse)


# ----------------------------------------------------------------------------------------------------------
# feature metrics
# ----------------------------------------------------------------------------------------------------------
def content_loss_at(feats_out: FeatureDict, feats_content: FeatureDict, layer: str) -> Tensor:
    """Content loss at one layer: MSE between the features of the output and of the content image.

    Gatys et al. 2016 / balanced-loss paper eq. 2: ``L_c^l(C, P) = MSE(F^l(C), F^l(P))`` (mean over
    C x H x W, per sample).

    Args:
        feats_out, feats_content: ``{layer: B x C x H x W}``; the content batch may be 1 (broadcast).
        layer: layer name, e.g. ``"relu4_1"``.
    Returns:
        Tensor[B] >= 0; 0 when the features are identical.
    """
    a = _layer(feats_out, layer, "output")
    b = _layer(feats_content, layer, "content")
    _check_batch(a, b, layer)
    if a.shape[-2:] != b.shape[-2:]:
        raise ConfigError(
            f"content_loss_at({layer!r}): feature maps of {tuple(a.shape[-2:])} and {tuple(b.shape[-2:])} "
            "differ in size; the output and the content image must have the same size"
        )
    return (a - b).pow(2).flatten(1).mean(dim=1)


def gram_matrix(f: Tensor) -> Tensor:
    """Gram matrix normalised by the number of feature values.

    ``G = F F^T / (C H W)`` with F the C x (H W) reshaped features (Johnson et al. 2016 convention),
    so images of different sizes have comparable Grams.

    Args:
        f: B x C x H x W features.
    Returns:
        B x C x C, symmetric positive semi-definite.
    """
    return _gram(f)


def _per_layer(
    feats_out: FeatureDict,
    feats_style: FeatureDict,
    layers: Sequence[str] | None,
    fn: Callable[[Tensor, Tensor], Tensor],
) -> dict[str, Tensor]:
    names = _resolve_layers(feats_out, feats_style, layers)
    out: dict[str, Tensor] = {}
    for name in names:
        a = _layer(feats_out, name, "output")
        b = _layer(feats_style, name, "style")
        _check_batch(a, b, name)
        out[name] = fn(a, b)
    out["total"] = torch.stack([out[n] for n in names], dim=0).sum(dim=0)
    return out


def _gram_mse(a: Tensor, b: Tensor) -> Tensor:
    ga, gb = gram_matrix(a), gram_matrix(b)
    return (ga - gb).pow(2).flatten(1).mean(dim=1)


def gram_style_distance(
    feats_out: FeatureDict, feats_style: FeatureDict, layers: Sequence[str] | None = None
) -> dict[str, Tensor]:
    """Classic Gram style loss per layer and summed (the "classic AST style loss").

    Balanced-loss paper eq. 6-7 (Gatys et al. 2016): ``L_s^l(S, P) = MSE(G(F^l(S)), G(F^l(P)))``, the mean
    over the C x C Gram entries, with ``G = F F^T / (C H W)`` (see :func:`gram_matrix`); total = sum over
    layers with weights 1. The value depends on the Gram normalisation (here C H W); compare numbers only
    between runs that use the same convention and the same encoder.

    Args:
        feats_out, feats_style: ``{layer: B x C x H x W}``; spatial sizes may differ; the style batch may
            be 1 (broadcast to every output).
        layers: layer names; default every layer present in both dicts.
    Returns:
        ``{layer: Tensor[B], ..., "total": Tensor[B]}``, all >= 0; 0 for identical features.
    """
    return _per_layer(feats_out, feats_style, layers, _gram_mse)


def mean_std_style_distance(
    feats_out: FeatureDict, feats_style: FeatureDict, layers: Sequence[str] | None = None
) -> dict[str, Tensor]:
    """AdaIN style loss per layer and summed: MSE of channel means plus MSE of channel stds.

    Huang & Belongie 2017, eq. 12:
    ``L_s^l = ||mu(F^l(P)) - mu(F^l(S))||^2 + ||sigma(F^l(P)) - sigma(F^l(S))||^2``,
    computed as MSE over channels (as the official code's ``nn.MSELoss``); mu/sigma from
    :func:`impasto.transforms.stats.mean_std`.

    Args:
        feats_out, feats_style: ``{layer: B x C x H x W}``; the style batch may be 1.
        layers: layer names; default every layer present in both dicts.
    Returns:
        ``{layer: Tensor[B], ..., "total": Tensor[B]}``, all >= 0; 0 for identical features.
    """

    def fn(a: Tensor, b: Tensor) -> Tensor:
        (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
        ma, sa, mb, sb = (t.flatten(1) for t in (ma, sa, mb, sb))  # B x C
        return (ma - mb).pow(2).mean(dim=1) + (sa - sb).pow(2).mean(dim=1)

    return _per_layer(feats_out, feats_style, layers, fn)


def balanced_style_distance(
    feats_out: FeatureDict,
    feats_style: FeatureDict,
    layers: Sequence[str] | None = None,
    eps: float = 1e-12,
) -> dict[str, Tensor]:
    """Balanced (style-aware normalised) Gram style distance per layer and summed: the evaluation metric.

    Cheng et al., "Style-Aware Normalized Loss for Improving Arbitrary Style Transfer" (CVPR 2021):

    - eq. 6:  ``L^l(S, P) = MSE(G(F^l(S)), G(F^l(P)))``
    - eq. 11: ``sup L^l(S, P) = (||G(F^l(S))||^2 + ||G(F^l(P))||^2) / N^l``
    - eq. 13: ``L_hat^l(S, P) = L^l(S, P) / sup L^l(S, P)``

    Convention used here. The paper calls N^l "the product of the spatial dimensions of the feature
    tensor"; the bound of eq. 11 is derived from ``||G_S - G_P||^2 = ||G_S||^2 + ||G_P||^2 - 2 <G_S, G_P>``
    with ``<G_S, G_P> = ||F_S^T F_P||^2 / norm >= 0`` (Gram matrices are positive semi-definite), so it is a
    supremum of the MSE exactly when N^l is the MSE's own divisor, the number of Gram entries C^2 (the
    "spatial size" of the C x C Gram matrix). With that reading every normalisation constant cancels and

        ``L_hat^l = ||G_S - G_P||_F^2 / (||G_S||_F^2 + ||G_P||_F^2)``  in [0, 1],

    independent of how G is scaled when S and P share a size; here G = F F^T / (C H W) (as in
    :func:`gram_matrix`), which also makes Grams of differently sized S and P comparable. (Taking N^l = H W
    literally would multiply this by H W / C^2 and lose the bound of 1.) The denominator is a per-sample,
    per-layer constant; as a metric nothing is back-propagated (the training loss in ``impasto.losses``
    detaches it, as the paper does in Sec. 5.1). A pair of all-zero feature maps scores 0 (``eps``).
    Lower is closer in style; the paper reports low values for over-stylised and high values for
    under-stylised outputs (Fig. 5).

    Args:
        feats_out, feats_style: ``{layer: B x C x H x W}``; spatial sizes may differ; the style batch
            may be 1.
        layers: layer names; default every layer present in both dicts.
    Returns:
        ``{layer: Tensor[B] in [0, 1], ..., "total": Tensor[B]}``, total = sum over layers (paper eq. 7
        with w_l = 1), so in [0, number of layers].
    """

    def fn(a: Tensor, b: Tensor) -> Tensor:
        ga, gb = gram_matrix(a), gram_matrix(b)
        num = (ga - gb).pow(2).flatten(1).sum(dim=1)
        den = ga.pow(2).flatten(1).sum(dim=1) + gb.pow(2).flatten(1).sum(dim=1)
        return num / den.clamp_min(eps)

    return _per_layer(feats_out, feats_style, layers, fn)
