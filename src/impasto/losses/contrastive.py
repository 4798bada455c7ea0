"""Contrastive losses: IEContraAST's batch-level style/content losses and the encoder-refinement losses.

* IEContraAST (Chen et al., NeurIPS 2021, eq. 5-6; behaviour of the official release HalbertCH/IEContraAST):
  the batch of ``b`` stylised images is arranged as styles ``[s1..s_h, s1..s_h]`` and contents
  ``[c1..c_h, c2..c_h, c1]`` (``h = b/2``). For each stylised image the positive is the other image with the
  same style (resp. content); the negatives are the ``b - 3`` images that share neither. Loss =
  cross-entropy over dot products / tau with the positive first, summed over the ``b`` anchors.
* Encoder refinement (Bai et al., "Improving the Latent Space of Image Style Transfer", eq. 2-3): a style
  contrastive loss whose positives are spatial reshuffles of the style image and whose negatives are the
  content images of the batch, and a PatchNCE-style content contrastive loss between ``I_cc`` and ``I_c``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impasto.errors import ConfigError
from impasto.losses.style import _layer_pairs

__all__ = [
    "iecontra_batch_labels",
    "iecontra_batch_masks",
    "info_nce",
    "iecontra_style_loss",
    "iecontra_content_loss",
    "StyleProjector",
    "ContentProjector",
    "IEContraStyleLoss",
    "IEContraContentLoss",
    "reshuffle",
    "StyleEmbedding",
    "refine_style_contrastive_loss",
    "RefineStyleContrastiveLoss",
    "PatchMLP",
    "patch_content_contrastive_loss",
    "PatchContentContrastiveLoss",
]


# --------------------------------------------------------------------------------------------------
# IEContraAST
# --------------------------------------------------------------------------------------------------


def iecontra_batch_labels(b: int, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Style and content indices of IEContraAST's batch arrangement (Chen et al. 2021, Sec. 3.2).

    Returns ``(style_ids, content_ids)``, each a length-``b`` long tensor: item ``k`` is stylised with style
    ``style_ids[k]`` and content ``content_ids[k]``; styles ``[0..h-1, 0..h-1]``, contents ``[0..h-1,
    1..h-1, 0]``, ``h = b/2``. ``b`` must be even and >= 4 (otherwise some image has no positive or the
    two halves coincide).
    """
    if isinstance(b, bool) or not isinstance(b, int) or b < 4 or b % 2:
        raise ConfigError(
            f"IEContraAST contrastive losses need an even batch size >= 4 (b/2 contents + b/2 styles, "
            f"arranged as styles [s1..s_b/2, s1..s_b/2], contents [c1..c_b/2, c2..c_b/2, c1]); got {b!r}"
        )
    h = b // 2
    first = torch.arange(h, device=device)
    style_ids = torch.cat([first, first])
    content_ids = torch.cat([first, (first + 1) % h])
    return style_ids, content_ids


