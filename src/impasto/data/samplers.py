"""Endless, resumable, rank-aware index streams for training.

Every quantity here is a pure function of ``(seed, position)``: the k-th index a rank draws and the
seed of the k-th random crop depend on nothing else, so a run that is stopped after consuming k samples
and restarted with ``start_index=k`` sees exactly the same data as an uninterrupted run, whatever the
number of data-loader workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from impasto.errors import ConfigError

_MASK64 = (1 << 64) - 1


def mix_seed(*values: int) -> int:
    """Hash integers into one 63-bit seed (splitmix64 finaliser applied after each value).

    Used to derive independent, reproducible seeds (e.g. ``mix_seed(seed, position)`` for the random
    crop of one sample). Returns an int in [0, 2**63).
    """
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & _MASK64)) & _MASK64
        h = (h + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h = h ^ (h >> 31)
    return h & ((1 << 63) - 1)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of ``range(n)`` in one epoch: ``randperm(n)`` from a generator seeded ``seed + epoch``.

    Returns an int64 tensor of shape (n,).
    """
    g = torch.Generator().manual_seed((int(seed) + int(epoch)) % (1 << 63))
    return torch.randperm(n, generator=g)


class InfiniteSampler(Sampler[int]):
    """Endless stream of dataset indices, reshuffled every epoch, split across ranks.

    The global stream is the concatenation of ``epoch_permutation(n, seed, e)`` for e = 0, 1, 2, ...;
    rank r takes global positions r, r + world_size, r + 2 world_size, ... (disjoint across ranks).
    ``start_index`` (or ``load_state_dict``) is the number of indices this rank has already consumed,
    so a resumed run continues with exactly the same indices.

    Args:
        n: dataset size (>= 1).
        seed: shuffling seed; epoch e uses ``seed + e``.
        rank: this process's rank in [0, world_size).
        world_size: number of processes sharing the stream.
        start_index: number of indices of this rank already consumed.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world_size: int = 1, start_index: int = 0) -> None:
        if int(n) < 1:
            raise ConfigError(f"InfiniteSampler needs a non-empty dataset (got n={n})")
        if int(world_size) < 1 or not 0 <= int(rank) < int(world_size):
            raise ConfigError(f"invalid rank {rank} for world_size {world_size}: need 0 <= rank < world_size")
        if int(start_index) < 0:
            raise ConfigError(f"start_index must be >= 0 (got {start_index})")
        self.n = int(n)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.index = int(start_index)
        self._cache: tuple[int, torch.Tensor] | None = None

    def global_position(self, k: int) -> int:
        """Position in the global (all-ranks) stream of this rank's k-th index."""
        return int(k) * self.world_size + self.rank

    def index_at(self, k: int) -> int:
        """The k-th index (0-based) of this rank's stream, without moving the stream."""
        epoch, pos = divmod(self.global_position(k), self.n)
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, epoch_permutation(self.n, self.seed, epoch))
        return int(self._cache[1][pos])

    def __iter__(self) -> Iterator[int]:
        while True:
            i = self.index_at(self.index)
            self.index += 1
            yield i

    def __len__(self) -> int:  # pragma: no cover - an endless sampler has no length
        raise TypeError("InfiniteSampler is endless and has no length")

    def state_dict(self) -> dict[str, int]:
        """Everything needed to continue the stream: ``{"n", "seed", "rank", "world_size", "index"}``."""
        return {"n": self.n, "seed": self.seed, "rank": self.rank, "world_size": self.world_size,
                "index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a ``state_dict()``: the next index is the one the saved stream would have given.

        A different dataset size or seed raises ConfigError (the stream would not be the same); a different
        world size keeps the number of samples consumed globally.
        """
        if int(state["n"]) != self.n or int(state["seed"]) != self.seed:
            raise ConfigError(
                f"cannot resume the data stream: it was saved for a dataset of {state['n']} images with "
                f"seed {state['seed']}, now {self.n} images with seed {self.seed}; "
                "use the same data folder and seed")
        index = int(state["index"])
        if int(state.get("world_size", self.world_size)) != self.world_size:
            consumed = index * int(state["world_size"])
            index = -(-consumed // self.world_size)
        self.index = index
