"""Where each query's same-class gallery items land in its cosine ranking, chunked over queries.

Every metric we report (R@K, MAP@R, R-Precision) is a function of a few per-query numbers, so
the similarity matrix is only ever held one chunk of queries at a time (O(chunk x N) memory),
and a share of the queries can be ranked on each rank and the numbers gathered afterwards.

Conventions, shared by every metric:

* A query's *relevant* items are the gallery items of its class; with ``self_retrieval`` (the
  queries are the gallery) the query itself is neither relevant nor retrievable, so it never
  retrieves itself. ``R`` is the number of relevant items.
* Ties count against the query: an item of another class with exactly the same similarity as a
  relevant one ranks before it. The numbers therefore depend only on the similarities and labels,
  never on the order of the dataset or how it is sharded, and a collapsed model (all embeddings
  equal) scores 0 instead of whatever the dataset order happens to give.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RankStats:
    """Per-query numbers, one row per query: ``relevant`` (R), ``before_first`` (items of other
    classes ranked before the first relevant one), ``ap_at_r`` (average precision over the first
    R positions, 0 when R=0) and ``hits_at_r`` (relevant items among the first R positions).

    Packed as one float64 tensor (all counts are exact in float64) so that a single all-gather
    moves them between ranks.
    """
    packed: torch.Tensor

    @property
    def relevant(self) -> torch.Tensor:
        return self.packed[:, 0].long()

    @property
    def before_first(self) -> torch.Tensor:
        return self.packed[:, 1].long()

    @property
    def ap_at_r(self) -> torch.Tensor:
        return self.packed[:, 2]

    @property
    def hits_at_r(self) -> torch.Tensor:
        return self.packed[:, 3].long()


class ClassMembers:
    """Gallery positions of every class, to find a query's same-class items without an N-wide
    label comparison."""

    def __init__(self, labels: torch.Tensor) -> None:
        self.order = torch.argsort(labels, stable=True)
        self.classes, self.counts = torch.unique_consecutive(labels[self.order], return_counts=True)
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    def of(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(index, valid)``, both (len(labels), m): row i lists the gallery items of class
        ``labels[i]`` in its first ``valid[i].sum()`` columns (m is the largest such count)."""
        n = labels.shape[0]
        if self.classes.numel() == 0:
            empty = torch.zeros(n, 0, dtype=torch.long, device=labels.device)
            return empty, empty.bool()
        slot = torch.searchsorted(self.classes, labels).clamp(max=self.classes.numel() - 1)
        count = torch.where(self.classes[slot] == labels, self.counts[slot], 0)
        width = int(count.max()) if n else 0
        column = torch.arange(width, device=labels.device)
        valid = column < count[:, None]
        position = (self.starts[slot][:, None] + column).clamp(max=self.order.numel() - 1)
        return self.order[position], valid


def rank_queries(query: torch.Tensor, query_labels: torch.Tensor, gallery: torch.Tensor,
                 gallery_labels: torch.Tensor, rows: range, *, self_retrieval: bool,
                 with_map: bool, chunk_size: int) -> RankStats:
    """:class:`RankStats` of queries ``rows`` (unit-length rows of ``query``) against ``gallery``.

    With ``self_retrieval`` query i is gallery item i. ``with_map`` adds ``ap_at_r`` and
    ``hits_at_r`` (one top-R selection per chunk); otherwise they are 0.
    """
    members = ClassMembers(gallery_labels)
    n_gallery = gallery.shape[0]
    out = torch.zeros(len(rows), 4, dtype=torch.float64, device=query.device)
    if len(rows) == 0:
        return RankStats(out)
    chunk = min(chunk_size, len(rows))
    # Reused across chunks: allocating a fresh chunk x N matrix each time costs page faults
    # comparable to the matmul itself on CPU.
    sim_buf = torch.empty(chunk, n_gallery, dtype=torch.float32, device=query.device)
    # Counting in float32 is exact below 2^24 items (every partial sum is a small integer).
    count_dtype = torch.float32 if n_gallery < 2**24 else torch.float64
    gallery_t = gallery.t()
    for start in range(rows.start, rows.stop, chunk):
        stop = min(start + chunk, rows.stop)
        size = stop - start
        sim = torch.mm(query[start:stop], gallery_t, out=sim_buf[:size])
        index, member = members.of(query_labels[start:stop])
        relevant = member
        if self_retrieval:
            itself = torch.arange(start, stop, device=query.device)
            relevant = member & (index != itself[:, None])
            sim[torch.arange(size, device=query.device), itself] = float("-inf")
        relevant_sim = sim.gather(1, index).masked_fill_(~relevant, float("-inf"))
        hit_row, hit_col = member.nonzero(as_tuple=True)
        # From here on ``sim`` scores only the items of other classes.
        sim[hit_row, index[hit_row, hit_col]] = float("-inf")
        num_relevant = relevant.sum(1)
        best = (relevant_sim.amax(1) if relevant_sim.shape[1]
                else torch.full((size,), float("-inf"), device=query.device))
        block = out[start - rows.start: stop - rows.start]
        block[:, 0] = num_relevant
        if with_map:
            block[:, 2:] = _precision_within_r(sim, relevant_sim, num_relevant)
        # In place and summed as floats: a separate bool matrix and an integer sum (which casts
        # it) would cost more than half the matmul.
        block[:, 1] = torch.ge(sim, best[:, None], out=sim).sum(1, dtype=count_dtype)
    return RankStats(out)


def _precision_within_r(other_sim: torch.Tensor, relevant_sim: torch.Tensor,
                        num_relevant: torch.Tensor) -> torch.Tensor:
    """(AP@R, hits in the first R) per query, from the similarities to the items of other
    classes and to the relevant items (-inf where absent)."""
    out = torch.zeros(other_sim.shape[0], 2, dtype=torch.float64, device=other_sim.device)
    r_max = int(num_relevant.max())
    if r_max == 0:
        return out
    # The i-th relevant item (best first) sits at position i + (other-class items scoring at
    # least as high). Only positions <= R matter, so the R_max best other-class scores suffice:
    # if all of them outrank relevant item i, its position is already beyond R.
    best_others = other_sim.topk(min(r_max, other_sim.shape[1]), dim=1).values
    ranked = relevant_sim.topk(r_max, dim=1).values
    ahead = torch.searchsorted(-best_others, -ranked, right=True)
    i = torch.arange(1, r_max + 1, device=other_sim.device)
    position = i + ahead
    r = num_relevant[:, None]
    within = (i <= r) & (position <= r)
    precision = torch.where(within, i / position.double(), 0.0)
    out[:, 1] = within.sum(1)
    out[:, 0] = precision.sum(1) / num_relevant.clamp(min=1)
    return out
