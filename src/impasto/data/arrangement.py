"""Batch arrangement of IEContraAST's contrastive losses (Chen et al., NeurIPS 2021, official release)."""

from __future__ import annotations

import torch

from impasto.errors import ConfigError


def iecontra_indices(m: int) -> tuple[list[int], list[int]]:
    """Indices that turn m contents and m styles into IEContraAST's batch of b = 2m pairs.

    Position i < m pairs (c_i, s_i); position m + i pairs (c_{(i+1) mod m}, s_i). So styles are
    ``[s1..sm, s1..sm]`` and contents ``[c1..cm, c2..cm, c1]`` (1-based in the paper's notation):
    positions i and m + i share the style, positions i and m + i - 1 (i >= 1), and 0 and 2m - 1, share
    the content; every other pair shares neither.

    Returns:
        (content_index, style_index): two lists of length 2m with values in [0, m).
    """
    m = int(m)
    if m < 2:
        raise ConfigError(f"the IEContraAST arrangement needs at least 2 contents and 2 styles (got {m}); "
                          "use a batch size of at least 4")
    content_index = list(range(m)) + [(i + 1) % m for i in range(m)]
    style_index = list(range(m)) * 2
    return content_index, style_index


def iecontra_arrange(contents: torch.Tensor, styles: torch.Tensor, return_indices: bool = False
                     ) -> tuple[torch.Tensor, ...]:
    """Arrange m contents and m styles into IEContraAST's batch of 2m (content, style) pairs.

    Args:
        contents: m x ... (e.g. m x 3 x H x W images in [0, 1]).
        styles: m x ... (same m).
        return_indices: also return the index lists of ``iecontra_indices(m)``.

    Returns:
        ``(contents_b, styles_b)``, each 2m x ...: ``styles_b = [s1..sm, s1..sm]``,
        ``contents_b = [c1..cm, c2..cm, c1]``; with ``return_indices`` also
        ``(content_index, style_index)``.
    """
    if contents.shape[0] != styles.shape[0]:
        raise ConfigError(f"the IEContraAST arrangement needs as many contents as styles "
                          f"(got {contents.shape[0]} and {styles.shape[0]})")
    ci, si = iecontra_indices(contents.shape[0])
    contents_b = contents[torch.tensor(ci, device=contents.device)]
    styles_b = styles[torch.tensor(si, device=styles.device)]
    if return_indices:
        return contents_b, styles_b, ci, si
    return contents_b, styles_b


def iecontra_contrast_sets(m: int) -> dict[str, list[tuple[int, int, list[int]]]]:
    """Anchor, positive and negatives of every position of the 2m batch, for both contrastive losses.

    For the ``"style"`` loss the positive of position p is the other position with the same style; for
    ``"content"`` the other position with the same content. In both, the negatives are the positions that
    share neither the style nor the content with p (as in the official release's slicing).

    Returns:
        ``{"style": [(p, positive, negatives), ...], "content": [...]}`` for p = 0 .. 2m-1.
    """
    ci, si = iecontra_indices(m)
    b = 2 * m
    out: dict[str, list[tuple[int, int, list[int]]]] = {"style": [], "content": []}
    for p in range(b):
        negatives = [q for q in range(b) if ci[q] != ci[p] and si[q] != si[p]]
        style_pos = next(q for q in range(b) if q != p and si[q] == si[p])
        content_pos = next(q for q in range(b) if q != p and ci[q] == ci[p])
        out["style"].append((p, style_pos, negatives))
        out["content"].append((p, content_pos, negatives))
    return out