def iecontra_batch_masks(
    b: int, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Positive / negative masks of IEContraAST's contrastive losses for a batch of ``b`` (eq. 5-6).

    Returns ``(style_pos, style_neg, content_pos, content_neg)``, each ``b x b`` bool; row = anchor.
    ``style_pos[i, j]``: j != i shares the style of i; ``content_pos[i, j]``: j != i shares the content;
    ``style_neg == content_neg``: j shares neither style nor content with i. With this arrangement every
    row has exactly one style positive, one content positive and ``b - 3`` negatives.
    """
    style_ids, content_ids = iecontra_batch_labels(b, device)
    same_style = style_ids[:, None] == style_ids[None, :]
    same_content = content_ids[:, None] == content_ids[None, :]
    not_self = ~torch.eye(b, dtype=torch.bool, device=style_ids.device)
    style_pos = same_style & not_self
    content_pos = same_content & not_self
    negative = ~same_style & ~same_content
    return style_pos, negative, content_pos, negative.clone()


def info_nce(
    anchors: Tensor, positives: Tensor, negatives: Tensor, tau: float, reduction: str = "sum"
) -> Tensor:
    """InfoNCE: cross-entropy over dot products / tau with the positive first, per anchor.

    anchors, positives: ``N x D``; negatives: ``N x K x D`` (per-anchor negatives) or ``K x D`` (shared).
    Per anchor ``-log(exp(a.p/tau) / (exp(a.p/tau) + sum_k exp(a.n_k/tau)))`` (IEContraAST eq. 5-6, Bai et
    al. eq. 2-3, van den Oord et al. 2018). Embeddings are used as given (L2-normalise them first for cosine
    similarities). ``reduction``: ``"sum"`` over anchors (the IEContraAST release), ``"mean"``, ``"none"``
    (``N``).
    """
    if reduction not in ("sum", "mean", "none"):
        raise ConfigError(f"info_nce: unknown reduction {reduction!r}; known: ['sum', 'mean', 'none']")
    if anchors.dim() != 2 or positives.shape != anchors.shape:
        raise ConfigError(
            f"info_nce: anchors and positives must both be N x D, got {tuple(anchors.shape)} and "
            f"{tuple(positives.shape)}"
        )
    pos = (anchors * positives).sum(-1, keepdim=True)
    if negatives.dim() == 2:
        neg = anchors @ negatives.t()
    elif negatives.dim() == 3 and negatives.shape[0] == anchors.shape[0]:
        neg = torch.einsum("nd,nkd->nk", anchors, negatives)
    else:
        raise ConfigError(
            f"info_nce: negatives must be K x D or N x K x D with N = {anchors.shape[0]}, got "
            f"{tuple(negatives.shape)}"
        )
    logits = torch.cat([pos, neg], dim=1) / tau
    per = torch.logsumexp(logits, dim=1) - logits[:, 0]
    if reduction == "sum":
        return per.sum()
    return per.mean() if reduction == "mean" else per


def _iecontra_loss(emb: Tensor, pos_mask: Tensor, neg_mask: Tensor, tau: float) -> Tensor:
    b = emb.shape[0]
    pos_idx = pos_mask.to(torch.int64).argmax(dim=1)
    neg_idx = neg_mask.nonzero()[:, 1].view(b, -1)
    return info_nce(emb, emb[pos_idx], emb[neg_idx], tau, reduction="sum")


def _check_emb(emb: Tensor, what: str) -> None:
    if emb.dim() != 2:
        raise ConfigError(f"{what}: embeddings must be b x D, got shape {tuple(emb.shape)}")


def iecontra_style_loss(emb: Tensor, tau: float = 0.2) -> Tensor:
    """IEContraAST style contrastive loss (eq. 5) summed over the batch, as the official release.

    emb: ``b x D`` style embeddings ``l_s`` (L2-normalised, e.g. from :class:`StyleProjector` on relu3_1) of
    the stylised batch in the arrangement of :func:`iecontra_batch_labels`. Scalar; weight 0.3 in the paper.
    """
    _check_emb(emb, "iecontra_style_loss")
    pos, neg, _, _ = iecontra_batch_masks(emb.shape[0], emb.device)
    return _iecontra_loss(emb, pos, neg, tau)


def iecontra_content_loss(emb: Tensor, tau: float = 0.2) -> Tensor:
    """IEContraAST content contrastive loss (eq. 6) summed over the batch, as the official release.

    emb: ``b x D`` content embeddings ``l_c`` (L2-normalised, e.g. from :class:`ContentProjector` on
    relu4_1) in the arrangement of :func:`iecontra_batch_labels`. Scalar; weight 0.3 in the paper.
    """
    _check_emb(emb, "iecontra_content_loss")
    _, _, pos, neg = iecontra_batch_masks(emb.shape[0], emb.device)
    return _iecontra_loss(emb, pos, neg, tau)


class _SumProjector(nn.Module):
    """Spatial sum -> Linear -> ReLU -> Linear -> L2 normalisation (IEContraAST release projection heads)."""

    def __init__(self, in_ch: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.in_ch = in_ch
        self.mlp = nn.Sequential(nn.Linear(in_ch, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, feat: Tensor) -> Tensor:
        if feat.dim() != 4 or feat.shape[1] != self.in_ch:
            raise ConfigError(
                f"{type(self).__name__} expects B x {self.in_ch} x H x W features, got {tuple(feat.shape)}; "
                "set in_ch to the encoder's channel count at this layer"
            )
        return F.normalize(self.mlp(feat.sum(dim=(2, 3))), p=2, dim=1)


class StyleProjector(_SumProjector):
    """IEContraAST style head ``h_s``: spatial sum of relu3_1 -> Linear(in_ch, 128) -> ReLU ->
    Linear(128, 128) -> L2 normalise.

    feat ``B x in_ch x H x W`` -> ``B x 128`` unit vectors. ``in_ch`` = 256 for VGG-19 relu3_1 (64 / 128
    for the distilled encoders). The paper's text says 256 hidden units; the official release uses 128.
    """

    def __init__(self, in_ch: int = 256, hidden: int = 128, out_dim: int = 128) -> None:
        super().__init__(in_ch, hidden, out_dim)


class ContentProjector(_SumProjector):
    """IEContraAST content head ``h_c``: spatial sum of relu4_1 -> Linear(in_ch, 256) -> ReLU ->
    Linear(256, 128) -> L2 normalise.

    feat ``B x in_ch x H x W`` -> ``B x 128`` unit vectors. ``in_ch`` = 512 for VGG-19 relu4_1 (128 for the
    16x distilled encoder). The paper's text says (128, 128); this is the official release's layout.
    """

    def __init__(self, in_ch: int = 512, hidden: int = 256, out_dim: int = 128) -> None:
        super().__init__(in_ch, hidden, out_dim)


class IEContraStyleLoss(nn.Module):
    """Style contrastive loss with its trainable head: relu3_1 features of the stylised batch -> scalar."""

    def __init__(self, in_ch: int = 256, tau: float = 0.2) -> None:
        super().__init__()
        self.projector = StyleProjector(in_ch)
        self.tau = tau

    def forward(self, feat: Tensor) -> Tensor:
        return iecontra_style_loss(self.projector(feat), self.tau)


class IEContraContentLoss(nn.Module):
    """Content contrastive loss with its trainable head: relu4_1 features of the stylised batch -> scalar."""

    def __init__(self, in_ch: int = 512, tau: float = 0.2) -> None:
        super().__init__()
        self.projector = ContentProjector(in_ch)
        self.tau = tau

    def forward(self, feat: Tensor) -> Tensor:
        return iecontra_content_loss(self.projector(feat), self.tau)


# --------------------------------------------------------------------------------------------------
# Encoder refinement (Bai et al.)
# --------------------------------------------------------------------------------------------------


def reshuffle(img: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """Spatial reshuffle: cut each image into ``n x n`` equal blocks and permute them at random.

    img: ``B x C x H x W`` with H and W divisible by ``n``; each image gets its own permutation drawn from
    ``generator``. The output has exactly the same pixel values (so the same per-channel mean and std) with
    the content scrambled: the style positives ``I_r`` of Bai et al. Sec. 3.2.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"reshuffle: the block count n must be a positive integer, got {n!r}")
    if img.dim() != 4:
        raise ConfigError(f"reshuffle expects a B x C x H x W image batch, got shape {tuple(img.shape)}")
    b, c, h, w = img.shape
    if h % n or w % n:
        raise ConfigError(
            f"reshuffle: image size {h}x{w} is not divisible into {n}x{n} blocks; crop or resize the "
            f"images to a multiple of {n} (e.g. {h - h % n}x{w - w % n}) or choose an n that divides both"
        )
    bh, bw = h // n, w // n
    blocks = img.reshape(b, c, n, bh, n, bw).permute(0, 2, 4, 1, 3, 5).reshape(b, n * n, c, bh, bw)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    perms = torch.stack([torch.randperm(n * n, generator=generator, device=gen_device) for _ in range(b)])
    perms = perms.to(img.device)
    shuffled = blocks[torch.arange(b, device=img.device)[:, None], perms]
    return shuffled.reshape(b, n, n, c, bh, bw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


class StyleEmbedding(nn.Module):
    """Style mapping network ``f_s`` of Bai et al. Sec. 3.2 / 4.1: "a convolution layer and several
    subsequent MLP layers, of which the last MLP layer has 128 units".

    The paper gives no more detail and no code; this is our concrete choice, fixed here:
    Conv3x3(in_ch, conv_ch, stride 1, zero pad 1) -> ReLU -> global average pool -> Linear(conv_ch, hidden)
    -> ReLU -> Linear(hidden, out_dim=128) -> L2 normalise. Global pooling makes the embedding (nearly)
    invariant to block reshuffles, as the positives require. feat ``B x in_ch x H x W`` -> ``B x 128``.
    """

    def __init__(self, in_ch: int, conv_ch: int = 256, hidden: int = 256, out_dim: int = 128) -> None:
        super().__init__()
        self.in_ch = in_ch
        self.conv = nn.Conv2d(in_ch, conv_ch, kernel_size=3, padding=1)
        self.mlp = nn.Sequential(nn.Linear(conv_ch, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, feat: Tensor) -> Tensor:
        if feat.dim() != 4 or feat.shape[1] != self.in_ch:
            raise ConfigError(
                f"StyleEmbedding expects B x {self.in_ch} x H x W features, got {tuple(feat.shape)}"
            )
        pooled = F.relu(self.conv(feat)).mean(dim=(2, 3))
        return F.normalize(self.mlp(pooled), p=2, dim=1)


def refine_style_contrastive_loss(
    anchor_emb: Tensor,
    positive_embs: Tensor,
    negative_embs: Tensor,
    tau: float = 0.07,
    reduction: str = "mean",
) -> Tensor:
    """Style contrastive loss of encoder refinement, Bai et al. eq. (2).

    anchor_emb: ``B x D`` = ``f_s(E(I_o))`` of the outputs; positive_embs: ``B x P x D`` = ``f_s(E(I_r^i))``
    of the P reshuffles of each output's style image (P = 8 in the paper); negative_embs: ``K x D`` (the
    batch's content images, shared by all anchors, K = batch size) or ``B x K x D``. Per output:
    ``sum_i -log(exp(a.r_i/tau) / (exp(a.r_i/tau) + sum_j exp(a.c_j/tau)))``. ``reduction``: ``"mean"`` over
    the batch (the paper does not say how the batch is aggregated), ``"sum"``, or ``"none"`` (``B``).
    """
    if reduction not in ("sum", "mean", "none"):
        raise ConfigError(
            f"refine_style_contrastive_loss: unknown reduction {reduction!r}; known: ['mean', 'sum', 'none']"
        )
    if anchor_emb.dim() != 2 or positive_embs.dim() != 3 or positive_embs.shape[0] != anchor_emb.shape[0]:
        raise ConfigError(
            f"refine_style_contrastive_loss: anchors must be B x D and positives B x P x D, got "
            f"{tuple(anchor_emb.shape)} and {tuple(positive_embs.shape)}"
        )
    b, p, d = positive_embs.shape
    anchors = anchor_emb.repeat_interleave(p, dim=0)
    negatives = negative_embs if negative_embs.dim() == 2 else negative_embs.repeat_interleave(p, dim=0)
    per = info_nce(anchors, positive_embs.reshape(b * p, d), negatives, tau, reduction="none")
    per = per.view(b, p).sum(1)
    if reduction == "sum":
        return per.sum()
    return per.mean() if reduction == "mean" else per


class RefineStyleContrastiveLoss(nn.Module):
    """Bai et al. eq. (2) with its trainable :class:`StyleEmbedding` (features in, scalar out).

    forward(out_feat ``B x C x H x W``, positive_feats ``B x P x C x H x W`` or a sequence of P tensors
    ``B x C x H x W``, negative_feats ``K x C x H x W``): features of the refined encoder.
    """

    def __init__(
        self, in_ch: int, tau: float = 0.07, reduction: str = "mean", **embedding_kwargs: int
    ) -> None:
        super().__init__()
        self.embedding = StyleEmbedding(in_ch, **embedding_kwargs)
        self.tau = tau
        self.reduction = reduction

    def forward(
        self, out_feat: Tensor, positive_feats: Tensor | Sequence[Tensor], negative_feats: Tensor
    ) -> Tensor:
        if not isinstance(positive_feats, Tensor):
            positive_feats = torch.stack(list(positive_feats), dim=1)
        b, p = positive_feats.shape[:2]
        pos = self.embedding(positive_feats.flatten(0, 1)).view(b, p, -1)
        return refine_style_contrastive_loss(
            self.embedding(out_feat), pos, self.embedding(negative_feats), self.tau, self.reduction
        )


class PatchMLP(nn.Module):
    """Content mapping network ``h_c`` of Bai et al. Sec. 4.1: Linear(C, C) -> ReLU -> Linear(C, 256), then L2
    normalisation (as PatchNCE, Park et al. 2020). Input ``... x C`` -> ``... x out_dim`` unit vectors."""

    def __init__(self, in_ch: int, out_dim: int = 256) -> None:
        super().__init__()
        self.in_ch = in_ch
        self.mlp = nn.Sequential(nn.Linear(in_ch, in_ch), nn.ReLU(), nn.Linear(in_ch, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_ch:
            raise ConfigError(f"PatchMLP expects ... x {self.in_ch} inputs, got {tuple(x.shape)}")
        return F.normalize(self.mlp(x), p=2, dim=-1)


def patch_content_contrastive_loss(
    feats_icc: Mapping[str, Tensor] | Tensor,
    feats_ic: Mapping[str, Tensor] | Tensor,
    layers: Sequence[str] | None,
    mlps: Mapping[str, nn.Module],
    num_patches: int = 256,
    tau: float = 0.07,
    generator: torch.Generator | None = None,
    patch_reduction: str = "mean",
    detach_target: bool = False,
) -> Tensor:
    """Identity-preserving content contrastive loss, Bai et al. eq. (3) (PatchNCE-style).

    For each layer l (relu1_1..relu4_1 in the paper): pick ``min(num_patches, H*W)`` random positions
    (the same for ``I_cc`` and ``I_c`` and for every image of the batch), map the ``C``-vectors at those
    positions with ``mlps[l]`` (a :class:`PatchMLP`), and for each position i of ``I_cc`` take position i of
    ``I_c`` as positive and the other sampled positions of the same ``I_c`` as negatives:
    ``-log(exp(q_i.k_i/tau) / sum_j exp(q_i.k_j/tau))``. ``patch_reduction="mean"`` averages over patches
    (PatchNCE); ``"sum"`` sums them (eq. 3 as written). Then mean over the batch, sum over layers.
    ``detach_target=True`` stops gradients through ``I_c``'s features (PatchNCE does; Bai et al. train the
    encoder through both, hence the default False).
    """
    if patch_reduction not in ("mean", "sum"):
        raise ConfigError(f"unknown patch_reduction {patch_reduction!r}; known: ['mean', 'sum']")
    if isinstance(num_patches, bool) or not isinstance(num_patches, int) or num_patches < 1:
        raise ConfigError(f"num_patches must be a positive integer, got {num_patches!r}")
    gen_device = generator.device if generator is not None else torch.device("cpu")
    total = []
    for name, q_feat, k_feat in _layer_pairs(feats_icc, feats_ic, layers):
        if name not in mlps:
            raise ConfigError(f"no PatchMLP for layer {name!r}; mlps has {sorted(mlps)}")
        b, c, h, w = q_feat.shape
        n = min(num_patches, h * w)
        idx = torch.randperm(h * w, generator=generator, device=gen_device)[:n].to(q_feat.device)
        if detach_target:
            k_feat = k_feat.detach()
        mlp = mlps[name]
        q = mlp(q_feat.flatten(2)[:, :, idx].transpose(1, 2))  # B x n x D
        k = mlp(k_feat.flatten(2)[:, :, idx].transpose(1, 2))
        logits = torch.bmm(q, k.transpose(1, 2)) / tau  # B x n x n, positive on the diagonal
        per = torch.logsumexp(logits, dim=2) - torch.diagonal(logits, dim1=1, dim2=2)
        per_image = per.mean(1) if patch_reduction == "mean" else per.sum(1)
        total.append(per_image.mean())
    return torch.stack(total).sum()


class PatchContentContrastiveLoss(nn.Module):
    """Bai et al. eq. (3) with one trainable :class:`PatchMLP` per layer.

    channels: ``{layer_name: C}``, e.g. ``{"relu1_1": 64, "relu2_1": 128, "relu3_1": 256, "relu4_1": 512}``.
    forward(feats_icc, feats_ic, generator=None) -> scalar.
    """

    def __init__(
        self,
        channels: Mapping[str, int],
        num_patches: int = 256,
        tau: float = 0.07,
        out_dim: int = 256,
        patch_reduction: str = "mean",
        detach_target: bool = False,
    ) -> None:
        super().__init__()
        if not channels:
            raise ConfigError("PatchContentContrastiveLoss needs at least one layer in `channels`")
        self.layers = list(channels)
        self.mlps = nn.ModuleDict({name: PatchMLP(c, out_dim) for name, c in channels.items()})
        self.num_patches = num_patches
        self.tau = tau
        self.patch_reduction = patch_reduction
        self.detach_target = detach_target

    def forward(
        self,
        feats_icc: Mapping[str, Tensor],
        feats_ic: Mapping[str, Tensor],
        generator: torch.Generator | None = None,
    ) -> Tensor:
        return patch_content_contrastive_loss(
            feats_icc,
            feats_ic,
            self.layers,
            self.mlps,
            self.num_patches,
            self.tau,
            generator,
            self.patch_reduction,
            self.detach_target,
        )
