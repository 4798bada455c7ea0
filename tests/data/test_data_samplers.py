"""InfiniteSampler: epochs reshuffled from seed + epoch, disjoint rank split, exact resume; mix_seed."""

from __future__ import annotations

from itertools import islice

import pytest
import torch

from impasto.data import InfiniteSampler, epoch_permutation, mix_seed
from impasto.errors import ConfigError


def _take(sampler: InfiniteSampler, k: int) -> list[int]:
    return list(islice(iter(sampler), k))


def test_single_rank_stream_is_concatenated_epoch_permutations() -> None:
    n, seed = 5, 7
    expected = []
    for epoch in range(4):
        g = torch.Generator().manual_seed(seed + epoch)  # by hand: randperm from seed + epoch
        expected += torch.randperm(n, generator=g).tolist()
    got = _take(InfiniteSampler(n, seed), 4 * n)
    assert got == expected
    for e in range(4):
        assert sorted(got[e * n:(e + 1) * n]) == list(range(n))  # each epoch is a permutation
    assert len({tuple(got[e * n:(e + 1) * n]) for e in range(4)}) > 1  # reshuffled
    assert epoch_permutation(n, seed, 2).tolist() == expected[2 * n:3 * n]


@pytest.mark.parametrize("n, world", [(10, 2), (7, 3), (4, 4)])
def test_ranks_take_disjoint_interleaved_positions(n: int, world: int) -> None:
    seed = 3
    streams = [_take(InfiniteSampler(n, seed, rank=r, world_size=world), 3 * n) for r in range(world)]
    global_stream = _take(InfiniteSampler(n, seed), 3 * n * world)
    for r in range(world):
        assert streams[r] == global_stream[r::world]
    # within the first epoch the ranks' indices are disjoint and cover the dataset when n % world == 0
    first = [set(s[: n // world]) for s in streams]
    for a in range(world):
        for b in range(a + 1, world):
            assert not first[a] & first[b]
    if n % world == 0:
        assert set().union(*first) == set(range(n))


def test_rank_split_by_hand() -> None:
    perm0 = epoch_permutation(4, 0, 0).tolist()
    perm1 = epoch_permutation(4, 0, 1).tolist()
    assert _take(InfiniteSampler(4, 0, rank=0, world_size=2), 4) == [perm0[0], perm0[2], perm1[0], perm1[2]]
    assert _take(InfiniteSampler(4, 0, rank=1, world_size=2), 4) == [perm0[1], perm0[3], perm1[1], perm1[3]]


def test_resume_continues_with_the_same_indices() -> None:
    a = InfiniteSampler(6, 11, rank=1, world_size=2)
    it = iter(a)
    head = [next(it) for _ in range(7)]
    state = a.state_dict()
    assert state == {"n": 6, "seed": 11, "rank": 1, "world_size": 2, "index": 7}
    tail = [next(it) for _ in range(9)]
    b = InfiniteSampler(6, 11, rank=1, world_size=2)
    b.load_state_dict(state)
    assert _take(b, 9) == tail
    assert _take(InfiniteSampler(6, 11, rank=1, world_size=2, start_index=7), 9) == tail
    assert [a.index_at(k) for k in range(7)] == head


def test_resume_checks_and_world_size_change() -> None:
    state = InfiniteSampler(6, 1, start_index=4).state_dict()
    with pytest.raises(ConfigError, match="same data folder and seed"):
        InfiniteSampler(7, 1).load_state_dict(state)
    with pytest.raises(ConfigError):
        InfiniteSampler(6, 2).load_state_dict(state)
    s = InfiniteSampler(6, 1, rank=0, world_size=2)
    s.load_state_dict(state)  # 4 samples consumed by 1 rank = 2 per rank for 2 ranks
    assert s.index == 2


def test_invalid_arguments() -> None:
    with pytest.raises(ConfigError, match="non-empty"):
        InfiniteSampler(0, 0)
    with pytest.raises(ConfigError, match="rank"):
        InfiniteSampler(5, 0, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="start_index"):
        InfiniteSampler(5, 0, start_index=-1)


def test_mix_seed() -> None:
    assert mix_seed(1, 2) == mix_seed(1, 2)
    values = {mix_seed(s, k) for s in range(10) for k in range(10)}
    assert len(values) == 100
    assert mix_seed(1, 2) != mix_seed(2, 1)
    assert all(0 <= v < 2**63 for v in values)
    torch.Generator().manual_seed(mix_seed(2**70, -1))  # any ints give a valid seed
