"""rank_share: the one partition of range(n) over ranks (samplers, loaders, checks, metrics)."""
from __future__ import annotations

import numpy as np

from rcdml.distributed.shard import rank_share


def test_shares_cover_everything_once():
    for n in (0, 1, 7, 10):
        for w in (1, 2, 3, 4):
            shares = [rank_share(n, w, r) for r in range(w)]
            b = np.array([s.start for s in shares] + [shares[-1].stop])
            assert all(s.stop == t.start for s, t in zip(shares, shares[1:]))
            assert b[0] == 0 and b[-1] == n and all(np.diff(b) >= 0)
            assert max(np.diff(b)) - min(np.diff(b)) <= 1
