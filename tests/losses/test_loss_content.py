"""Content and identity losses against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from impasto.errors import ConfigError
from impasto.evaluation.metrics import edge_correlation
from impasto.losses import (
    ContentLoss,
    EdgeLoss,
    IdentityLoss,
    content_loss,
    edge_loss,
    identity_loss,
    mean_variance_norm,
)


def test_content_loss_is_mse():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    b = torch.tensor([1.0, 0.0, 3.0, 0.0]).view(1, 1, 2, 2)
    assert content_loss(a, b).item() == pytest.approx((4 + 16) / 4)
    x, y = torch.rand(3, 4, 5, 5), torch.rand(3, 4, 5, 5)
    assert torch.allclose(content_loss(x, y), F.mse_loss(x, y))
    per = content_loss(x, y, reduction="none")
    assert per.shape == (3,) and torch.allclose(per.mean(), F.mse_loss(x, y))


def test_mean_variance_norm_by_hand():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    sd = math.sqrt(5 / 3 + 1e-5)
    expected = (torch.tensor([1.0, 2.0, 3.0, 4.0]) - 2.5) / sd
    assert torch.allclose(mean_variance_norm(x).flatten(), expected)


def test_normalized_content_loss_ignores_affine_changes():
    x = torch.rand(2, 3, 4, 4)
    # per-channel affine change of the output: normalised features are (almost) unchanged
    y = x * torch.tensor([2.0, 0.5, 3.0]).view(1, 3, 1, 1) + 7.0
    assert content_loss(y, x, normalize=True).item() == pytest.approx(0.0, abs=1e-6)
    assert content_loss(y, x).item() > 1.0
    ref = F.mse_loss(mean_variance_norm(y), mean_variance_norm(x))
    assert torch.allclose(content_loss(y, x, normalize=True), ref)


def test_content_loss_over_layers_and_module():
    out = {"relu4_1": torch.rand(2, 8, 4, 4), "relu5_1": torch.rand(2, 8, 2, 2)}
    tgt = {"relu4_1": torch.rand(2, 8, 4, 4), "relu5_1": torch.rand(2, 8, 2, 2)}
    expected = sum(F.mse_loss(mean_variance_norm(out[k]), mean_variance_norm(tgt[k])) for k in out)
    got = content_loss(out, tgt, normalize=True, layers=["relu4_1", "relu5_1"])
    assert torch.allclose(got, expected)
    assert torch.allclose(content_loss(out, tgt, normalize=True), expected)  # layers=None: all target layers
    assert torch.allclose(ContentLoss(normalize=True, layers=["relu4_1", "relu5_1"])(out, tgt), expected)
    assert torch.allclose(
        content_loss(out, tgt, layers=["relu5_1"]), F.mse_loss(out["relu5_1"], tgt["relu5_1"])
    )


def test_identity_loss_by_hand():
    torch.manual_seed(0)
    ic, is_ = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    icc, iss = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    names = ["relu1_1", "relu2_1"]
    fc = {n: torch.rand(2, 4, 4, 4) for n in names}
    fs = {n: torch.rand(2, 4, 4, 4) for n in names}
    fcc = {n: torch.rand(2, 4, 4, 4) for n in names}
    fss = {n: torch.rand(2, 4, 4, 4) for n in names}
    pixel, feature = identity_loss(icc, iss, ic, is_, fcc, fss, fc, fs, names)
    assert torch.allclose(pixel, F.mse_loss(icc, ic) + F.mse_loss(iss, is_))
    ref = sum(F.mse_loss(fcc[n], fc[n]) + F.mse_loss(fss[n], fs[n]) for n in names)
    assert torch.allclose(feature, ref)
    p2, f2 = IdentityLoss(names)(icc, iss, ic, is_, fcc, fss, fc, fs)
    assert torch.allclose(p2, pixel) and torch.allclose(f2, feature)
    # perfect reconstruction -> zero
    p0, f0 = identity_loss(ic, is_, ic, is_, fc, fs, fc, fs, names)
    assert p0.item() == 0.0 and f0.item() == 0.0
    with pytest.raises(ConfigError, match="I_cc"):
        identity_loss(icc[:, :, :4], iss, ic, is_, fcc, fss, fc, fs, names)


def test_gradcheck_normalized_content_loss():
    torch.manual_seed(1)
    x = torch.rand(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 2, 3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: content_loss(a, y, normalize=True, reduction="none"), (x,))


# ---------------------------------------------------------------------------------------------- edge loss
def test_edge_loss_by_hand_on_a_step():
    """A vertical step against the same step shifted by a column: the Sobel magnitudes by hand, then 1 - Pearson."""
    a = torch.zeros(1, 3, 5, 6)
    a[..., 3:] = 1.0  # step between columns 2 and 3
    b = torch.zeros(1, 3, 5, 6)
    b[..., 4:] = 1.0  # step between columns 3 and 4
    # valid Sobel columns 1..4 (3 rows each): |gx| = 4 where the 3x3 window straddles the step
    ma = torch.tensor([0.0, 4.0, 4.0, 0.0]).repeat(3)
    mb = torch.tensor([0.0, 0.0, 4.0, 4.0]).repeat(3)
    ma, mb = ma - ma.mean(), mb - mb.mean()
    rho = float((ma * mb).sum() / (ma.norm() * mb.norm()))
    assert rho == pytest.approx(0.0)
    assert edge_loss(a, b, eps=0.0).item() == pytest.approx(1.0 - rho, abs=1e-6)
    assert edge_loss(a, a, eps=0.0).item() == pytest.approx(0.0, abs=1e-6)


def test_edge_loss_is_one_minus_the_edge_metric_and_scale_free():
    torch.manual_seed(0)
    x, y = torch.rand(3, 3, 20, 24), torch.rand(3, 3, 20, 24)
    per = edge_loss(x, y, eps=0.0, reduction="none")
    assert per.shape == (3,)
    assert torch.allclose(per, 1 - edge_correlation(x, y), atol=1e-5)
    assert torch.allclose(edge_loss(x, y, eps=0.0), per.mean())
    # a contrast change of the output (stronger or weaker texture in the same places) costs nothing
    assert torch.allclose(edge_loss(0.3 * x + 0.2, y, eps=0.0, reduction="none"), per, atol=1e-5)
    assert torch.allclose(EdgeLoss(eps=0.0)(x, y), edge_loss(x, y, eps=0.0))
    # bf16 inputs under autocast: computed in float32 all the same
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = edge_loss(x.bfloat16(), y.bfloat16(), eps=0.0, reduction="none")
    assert low.dtype == torch.float32
    assert torch.allclose(low, edge_loss(x.bfloat16().float(), y.bfloat16().float(), eps=0.0, reduction="none"),
                          atol=1e-5)


def test_edge_loss_gradient_finite_on_flat_images_and_gradcheck():
    flat = torch.full((1, 3, 8, 8), 0.5, requires_grad=True)
    photo = torch.rand(1, 3, 8, 8)
    edge_loss(flat, photo).backward()
    assert torch.isfinite(flat.grad).all()
    x = torch.rand(2, 3, 7, 8, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 3, 7, 8, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: edge_loss(t, y), (x,))


def test_edge_loss_rejects_mismatched_images():
    with pytest.raises(ConfigError, match="same shape"):
        edge_loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ConfigError, match="reduction"):
        edge_loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), reduction="sum")
