"""Whitening and colouring transform (Li et al., "Universal Style Transfer via Feature Transforms", 2017)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from impasto.layers import as_channels_last

__all__ = ["WCTStyleStats", "wct_style_stats", "wct", "wct_affine", "wct_features"]

# Eigenvalues below max(eps, _REL_THRESHOLD * largest eigenvalue) are treated as zero (the official code
# keeps eigenvalues above 1e-5; the relative part protects rank-deficient covariances of large features).
_REL_THRESHOLD = 1e-12


@dataclass(frozen=True)
class WCTStyleStats:
    """The cacheable style side of WCT.

    mean: C x 1 (float64) per-channel mean m_s of the style features.
    colour: C x C (float64) colouring matrix E_s D_s^{1/2} E_s^T, the symmetric square root of the
    style covariance restricted to its eigenvalues above the threshold (paper eq. 3).
    """

    mean: Tensor
    colour: Tensor

    @property
    def channels(self) -> int:
        return self.mean.shape[0]

    def to(self, device: torch.device | str) -> WCTStyleStats:
        """Return these statistics on another device."""
        return WCTStyleStats(self.mean.to(device), self.colour.to(device))


#: Maps of at most this many pixels get their covariance in float64 throughout.
_FLOAT64_MAX_PIXELS = 16384
#: Pixels per covariance matmul of larger maps: each chunk's C x C product is computed in float32 and summed in
#: float64. 4096, not 16384: MKL's float32 kernel on a Xeon with AMX accumulates a long product with more rounding
#: (relative error of the WCT map at 210 x 200 px, 16 channels: 0.8-1.0e-5 with 16384-pixel chunks, 2.0e-6 with 4096)
_COV_CHUNK = 4096


def _rows(feat: Tensor) -> Tensor:
    """C x H x W features -> N x C rows in their dtype (a view, without copy, for channels-last features)."""
    return feat.permute(1, 2, 0).reshape(-1, feat.shape[0])


#: Rows per centring step of a large map's covariance: its float32 copy (6 MB at 24 channels) stays in cache.
_CENTRE_BLOCK = 16 * _COV_CHUNK


def _centred_cov(rows: Tensor) -> tuple[Tensor, Tensor]:
    """N x C features -> (mean C x 1, covariance C x C with the unbiased 1/(N-1)), both float64.

    Maps of at most ``_FLOAT64_MAX_PIXELS`` pixels (the deep levels, and every rank-deficient case N <= C) are computed
    in float64. Larger ones in float32 (the features' precision): block by block of ``_CENTRE_BLOCK`` rows, the rows
    centred about a rough mean (of every (N // 4096)-th row) into one reused float32 buffer, their products in
    ``_COV_CHUNK``-row chunks and their sums, whose results are summed in float64 (so rounding does not grow with N);
    the mean and the covariance about it follow exactly from those sums (the shifted-data formula). No N x C float32
    copy is written (with one, memory traffic was most of the level-1 statistics' time at 1024 px).
    """
    n, c = rows.shape
    if n <= _FLOAT64_MAX_PIXELS:
        x = rows.double()
        mean = x.mean(dim=0, keepdim=True)
        centred = x - mean
        return mean.T, centred.T @ centred / max(n - 1, 1)
    # centred about a rough mean m0 (from about 4096 rows) and corrected exactly at the end: with d = mean(x - m0),
    # sum (x - m)(x - m)^T = sum (x - m0)(x - m0)^T - n d d^T. The full-map mean from float32 block sums needed a
    # float32 copy of bf16 features; d comes from the centred float32 blocks instead.
    m0 = rows[:: max(1, n // 4096)].float().mean(dim=0, keepdim=True)
    cov = torch.zeros(c, c, dtype=torch.float64, device=rows.device)
    dsum = torch.zeros(1, c, dtype=torch.float64, device=rows.device)
    buf = torch.empty(min(n, _CENTRE_BLOCK), c, device=rows.device)
    for start in range(0, n, _CENTRE_BLOCK):
        part = buf[: min(_CENTRE_BLOCK, n - start)]
        torch.sub(rows[start : start + part.shape[0]], m0, out=part)
        full = part.shape[0] - part.shape[0] % _COV_CHUNK
        if full:
            chunks = part[:full].view(-1, _COV_CHUNK, c)
            cov += torch.bmm(chunks.transpose(1, 2), chunks).double().sum(dim=0)
            dsum += chunks.sum(dim=1).double().sum(dim=0, keepdim=True)
        if full < part.shape[0]:
            cov += (part[full:].T @ part[full:]).double()
            dsum += part[full:].sum(dim=0, keepdim=True).double()
    d = dsum / n
    return (m0.double() + d).T, (cov - n * (d.T @ d)) / (n - 1)


def _kept_eigh(cov: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Eigen-decompose a symmetric C x C float64 matrix; keep eigenpairs with eigenvalue above threshold."""
    evals, evecs = torch.linalg.eigh(cov)
    threshold = max(eps, _REL_THRESHOLD * float(evals.abs().max()))
    keep = evals > threshold
    return evals[keep], evecs[:, keep]


def _as_single_map(name: str, feat: Tensor) -> Tensor:
    if feat.dim() == 4 and feat.shape[0] == 1:
        feat = feat[0]
    if feat.dim() != 3:
        raise ValueError(f"{name} must be 1 x C x H x W (or C x H x W), got shape {tuple(feat.shape)}")
    return feat


def wct_style_stats(style_feat: Tensor, eps: float = 1e-5) -> WCTStyleStats:
    """Compute the style mean and colouring matrix of WCT once, to reuse for many contents.

    style_feat: 1 x C x H x W style features (any real values; H*W may be smaller than C). Computed in
    float64 (the covariance from float32 products) with ``torch.linalg.eigh``; eigenvalues <= max(eps, 1e-12 *
    largest) are dropped, as the official code drops eigenvalues below 1e-5. Autocast is off inside.
    """
    rows = _rows(_as_single_map("style_feat", style_feat))
    with torch.autocast(rows.device.type, enabled=False):
        mean, cov = _centred_cov(rows)
    evals, evecs = _kept_eigh(cov, eps)
    colour = (evecs * evals.sqrt()) @ evecs.T
    return WCTStyleStats(mean=mean, colour=colour)


def wct(content_feat: Tensor, stats: WCTStyleStats, eps: float = 1e-5, content_ridge: float = 0.0) -> Tensor:
    """Whiten content features, then colour them with the style statistics (Li et al. 2017, eqs. 2-3).

    f_c_hat = E_c D_c^{-1/2} E_c^T (f_c - m_c);  out = E_s D_s^{1/2} E_s^T f_c_hat + m_s.

    content_feat: B x C x H x W (each sample whitened on its own; B = 1 in the usual case).
    stats: from :func:`wct_style_stats` with the same C. Returns B x C x H x W in content_feat's dtype,
    whose per-sample mean equals the style mean and whose covariance equals the style covariance when
    the content covariance has full rank (H*W > C). The C x C algebra is float64, the N-long products float32,
    autocast off. Eigenvalues of the content covariance <= max(eps,
    1e-12 * largest) are dropped, so rank-deficient inputs give finite outputs. ``content_ridge`` is added
    to the diagonal of the content covariance before whitening (the official PyTorch release adds 1.0; 0
    gives the exact transform of the paper).
    """
    if content_feat.dim() != 4:
        raise ValueError(f"content_feat must be B x C x H x W, got shape {tuple(content_feat.shape)}")
    b, c, h, w = content_feat.shape
    if c != stats.channels:
        raise ValueError(f"content has {c} channels but the WCT style statistics have {stats.channels}")
    s_mean = stats.mean.to(content_feat.device)
    outs = []
    with torch.autocast(content_feat.device.type, enabled=False):
        for i in range(b):
            rows = _rows(content_feat[i])
            # out = colour @ whiten @ (f - m_c) + m_s = T (f - m_c) + m_s: one C x C matrix (float64, then float32)
            t, mean = _transform(rows, stats, eps, content_ridge)
            if rows.shape[0] <= _FLOAT64_MAX_PIXELS:  # small maps: float64 throughout (exact when rank-deficient)
                out = torch.addmm((s_mean - t @ mean).T, rows.double(), t.T).float()
                outs.append(out.reshape(1, h, w, c).permute(0, 3, 1, 2))  # channels-last layout, like the encoder's
            else:  # a float32 1x1 conv on the centred rows seen as a channels-last map (measured 2-3x faster than
                # addmm on N x C rows, which runs at about 10 GMAC/s for C = 24)
                fmap = (rows - mean.T.float()).view(1, h, w, c).permute(0, 3, 1, 2)
                outs.append(F.conv2d(fmap, t.float()[:, :, None, None], s_mean.float().flatten()))
    out = outs[0] if b == 1 else torch.cat(outs)
    return as_channels_last(out.to(content_feat.dtype))


def _transform(rows: Tensor, stats: WCTStyleStats, eps: float, ridge: float) -> tuple[Tensor, Tensor]:
    """N x C content rows -> (T = colour @ whiten, C x C float64; the content mean C x 1, float64)."""
    mean, cov = _centred_cov(rows)
    if ridge:
        cov = cov + ridge * torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
    evals, evecs = _kept_eigh(cov, eps)
    whiten = (evecs * evals.rsqrt()) @ evecs.T
    return stats.colour.to(rows.device) @ whiten, mean


def wct_affine(
    content_feat: Tensor, stats: WCTStyleStats, eps: float = 1e-5, content_ridge: float = 0.0
) -> tuple[Tensor, Tensor]:
    """The WCT of one content map as the affine map of its features that it is: ``wct(f) = T f + shift`` at every
    pixel, with ``T = colour @ whiten`` and ``shift = m_s - T m_c`` (same statistics and options as :func:`wct`).

    A linear layer that reads the WCT output (a decoder's first conv) can absorb T and shift into its weights and
    bias, so the transformed map is never written (impasto.decoders.vgg). content_feat: 1 x C x H x W.
    Returns (T: C x C, shift: C), float64.
    """
    feat = _as_single_map("content_feat", content_feat)
    if feat.shape[0] != stats.channels:
        raise ValueError(f"content has {feat.shape[0]} channels but the WCT style statistics have {stats.channels}")
    with torch.autocast(feat.device.type, enabled=False):
        t, mean = _transform(_rows(feat), stats, eps, content_ridge)
    return t, (stats.mean.to(t.device) - t @ mean).flatten()


def wct_features(content: Tensor, style: Tensor, eps: float = 1e-5, content_ridge: float = 0.0) -> Tensor:
    """WCT of content features with the statistics of style features (no caching).

    content: B x C x H x W; style: 1 x C x H' x W' (shared by every content) or B x C x H' x W'
    (one style per content). Returns B x C x H x W.
    """
    if style.dim() != 4 or style.shape[0] not in (1, content.shape[0]):
        raise ValueError(
            f"style must be 1 x C x H x W or have the content's batch size {content.shape[0]}, "
            f"got shape {tuple(style.shape)}"
        )
    if style.shape[0] == 1:
        return wct(content, wct_style_stats(style, eps), eps, content_ridge)
    return torch.cat(
        [
            wct(content[i : i + 1], wct_style_stats(style[i : i + 1], eps), eps, content_ridge)
            for i in range(content.shape[0])
        ]
    )
