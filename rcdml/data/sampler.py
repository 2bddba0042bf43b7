"""Global batch samplers: each step's *global* batch is a function of (seed, epoch, step), and
every rank takes its contiguous slice of it.

So the global batch, and therefore the loss, does not depend on the world size, and a resumed
run replays exactly the batches it would have seen. Each index comes with a per-sample seed for
its augmentation, so the augmented pixels do not depend on which worker or rank loads them.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np

from rcdml.distributed.shard import rank_share

_SEED_RANGE = 2**62


class GlobalBatchSampler:
    """Base: subclasses define :meth:`global_batch`; this class slices it per rank."""

    def __init__(self, labels: Sequence[int], batch_size: int, world_size: int = 1, rank: int = 0,
                 seed: int = 0) -> None:
        if batch_size < world_size:
            raise ValueError(f"global batch {batch_size} is smaller than the world size {world_size}")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.epoch = 0
        self.start_step = 0

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.labels) // self.batch_size)

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch to iterate; ``start_step`` skips the steps a resumed run already did."""
        self.epoch = epoch
        self.start_step = start_step

    def _rng(self, epoch: int, step: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, step])

    def global_batch(self, epoch: int, step: int) -> np.ndarray:
        """Dataset indices of the whole batch ``step`` of ``epoch``, identical on every rank."""
        raise NotImplementedError

    def rank_slice(self, epoch: int, step: int) -> list[tuple[int, int]]:
        """This rank's (index, augmentation seed) pairs of global batch ``step`` of ``epoch``."""
        batch = self.global_batch(epoch, step)
        seeds = np.random.default_rng([self.seed, epoch, step, 1]).integers(
            _SEED_RANGE, size=len(batch))
        mine = rank_share(len(batch), self.world_size, self.rank)
        return [(int(i), int(s)) for i, s in zip(batch[mine.start:mine.stop],
                                                 seeds[mine.start:mine.stop])]

    def _always_full(self) -> bool:
        """Whether every global batch holds exactly ``batch_size`` images."""
        raise NotImplementedError

    @property
    def rows_per_rank(self) -> int | None:
        """Every rank's slice length when it is the same on all ranks at every step (the
        gathers then skip exchanging row counts), else None."""
        if self._always_full() and self.batch_size % self.world_size == 0:
            return self.batch_size // self.world_size
        return None

    @property
    def max_rank_batch(self) -> int:
        """An upper bound of the length of any rank's slice."""
        return -(-self.batch_size // self.world_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.steps_per_epoch):
            yield self.rank_slice(self.epoch, step)

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start_step


class BalancedBatchSampler(GlobalBatchSampler):
    """P classes x K images per global batch (P = batch_size / K), classes drawn without
    replacement; a class with fewer than K images contributes all of them."""

    def __init__(self, labels: Sequence[int], batch_size: int, samples_per_class: int,
                 world_size: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(labels, batch_size, world_size, rank, seed)
        if batch_size % samples_per_class:
            raise ValueError(f"batch size {batch_size} is not a multiple of samples_per_class "
                             f"{samples_per_class}")
        by_class: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(self.labels.tolist()):
            by_class[label].append(index)
        self.classes = np.array(sorted(by_class), dtype=np.int64)
        self.members = [np.array(by_class[c], dtype=np.int64) for c in self.classes.tolist()]
        self.k = samples_per_class
        self.p = batch_size // samples_per_class
        if self.p > len(self.classes):
            raise ValueError(f"a batch of {self.p} classes x {self.k} images needs {self.p} classes, "
                             f"the training split has {len(self.classes)}")

    def _always_full(self) -> bool:
        return min(len(m) for m in self.members) >= self.k

    def global_batch(self, epoch: int, step: int) -> np.ndarray:
        rng = self._rng(epoch, step)
        chosen = rng.choice(len(self.classes), size=self.p, replace=False)
        parts = []
        for c in chosen.tolist():
            members = self.members[c]
            take = min(self.k, len(members))
            parts.append(rng.choice(members, size=take, replace=False))
        return np.concatenate(parts)


class RandomBatchSampler(GlobalBatchSampler):
    """Uniformly shuffled global batches: one permutation per epoch, drawn from (seed, epoch)."""

    _order: tuple[int, np.ndarray] | None = None

    def _always_full(self) -> bool:
        return len(self.labels) >= self.batch_size

    def global_batch(self, epoch: int, step: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(
                len(self.labels)))
        return self._order[1][step * self.batch_size:(step + 1) * self.batch_size]
