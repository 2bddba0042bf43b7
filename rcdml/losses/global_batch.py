"""The loss contract and the global batch every loss sees: shape checks, the all-gather with
gradient, value checks, fp32.

Shape errors are raised before any collective. Value errors (labels outside the class range,
NaN/inf embeddings) come from the gathered batch, so every rank raises the same error instead of
leaving the others waiting in a collective. Reading them costs a host sync: a standalone loss
reads them at once; the trainer defers them (:attr:`GlobalBatchLoss.defer_checks`) into the
step's one read, after the backward pass is queued and before the optimizer step.
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
                 embedding_size: int, who: str, dtype: torch.dtype = torch.float32) -> tuple:
    """Shape-checked (embeddings in ``dtype`` with gradient, int64 labels) of all ranks, in rank
    order; :func:`batch_checks` and :meth:`GlobalBatchLoss.raise_for` check their values."""
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
    return x, y


def batch_checks(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[lowest label, highest label, count of NaN/inf embedding values]`` of a global batch, on
    its device (no read)."""
    return torch.stack([y.min(), y.max(), torch.isfinite(x).logical_not().sum()])


def present_classes(labels: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
    """``torch.unique(labels, return_inverse=True)`` of 1-d ``labels``, padded to ``size`` slots
    (at least the number of distinct labels), so that no shape depends on the data (unique's
    would cost a host sync on a GPU). Returns ``(present, inverse, valid, count)``: the distinct
    labels in ascending order then zeros, each label's slot, which slots hold a label, and their
    number as a 0-d tensor."""
    ordered, order = labels.sort()
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    slot = first.cumsum(0) - 1
    inverse = torch.empty_like(labels).scatter_(0, order, slot)
    count = slot[-1] + 1
    # Every write to a class's slot carries that class's label.
    present = labels.new_zeros(size).scatter_(0, inverse, labels)
    return present, inverse, torch.arange(size, device=labels.device) < count, count


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
    """

    #: Set by a caller that reads :attr:`checks` itself, with its own host read (the trainer, in
    #: the step's one read): ``forward`` then leaves the value checks unread and clamps the
    #: labels into range, so a bad batch computes a loss the caller discards instead of faulting.
    defer_checks = False

    def __init__(self, num_classes: int, embedding_size: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embedding_size = embedding_size
        self.terms: dict[str, torch.Tensor] = {}
        #: The last global batch's :func:`batch_checks`, when ``defer_checks`` left them unread.
        self.checks: torch.Tensor | None = None

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
            x, y = global_batch(embeddings, labels, self.num_classes, self.embedding_size,
                                self.display_name, self.compute_dtype(embeddings))
            checks = batch_checks(x, y)
            if self.defer_checks:
                self.checks, y = checks, y.clamp(0, self.num_classes - 1)
            else:
                self.raise_for(checks.tolist())
            return self.batch_loss(x, y)

    def raise_for(self, values) -> None:
        """Raise the error that the values of :func:`batch_checks`, read on the host, show."""
        lowest, highest, non_finite = (int(v) for v in values)
        who, num_classes = self.display_name, self.num_classes
        if lowest < 0 or highest >= num_classes:
            raise ValueError(f"{who}: labels must lie in [0, {num_classes}) "
                             f"(num_classes={num_classes}), got labels from {lowest} to {highest}")
        if non_finite:
            raise NonFiniteEmbeddings(f"{who}: embeddings contain {non_finite} NaN or inf values")
