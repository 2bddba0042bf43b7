"""Evaluate a model on a run's retrieval protocol (queries against themselves or a gallery)."""
from __future__ import annotations

import torch
from torch import nn

from rcdml.eval.embed import embed_shard, gather_in_order
from rcdml.eval.recall import recall_at_k


def embed_split(model: nn.Module, pipeline, images, device: torch.device,
                amp_dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
    emb, labels, idx = embed_shard(model, pipeline.eval_loader(images), device, amp_dtype)
    return gather_in_order(emb, labels, idx, len(images))


def evaluate_retrieval(model: nn.Module, pipeline, device: torch.device, cfg,
                       amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """``{"R@k": recall}`` for ``cfg.ks`` (an EvalConfig); the same numbers on every rank."""
    data = pipeline.data
    query, query_labels = embed_split(model, pipeline, data.query, device, amp_dtype)
    gallery = gallery_labels = None
    if data.gallery is not None:
        gallery, gallery_labels = embed_split(model, pipeline, data.gallery, device, amp_dtype)
    recalls = recall_at_k(query, query_labels, cfg.ks, gallery, gallery_labels, cfg.chunk_size)
    return {f"R@{k}": v for k, v in recalls.items()}
