"""Total variation and the encoder-refinement feature regulariser against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from impasto.errors import ConfigError
from impasto.losses import FeatureRegularizer, TotalVariation, feature_regularizer, total_variation


def test_total_variation_by_hand():
    img = torch.tensor([[1.0, 2.0], [4.0, 8.0]]).view(1, 1, 2, 2)
    # vertical: 4-1=3, 8-2=6; horizontal: 2-1=1, 8-4=4
    assert total_variation(img).item() == pytest.approx(9 + 36 + 1 + 16)
    assert total_variation(img, p=1).item() == pytest.approx(3 + 6 + 1 + 4)
    assert total_variation(torch.full((2, 3, 5, 5), 0.3)).item() == 0.0
    two = torch.cat([img, 2 * img])
    per = total_variation(two, reduction="none")
    assert per.tolist() == pytest.approx([62.0, 248.0])
    assert total_variation(two).item() == pytest.approx(155.0)
    assert torch.allclose(TotalVariation(p=1)(two), total_variation(two, p=1))
    with pytest.raises(ConfigError, match="p must be 1 or 2"):
        total_variation(img, p=3)


def test_total_variation_gradcheck():
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: total_variation(a, reduction="none"), (x,))


def test_feature_regularizer_is_the_l2_norm_not_squared():
    new = {"relu4_1": torch.zeros(2, 1, 2, 2), "relu5_1": torch.zeros(2, 1, 1, 2)}
    old = {"relu4_1": torch.zeros(2, 1, 2, 2), "relu5_1": torch.zeros(2, 1, 1, 2)}
    new["relu4_1"][0] = torch.tensor([[3.0, 0.0], [0.0, 4.0]])  # norm 5 (squared 25)
    new["relu4_1"][1, 0, 0, 0] = 1.0  # norm 1
    new["relu5_1"][1] = torch.tensor([[6.0, 8.0]])  # norm 10
    per = feature_regularizer(new, old, reduction="none")
    assert per.tolist() == pytest.approx([5.0, 11.0])
    assert feature_regularizer(new, old).item() == pytest.approx(8.0)  # mean over the batch
    assert feature_regularizer(new, old, ["relu4_1"]).item() == pytest.approx(3.0)
    mse = feature_regularizer(new, old, mode="mse", reduction="none")
    assert mse.tolist() == pytest.approx([25 / 4, 1 / 4 + 100 / 2])
    assert torch.allclose(FeatureRegularizer(["relu4_1", "relu5_1"])(new, old), feature_regularizer(new, old))
    with pytest.raises(ConfigError, match="mode"):
        feature_regularizer(new, old, mode="l1")


def test_feature_regularizer_gradients():
    new = torch.rand(2, 3, 4, 4, requires_grad=True)
    old = torch.rand(2, 3, 4, 4, requires_grad=True)
    feature_regularizer(new, old).backward()
    assert old.grad is None  # the pretrained features are a fixed target
    # gradient of the mean of norms: (new - old) / ||new - old|| / B
    diff = (new - old).detach().flatten(1)
    expected = (diff / diff.norm(dim=1, keepdim=True) / 2).view_as(new)
    assert torch.allclose(new.grad, expected, atol=1e-6)
    # identical features (start of fine-tuning): finite, zero gradient
    same = old.detach().clone().requires_grad_(True)
    feature_regularizer(same, old).backward()
    assert torch.isfinite(same.grad).all() and same.grad.abs().max().item() == 0.0


def test_feature_regularizer_gradcheck():
    torch.manual_seed(0)
    new = torch.rand(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    old = torch.rand(2, 2, 3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: feature_regularizer(a, old, reduction="none"), (new,))
    assert math.isfinite(feature_regularizer(new, old).item())
