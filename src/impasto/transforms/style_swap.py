"""Style swap: replace every content patch by its best-matching style patch (Chen & Schmidt 2016).

The paper implements it as conv (normalised style patches as filters) -> channel argmax -> one-hot ->
transposed conv (raw style patches) -> division by the overlap count. Here the same result is computed
with bounded memory, by one of two matching algorithms:

* ``direct``: the paper's conv as a matmul of unfolded content patches with the P x (C k k) filter matrix;
  content patch rows in blocks, style patches in chunks with a running max/argmax.
* ``correlation`` (stride 1 on both sides, the paper's setting): a patch score is a sum of k*k pixel scores,
  <phi(C)_{i,j}, phi(S)_{u,v}> = sum_{a,b} <C[i+a, j+b], S[u+a, v+b]>, so the pixel-to-pixel correlation
  K = C^T S (C multiply-adds per pixel pair) is computed once and the k*k shifted diagonals of K are summed,
  in blocks of content rows x style rows small enough for the cache. That is k*k = 9x fewer multiply-adds
  than the conv, and the same scores up to float rounding.

The reconstruction sums the chosen raw patches at their positions (the one-hot transposed conv without the
P-channel one-hot map): after ``correlation`` matching by k*k gathers of their pixels from the style maps, after
``direct`` matching with ``F.fold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from impasto.errors import ConfigError
from impasto.runtime import check_cancelled

__all__ = ["StyleSwapPatches", "style_swap_patches", "style_swap", "style_swap_features", "MATCHING_ALGORITHMS"]

_DEFAULT_CHUNK = 4096
MATCHING_ALGORITHMS = ("auto", "direct", "correlation")


@dataclass(frozen=True)
class StyleSwapPatches:
    """The cacheable style side of style swap: all style patches and their norms.

    raw: P x C x k x k style feature patches phi_j(S) (patch j of the style maps, in unfold order, maps
    concatenated in the order given). norms: P, max(||raw_j||, eps). The conv filters of the paper's eq. (1)
    are raw / norms (:attr:`filters`, computed on use, so a cached style holds the patches once); the content
    norm does not change the argmax, so it is left out. maps: the 1 x C x H_i x W_i style maps the patches
    were taken from, in patch order, when they were taken at stride 1 (what the ``correlation`` matching
    needs), else None.
    """

    raw: Tensor
    norms: Tensor
    maps: tuple[Tensor, ...] | None = None

    @property
    def filters(self) -> Tensor:
        """P x C x k x k normalised patches raw / norms (a new tensor)."""
        return self.raw / self.norms[:, None, None, None]

    @property
    def num_patches(self) -> int:
        return self.raw.shape[0]

    @property
    def channels(self) -> int:
        return self.raw.shape[1]

    @property
    def patch_size(self) -> int:
        return self.raw.shape[2]

    @property
    def nbytes(self) -> int:
        """Memory held by this style code."""
        tensors = [self.raw, self.norms, *(self.maps or ())]
        return sum(t.numel() * t.element_size() for t in tensors)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> StyleSwapPatches:
        """Return the patches on another device and/or dtype."""
        maps = None if self.maps is None else tuple(m.to(device, dtype) for m in self.maps)
        return StyleSwapPatches(self.raw.to(device, dtype), self.norms.to(device, dtype), maps)

    @staticmethod
    def cat(patches: Sequence[StyleSwapPatches]) -> StyleSwapPatches:
        """Concatenate the patch sets of several style images (same C and patch size) into one."""
        if not patches:
            raise ValueError("StyleSwapPatches.cat needs at least one patch set")
        shapes = {p.raw.shape[1:] for p in patches}
        if len(shapes) != 1:
            raise ValueError(f"cannot concatenate style patches of different shapes (C, k, k): {sorted(shapes)}")
        maps = None if any(p.maps is None for p in patches) else tuple(m for p in patches for m in p.maps)
        return StyleSwapPatches(torch.cat([p.raw for p in patches]), torch.cat([p.norms for p in patches]), maps)


def _check_patch_args(patch_size: int, stride: int, stride_name: str) -> None:
    if not isinstance(patch_size, int) or patch_size < 1:
        raise ConfigError(f"style-swap patch_size must be a positive integer, got {patch_size!r}")
    if not isinstance(stride, int) or stride < 1:
        raise ConfigError(f"style-swap {stride_name} must be a positive integer, got {stride!r}")


def _check_map_size(what: str, feat: Tensor, patch_size: int) -> None:
    h, w = feat.shape[-2:]
    if h < patch_size or w < patch_size:
        raise ConfigError(
            f"the {what} feature map is {h}x{w}, smaller than the style-swap patch size {patch_size}: "
            f"use a larger {what} image or a smaller patch_size"
        )


def style_swap_patches(
    style_feat: Tensor | Sequence[Tensor], patch_size: int = 3, style_stride: int = 1, eps: float = 1e-8
) -> StyleSwapPatches:
    """Extract the raw and normalised style patches once, to reuse for many contents.

    style_feat: N x C x H x W style features (the patches of all N maps are pooled), or a sequence of
    1 x C x H_i x W_i maps of different sizes (several style images). Patches are patch_size x
    patch_size, taken every ``style_stride`` pixels. Returns P patches, P = sum over maps of
    ((H - k) // style_stride + 1) * ((W - k) // style_stride + 1).
    """
    _check_patch_args(patch_size, style_stride, "style_stride")
    maps = [style_feat] if isinstance(style_feat, Tensor) else list(style_feat)
    if not maps:
        raise ValueError("style_swap_patches needs at least one style feature map")
    raws, whole_maps = [], []
    for m in maps:
        if m.dim() != 4:
            raise ValueError(f"style features must be N x C x H x W, got shape {tuple(m.shape)}")
        if m.shape[1] != maps[0].shape[1]:
            raise ValueError(f"style feature maps have different channel counts: {m.shape[1]} vs {maps[0].shape[1]}")
        _check_map_size("style", m, patch_size)
        cols = F.unfold(m, patch_size, stride=style_stride)  # N x Ckk x L
        raws.append(cols.transpose(1, 2).reshape(-1, m.shape[1], patch_size, patch_size))
        whole_maps.extend(m[i : i + 1].detach().contiguous() for i in range(m.shape[0]))
    raw = torch.cat(raws).contiguous()
    return StyleSwapPatches(
        raw=raw,
        norms=raw.flatten(1).norm(dim=1).clamp_min(eps),
        maps=tuple(whole_maps) if style_stride == 1 else None,
    )


def _block_rows(
    n_rows: int, row_len: int, ckk: int, chunk: int, itemsize: int, max_memory_mb: float, rerank: int = 0
) -> int:
    """Content patch rows per block so that the block's temporaries stay within the budget."""
    # per content patch: unfolded column (and its low-precision copy) + gathered raw patch + its contiguous copy
    # + one row of scores + the re-ranked candidates' patches
    per_patch = itemsize * (4 * ckk + chunk + rerank * ckk) + 24 * (1 + rerank)
    rows = int(max_memory_mb * 2**20 // (per_patch * row_len))
    return max(1, min(n_rows, rows))


def _keep_better(best_val: Tensor, best_idx: Tensor, val: Tensor, idx: Tensor) -> None:
    """Running max in place: where val > best_val, take val and idx. Strict, so that ties keep the earlier
    (lower) index when the candidates are visited in index order, as argmax does."""
    better = val > best_val
    best_val.copy_(torch.where(better, val, best_val))
    best_idx.copy_(torch.where(better, idx, best_idx))


def _keep_better_rows(best_val: Tensor, best_idx: Tensor, scores: Tensor, base: int) -> None:
    """Running max/argmax in place over the rows of a score block: L x P scores for the L entries of best_val
    (L, contiguous) and best_idx; a row whose maximum beats best_val (strict ``>``, so ties keep the earlier block)
    takes it and base + its argmax (the first maximal column, as argmax gives).

    The row maxima come from ``amax`` (about 10x faster than ``max`` with indices or ``argmax``;
    benchmarks/README.md); the argmax is taken only for the rows that improve, which after the first
    blocks of a running max are few. That pays off over the correlation's many narrow blocks (16 style rows each);
    :func:`_best_match`'s few wide chunks (4096 patches) keep ``max`` + :func:`_keep_better`, which measured 5-8%
    faster there (direct matching, 96 x 96 x 256 maps).
    """
    val = scores.amax(dim=1)
    better = (val > best_val).nonzero().squeeze(1)
    n = better.numel()
    if n == 0:
        return
    if n == scores.shape[0]:
        best_val.copy_(val)
        best_idx.copy_(scores.argmax(dim=1) + base)
        return
    best_val.index_copy_(0, better, val.index_select(0, better))
    best_idx.index_copy_(0, better, scores.index_select(0, better).argmax(dim=1) + base)


def _best_match(cols: Tensor, filters: Tensor, chunk: int) -> Tensor:
    """Index of the highest-scoring filter for every column: cols Ckk x L, filters P x Ckk -> L (int64).

    Style patches are visited in chunks with a running max; ties keep the lowest index, as argmax does.
    """
    q = cols.T  # L x Ckk view (the matmul reads it transposed, no copy)
    best_val = torch.full((q.shape[0],), -torch.inf, dtype=q.dtype, device=q.device)
    best_idx = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    for start in range(0, filters.shape[0], chunk):
        check_cancelled()
        scores = q @ filters[start : start + chunk].T  # L x chunk
        val, idx = scores.max(dim=1)
        _keep_better(best_val, best_idx, val, idx + start)
        del scores
    return best_idx


def _best_match_reranked(
    cols: Tensor, low_filters: Tensor, patches: StyleSwapPatches, chunk: int, rerank: int
) -> Tensor:
    """Like :func:`_best_match`, scoring in low precision and re-scoring the best candidates exactly.

    cols: Ckk x L in the working dtype; low_filters: P x Ckk normalised patches in the low dtype (bfloat16).
    The ``rerank`` best candidates of every column under low-precision scores are re-scored with the exact
    normalised patches in cols' dtype; the best of those wins (ties: the lowest index). The pick differs from
    the exact argmax only when the exact best is not among the low-precision top ``rerank``.
    """
    q = cols.T.to(low_filters.dtype)
    k = min(rerank, low_filters.shape[0])
    best_val = best_idx = None
    for start in range(0, low_filters.shape[0], chunk):
        scores = q @ low_filters[start : start + chunk].T  # L x chunk, low precision
        val, idx = scores.topk(min(k, scores.shape[1]), dim=1)
        idx = idx + start
        if best_val is None:
            best_val, best_idx = val, idx
        else:
            val, pos = torch.cat([best_val, val], 1).topk(k, dim=1)
            best_idx, best_val = torch.cat([best_idx, idx], 1).gather(1, pos), val
        del scores
    cand, _ = best_idx.sort(dim=1)  # ascending index: argmax below keeps the lowest index among ties
    flat = cand.reshape(-1)
    raw = patches.raw.reshape(patches.num_patches, -1)
    exact = raw.index_select(0, flat).to(cols.dtype) / patches.norms.index_select(0, flat).to(cols.dtype)[:, None]
    exact_scores = torch.bmm(exact.view(cand.shape[0], k, -1), cols.T.unsqueeze(2)).squeeze(2)  # L x k
    return cand.gather(1, exact_scores.argmax(dim=1, keepdim=True)).squeeze(1)


def _correlation_blocks(w: int, ws: int, k: int, itemsize: int, max_memory_mb: float) -> int:
    """Content rows = style rows per block of :func:`_correlation_match`.

    16 rows: the rows recomputed at block edges cost (16 + k - 1)^2 / 16^2 = 1.27x the correlation's
    multiply-adds for k = 3 (1.56x with 8 rows), and the block's temporaries, about 3 correlation blocks of
    (n + k - 1) W x (n + k - 1) W_s values (64 MB at 512 px, 127 MB with a 1024 px content), stay in this Xeon's
    105 MB L3 cache or near it. Measured end to end, 16 against 8 rows (pairs of runs interleaved, loaded host):
    style-swap at 512 px 0.87x (real VGG) and 0.93x (distilled), at 1024 px 0.87x; the matching alone on random
    128 x 128 maps, 256 channels: 4 rows 1.23x, 12 rows 0.90x, 16 rows 0.81x, 24-32 rows 0.81-0.83x the time of 8.
    Fewer rows when the ``max_memory_mb`` budget says so.
    """
    n = 16
    while n > 1 and 3 * (n + k - 1) ** 2 * w * ws * itemsize > max_memory_mb * 2**20:
        n //= 2
    return n


def _sum_views(views: list[Tensor]) -> Tensor:
    """The sum of same-shaped (strided) views as a new tensor, without a copy of the first term."""
    if len(views) == 1:
        return views[0].clone()
    out = torch.add(views[0], views[1])
    for v in views[2:]:
        out += v
    return out


def _correlation_match(x: Tensor, patches: StyleSwapPatches, max_memory_mb: float) -> Tensor:
    """Index of the best style patch for every stride-1 content patch of x (1 x C x H x W) -> L (int64).

    The ``correlation`` algorithm (module docstring): for a block of content patch rows and a block of style
    patch rows of one style map, K = C^T S over the pixels of both blocks (rows + k - 1 each), the patch
    scores as the sum of the k x k shifted diagonals of K (first over rows, whose sum leaves fewer values for the
    column sum than the other order: 0.79-0.95x its time, same picks), divided by the style patch norms; a running
    max over the blocks, visited in patch order with a strict ``>``, so that ties keep the lowest index, as argmax
    does. Same picks as :func:`_best_match` on the normalised filters except where two scores tie to float rounding.
    """
    assert patches.maps is not None  # the caller checks
    _, c, h, w = x.shape
    k = patches.patch_size
    n_rows, row_len = h - k + 1, w - k + 1
    xt = x[0].permute(1, 2, 0).contiguous()  # H x W x C: a block of rows is a contiguous (rows W) x C matrix
    best_val = torch.full((n_rows, row_len), -torch.inf, dtype=x.dtype, device=x.device)
    best_idx = torch.zeros((n_rows, row_len), dtype=torch.long, device=x.device)
    offset = 0
    for smap in patches.maps:
        smap = smap[0].to(x.dtype)  # C x Hs x Ws
        hs, ws = smap.shape[-2:]
        pu, pv = hs - k + 1, ws - k + 1
        inv = (1.0 / patches.norms[offset : offset + pu * pv].to(x.dtype)).view(pu, pv)
        n = _correlation_blocks(w, ws, k, x.element_size(), max_memory_mb)
        for u0 in range(0, pu, n):
            u1 = min(pu, u0 + n)
            m = u1 - u0
            s_blk = smap[:, u0 : u1 + k - 1].reshape(c, -1)  # C x (m + k - 1) Ws
            for r0 in range(0, n_rows, n):
                check_cancelled()
                r1 = min(n_rows, r0 + n)
                nb = r1 - r0
                corr = (xt[r0 : r1 + k - 1].view(-1, c) @ s_blk).view(nb + k - 1, w, m + k - 1, ws)
                rows = _sum_views([corr[a : a + nb, :, a : a + m] for a in range(k)])  # row offsets a
                del corr  # each block's temporaries go as soon as they are used: at most two are alive
                scores = _sum_views([rows[:, b : b + row_len, :, b : b + pv] for b in range(k)])  # then columns b
                del rows
                scores *= inv[u0:u1]
                _keep_better_rows(
                    best_val[r0:r1].view(-1), best_idx[r0:r1].view(-1), scores.view(nb * row_len, m * pv),
                    offset + u0 * pv,
                )
                del scores
        offset += pu * pv
    return best_idx.view(-1)


def _reconstruct_from_maps(
    idx: Tensor, patches: StyleSwapPatches, grid: tuple[int, int], dtype: torch.dtype, max_memory_mb: float
) -> Tensor:
    """Sum of the chosen style patches at their stride-1 positions (the numerator of the swap), gathered from the
    style maps: 1 x C x (n_rows + k - 1) x (row_len + k - 1), channels-last.

    idx: n_rows * row_len patch indices (row-major content patch grid ``grid``) into ``patches``, whose maps
    (stride-1 patches) hold every patch as a k x k window: patch j of map m at (u, v) has pixel (a, b) at map pixel
    (u + a, v + b). So for each of the k*k offsets (a, b) the output rows a.. and columns b.. receive one row of C
    values per content patch, gathered from the maps' pixel table (H_s W_s x C rows): k*k gathers and adds of
    L x C values, instead of the L x C k k patch matrix that ``F.fold`` sums (and copies to transpose). The
    offsets are the outer loop, so every output pixel sums its (at most k*k) terms in the same order whatever the
    banding (bands of content patch rows keep the gathered block near ``max_memory_mb``).
    """
    assert patches.maps is not None  # the caller checks
    k, c = patches.patch_size, patches.channels
    n_rows, row_len = grid
    table = torch.cat([m[0].permute(1, 2, 0).reshape(-1, c) for m in patches.maps]).to(dtype)  # pixels x C
    # per patch: the table row of its top-left pixel and its map's width (several maps may differ in width)
    starts, widths, pix = [], [], 0
    for m in patches.maps:
        hs, ws = m.shape[-2:]
        pu, pv = hs - k + 1, ws - k + 1
        u = torch.arange(pu, device=idx.device)[:, None]
        v = torch.arange(pv, device=idx.device)[None, :]
        starts.append((pix + u * ws + v).reshape(-1))
        widths.append(torch.full((pu * pv,), ws, dtype=torch.long, device=idx.device))
        pix += hs * ws
    top_left = torch.cat(starts).index_select(0, idx)
    width = torch.cat(widths).index_select(0, idx) if len(widths) > 1 else int(patches.maps[0].shape[-1])
    out = torch.zeros(1, n_rows + k - 1, row_len + k - 1, c, dtype=dtype, device=idx.device)
    band = max(1, min(n_rows, int(max_memory_mb * 2**20 // (row_len * c * table.element_size() * 2))))
    for a in range(k):
        for b in range(k):
            rows = top_left + (a * width + b)
            for r0 in range(0, n_rows, band):
                r1 = min(n_rows, r0 + band)
                vals = table.index_select(0, rows[r0 * row_len : r1 * row_len])
                out[0, a + r0 : a + r1, b : b + row_len] += vals.view(r1 - r0, row_len, c)
    return out.permute(0, 3, 1, 2)


@torch.no_grad()
def style_swap(
    content_feat: Tensor,
    patches: StyleSwapPatches,
    stride: int = 1,
    chunk_size: int | None = None,
    max_memory_mb: float = 128.0,
    compute_dtype: torch.dtype | None = None,
    rerank: int = 4,
    algorithm: str = "auto",
) -> Tensor:
    """Style-swapped features Phi^ss(C, S): each content patch replaced by its best style patch.

    content_feat: B x C x H x W (H, W >= patch size). patches: from :func:`style_swap_patches`.
    For every k x k content patch phi_i(C) taken every ``stride`` pixels, the style patch maximising
    <phi_i(C), phi_j(S)> / ||phi_j(S)|| (paper eq. 1) is chosen; the output averages the chosen raw
    style patches where they overlap. When (H - k) is not a multiple of ``stride`` the map is padded by
    edge replication at the bottom/right so that every pixel is covered, and the result cropped back.

    chunk_size: style patches per matmul (default min(P, 4096)); content patch rows are processed in
    blocks so the temporaries of one block stay near ``max_memory_mb``. The result does not depend on
    either. compute_dtype: dtype of the matching matmul (e.g. torch.bfloat16: 2x faster on CPUs with native
    bf16); None = the content's dtype. With a lower precision, the ``rerank`` best candidates of every content
    patch are re-scored exactly, so the pick changes only where the exact best is not among them (measured in
    benchmarks/README.md); ``rerank=1`` keeps the low-precision argmax as it is.
    algorithm: ``direct`` (the paper's conv as a matmul) or ``correlation`` (k*k fewer multiply-adds, module
    docstring; needs stride 1 and patches taken at style stride 1), ``auto`` = correlation where it applies.
    The correlation runs in float32 (or float64 for float64 content): exact scores, so compute_dtype and
    rerank apply to the direct algorithm only.
    Returns B x C x H x W in content_feat's dtype, without gradient (a constant target: argmax).
    """
    if content_feat.dim() != 4:
        raise ValueError(f"content_feat must be B x C x H x W, got shape {tuple(content_feat.shape)}")
    _check_patch_args(patches.patch_size, stride, "stride")
    if stride > patches.patch_size:
        raise ConfigError(
            f"style-swap stride {stride} is larger than the patch size {patches.patch_size}: "
            "some pixels would be covered by no patch; use stride <= patch_size"
        )
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ConfigError(f"style-swap chunk_size must be a positive integer, got {chunk_size!r}")
    if max_memory_mb <= 0:
        raise ConfigError(f"style-swap max_memory_mb must be positive, got {max_memory_mb!r}")
    if not isinstance(rerank, int) or rerank < 1:
        raise ConfigError(f"style-swap rerank must be a positive integer, got {rerank!r}")
    if algorithm not in MATCHING_ALGORITHMS:
        raise ConfigError(f"unknown style-swap matching algorithm {algorithm!r}; choose one of {MATCHING_ALGORITHMS}")
    can_correlate = stride == 1 and patches.maps is not None
    if algorithm == "correlation" and not can_correlate:
        raise ConfigError(
            "style-swap algorithm 'correlation' needs stride 1 and style patches taken at style_stride 1; "
            "use algorithm 'direct' or 'auto'"
        )
    correlate = algorithm == "correlation" or (algorithm == "auto" and can_correlate)
    b, c, h, w = content_feat.shape
    k = patches.patch_size
    if c != patches.channels:
        raise ValueError(f"content has {c} channels but the style patches have {patches.channels}")
    _check_map_size("content", content_feat, k)

    dtype, device = content_feat.dtype, content_feat.device
    patches = patches.to(device)
    low = compute_dtype is not None and compute_dtype != dtype
    # the normalised patches, built once per call in the matching dtype (the cached style holds raw + norms)
    if not correlate:
        mdtype = compute_dtype if low else dtype
        filters = (patches.raw.to(mdtype) / patches.norms.to(mdtype)[:, None, None, None]).flatten(1)
    # the raw patches as a matrix, for the direct path's fold (the correlation path gathers from the maps)
    raw = None if correlate else patches.raw.to(dtype).reshape(patches.num_patches, -1)
    ckk = c * k * k
    chunk = min(patches.num_patches, chunk_size or _DEFAULT_CHUNK)
    rerank = rerank if low and rerank > 1 else 0

    pad_h, pad_w = (-(h - k)) % stride, (-(w - k)) % stride
    hp, wp = h + pad_h, w + pad_w
    n_rows, row_len = (hp - k) // stride + 1, (wp - k) // stride + 1
    rows_per_block = _block_rows(n_rows, row_len, ckk, chunk, content_feat.element_size(), max_memory_mb, rerank)

    # overlap count depends only on the geometry: fold of ones
    ones = torch.ones(1, k * k, n_rows * row_len, dtype=dtype, device=device)
    count = F.fold(ones, (hp, wp), k, stride=stride)

    outs = []
    with torch.autocast(device.type, enabled=False):  # precision is compute_dtype's, not autocast's
        for i in range(b):
            x = content_feat[i : i + 1]
            if pad_h or pad_w:
                x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
            # 1) matching
            if correlate:
                idx = _correlation_match(x.to(torch.promote_types(dtype, torch.float32)), patches, max_memory_mb)
            else:  # direct: a block of content patch rows at a time
                idx = torch.empty(n_rows * row_len, dtype=torch.long, device=device)
                for r0 in range(0, n_rows, rows_per_block):
                    r1 = min(n_rows, r0 + rows_per_block)
                    y0, blk_h = r0 * stride, (r1 - r0 - 1) * stride + k
                    cols = F.unfold(x[:, :, y0 : y0 + blk_h], k, stride=stride)[0]  # Ckk x Lb
                    if rerank:
                        best = _best_match_reranked(cols, filters, patches, chunk, rerank)
                    elif low:
                        best = _best_match(cols.to(compute_dtype), filters, chunk)
                    else:
                        best = _best_match(cols, filters, chunk)
                    idx[r0 * row_len : r1 * row_len] = best
                    del cols
            # 2) reconstruction
            if correlate:
                outs.append(_reconstruct_from_maps(idx, patches, (n_rows, row_len), dtype, max_memory_mb) / count)
                continue
            # a band of output rows at a time; every output pixel is summed inside a single fold over all the
            # patches covering it, so the result does not depend on the banding
            out = torch.empty(1, c, hp, wp, dtype=dtype, device=device)
            for r0 in range(0, n_rows, rows_per_block):
                r1 = min(n_rows, r0 + rows_per_block)
                rs = max(0, r0 - (k - 1) // stride)  # first patch row reaching into this band
                y_end = hp if r1 == n_rows else r1 * stride
                fold_h = (r1 - 1 - rs) * stride + k
                chosen = raw.index_select(0, idx[rs * row_len : r1 * row_len]).T.unsqueeze(0)  # 1 x Ckk x L
                band = F.fold(chosen, (fold_h, wp), k, stride=stride)
                out[:, :, r0 * stride : y_end] = band[:, :, r0 * stride - rs * stride : y_end - rs * stride]
                del chosen, band
            outs.append((out / count)[:, :, :h, :w])
    return torch.cat(outs)


def style_swap_features(
    content: Tensor,
    style: Tensor | Sequence[Tensor],
    patch_size: int = 3,
    stride: int = 1,
    style_stride: int = 1,
    **kwargs: object,
) -> Tensor:
    """Style swap without caching: patches of ``style`` (one or several maps) applied to ``content``.

    content: B x C x H x W; style: N x C x H' x W' or a sequence of such maps. Returns B x C x H x W.
    Extra keyword arguments go to :func:`style_swap`.
    """
    patches = style_swap_patches(style, patch_size=patch_size, style_stride=style_stride)
    return style_swap(content, patches, stride=stride, **kwargs)
