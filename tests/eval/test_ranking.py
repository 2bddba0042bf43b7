"""Per-query ranking numbers: self-exclusion, the tie rule, and independence from chunking, row
shares and dataset order (what distributed evaluation relies on)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rcdml.eval.metrics import retrieval_metrics
from rcdml.eval.ranking import ClassMembers, rank_queries
from rcdml.functional import l2_normalize


def tied_embeddings(rng, n: int):
    """Rows with four entries of +-0.5: unit length exactly, and every cosine is a multiple of
    0.25 computed without rounding, so many similarities are exactly equal."""
    x = np.zeros((n, 8), dtype=np.float32)
    for row in x:
        row[rng.choice(8, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
    return x


def test_handmade_ranking():
    # Query 0 (class 0): itself excluded, then other-class 3 (0.99), its class-mate 1 (0.9),
    # other-class 4 (0.5), class-mate 2 (0.1).
    q0 = torch.tensor([1.0, 0.0])
    angles = {1: 0.9, 2: 0.1, 3: 0.99, 4: 0.5}
    x = [q0] + [torch.tensor([c, (1 - c * c) ** 0.5]) for c in angles.values()]
    labels = torch.tensor([0, 0, 0, 1, 2])
    stats = rank_queries(torch.stack(x), labels, torch.stack(x), labels, range(1),
                         self_retrieval=True, with_map=True, chunk_size=4)
    assert stats.relevant.tolist() == [2]
    assert stats.before_first.tolist() == [1]  # item 3 outranks the first class-mate
    # Relevant items at positions 2 and 4; only position 2 is within R=2: AP@R = (1/2)/2.
    assert stats.ap_at_r.tolist() == [0.25]
    assert stats.hits_at_r.tolist() == [1]


def test_ties_count_against_the_query(brute_force):
    x = tied_embeddings(np.random.default_rng(0), 200)
    labels = np.random.default_rng(1).integers(0, 20, 200)
    got = retrieval_metrics(torch.from_numpy(x), torch.from_numpy(labels), [1, 2, 4, 8, 16],
                            chunk_size=17)
    expected = brute_force(x, labels, [1, 2, 4, 8, 16])
    assert got == pytest.approx(expected, abs=1e-12)


def test_collapsed_model_scores_zero_not_a_dataset_order_artefact():
    labels = torch.arange(100) // 10  # sorted by class: index-order tie-breaking would look perfect
    got = retrieval_metrics(torch.ones(100, 16), labels, [1, 10, 90, 91])
    assert got["R@1"] == got["R@10"] == got["R@90"] == 0.0  # 90 other-class items tie ahead
    assert got["R@91"] == 1.0
    assert got["MAP@R"] == 0.0 and got["RP"] == 0.0


def test_dataset_order_does_not_change_the_numbers():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(tied_embeddings(rng, 150))
    labels = torch.from_numpy(rng.integers(0, 15, 150))
    perm = torch.from_numpy(rng.permutation(150))
    # Equal up to the summation order of the final mean.
    assert (retrieval_metrics(x[perm], labels[perm], [1, 4, 16])
            == pytest.approx(retrieval_metrics(x, labels, [1, 4, 16]), rel=1e-14))


@pytest.mark.parametrize("self_retrieval", [True, False])
def test_row_shares_and_chunks_concatenate_to_the_whole(self_retrieval):
    rng = np.random.default_rng(3)
    q = l2_normalize(torch.from_numpy(rng.normal(size=(101, 16)).astype(np.float32)))
    q_labels = torch.from_numpy(rng.integers(0, 12, 101))
    g, g_labels = (q, q_labels) if self_retrieval else (
        l2_normalize(torch.randn(77, 16)), torch.from_numpy(rng.integers(0, 14, 77)))
    kwargs = dict(self_retrieval=self_retrieval, with_map=True)
    whole = rank_queries(q, q_labels, g, g_labels, range(101), chunk_size=101, **kwargs).packed
    bounds = [0, 34, 67, 101]  # three uneven shares, each in chunks of 5
    parts = [rank_queries(q, q_labels, g, g_labels, range(a, b), chunk_size=5, **kwargs).packed
             for a, b in zip(bounds, bounds[1:])]
    assert torch.equal(torch.cat(parts), whole)


def test_class_members_lists_each_class_and_nothing_for_absent_labels():
    members = ClassMembers(torch.tensor([3, 1, 3, 7, 3]))
    index, valid = members.of(torch.tensor([3, 5, 7]))
    assert [sorted(index[i][valid[i]].tolist()) for i in range(3)] == [[0, 2, 4], [], [3]]
