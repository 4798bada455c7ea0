"""IEContraAST batch arrangement: hand-written expected batches for b = 4 and b = 12."""

from __future__ import annotations

import pytest
import torch

from impasto.data import iecontra_arrange, iecontra_contrast_sets, iecontra_indices
from impasto.errors import ConfigError


def test_b4_by_hand() -> None:
    contents = torch.tensor([10.0, 11.0])  # c1, c2
    styles = torch.tensor([20.0, 21.0])  # s1, s2
    c, s, ci, si = iecontra_arrange(contents, styles, return_indices=True)
    assert c.tolist() == [10.0, 11.0, 11.0, 10.0]  # c1 c2 | c2 c1
    assert s.tolist() == [20.0, 21.0, 20.0, 21.0]  # s1 s2 | s1 s2
    assert ci == [0, 1, 1, 0] and si == [0, 1, 0, 1]


def test_b12_by_hand_on_images() -> None:
    contents = torch.arange(6).float().view(6, 1, 1, 1).expand(6, 3, 4, 4)
    styles = (100 + torch.arange(6)).float().view(6, 1, 1, 1).expand(6, 3, 4, 4)
    c, s = iecontra_arrange(contents, styles)
    assert c.shape == s.shape == (12, 3, 4, 4)
    assert c[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 0]
    assert s[:, 0, 0, 0].tolist() == [100, 101, 102, 103, 104, 105, 100, 101, 102, 103, 104, 105]
    assert iecontra_indices(6) == ([0, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 0], [0, 1, 2, 3, 4, 5] * 2)


def test_contrast_sets_b4_by_hand() -> None:
    # positions: 0 = (c1, s1), 1 = (c2, s2), 2 = (c2, s1), 3 = (c1, s2)
    sets = iecontra_contrast_sets(2)
    assert sets["style"] == [(0, 2, [1]), (1, 3, [0]), (2, 0, [3]), (3, 1, [2])]
    assert sets["content"] == [(0, 3, [1]), (1, 2, [0]), (2, 1, [3]), (3, 0, [2])]


def _official_sets(half: int) -> dict[str, list[tuple[int, int, list[int]]]]:
    """The comparison sets of the official IEContraAST release, written with index lists ("up" = first
    half, "down" = second half); the positive is the first element of each list."""
    up = list(range(half))
    down = [half + i for i in range(half)]
    style, content = [], []
    for i in range(half):
        if i == 0:
            comp = down[0:half - 1] + up[1:]
        elif i == 1:
            comp = down[1:] + up[0:1] + up[2:]
        elif i == half - 1:
            comp = down[half - 1:] + down[0:half - 2] + up[0:half - 1]
        else:
            comp = down[i:] + down[0:i - 1] + up[0:i] + up[i + 1:]
        style.append((up[i], comp[0], sorted(comp[1:])))
    for i in range(half):
        if i == 0:
            comp = up[0:1] + up[2:] + down[1:]
        elif i == half - 2:
            comp = up[half - 2:half - 1] + up[0:half - 2] + down[0:half - 2] + down[half - 1:]
        elif i == half - 1:
            comp = up[half - 1:] + up[1:half - 1] + down[0:half - 1]
        else:
            comp = up[i:i + 1] + up[0:i] + up[i + 2:] + down[0:i] + down[i + 1:]
        style.append((down[i], comp[0], sorted(comp[1:])))
    for i in range(half):
        if i == 0:
            comp = down[half - 1:] + down[1:half - 1] + up[1:]
        elif i == 1:
            comp = down[0:1] + down[2:] + up[0:1] + up[2:]
        elif i == half - 1:
            comp = down[half - 2:half - 1] + down[0:half - 2] + up[0:half - 1]
        else:
            comp = down[i - 1:i] + down[0:i - 1] + down[i + 1:] + up[0:i] + up[i + 1:]
        content.append((up[i], comp[0], sorted(comp[1:])))
    for i in range(half):
        if i == 0:
            comp = up[1:] + down[1:]
        elif i == half - 2:
            comp = up[half - 1:] + up[0:half - 2] + down[0:half - 2] + down[half - 1:]
        elif i == half - 1:
            comp = up[0:half - 1] + down[0:half - 1]
        else:
            comp = up[i + 1:i + 2] + up[0:i] + up[i + 2:] + down[0:i] + down[i + 1:]
        content.append((down[i], comp[0], sorted(comp[1:])))
    return {"style": sorted(style), "content": sorted(content)}


@pytest.mark.parametrize("half", [4, 6])
def test_contrast_sets_match_the_official_release(half: int) -> None:
    assert iecontra_contrast_sets(half) == _official_sets(half)


def test_errors() -> None:
    with pytest.raises(ConfigError, match="at least 2"):
        iecontra_arrange(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ConfigError, match="as many contents as styles"):
        iecontra_arrange(torch.zeros(3, 3), torch.zeros(2, 3))
