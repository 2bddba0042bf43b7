"""The loss contract and the global batch every loss sees: shape checks, the all-gather with
gradient, value checks, fp32.

Shape errors are raised before any collective. Value errors (labels outside the class range,
NaN/inf embeddings, an empty global batch) are raised after the gather, so every rank raises the
same error instead of leaving the others waiting in a collective; together they cost one host
sync, which the trainer needs anyway to skip or stop on NaN/inf embeddings before the step.
"""
from __future__ import annotations

import torch
from torch import nn

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
                 embedding_size: int, who: str, dtype: torch.dtype = torch.float32,
                 count_classes: bool = False) -> tuple:
    """Checked (embeddings in ``dtype`` with gradient, int64 labels) of all ranks, in rank order;
    with ``count_classes``, also the number of distinct labels, read with the checks (so
    :func:`present_classes` needs no sync of its own)."""
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
    read = [y.min(), y.max(), torch.isfinite(x).logical_not().sum()]
    if count_classes:
        # Clamped: out-of-range labels are reported below, from the same read.
        seen = torch.zeros(num_classes, dtype=torch.bool, device=y.device)
        read.append(seen.index_fill_(0, y.clamp(0, num_classes - 1), True).sum())
    lowest, highest, non_finite, *count = torch.stack(read).tolist()
    if lowest < 0 or highest >= num_classes:
        raise ValueError(f"{who}: labels must lie in [0, {num_classes}) (num_classes={num_classes}), "
                         f"got labels from {lowest} to {highest}")
    if non_finite:
        raise NonFiniteEmbeddings(f"{who}: embeddings contain {non_finite} NaN or inf values")
    return (x, y, *count)


def present_classes(labels: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(labels, return_inverse=True)`` of 1-d ``labels`` holding ``count`` distinct
    values, without the host sync that unique costs on a GPU (its output size depends on the
    data)."""
    ordered, order = labels.sort()
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    inverse = torch.empty_like(labels).scatter_(0, order, first.cumsum(0) - 1)
    # Every write to a class's slot carries that class's label.
    return labels.new_empty(count).scatter_(0, inverse, labels), inverse


class GlobalBatchLoss(nn.Module):
    """Base class of every loss: ``forward(embeddings, labels)`` takes this rank's batch, checks
    it, gathers all ranks' batches with gradient (:func:`global_batch`) and calls
    :meth:`batch_loss` on the global batch, in fp32 (or wider) and outside autocast, since losses
    exponentiate scaled cosines. So a loss is its formula, and W ranks update exactly like one
    process on the concatenated batch (docs/method.md, "Distributed invariants").

    The contract the trainer relies on, besides ``forward``:

    * ``num_classes``, ``embedding_size``: the label range and the embedding width it accepts;
    * ``terms``: the last step's unweighted loss terms, detached, for logging (empty: the loss
      is logged as its total only);
    * ``proxies``: the (num_classes, embedding_size) learnable proxies, or None for a loss
      without them (shown as the proxy-proxy similarity histogram).

    A subclass sets ``proxies`` (a parameter, or a property) and implements :meth:`batch_loss`.
    One that sets ``counts_classes`` gets the global batch's number of distinct labels as a third
    argument of :meth:`batch_loss` (for :func:`present_classes`).
    """

    counts_classes = False

    def __init__(self, num_classes: int, embedding_size: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embedding_size = embedding_size
        self.terms: dict[str, torch.Tensor] = {}

    def batch_loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of the checked global batch (same scalar on every rank)."""
        raise NotImplementedError

    def compute_dtype(self, embeddings: torch.Tensor) -> torch.dtype:
        """The dtype of the global batch: the widest of the embeddings', the proxies' and fp32."""
        return compute_dtype(embeddings, *([] if self.proxies is None else [self.proxies]))

    @property
    def display_name(self) -> str:
        """How errors name this loss."""
        return type(self).__name__

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(embeddings.device.type, enabled=False):
            batch = global_batch(embeddings, labels, self.num_classes, self.embedding_size,
                                 self.display_name, self.compute_dtype(embeddings),
                                 self.counts_classes)
            return self.batch_loss(*batch)
