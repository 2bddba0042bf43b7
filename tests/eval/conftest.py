"""Shared helpers of the evaluation tests: an independent brute-force NumPy reference of the
retrieval metrics (full float64 similarity matrix, one explicit sort per query)."""
from __future__ import annotations

import numpy as np
import pytest


def brute_force_metrics(query, query_labels, ks, gallery=None, gallery_labels=None) -> dict:
    """R@K over all queries; MAP@R and RP over the queries with R >= 1. Among equal similarities
    the other-class items rank first (the documented tie rule)."""
    query = np.asarray(query, dtype=np.float64)
    query_labels = np.asarray(query_labels)
    self_retrieval = gallery is None
    gallery = query if self_retrieval else np.asarray(gallery, dtype=np.float64)
    gallery_labels = query_labels if self_retrieval else np.asarray(gallery_labels)
    qn = query / np.sqrt((query ** 2).sum(1, keepdims=True) + 1e-12)
    gn = gallery / np.sqrt((gallery ** 2).sum(1, keepdims=True) + 1e-12)
    sim = qn @ gn.T
    hits = np.zeros(len(ks))
    aps, rps = [], []
    for i in range(len(query)):
        columns = np.arange(len(gallery))
        if self_retrieval:
            columns = columns[columns != i]
        relevant = gallery_labels[columns] == query_labels[i]
        order = np.lexsort((relevant, -sim[i, columns]))
        ranked = relevant[order]
        r = int(relevant.sum())
        for j, k in enumerate(ks):
            hits[j] += bool(ranked[:k].any())
        if r:
            first_r = ranked[:r]
            precision = np.cumsum(first_r) / np.arange(1, r + 1)
            aps.append(float((precision * first_r).sum() / r))
            rps.append(float(first_r.sum() / r))
    out = {f"R@{k}": hits[j] / len(query) for j, k in enumerate(ks)}
    out["MAP@R"] = float(np.mean(aps)) if aps else float("nan")
    out["RP"] = float(np.mean(rps)) if rps else float("nan")
    return out


@pytest.fixture
def brute_force():
    return brute_force_metrics
