"""Contrastive losses: IEContraAST batch masks and losses, InfoNCE, reshuffle, encoder-refinement losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from impasto.errors import ConfigError
from impasto.losses import (
    ContentProjector,
    IEContraContentLoss,
    IEContraStyleLoss,
    PatchContentContrastiveLoss,
    PatchMLP,
    RefineStyleContrastiveLoss,
    StyleEmbedding,
    StyleProjector,
    iecontra_batch_labels,
    iecontra_batch_masks,
    iecontra_content_loss,
    iecontra_style_loss,
    info_nce,
    patch_content_contrastive_loss,
    refine_style_contrastive_loss,
    reshuffle,
)

# ---------------------------------------------------------------------------------------------- masks


def _bool(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


def test_masks_b4_by_hand():
    # styles [s1, s2, s1, s2], contents [c1, c2, c2, c1] -> images s1c1, s2c2, s1c2, s2c1
    style_ids, content_ids = iecontra_batch_labels(4)
    assert style_ids.tolist() == [0, 1, 0, 1] and content_ids.tolist() == [0, 1, 1, 0]
    sp, sn, cp, cn = iecontra_batch_masks(4)
    assert torch.equal(sp, _bool([[0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0]]))
    assert torch.equal(cp, _bool([[0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]]))
    neg = _bool([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]])
    assert torch.equal(sn, neg) and torch.equal(cn, neg)


def test_masks_b12_by_hand():
    style_ids, content_ids = iecontra_batch_labels(12)
    assert style_ids.tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]
    assert content_ids.tolist() == [0, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 0]
    style_pos = [6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5]
    content_pos = [11, 6, 7, 8, 9, 10, 1, 2, 3, 4, 5, 0]
    sp, sn, cp, cn = iecontra_batch_masks(12)
    for i in range(12):
        assert sp[i].nonzero().flatten().tolist() == [style_pos[i]]
        assert cp[i].nonzero().flatten().tolist() == [content_pos[i]]
        expected_neg = sorted(set(range(12)) - {i, style_pos[i], content_pos[i]})
        assert sn[i].nonzero().flatten().tolist() == expected_neg
        assert cn[i].nonzero().flatten().tolist() == expected_neg
    # e.g. anchor 0 = s1c1: 6 = s1c2 shares the style, 11 = s6c1 the content; the rest are negatives
    assert sn[0].nonzero().flatten().tolist() == [1, 2, 3, 4, 5, 7, 8, 9, 10]


@pytest.mark.parametrize("b", [0, 2, 3, 7, -4])
def test_masks_reject_bad_batch(b: int):
    with pytest.raises(ConfigError, match="even batch size >= 4"):
        iecontra_batch_masks(b)


# ---------------------------------------------------------------------------------------------- InfoNCE


def test_info_nce_by_hand_2d():
    a = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[0.6, 0.8]])
    n = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])
    tau = 0.5
    # logits: 0.6/0.5 = 1.2, 0, -2
    expected = -1.2 + math.log(math.exp(1.2) + math.exp(0.0) + math.exp(-2.0))
    assert info_nce(a, p, n, tau).item() == pytest.approx(expected, rel=1e-6)
    # second anchor; sum over anchors (release), mean and none
    a2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p2 = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    n2 = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]], [[1.0, 0.0], [0.0, -1.0]]])
    second = -2.0 + math.log(math.exp(2.0) + math.exp(0.0) + math.exp(-2.0))
    per = info_nce(a2, p2, n2, tau, reduction="none")
    assert per.tolist() == pytest.approx([expected, second], rel=1e-6)
    assert info_nce(a2, p2, n2, tau).item() == pytest.approx(expected + second, rel=1e-6)
    assert info_nce(a2, p2, n2, tau, reduction="mean").item() == pytest.approx(
        (expected + second) / 2, rel=1e-6
    )
    # shared K x D negatives equal the broadcast N x K x D form
    shared = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    assert torch.allclose(info_nce(a2, p2, shared, tau), info_nce(a2, p2, shared.expand(2, 2, 2), tau))
    # equals cross-entropy with the positive first
    logits = torch.cat([(a2 * p2).sum(1, keepdim=True), torch.einsum("nd,nkd->nk", a2, n2)], 1) / tau
    assert torch.allclose(per, F.cross_entropy(logits, torch.zeros(2, dtype=torch.long), reduction="none"))


def test_info_nce_lower_when_positives_aligned():
    torch.manual_seed(0)
    a = F.normalize(torch.randn(8, 16), dim=1)
    negs = F.normalize(torch.randn(8, 5, 16), dim=2)
    aligned = info_nce(a, a, negs, 0.2)
    random = info_nce(a, F.normalize(torch.randn(8, 16), dim=1), negs, 0.2)
    opposite = info_nce(a, -a, negs, 0.2)
    assert aligned < random < opposite


def test_info_nce_gradcheck():
    torch.manual_seed(1)
    a = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    p = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    n = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y, z: info_nce(x, y, z, 0.2, reduction="none"), (a, p, n))


# ---------------------------------------------------------------------------------------------- IEContraAST


def _release_comparisons(kind: str, h: int) -> list[list[int]]:
    """Index lists (positive first) of the IEContraAST release's loops; up[i] = i, down[i] = h + i."""

    def up(a: int, b: int | None = None) -> list[int]:
        return list(range(h))[a:b]

    def down(a: int, b: int | None = None) -> list[int]:
        return list(range(h, 2 * h))[a:b]

    rows = []
    for i in range(h):  # anchors up[i]
        if kind == "style":
            if i == 0:
                r = down(0, h - 1) + up(1)
            elif i == 1:
                r = down(1) + up(0, 1) + up(2)
            elif i == h - 1:
                r = down(h - 1) + down(0, h - 2) + up(0, h - 1)
            else:
                r = down(i) + down(0, i - 1) + up(0, i) + up(i + 1)
        else:
            if i == 0:
                r = down(h - 1) + down(1, h - 1) + up(1)
            elif i == 1:
                r = down(0, 1) + down(2) + up(0, 1) + up(2)
            elif i == h - 1:
                r = down(h - 2, h - 1) + down(0, h - 2) + up(0, h - 1)
            else:
                r = down(i - 1, i) + down(0, i - 1) + down(i + 1) + up(0, i) + up(i + 1)
        rows.append(r)
    for i in range(h):  # anchors down[i]
        if kind == "style":
            if i == 0:
                r = up(0, 1) + up(2) + down(1)
            elif i == h - 2:
                r = up(h - 2, h - 1) + up(0, h - 2) + down(0, h - 2) + down(h - 1)
            elif i == h - 1:
                r = up(h - 1) + up(1, h - 1) + down(0, h - 1)
            else:
                r = up(i, i + 1) + up(0, i) + up(i + 2) + down(0, i) + down(i + 1)
        else:
            if i == 0:
                r = up(1) + down(1)
            elif i == h - 2:
                r = up(h - 1) + up(0, h - 2) + down(0, h - 2) + down(h - 1)
            elif i == h - 1:
                r = up(0, h - 1) + down(0, h - 1)
            else:
                r = up(i + 1, i + 2) + up(0, i) + up(i + 2) + down(0, i) + down(i + 1)
        rows.append(r)
    return rows


