"""Search an index with query embeddings: per query the k best items (ids, paths, labels,
cosine similarities), a query never returning its own image."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rcdml.deploy.index import IndexConfig, search, unit_float32
from rcdml.deploy.store import Items


@dataclass
class Hits:
    ids: np.ndarray      # (queries, k) item ids, -1 where fewer than k items
    scores: np.ndarray   # (queries, k) cosine similarities


def search_items(index, items: Items, queries: np.ndarray, query_paths: list[str], k: int,
                 cfg: IndexConfig | None = None) -> Hits:
    """The ``k`` best items of every query; an item with the query's own path is skipped (so
    the indexed images themselves can be the queries)."""
    scores, ids = search(index, unit_float32(queries), k + 1, cfg)
    out_ids = np.full((len(queries), k), -1, dtype=np.int64)
    out_scores = np.full((len(queries), k), np.nan, dtype=np.float32)
    for q, path in enumerate(query_paths):
        keep = [j for j, i in enumerate(ids[q]) if i >= 0 and items.paths[i] != path][:k]
        out_ids[q, :len(keep)] = ids[q, keep]
        out_scores[q, :len(keep)] = scores[q, keep]
    return Hits(out_ids, out_scores)


def spread_over_labels(rows: list[dict], count: int) -> list[dict]:
    """``count`` of ``rows`` taken in turn from each label (in order of first appearance): the
    first row of every label, then the second, ..., so a picture shows every class it can."""
    by_label: dict[int, list[dict]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row)
    picked = []
    for turn in range(max((len(r) for r in by_label.values()), default=0)):
        picked += [r[turn] for r in by_label.values() if turn < len(r)]
    return picked[:count]


def results(hits: Hits, items: Items, query: Items) -> dict:
    """The JSON of a search; ``top1_accuracy`` over the queries with a label (None if none)."""
    rows, correct = [], []
    for q, path in enumerate(query.paths):
        ids = [int(i) for i in hits.ids[q] if i >= 0]
        labels = [items.labels[i] for i in ids]
        rows.append({"query": path, "label": query.labels[q], "ids": ids,
                     "paths": [items.paths[i] for i in ids], "labels": labels,
                     "scores": [float(s) for s in hits.scores[q][:len(ids)]]})
        if query.labels[q] >= 0:
            correct.append(bool(labels) and labels[0] == query.labels[q])
    accuracy = float(np.mean(correct)) if correct else None
    return {"k": int(hits.ids.shape[1]), "top1_accuracy": accuracy, "queries": rows}
