"""Evaluate a model on a run's retrieval protocol: queries against themselves (CUB, Cars, SOP) or
against a separate gallery (In-Shop)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rcdml.config import EvalConfig
from rcdml.data.datasets import ImageList
from rcdml.data.pipeline import EvalPipeline
from rcdml.distributed import is_distributed
from rcdml.eval.embed import embed_shard, full_precision, gather_in_order
from rcdml.eval.metrics import rank_stats, summarize
from rcdml.eval.ranking import RankStats


@dataclass
class EvalEmbeddings:
    """The embedded evaluation split, in dataset order; ``gallery`` is None when the queries
    retrieve among themselves."""
    query: torch.Tensor
    query_labels: torch.Tensor
    gallery: torch.Tensor | None = None
    gallery_labels: torch.Tensor | None = None


def embed_split(model: nn.Module, pipeline: EvalPipeline, images: ImageList, device: torch.device,
                amp_dtype: torch.dtype | None,
                equal_forwards: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings and labels of ``images`` (an ImageList), each image embedded on one rank
    (``equal_forwards``: see :func:`embed_shard`)."""
    if len(images) == 0:
        raise ValueError("the evaluation split has no images")
    emb, labels, idx = embed_shard(model, pipeline.eval_loader(images), device, amp_dtype,
                                   equal_forwards)
    return gather_in_order(emb, labels, idx, len(images))


def embed_eval_data(model: nn.Module, pipeline: EvalPipeline, device: torch.device,
                    amp_dtype: torch.dtype | None = None,
                    equal_forwards: bool = False) -> EvalEmbeddings:
    """``pipeline.data``'s query (and gallery) images, embedded across ranks; every rank gets
    all of them."""
    data = pipeline.data
    out = EvalEmbeddings(*embed_split(model, pipeline, data.query, device, amp_dtype,
                                      equal_forwards))
    if data.gallery is not None:
        out.gallery, out.gallery_labels = embed_split(model, pipeline, data.gallery, device,
                                                      amp_dtype, equal_forwards)
    return out


def rank(embeddings: EvalEmbeddings, cfg: EvalConfig) -> RankStats:
    """Every query's ranking numbers; under torchrun each rank ranks a share of the queries and
    all ranks return the same numbers."""
    with full_precision():
        return rank_stats(embeddings.query, embeddings.query_labels, embeddings.gallery,
                          embeddings.gallery_labels, with_map=cfg.map_at_r,
                          chunk_size=cfg.chunk_size, distributed=is_distributed())


def score(embeddings: EvalEmbeddings, cfg: EvalConfig) -> dict[str, float]:
    """The metrics ``cfg`` asks for (see :func:`rank`)."""
    return summarize(rank(embeddings, cfg), cfg.ks, cfg.map_at_r)
