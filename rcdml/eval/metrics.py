"""Exact retrieval metrics by cosine similarity: Recall@K, MAP@R and R-Precision.

Protocols (see :mod:`rcdml.eval.ranking` for self-exclusion and ties):

* ``R@K`` (Proxy-Anchor's protocol): the fraction of *all* queries with a same-class item among
  their K nearest. A query whose class has no other item in the gallery (R=0, e.g. a class with a
  single image when the queries are the gallery) can never be a hit and counts as a miss, as in
  Proxy-Anchor's ``calc_recall_at_k``. K may exceed the gallery: R@K is then the fraction of
  queries with R >= 1.
* ``MAP@R`` and ``RP`` (R-Precision), as in Musgrave et al., "A Metric Learning Reality Check"
  (2020): with R the query's number of same-class gallery items, ``RP = r / R`` where r of the
  first R retrieved are relevant, and ``MAP@R = 1/R * sum_{i<=R} P(i) rel(i)``. They are averaged
  over the queries with R >= 1; queries with R = 0 are left out, as pytorch-metric-learning's
  AccuracyCalculator does. NaN when no query has R >= 1.

Every function scores queries in chunks (memory O(chunk_size x N)) on the tensors' device. With
``distributed=True`` each rank scores its contiguous share of the queries and the per-query
numbers are all-gathered, so every rank returns exactly the single-process result; all ranks
must then call it with the same full query and gallery tensors.
"""
from __future__ import annotations

from typing import Sequence

import torch

from rcdml.distributed import all_gather_no_grad, get_rank, get_world_size, rank_share
from rcdml.eval.ranking import RankStats, rank_queries
from rcdml.functional import l2_normalize

MAP_AT_R = "MAP@R"
R_PRECISION = "RP"


def _check(query: torch.Tensor, query_labels: torch.Tensor, gallery: torch.Tensor | None,
           gallery_labels: torch.Tensor | None) -> None:
    if (gallery is None) != (gallery_labels is None):
        raise ValueError("pass gallery and gallery_labels together, or neither")
    pairs = [("query", query, query_labels)]
    if gallery is not None:
        pairs.append(("gallery", gallery, gallery_labels))
    for name, emb, labels in pairs:
        if emb.dim() != 2 or labels.dim() != 1 or emb.shape[0] != labels.shape[0]:
            raise ValueError(f"{name}: expected (n, d) embeddings and (n,) labels, got "
                             f"{tuple(emb.shape)} and {tuple(labels.shape)}")
        if emb.is_floating_point() and not torch.isfinite(emb).all():
            raise ValueError(f"{name} embeddings contain NaN or inf; the model diverged")
    if query.shape[0] == 0:
        raise ValueError("query: no embeddings to evaluate")
    if gallery is not None and gallery.shape[1] != query.shape[1]:
        raise ValueError(f"query dim {query.shape[1]} != gallery dim {gallery.shape[1]}")


def rank_stats(query: torch.Tensor, query_labels: torch.Tensor, gallery: torch.Tensor | None = None,
               gallery_labels: torch.Tensor | None = None, *, with_map: bool = True,
               chunk_size: int = 1024, distributed: bool = False) -> RankStats:
    """Per-query ranking numbers of every query (see :class:`~rcdml.eval.ranking.RankStats`)."""
    _check(query, query_labels, gallery, gallery_labels)
    self_retrieval = gallery is None
    # Ranked in fp32 whatever the embeddings' dtype.
    q = l2_normalize(query.float())
    g = q if self_retrieval else l2_normalize(gallery.float())
    q_labels = query_labels.long().to(q.device)
    g_labels = q_labels if self_retrieval else gallery_labels.long().to(q.device)
    rows = rank_share(q.shape[0], get_world_size(), get_rank()) if distributed else range(q.shape[0])
    stats = rank_queries(q, q_labels, g, g_labels, rows, self_retrieval=self_retrieval,
                         with_map=with_map, chunk_size=chunk_size)
    return RankStats(all_gather_no_grad(stats.packed)) if distributed else stats


def summarize(stats: RankStats, ks: Sequence[int], with_map: bool = True) -> dict[str, float]:
    """``{"R@k": ..., "MAP@R": ..., "RP": ...}`` from the per-query numbers of all queries."""
    has_match = stats.relevant > 0
    out = {f"R@{k}": float((has_match & (stats.before_first < k)).double().mean()) for k in ks}
    if with_map:
        counted = has_match.sum()
        r = stats.relevant[has_match].double()
        out[MAP_AT_R] = float(stats.ap_at_r[has_match].sum() / counted) if counted else float("nan")
        out[R_PRECISION] = (float((stats.hits_at_r[has_match] / r).sum() / counted) if counted
                            else float("nan"))
    return out


def retrieval_metrics(query: torch.Tensor, query_labels: torch.Tensor, ks: Sequence[int],
                      gallery: torch.Tensor | None = None,
                      gallery_labels: torch.Tensor | None = None, *, with_map: bool = True,
                      chunk_size: int = 1024, distributed: bool = False) -> dict[str, float]:
    """R@K for ``ks`` and (``with_map``) MAP@R and RP, in one pass over the queries."""
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks: {list(ks)} must be a non-empty list of values >= 1")
    stats = rank_stats(query, query_labels, gallery, gallery_labels, with_map=with_map,
                       chunk_size=chunk_size, distributed=distributed)
    return summarize(stats, ks, with_map)


def recall_at_k(query: torch.Tensor, query_labels: torch.Tensor, ks: Sequence[int],
                gallery: torch.Tensor | None = None, gallery_labels: torch.Tensor | None = None,
                chunk_size: int = 1024, distributed: bool = False) -> dict[int, float]:
    """``{k: recall}`` (fractions in [0, 1]); with ``gallery=None`` the queries are the gallery
    and a query never retrieves itself."""
    result = retrieval_metrics(query, query_labels, ks, gallery, gallery_labels, with_map=False,
                               chunk_size=chunk_size, distributed=distributed)
    return {k: result[f"R@{k}"] for k in ks}


def map_at_r(query: torch.Tensor, query_labels: torch.Tensor,
             gallery: torch.Tensor | None = None, gallery_labels: torch.Tensor | None = None,
             chunk_size: int = 1024, distributed: bool = False) -> float:
    """MAP@R over the queries with at least one same-class gallery item."""
    return retrieval_metrics(query, query_labels, (1,), gallery, gallery_labels,
                             chunk_size=chunk_size, distributed=distributed)[MAP_AT_R]


def r_precision(query: torch.Tensor, query_labels: torch.Tensor,
                gallery: torch.Tensor | None = None, gallery_labels: torch.Tensor | None = None,
                chunk_size: int = 1024, distributed: bool = False) -> float:
    """R-Precision over the queries with at least one same-class gallery item."""
    return retrieval_metrics(query, query_labels, (1,), gallery, gallery_labels,
                             chunk_size=chunk_size, distributed=distributed)[R_PRECISION]
