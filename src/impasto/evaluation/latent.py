"""Latent-space consistency of an encoder: the Figure 1 test of the contrastive encoder-refinement paper.

"Improving the Latent Space of Image Style Transfer" (contrastive encoder refinement), Figure 1: take two
different paintings and an n x n block reshuffle of one of them; a style-consistent encoder should find the
painting closer (in Gram distance) to its own reshuffle, which has exactly the same style, than to another
painting. The paper shows that the pretrained VGG-19 often fails this. :func:`latent_consistency` measures
the failure rate over all ordered pairs of a set of paintings, for any ``encode(img) -> {layer: features}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from impasto.errors import ConfigError
from impasto.evaluation.metrics import gram_matrix

__all__ = [
    "block_reshuffle",
    "consistency_fraction",
    "crop_to_multiple",
    "gram_distance",
    "latent_consistency",
]

Encode = Callable[[Tensor], Mapping[str, Tensor]]


def _as_batch(img: Tensor, name: str) -> tuple[Tensor, bool]:
    if not isinstance(img, Tensor) or img.dim() not in (3, 4):
        shape = tuple(img.shape) if isinstance(img, Tensor) else type(img).__name__
        raise ConfigError(f"{name}: expected a C x H x W or B x C x H x W image tensor, got {shape}")
    return (img.unsqueeze(0), True) if img.dim() == 3 else (img, False)


def _check_n(n: int, name: str) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"{name}: n (blocks per side) must be a positive integer, got {n!r}")


def crop_to_multiple(img: Tensor, n: int) -> Tensor:
    """Centre-crop an image so that H and W are multiples of ``n`` (what :func:`block_reshuffle` needs).

    Args:
        img: C x H x W or B x C x H x W with H, W >= n.
        n: blocks per side.
    Returns:
        The same layout, H' = n * floor(H / n), W' = n * floor(W / n); a view when nothing is cropped.
    """
    _check_n(n, "crop_to_multiple")
    x, _ = _as_batch(img, "crop_to_multiple")
    h, w = x.shape[-2:]
    if h < n or w < n:
        raise ConfigError(f"crop_to_multiple: a {h}x{w} image cannot hold {n}x{n} blocks; use a larger image")
    nh, nw = (h // n) * n, (w // n) * n
    top, left = (h - nh) // 2, (w - nw) // 2
    return img[..., top : top + nh, left : left + nw]


def block_reshuffle(img: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """Split an image into an n x n grid of equal blocks and permute the blocks at random.

    The encoder-refinement paper's spatial reshuffle (Sec. 3, style contrastive positives; Figure 1): the
    result has exactly the pixels of the input, rearranged block-wise, so the same style but a destroyed
    layout. Each sample of a batch gets its own permutation, drawn in batch order from ``generator``
    (``torch.randperm``); with ``n = 1`` the image is returned unchanged.

    H and W must be divisible by ``n``; otherwise a ConfigError is raised: crop first with
    :func:`crop_to_multiple` (centre crop to the nearest multiple).

    Args:
        img: C x H x W or B x C x H x W tensor (any value range).
        n: blocks per side (n * n blocks).
        generator: CPU torch.Generator for reproducible permutations; None uses the global RNG.
    Returns:
        Tensor of the input's shape, dtype and device.
    """
    _check_n(n, "block_reshuffle")
    x, squeezed = _as_batch(img, "block_reshuffle")
    b, c, h, w = x.shape
    if h % n or w % n:
        raise ConfigError(
            f"block_reshuffle: image size {h}x{w} is not divisible by n={n}; crop it to a multiple of {n} "
            "first, e.g. impasto.evaluation.latent.crop_to_multiple(img, n)"
        )
    bh, bw = h // n, w // n
    blocks = x.reshape(b, c, n, bh, n, bw).permute(0, 2, 4, 1, 3, 5).reshape(b, n * n, c, bh, bw)
    perms = torch.stack([torch.randperm(n * n, generator=generator) for _ in range(b)]).to(x.device)
    shuffled = torch.gather(blocks, 1, perms.view(b, n * n, 1, 1, 1).expand_as(blocks))
    out = shuffled.reshape(b, n, n, c, bh, bw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
    return out[0] if squeezed else out


def gram_distance(
    feats_a: Mapping[str, Tensor], feats_b: Mapping[str, Tensor], layers: Sequence[str]
) -> Tensor:
    """Gram (style) distance between two feature dicts, summed over layers.

    ``d(a, b) = sum_l MSE(G(F^l_a), G(F^l_b))`` with ``G = F F^T / (C H W)`` (Gatys et al. 2016; the
    style distance of the encoder-refinement paper's Figure 1).

    Args:
        feats_a, feats_b: ``{layer: B x C x H x W}`` (spatial sizes may differ; a batch of 1 broadcasts).
        layers: the layers to sum over.
    Returns:
        Tensor[B] >= 0.
    """
    if isinstance(layers, str):
        layers = [layers]
    if not layers:
        raise ConfigError("gram_distance: layers must name at least one layer")
    per_layer: list[Tensor] = []
    for name in layers:
        for feats, what in ((feats_a, "first"), (feats_b, "second")):
            if name not in feats:
                raise ConfigError(
                    f"gram_distance: layer {name!r} missing from the {what} features; "
                    f"available layers: {sorted(feats)}"
                )
        ga, gb = gram_matrix(feats_a[name].float()), gram_matrix(feats_b[name].float())
        per_layer.append((ga - gb).pow(2).flatten(1).mean(dim=1))
    return torch.stack(torch.broadcast_tensors(*per_layer)).sum(dim=0)


def consistency_fraction(self_dist: Tensor, pair_dist: Tensor) -> float:
    """Fraction of ordered pairs (i, j), i != j, with ``pair_dist[i, j] < self_dist[i]``.

    Args:
        self_dist: Tensor[M], distance between painting i and its own reshuffle.
        pair_dist: M x M, distance between painting i and painting j (diagonal ignored).
    Returns:
        A float in [0, 1]: 0 = the encoder always puts a painting nearer its own reshuffle (consistent).
    """
    m = self_dist.shape[0]
    if m < 2 or pair_dist.shape != (m, m):
        raise ConfigError(
            f"consistency_fraction: need M >= 2 paintings and an M x M pair matrix, got M={m} "
            f"and {tuple(pair_dist.shape)}"
        )
    off = ~torch.eye(m, dtype=torch.bool, device=pair_dist.device)
    worse = pair_dist < self_dist.view(m, 1)
    return float(worse[off].float().mean())


@torch.no_grad()
def latent_consistency(
    encode: Encode,
    styles: Sequence[Tensor],
    n: int = 4,
    layers: Sequence[str] | None = None,
    seed: int = 0,
) -> dict:
    """The encoder-refinement paper's Figure 1 test, over every ordered pair of different paintings.

    For each painting i: r_i = its n x n block reshuffle (after a centre crop to a multiple of n);
    ``d_self[i] = gram_distance(E(s_i), E(r_i))``; for j != i, ``d_pair[i, j] = gram_distance(E(s_i),
    E(s_j))``. The score is the fraction of ordered pairs with ``d_pair[i, j] < d_self[i]``: how often the
    encoder finds a different painting closer in style than the painting's own reshuffle (same style).
    Lower is more consistent; 0 for an encoder whose Gram is invariant to block permutations.
    Each painting and each reshuffle is encoded once (2 M encoder calls, batch 1, sizes may differ).

    Args:
        encode: ``img (1 x 3 x H x W in [0, 1]) -> {layer: 1 x C x h x w}``, e.g. a VGG-19 wrapper.
        styles: M >= 2 paintings, each 3 x H x W or 1 x 3 x H x W in [0, 1].
        n: blocks per side of the reshuffle.
        layers: layers to sum the Gram distance over; default every layer ``encode`` returns.
        seed: seed of the permutations (reproducible).
    Returns:
        dict with ``fraction`` (float in [0, 1]), ``n_pairs`` (M (M - 1)), ``mean_self_distance`` and
        ``mean_pair_distance`` (floats; pair mean over i != j), ``self_distance`` (Tensor[M]) and
        ``pair_distance`` (M x M, zero diagonal), ``layers`` (list) and ``n``.
    """
    _check_n(n, "latent_consistency")
    m = len(styles)
    if m < 2:
        raise ConfigError(f"latent_consistency needs at least 2 paintings, got {m}")
    gen = torch.Generator().manual_seed(seed)
    feats: list[Mapping[str, Tensor]] = []
    self_dist = torch.zeros(m, dtype=torch.float64)
    names: list[str] | None = list(layers) if layers is not None else None
    for i, s in enumerate(styles):
        x, _ = _as_batch(s, f"latent_consistency (painting {i})")
        if x.shape[0] != 1:
            raise ConfigError(
                f"latent_consistency: painting {i} must be a single image, got batch {x.shape[0]}"
            )
        x = crop_to_multiple(x, n)
        f = encode(x)
        if names is None:
            names = list(f)
        r = block_reshuffle(x, n, generator=gen)
        self_dist[i] = float(gram_distance(f, encode(r), names)[0])
        feats.append(f)
    assert names is not None
    pair = torch.zeros(m, m, dtype=torch.float64)
    for i in range(m):
        for j in range(i + 1, m):
            d = float(gram_distance(feats[i], feats[j], names)[0])
            pair[i, j] = pair[j, i] = d
    off = ~torch.eye(m, dtype=torch.bool)
    return {
        "fraction": consistency_fraction(self_dist, pair),
        "n_pairs": m * (m - 1),
        "mean_self_distance": float(self_dist.mean()),
        "mean_pair_distance": float(pair[off].mean()),
        "self_distance": self_dist,
        "pair_distance": pair,
        "layers": names,
        "n": n,
    }
