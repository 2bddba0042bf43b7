"""faiss indexes of rcdml.deploy: the type chosen from N, exact flat search, and approximate
indexes that find the exact neighbours of clustered data; a serialised index searches the same."""
from __future__ import annotations

import numpy as np
import pytest

from rcdml.config import ConfigError
from rcdml.deploy.index import (IndexConfig, build_index, choose_type, deserialize, search,
                                serialize, unit_float32)


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n // 4, dim))
    return unit_float32(centers[np.arange(n) // 4] + 0.3 * rng.standard_normal((n, dim)))


def test_auto_is_exact_below_the_threshold():
    cfg = IndexConfig(exact_below=1000)
    assert choose_type(cfg, 999) == "flat" and choose_type(cfg, 1000) == "hnsw"
    assert choose_type(IndexConfig(type="hnsw"), 10) == "hnsw"


@pytest.mark.parametrize("kind", ["ivfpq", "hnsw"])
def test_approximate_indexes_find_the_exact_neighbours(kind):
    x = clustered(4000)
    exact = x @ x[:200].T
    truth = np.argsort(-exact, axis=0)[:4].T
    cfg = IndexConfig(type=kind, pq_m=8, nprobe=16, train_size=4000)
    index = build_index(x, cfg)
    _, ids = search(index, x[:200], 4, cfg)
    assert np.mean([len(set(a) & set(b)) / 4 for a, b in zip(ids, truth)]) >= 0.95
    _, again = search(deserialize(serialize(index)), x[:200], 4, cfg)
    np.testing.assert_array_equal(again, ids)


def test_flat_is_exact_and_pq_m_must_divide_the_dimension():
    x = clustered(500)
    scores, ids = search(build_index(x, IndexConfig(type="flat")), x[:10], 1)
    assert (ids[:, 0] == np.arange(10)).all() and np.allclose(scores[:, 0], 1, atol=1e-5)
    with pytest.raises(ConfigError, match="index.pq_m"):
        build_index(x, IndexConfig(type="ivfpq", pq_m=5))