@pytest.mark.parametrize("b", [8, 12])
def test_iecontra_losses_match_release_index_lists(b: int):
    torch.manual_seed(b)
    emb = F.normalize(torch.randn(b, 16), dim=1)
    sp, sn, cp, cn = iecontra_batch_masks(b)
    for kind, loss_fn, pos, neg in (
        ("style", iecontra_style_loss, sp, sn),
        ("content", iecontra_content_loss, cp, cn),
    ):
        rows = _release_comparisons(kind, b // 2)
        expected = 0.0
        for i, r in enumerate(rows):
            assert pos[i].nonzero().flatten().tolist() == [r[0]]
            assert sorted(r[1:]) == neg[i].nonzero().flatten().tolist()
            logits = emb[i : i + 1] @ emb[r].t() / 0.2
            expected = expected + F.cross_entropy(logits, torch.tensor([0]))
        assert torch.allclose(loss_fn(emb, tau=0.2), expected, rtol=1e-5)


def test_iecontra_losses_prefer_the_right_grouping():
    b = 8
    style_ids, content_ids = iecontra_batch_labels(b)
    basis = torch.eye(16)
    by_style = F.normalize(basis[style_ids] + 0.1 * torch.randn(b, 16), dim=1)
    by_content = F.normalize(basis[8 + content_ids] + 0.1 * torch.randn(b, 16), dim=1)
    assert iecontra_style_loss(by_style) < iecontra_style_loss(by_content)
    assert iecontra_content_loss(by_content) < iecontra_content_loss(by_style)


def test_projectors_shapes_sum_and_gradients():
    torch.manual_seed(0)
    sp = StyleProjector(in_ch=64)
    feat = torch.rand(4, 64, 5, 5)
    emb = sp(feat)
    assert emb.shape == (4, 128)
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-6)
    # spatial SUM, then the MLP, then L2 normalisation
    assert torch.allclose(emb, F.normalize(sp.mlp(feat.sum(dim=(2, 3))), dim=1), atol=1e-6)
    # invariant to spatial permutation
    perm = feat.flatten(2)[:, :, torch.randperm(25)].view_as(feat)
    assert torch.allclose(sp(perm), emb, atol=1e-5)
    cp = ContentProjector(in_ch=128)
    assert [m.weight.shape for m in cp.mlp if isinstance(m, torch.nn.Linear)] == [(256, 128), (128, 256)]
    assert [m.weight.shape for m in StyleProjector().mlp if isinstance(m, torch.nn.Linear)] == [
        (128, 256),
        (128, 128),
    ]
    with pytest.raises(ConfigError, match="in_ch"):
        cp(torch.rand(2, 64, 3, 3))
    for module, ch in ((IEContraStyleLoss(in_ch=16), 16), (IEContraContentLoss(in_ch=32), 32)):
        loss = module(torch.rand(4, ch, 3, 3))
        assert loss.ndim == 0
        loss.backward()
        for name, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    # module == function
    sl = IEContraStyleLoss(in_ch=16)
    f = torch.rand(6, 16, 3, 3)
    assert torch.allclose(sl(f), iecontra_style_loss(sl.projector(f), 0.2))


