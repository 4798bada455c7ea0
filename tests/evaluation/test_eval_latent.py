"""Tests of impasto.evaluation.latent: block reshuffle and the Figure 1 latent-consistency test."""

from __future__ import annotations

import pytest
import torch

from impasto.errors import ConfigError
from impasto.evaluation.latent import (
    block_reshuffle,
    consistency_fraction,
    crop_to_multiple,
    gram_distance,
    latent_consistency,
)


def _blocks(img: torch.Tensor, n: int) -> list[torch.Tensor]:
    c, h, w = img.shape
    bh, bw = h // n, w // n
    return [img[:, i * bh : (i + 1) * bh, j * bw : (j + 1) * bw] for i in range(n) for j in range(n)]


# ---------------------------------------------------------------------------------------------- reshuffle
def test_reshuffle_is_a_block_permutation():
    img = torch.rand(3, 12, 8)
    out = block_reshuffle(img, 4, generator=torch.Generator().manual_seed(0))
    assert out.shape == img.shape
    assert torch.equal(out.flatten().sort().values, img.flatten().sort().values)
    orig = _blocks(img, 4)
    found = []
    for blk in _blocks(out, 4):
        matches = [k for k, o in enumerate(orig) if torch.equal(blk, o)]
        assert len(matches) == 1
        found.append(matches[0])
    assert sorted(found) == list(range(16))  # every block used exactly once
    assert found != list(range(16))  # and actually moved
    assert not torch.equal(out, img)


def test_reshuffle_reproducible_per_sample_and_n1_identity():
    x = torch.rand(2, 3, 8, 8)
    a = block_reshuffle(x, 2, generator=torch.Generator().manual_seed(7))
    b = block_reshuffle(x, 2, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    # each sample keeps its own pixels
    for i in range(2):
        assert torch.equal(a[i].flatten().sort().values, x[i].flatten().sort().values)
    assert torch.equal(block_reshuffle(x, 1), x)


def test_reshuffle_rejects_indivisible_size_and_crop_fixes_it():
    x = torch.rand(1, 3, 10, 9)
    with pytest.raises(ConfigError, match="crop"):
        block_reshuffle(x, 4)
    c = crop_to_multiple(x, 4)
    assert c.shape == (1, 3, 8, 8)
    assert torch.equal(c, x[..., 1:9, 0:8])  # centre crop
    assert block_reshuffle(c, 4).shape == c.shape
    with pytest.raises(ConfigError, match="positive integer"):
        block_reshuffle(x, 0)


# ---------------------------------------------------------------------------------------------- distances
def test_gram_distance_hand_value():
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]]])
    b = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    d = gram_distance({"p": a, "q": a}, {"p": b, "q": b}, ["p", "q"])
    # per layer: (G_a - G_b) = [[26, 5], [5, 2]] / 8, MSE = 730 / 256
    assert d.shape == (1,)
    assert d.item() == pytest.approx(2 * 730 / 256)
    assert gram_distance({"p": a}, {"p": b}, ["p"]).item() == pytest.approx(730 / 256)
    with pytest.raises(ConfigError, match="available layers"):
        gram_distance({"p": a}, {"p": b}, ["r"])


def test_consistency_fraction_hand_case():
    self_dist = torch.tensor([1.0, 5.0, 3.0])
    pair = torch.tensor(
        [
            [0.0, 0.5, 2.0],  # row 0: 0.5 < 1 (counts), 2 > 1
            [0.5, 0.0, 6.0],  # row 1: 0.5 < 5 (counts), 6 > 5
            [2.0, 6.0, 0.0],  # row 2: 2 < 3 (counts), 6 > 3
        ]
    )
    assert consistency_fraction(self_dist, pair) == pytest.approx(3 / 6)
    assert consistency_fraction(torch.zeros(3), pair) == 0.0
    with pytest.raises(ConfigError):
        consistency_fraction(torch.zeros(1), torch.zeros(1, 1))


# ---------------------------------------------------------------------------------------------- Figure 1 test
def _paintings(m: int = 3, size: int = 16, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, size, size + 4 * i, generator=g, dtype=torch.float64) for i in range(m)]


def test_identity_encoder_is_perfectly_consistent():
    # the Gram of raw pixels is invariant to any spatial permutation: d_self = 0, so no pair is closer
    res = latent_consistency(lambda x: {"pixels": x}, _paintings(), n=4, seed=0)
    assert res["fraction"] == 0.0
    assert res["n_pairs"] == 6
    assert res["self_distance"].abs().max().item() < 1e-12
    assert res["mean_pair_distance"] > 1e-6
    assert res["layers"] == ["pixels"]
    assert res["pair_distance"].shape == (3, 3)
    assert torch.equal(res["pair_distance"], res["pair_distance"].T)


def test_position_sensitive_encoder_fails_the_test():
    # near-identical paintings (tiny pair distances) + an encoder that weights pixels by position:
    # reshuffling moves content under different weights, so every painting is farther from its own
    # reshuffle than from the other paintings -> fraction 1
    g = torch.Generator().manual_seed(1)
    base = torch.rand(3, 16, 16, generator=g, dtype=torch.float64)
    styles = [base + 1e-6 * torch.rand(3, 16, 16, generator=g, dtype=torch.float64) for _ in range(3)]
    ramp = torch.linspace(0, 1, 16, dtype=torch.float64)
    weight = (ramp.view(-1, 1) * 3 + ramp.view(1, -1)) ** 2

    def encode(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"w": x * weight, "w2": (x * weight)[..., ::2, ::2]}

    res = latent_consistency(encode, styles, n=4, seed=0)
    assert res["fraction"] == 1.0
    assert res["mean_self_distance"] > 1e3 * res["mean_pair_distance"]
    assert res["layers"] == ["w", "w2"]
    only_w = latent_consistency(encode, styles, n=4, layers=["w"], seed=0)
    assert only_w["mean_self_distance"] < res["mean_self_distance"]


def test_latent_consistency_seed_and_errors():
    enc = lambda x: {"f": x[..., :4, :4]}  # noqa: E731 - position-sensitive toy encoder
    a = latent_consistency(enc, _paintings(), n=2, seed=3)
    b = latent_consistency(enc, _paintings(), n=2, seed=3)
    assert torch.equal(a["self_distance"], b["self_distance"])
    with pytest.raises(ConfigError, match="at least 2"):
        latent_consistency(enc, _paintings(1))
