"""Exact Recall@K by cosine similarity, chunked over queries so memory is O(chunk x N)."""
from __future__ import annotations

from typing import Sequence

import torch


def _unit(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + 1e-12)


@torch.no_grad()
def recall_at_k(query: torch.Tensor, query_labels: torch.Tensor, ks: Sequence[int],
                gallery: torch.Tensor | None = None, gallery_labels: torch.Tensor | None = None,
                chunk_size: int = 1024) -> dict[int, float]:
    """Fraction of queries whose k nearest gallery items (cosine) include one of their class.

    With ``gallery=None`` the queries are the gallery and a query never retrieves itself.
    """
    self_retrieval = gallery is None
    g = _unit(query if self_retrieval else gallery)
    g_labels = query_labels if self_retrieval else gallery_labels
    q = _unit(query)
    max_k = min(max(ks), g.shape[0] - (1 if self_retrieval else 0))
    hits = torch.zeros(len(ks), dtype=torch.long)
    for start in range(0, q.shape[0], chunk_size):
        sim = q[start:start + chunk_size] @ g.t()
        if self_retrieval:
            rows = torch.arange(sim.shape[0], device=sim.device)
            sim[rows, rows + start] = float("-inf")
        top = sim.topk(max_k, dim=1).indices
        match = g_labels[top] == query_labels[start:start + chunk_size, None]
        for i, k in enumerate(ks):
            hits[i] += int(match[:, :k].any(dim=1).sum())
    return {k: hits[i].item() / q.shape[0] for i, k in enumerate(ks)}
