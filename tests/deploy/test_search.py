"""The search picture's queries: taken in turn from each label, not the first ones in file order."""
from __future__ import annotations

from rcdml.deploy.search import spread_over_labels


def test_grid_queries_spread_over_labels():
    rows = [{"label": y, "n": i} for i, y in enumerate([5] * 10 + [6] * 3 + [7] * 10 + [-1] * 2)]
    picked = spread_over_labels(rows, 8)
    assert [r["label"] for r in picked] == [5, 6, 7, -1, 5, 6, 7, -1]
    assert [r["n"] for r in picked] == [0, 10, 13, 23, 1, 11, 14, 24]
    assert len(spread_over_labels(rows, 100)) == len(rows)
    assert spread_over_labels([], 16) == []