# ---------------------------------------------------------------------------------------------- reshuffle


def _blocks(img: torch.Tensor, n: int) -> list[torch.Tensor]:
    _, h, w = img.shape
    bh, bw = h // n, w // n
    return [img[:, i * bh : (i + 1) * bh, j * bw : (j + 1) * bw] for i in range(n) for j in range(n)]


def test_reshuffle_keeps_statistics_and_permutes_blocks():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 3, 12, 8, generator=g)
    out = reshuffle(img, 4, generator=g)
    assert out.shape == img.shape
    # exactly the same multiset of values per channel, hence the same mean and std
    assert torch.equal(out.flatten(2).sort(dim=2).values, img.flatten(2).sort(dim=2).values)
    assert torch.allclose(out.mean(dim=(2, 3)), img.mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(out.std(dim=(2, 3)), img.std(dim=(2, 3)), atol=1e-6)
    for k in range(3):
        src, dst = _blocks(img[k], 4), _blocks(out[k], 4)
        matches = [[torch.equal(d, s) for s in src] for d in dst]
        assert all(sum(m) == 1 for m in matches)  # every output block is exactly one input block ...
        used = [m.index(True) for m in matches]
        assert sorted(used) == list(range(16))  # ... and each input block is used once
        assert used != list(range(16))  # it moved
    # each image has its own permutation (with this seed)
    assert not torch.equal(
        torch.stack([torch.stack(_blocks(out[0] - img[0], 4))]),
        torch.stack([torch.stack(_blocks(out[1] - img[1], 4))]),
    )


def test_reshuffle_determinism_identity_and_errors():
    img = torch.rand(2, 3, 8, 8)
    a = reshuffle(img, 2, generator=torch.Generator().manual_seed(5))
    b = reshuffle(img, 2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.equal(reshuffle(img, 1), img)
    with pytest.raises(ConfigError, match=r"10x8 is not divisible into 3x3 blocks"):
        reshuffle(torch.rand(1, 3, 10, 8), 3)
    with pytest.raises(ConfigError, match="positive integer"):
        reshuffle(img, 0)


# ---------------------------------------------------------------------------------------------- refinement


def test_refine_style_contrastive_loss_by_hand():
    torch.manual_seed(0)
    anchors = F.normalize(torch.randn(3, 8), dim=1)
    pos = F.normalize(torch.randn(3, 4, 8), dim=2)
    neg = F.normalize(torch.randn(5, 8), dim=1)
    per = refine_style_contrastive_loss(anchors, pos, neg, tau=0.07, reduction="none")
    for b in range(3):
        expected = 0.0
        for i in range(4):
            lp = anchors[b] @ pos[b, i] / 0.07
            ln = neg @ anchors[b] / 0.07
            expected += (-lp + torch.logsumexp(torch.cat([lp.view(1), ln]), 0)).item()
        assert per[b].item() == pytest.approx(expected, rel=1e-5)
    assert refine_style_contrastive_loss(anchors, pos, neg).item() == pytest.approx(
        per.mean().item(), rel=1e-6
    )
    per_b = refine_style_contrastive_loss(anchors, pos, neg.expand(3, 5, 8), reduction="none")
    assert torch.allclose(per, per_b)
    aligned = refine_style_contrastive_loss(anchors, anchors[:, None].expand(3, 4, 8), neg)
    assert aligned < per.mean()


def test_style_embedding_and_module_gradients():
    torch.manual_seed(0)
    emb = StyleEmbedding(in_ch=8, conv_ch=16, hidden=16)
    z = emb(torch.rand(2, 8, 6, 6))
    assert z.shape == (2, 128) and torch.allclose(z.norm(dim=1), torch.ones(2), atol=1e-6)
    module = RefineStyleContrastiveLoss(in_ch=8, conv_ch=16, hidden=16)
    out = torch.rand(2, 8, 6, 6)
    pos = [torch.rand(2, 8, 6, 6) for _ in range(3)]
    neg = torch.rand(2, 8, 6, 6)
    loss = module(out, pos, neg)
    assert torch.allclose(loss, module(out, torch.stack(pos, 1), neg))
    loss.backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_patch_content_contrastive_matches_info_nce():
    torch.manual_seed(0)
    mlps = {"relu1_1": PatchMLP(4), "relu2_1": PatchMLP(6)}
    assert [m.weight.shape for m in mlps["relu2_1"].mlp if isinstance(m, torch.nn.Linear)] == [
        (6, 6),
        (256, 6),
    ]
    icc = {"relu1_1": torch.rand(2, 4, 3, 3), "relu2_1": torch.rand(2, 6, 2, 2)}
    ic = {"relu1_1": torch.rand(2, 4, 3, 3), "relu2_1": torch.rand(2, 6, 2, 2)}
    # num_patches >= H*W: every position used, so the result does not depend on the draw
    got = patch_content_contrastive_loss(icc, ic, ["relu1_1", "relu2_1"], mlps, num_patches=64, tau=0.07)
    expected = 0.0
    for name in ["relu1_1", "relu2_1"]:
        per_layer = 0.0
        for b in range(2):
            q = mlps[name](icc[name][b].flatten(1).t())  # HW x D
            k = mlps[name](ic[name][b].flatten(1).t())
            hw = q.shape[0]
            negs = torch.stack([k[[j for j in range(hw) if j != i]] for i in range(hw)])
            per_layer += info_nce(q, k, negs, 0.07, reduction="mean") / 2
        expected = expected + per_layer
    assert torch.allclose(got, expected, rtol=1e-5)
    summed = patch_content_contrastive_loss(icc, ic, ["relu1_1"], mlps, num_patches=64, patch_reduction="sum")
    meaned = patch_content_contrastive_loss(icc, ic, ["relu1_1"], mlps, num_patches=64)
    assert torch.allclose(summed, meaned * 9)
    # identical features are the easiest case
    same = patch_content_contrastive_loss(ic, ic, ["relu1_1", "relu2_1"], mlps, num_patches=64)
    assert same < got


def test_patch_content_contrastive_sampling_and_gradients():
    torch.manual_seed(0)
    module = PatchContentContrastiveLoss({"relu1_1": 4, "relu2_1": 8}, num_patches=5)
    icc = {"relu1_1": torch.rand(2, 4, 6, 6, requires_grad=True), "relu2_1": torch.rand(2, 8, 3, 3)}
    ic = {"relu1_1": torch.rand(2, 4, 6, 6, requires_grad=True), "relu2_1": torch.rand(2, 8, 3, 3)}
    a = module(icc, ic, torch.Generator().manual_seed(1))
    b = module(icc, ic, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    fn = patch_content_contrastive_loss(
        icc, ic, module.layers, module.mlps, 5, 0.07, torch.Generator().manual_seed(1)
    )
    assert torch.equal(a, fn)
    a.backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert icc["relu1_1"].grad.abs().sum() > 0 and ic["relu1_1"].grad.abs().sum() > 0
    # 5 of 36 positions sampled: only those receive gradient
    assert int((icc["relu1_1"].grad.abs().sum(dim=(0, 1)) > 0).sum()) == 5
    with pytest.raises(ConfigError, match="no PatchMLP"):
        patch_content_contrastive_loss(icc, ic, ["relu1_1"], {}, 5)
