"""Style losses: mean/std, Gram, balanced (Cheng et al. 2021) against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from impasto.errors import ConfigError
from impasto.losses import (
    BalancedStyleLoss,
    GramStyleLoss,
    MeanStdStyleLoss,
    balanced_style_loss,
    gram,
    gram_style_loss,
    gram_style_loss_supremum,
    mean_std,
    mean_std_style_loss,
)

LAYERS = ["relu1_1", "relu2_1"]


def _feats(seed: int, b: int = 3, signed: bool = False, scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, (c, s) in zip(LAYERS, [(4, 6), (6, 3)], strict=True):
        x = torch.randn(b, c, s, s, generator=g) * scale
        out[name] = x if signed else x.relu()
    return out


def test_mean_std_by_hand():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    mu, sd = mean_std(x)
    assert mu.shape == (1, 1, 1, 1)
    assert mu.item() == pytest.approx(2.5)
    # unbiased variance of 1..4 = 5/3, plus eps 1e-5
    assert sd.item() == pytest.approx(math.sqrt(5 / 3 + 1e-5), rel=1e-6)


def test_mean_std_style_loss_by_hand():
    out = {"a": torch.tensor([1.0, 3.0]).view(1, 1, 1, 2), "b": torch.zeros(1, 2, 1, 2)}
    sty = {"a": torch.tensor([2.0, 2.0]).view(1, 1, 1, 2), "b": torch.ones(1, 2, 1, 2)}
    # layer a: mu 2 vs 2 -> 0; sigma sqrt(2 + eps) vs sqrt(eps) -> squared difference
    eps = 1e-5
    sa = (math.sqrt(2 + eps) - math.sqrt(eps)) ** 2
    # layer b: mu 0 vs 1 -> 1 per channel (mean over 2 channels = 1); sigma equal
    expected = sa + 1.0
    assert mean_std_style_loss(out, sty).item() == pytest.approx(expected, rel=1e-5)
    assert mean_std_style_loss(out, sty, layers=["b"]).item() == pytest.approx(1.0)


def test_mean_std_style_loss_reductions_and_module():
    out, sty = _feats(0), _feats(1)
    per = mean_std_style_loss(out, sty, LAYERS, reduction="none")
    assert per.shape == (3,)
    total = mean_std_style_loss(out, sty, LAYERS)
    assert torch.allclose(per.mean(), total)
    # MSE over batch and channels, as F.mse_loss of the statistics, summed over layers
    ref = sum(
        F.mse_loss(mean_std(out[k])[0], mean_std(sty[k])[0])
        + F.mse_loss(mean_std(out[k])[1], mean_std(sty[k])[1])
        for k in LAYERS
    )
    assert torch.allclose(total, ref)
    assert torch.allclose(MeanStdStyleLoss(LAYERS)(out, sty), total)


def test_gram_by_hand():
    # C = 2 channels, H*W = 2: F = [[1, 2], [3, 4]] -> F F^T = [[5, 11], [11, 25]], / (C*H*W = 4)
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 4
    assert torch.allclose(gram(x)[0], expected)
    assert gram(torch.randn(2, 3, 4, 5)).shape == (2, 3, 3)


def test_gram_style_loss_by_hand():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    b = torch.tensor([[0.0, 2.0], [1.0, 0.0]]).view(1, 2, 1, 2)
    ga = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 4
    gb = torch.tensor([[4.0, 0.0], [0.0, 1.0]]) / 4
    expected = ((ga - gb) ** 2).mean()
    assert gram_style_loss(a, b).item() == pytest.approx(expected.item())
    out, sty = _feats(2), _feats(3)
    per = gram_style_loss(out, sty, LAYERS, reduction="none")
    assert per.shape == (3, 2)
    assert torch.allclose(per[:, 1], ((gram(out["relu2_1"]) - gram(sty["relu2_1"])) ** 2).mean(dim=(1, 2)))
    assert torch.allclose(gram_style_loss(out, sty, LAYERS, reduction="mean"), per.mean(0).sum())
    assert torch.allclose(GramStyleLoss(LAYERS)(out, sty), per.mean(0).sum())


def _balanced_by_hand(out: torch.Tensor, sty: torch.Tensor) -> torch.Tensor:
    """Independent route: unnormalised Gram via einsum, ratio of squared Frobenius norms."""
    go = torch.einsum("bchw,bdhw->bcd", out, out)
    gs = torch.einsum("bchw,bdhw->bcd", sty, sty)
    return ((go - gs) ** 2).sum((1, 2)) / ((go**2).sum((1, 2)) + (gs**2).sum((1, 2)))


def test_balanced_equals_classic_over_supremum_by_hand():
    out, sty = _feats(4), _feats(5)
    bal = balanced_style_loss(out, sty, LAYERS, reduction="none")
    assert bal.shape == (3, 2)
    for j, name in enumerate(LAYERS):
        c = out[name].shape[1]
        go, gs = gram(out[name]), gram(sty[name])
        classic = ((go - gs) ** 2).sum((1, 2)) / c**2
        sup = ((go**2).sum((1, 2)) + (gs**2).sum((1, 2))) / c**2  # eq. (11), N_l = C_l^2
        assert torch.allclose(gram_style_loss_supremum(out, sty, LAYERS)[:, j], sup)
        assert torch.allclose(bal[:, j], classic / sup, rtol=1e-5)
        # the ratio does not depend on how the Gram matrix is normalised
        assert torch.allclose(bal[:, j], _balanced_by_hand(out[name], sty[name]), rtol=1e-4)
    assert torch.allclose(balanced_style_loss(out, sty, LAYERS), bal.mean(0).sum())
    assert torch.allclose(BalancedStyleLoss(LAYERS)(out, sty), bal.mean(0).sum())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("signed", [False, True])
def test_balanced_bounded_by_one_random(seed: int, signed: bool):
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-4, 4, 9)
    out = _feats(100 + seed, b=4, signed=signed)
    sty = _feats(200 + seed, b=4, signed=signed)
    for k in LAYERS:  # very different magnitudes per sample
        out[k] = out[k] * scales[torch.randint(0, 9, (4, 1, 1, 1), generator=g)]
        sty[k] = sty[k] * scales[torch.randint(0, 9, (4, 1, 1, 1), generator=g)]
    bal = balanced_style_loss(out, sty, LAYERS, reduction="none")
    assert torch.isfinite(bal).all()
    assert (bal >= 0).all() and (bal <= 1 + 1e-6).all()


def test_balanced_adversarial_cases():
    s = torch.rand(2, 4, 5, 5)
    # disjoint channel supports: tr(G_S G_P) = 0 -> the supremum is attained, loss = 1
    p = torch.zeros_like(s)
    p[:, 2:] = torch.rand(2, 2, 5, 5) * 10
    s2 = s.clone()
    s2[:, 2:] = 0
    assert torch.allclose(balanced_style_loss(p, s2, reduction="none"), torch.ones(2, 1), atol=1e-6)
    # identical, sign-flipped and spatially permuted features: same Gram -> 0
    assert balanced_style_loss(s, s).item() == pytest.approx(0.0, abs=1e-7)
    assert balanced_style_loss(-s, s).item() == pytest.approx(0.0, abs=1e-7)
    perm = s.flatten(2)[:, :, torch.randperm(25)].view_as(s)
    assert balanced_style_loss(perm, s).item() == pytest.approx(0.0, abs=1e-6)
    # scaled copy P = a S: G_P = a^2 G_S -> (1 - a^2)^2 / (1 + a^4)
    for a in (0.0, 0.1, 1.0, 3.0, 1e3):
        expected = (1 - a**2) ** 2 / (1 + a**4)
        assert balanced_style_loss(a * s, s).item() == pytest.approx(expected, rel=1e-4, abs=1e-7)
    # all-zero pair: no division by zero
    z = torch.zeros(1, 3, 4, 4)
    assert balanced_style_loss(z, z).item() == 0.0


def test_balanced_bounded_under_gradient_ascent():
    """Maximise the (undetached) ratio w.r.t. signed output features: it approaches but never exceeds 1."""
    torch.manual_seed(0)
    sty = torch.randn(2, 3, 4, 4)
    out = torch.randn(2, 3, 4, 4, requires_grad=True)
    opt = torch.optim.Adam([out], lr=0.2)
    best = 0.0
    for _ in range(60):
        go, gs = gram(out), gram(sty)
        ratio = ((go - gs) ** 2).sum((1, 2)) / ((go**2).sum((1, 2)) + (gs**2).sum((1, 2)))
        opt.zero_grad()
        (-ratio.sum()).backward()
        opt.step()
        bal = balanced_style_loss(out.detach(), sty, reduction="none")
        assert (bal <= 1 + 1e-6).all()
        best = max(best, bal.max().item())
    assert best > 0.9  # the ascent does find near-worst cases


def test_balanced_gradient_is_classic_gradient_over_supremum():
    torch.manual_seed(1)
    sty = torch.rand(3, 4, 5, 5)
    out = torch.rand(3, 4, 5, 5, requires_grad=True)
    weights = torch.tensor([1.0, 2.0, 3.0])  # distinguishes samples
    (balanced_style_loss(out, sty, reduction="none")[:, 0] * weights).sum().backward()
    g_bal = out.grad.clone()

    out2 = out.detach().clone().requires_grad_(True)
    classic = gram_style_loss(out2, sty, reduction="none")[:, 0]
    sup = gram_style_loss_supremum(out2, sty)[:, 0].detach()
    (classic * weights / sup).sum().backward()
    assert torch.allclose(g_bal, out2.grad, rtol=1e-5, atol=1e-9)

    # and it is NOT the gradient of the full ratio (the denominator really is detached)
    out3 = out.detach().clone().requires_grad_(True)
    c3 = gram_style_loss(out3, sty, reduction="none")[:, 0]
    s3 = gram_style_loss_supremum(out3, sty)[:, 0]
    (c3 * weights / s3).sum().backward()
    assert not torch.allclose(g_bal, out3.grad, rtol=1e-3)


def test_balanced_style_features_get_no_gradient_through_denominator_only():
    out = torch.rand(1, 2, 3, 3, requires_grad=True)
    sty = torch.rand(1, 2, 3, 3, requires_grad=True)
    balanced_style_loss(out, sty).backward()
    assert out.grad is not None and sty.grad is not None  # numerator still depends on both


def test_gradcheck_gram_and_mean_std_losses():
    torch.manual_seed(2)
    out = torch.rand(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    sty = torch.rand(2, 3, 3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: gram_style_loss(x, sty, reduction="none"), (out,))
    assert torch.autograd.gradcheck(lambda x: mean_std_style_loss(x, sty, reduction="none"), (out,))


def test_layer_errors_are_clear():
    out, sty = _feats(0), _feats(1)
    with pytest.raises(ConfigError, match="relu5_1"):
        balanced_style_loss(out, sty, ["relu5_1"])
    with pytest.raises(ConfigError, match="same shape"):
        gram_style_loss(torch.rand(1, 2, 3, 3), torch.rand(1, 2, 4, 4))
    with pytest.raises(ConfigError, match="reduction"):
        gram_style_loss(out, sty, reduction="sum")
    with pytest.raises(ConfigError, match="mappings"):
        gram_style_loss(torch.rand(1, 2, 3, 3), torch.rand(1, 2, 3, 3), layers=LAYERS)
