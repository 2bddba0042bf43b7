"""This rank's share of ``range(n)``: the one partition that samplers, loaders, image checks and
metrics use, so every item lands on exactly one rank.

Imports neither torch nor numpy: DALI's worker processes reach it through the samplers.
"""
from __future__ import annotations


def rank_share(n: int, world_size: int, rank: int) -> range:
    """Rank ``rank``'s contiguous share of ``range(n)``: near-equal (sizes differ by at most one),
    every item on exactly one rank, no padding; the shares of ranks 0..world_size-1 concatenate
    to ``range(n)``."""
    return range(round(n * rank / world_size), round(n * (rank + 1) / world_size))
