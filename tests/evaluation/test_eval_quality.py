"""impasto.evaluation.quality: style moved, grid energy over chance; hand-checked cases."""

from __future__ import annotations

import math

import pytest
import torch

from impasto.evaluation.metrics import grid_artifact_score
from impasto.evaluation.quality import grid_to_noise, style_distance, style_moved


def toy_encode(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Two 'layers': the image itself and its square (any feature map works for the definition)."""
    return {"relu1_1": x, "relu2_1": x * x, "relu3_1": x[:, :1]}


def test_style_distance_by_hand() -> None:
    x = torch.zeros(1, 1, 2, 2)
    s = torch.tensor([[[[0.0, 2.0], [0.0, 2.0]]]])  # mean 1, unbiased variance 4/3
    fx, fs = {"relu1_1": x}, {"relu1_1": s}
    d = style_distance(fx, fs, ["relu1_1"])
    assert float(d) == pytest.approx(1 + math.sqrt(4 / 3 + 1e-5) - math.sqrt(1e-5), abs=1e-6)


def test_style_moved_is_zero_for_the_photo_and_one_for_the_painting() -> None:
    torch.manual_seed(0)
    c, s = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 40, 24) * 0.5 + 0.5
    assert float(style_moved(toy_encode, c, c, s)) == pytest.approx(0, abs=1e-6)
    assert float(style_moved(toy_encode, s, c, s)) == pytest.approx(1, abs=1e-6)
    # halfway in mean only: between 0 and 1
    mid = float(style_moved(toy_encode, (c + s.mean()) / 2, c, s))
    assert 0.2 < mid < 0.8


def test_grid_to_noise_is_about_one_for_noise_and_large_for_a_grid() -> None:
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(8, 3, 256, 256, generator=g)
    r = grid_to_noise(noise)
    assert 0.5 < float(r.mean()) < 1.5
    pattern = torch.rand(1, 1, 16, 16, generator=g).repeat(1, 3, 16, 16)
    grid = (noise[:1] * 0.5 + pattern * 0.5)
    assert float(grid_to_noise(grid)[0]) > 8
    # the ratio is the score over its chance level period / sqrt(h w) of the averaged residual
    # (256 - 2 - 15 = 239 rows and columns, cropped to whole periods: 224 x 224)
    assert float(grid_to_noise(grid)[0]) == pytest.approx(float(grid_artifact_score(grid, 16)[0]) / (16 / 224))
