"""The global batch a loss sees: shape checks, the all-gather with gradient, value checks.

Shape errors are raised before any collective. Value errors (labels outside the class range,
NaN/inf embeddings, an empty global batch) are raised after the gather, so every rank raises the
same error instead of leaving the others waiting in a collective; together they cost one host
sync.
"""
from __future__ import annotations

import torch

from rcdml.distributed import all_gather_batch


class NonFiniteEmbeddings(ValueError):
    """The global batch holds NaN/inf embeddings (raised on every rank alike); the trainer treats
    it like a non-finite loss (``train.on_nonfinite``)."""


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The widest dtype of ``tensors`` and fp32: losses exponentiate scaled cosines."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def global_batch(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int,
                 embedding_size: int, who: str,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked (embeddings in ``dtype`` with gradient, int64 labels) of all ranks, in rank order."""
    if embeddings.dim() != 2:
        raise ValueError(f"{who}: embeddings must be a (batch, {embedding_size}) matrix, got shape "
                         f"{tuple(embeddings.shape)}")
    if embeddings.shape[1] != embedding_size:
        raise ValueError(f"{who}: embedding size mismatch: embeddings have {embeddings.shape[1]} "
                         f"columns, the loss was built for embedding_size={embedding_size}")
    if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"{who}: expected {embeddings.shape[0]} labels (one per embedding), got "
                         f"shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{who}: labels must be integer class indices, got dtype {labels.dtype}")
    x, y = all_gather_batch(embeddings.to(dtype), labels.long())
    if x.shape[0] == 0:
        raise ValueError(f"{who}: empty batch (no embeddings on any rank)")
    lowest, highest, non_finite = torch.stack(
        [y.min(), y.max(), torch.isfinite(x).logical_not().sum()]).tolist()
    if lowest < 0 or highest >= num_classes:
        raise ValueError(f"{who}: labels must lie in [0, {num_classes}) (num_classes={num_classes}), "
                         f"got labels from {lowest} to {highest}")
    if non_finite:
        raise NonFiniteEmbeddings(f"{who}: embeddings contain {non_finite} NaN or inf values")
    return x, y
