"""faiss indexes of l2-normalised embeddings, searched by inner product (= cosine similarity).

Which index when (measured in ``benchmarks/search.py``, d = 512, 2 CPU threads; 10-recall@10 is
the overlap of the returned 10 with the exact 10):

- ``flat``: exact; memory 4·d bytes per vector; cost linear in N per query. Below
  ``index.exact_below`` vectors it is fast enough, and ``auto`` picks it.
- ``hnsw``: a graph over the full vectors (memory: flat's plus 2·M links, 1.13x at M=32); the
  highest recall per query second, for a slow build (at 600k vectors, 10-recall@10 0.995 at 11x
  flat's queries per second with ef_search=128, after a build 4x as long as ivfpq's). ``auto``
  picks it at and above ``exact_below`` vectors.
- ``ivfpq``: inverted lists of product-quantised codes (``pq_m`` bytes a vector), re-ranked
  exactly by a flat refinement stage (``refine`` × k candidates, which keeps the exact vectors:
  1.04x flat's memory); recall is bounded by the lists visited (``nprobe``): at 600k vectors
  10-recall@10 0.96 at 4.5x flat with nprobe=256, refine=32. With ``refine=0`` only the codes
  are kept, the index for a collection that does not fit in memory as float32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from rcdml.config.typed import bounded

INDEX_TYPES = ("auto", "flat", "ivfpq", "hnsw")


@dataclass
class IndexConfig:
    # flat (exact), ivfpq, hnsw, or auto: flat below exact_below vectors, hnsw from there on.
    type: Literal["auto", "flat", "ivfpq", "hnsw"] = "auto"
    # Collection size from which auto picks an approximate index.
    exact_below: int = bounded(200_000, ge=1)
    # IVF lists (coarse k-means centroids); 0: 4·sqrt(N), faiss's rule of thumb.
    ivf_lists: int = bounded(0, ge=0)
    # PQ sub-quantisers (bytes per vector at 8 bits); must divide the dimension.
    pq_m: int = bounded(64, ge=1)
    # Lists visited per query: the recall / speed knob of ivfpq (at 600k vectors in
    # benchmarks/search.py, 10-recall@10 0.88 at 128 with refine 8, 0.96 at 256 with refine 32).
    nprobe: int = bounded(128, ge=1)
    # ivfpq re-ranks refine·k candidates with the exact vectors (0: no refinement, codes only).
    refine: int = bounded(8, ge=0)
    # HNSW links per node: recall and memory grow with it.
    hnsw_m: int = bounded(32, ge=2)
    # HNSW candidate list while building (build time and graph quality).
    ef_construction: int = bounded(80, ge=1)
    # HNSW candidate list while searching: the recall / speed knob of hnsw (at 600k vectors in
    # benchmarks/search.py, 10-recall@10 0.990 at 32, 0.995 at 128, 0.998 at 256).
    ef_search: int = bounded(128, ge=1)
    # Vectors that train ivfpq's quantisers (a seeded sample); 0: 64 per list, at least 10,000.
    train_size: int = bounded(0, ge=0)
    # Seed of the training sample and of faiss's k-means.
    seed: int = 0
    # Use the GPUs when faiss-gpu sees one: exact search of flat, k-means training of ivfpq.
    gpu: bool = True


def choose_type(cfg: IndexConfig, n: int) -> str:
    if cfg.type != "auto":
        return cfg.type
    return "flat" if n < cfg.exact_below else "hnsw"


def ivf_lists(cfg: IndexConfig, n: int) -> int:
    return cfg.ivf_lists or max(1, min(n // 39, int(4 * math.sqrt(n))))


def unit_float32(vectors: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 copy with unit rows (faiss's normalize_L2 works in place)."""
    import faiss

    out = np.ascontiguousarray(vectors, dtype=np.float32).copy()
    faiss.normalize_L2(out)
    return out


def factory_string(kind: str, cfg: IndexConfig, n: int, dim: int) -> str:
    if kind == "flat":
        return "Flat"
    if kind == "hnsw":
        return f"HNSW{cfg.hnsw_m},Flat"
    if dim % cfg.pq_m:
        from rcdml.config import ConfigError

        raise ConfigError(f"index.pq_m: {cfg.pq_m} does not divide the embedding dimension {dim}")
    refine = ",RFlat" if cfg.refine else ""
    return f"IVF{ivf_lists(cfg, n)},PQ{cfg.pq_m}{refine}"


def build_index(vectors: np.ndarray, cfg: IndexConfig):
    """A faiss index of ``vectors`` (unit rows, float32), trained on a sample where its type
    needs it, with its search knobs set from ``cfg``."""
    import faiss

    n, dim = vectors.shape
    kind = choose_type(cfg, n)
    index = faiss.index_factory(dim, factory_string(kind, cfg, n, dim), faiss.METRIC_INNER_PRODUCT)
    if kind == "hnsw":
        index.hnsw.efConstruction = cfg.ef_construction
    if not index.is_trained:
        size = min(n, cfg.train_size or max(10_000, 64 * ivf_lists(cfg, n)))
        sample = np.sort(np.random.default_rng(cfg.seed).choice(n, size, replace=False))
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivf.cp.seed = cfg.seed
        # index_factory turns on polysemous training, which only serves Hamming pre-filtering
        # (not used here) and takes tens of seconds even on a small sample.
        ivf.do_polysemous_training = False
        # faiss's way to run the coarse k-means on GPUs: a GPU flat index as its assigner.
        ivf.clustering_index = _to_gpu(faiss.IndexFlatIP(dim), cfg)
        index.train(vectors[sample])
    index.add(vectors)
    configure(index, cfg)
    return index


def _to_gpu(index, cfg: IndexConfig):
    """A copy of the flat ``index`` on all GPUs when faiss-gpu sees one and ``cfg.gpu``, else
    None."""
    import faiss

    if not cfg.gpu or not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0:
        return None
    return faiss.index_cpu_to_all_gpus(index)


def configure(index, cfg: IndexConfig) -> None:
    """Set the search-time knobs (nprobe, efSearch, refinement factor) of ``index``."""
    import faiss

    if isinstance(index, faiss.IndexRefine):
        index.k_factor = float(cfg.refine)
        configure(faiss.downcast_index(index.base_index), cfg)
    elif isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = cfg.ef_search
    else:
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.nprobe = cfg.nprobe


def describe(index) -> str:
    """faiss's own name of the index structure, e.g. ``IndexRefineFlat``."""
    return type(index).__name__


def search(index, queries: np.ndarray, k: int, cfg: IndexConfig | None = None):
    """(scores, ids) of the ``k`` best items per query row (unit rows, float32); a flat index
    searches on the GPUs when faiss-gpu sees one."""
    import faiss

    gpu = _to_gpu(index, cfg) if cfg is not None and isinstance(index, faiss.IndexFlat) else None
    return (gpu or index).search(queries, min(k, index.ntotal))


def serialize(index) -> bytes:
    import faiss

    return faiss.serialize_index(index).tobytes()


def deserialize(data: bytes):
    import faiss

    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
