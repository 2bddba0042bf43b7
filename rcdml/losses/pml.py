"""Baselines from pytorch-metric-learning (PML), with RCDML's global-batch semantics.

PML's ``DistributedLossWrapper`` multiplies the loss by the world size to undo DDP's gradient
averaging, which also multiplies the gradient of the proxies (never gathered) by the world size.
Here the batch goes through the same all-gather as :class:`~rcdml.losses.RCDMLLoss`: every rank
computes the loss (and mines pairs or triplets) on the global batch in rank order, the backbone
gets the exact gradient through the gather's summing backward and the proxies the plain gradient
of the global loss, so W ranks update exactly like one process on the concatenated batch.

The recipes follow the reference implementation's baselines: Proxy-NCA with softmax scale 32,
Multi-Similarity with its miner, triplet with semi-hard mining, contrastive with a 0.5 negative
margin (``loss.*`` keys in the config).
"""
from __future__ import annotations

import importlib

import torch
from torch import nn

from rcdml.config import ConfigError, LossConfig
from rcdml.losses.global_batch import GlobalBatchLoss, compute_dtype
from rcdml.losses.registry import register_loss


def _pml(name: str):
    """``pytorch_metric_learning`` with its losses and miners, imported only when a baseline is
    built, so RCDML trains where the package is absent (the GPU check's machine)."""
    try:
        importlib.import_module("pytorch_metric_learning.losses")
        importlib.import_module("pytorch_metric_learning.miners")
        return importlib.import_module("pytorch_metric_learning")
    except ImportError:
        raise ConfigError(f"loss.name: {name} needs pytorch-metric-learning, which is not "
                          "installed; install it with pip install pytorch-metric-learning, or use "
                          "loss.name=rcdml") from None


class PMLLoss(GlobalBatchLoss):
    """A PML loss (and optional miner) on the global batch.

    A proxy-based PML loss keeps its proxies as the parameter ``loss_fn.proxies``, so they are
    parameters of this module: the optimizer's loss group trains them, DDP keeps them identical
    and checkpoints hold them; :attr:`proxies` exposes them. ``terms`` is empty: PML's loss is
    logged as the total.
    """

    def __init__(self, loss_fn: nn.Module, num_classes: int, embedding_size: int,
                 miner: nn.Module | None = None) -> None:
        super().__init__(num_classes, embedding_size)
        self.loss_fn = loss_fn
        self.miner = miner

    @property
    def proxies(self) -> torch.Tensor | None:
        return getattr(self.loss_fn, "proxies", None)

    @property
    def display_name(self) -> str:
        return type(self.loss_fn).__name__

    def compute_dtype(self, embeddings: torch.Tensor) -> torch.dtype:
        # PML casts its proxies to the embeddings' dtype in place: embeddings take the proxies'.
        return compute_dtype(embeddings if self.proxies is None else self.proxies)

    def batch_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mined = self.miner(x, y) if self.miner is not None else None
        return self.loss_fn(x, y, mined)


@register_loss("proxy_anchor")
def _proxy_anchor(cfg: LossConfig, num_classes: int, embedding_size: int) -> PMLLoss:
    pml = _pml("proxy_anchor")
    loss_fn = pml.losses.ProxyAnchorLoss(num_classes, embedding_size, margin=cfg.margin,
                                         alpha=cfg.alpha)
    return PMLLoss(loss_fn, num_classes, embedding_size)


@register_loss("proxy_nca")
def _proxy_nca(cfg: LossConfig, num_classes: int, embedding_size: int) -> PMLLoss:
    pml = _pml("proxy_nca")
    loss_fn = pml.losses.ProxyNCALoss(num_classes, embedding_size, softmax_scale=cfg.softmax_scale)
    return PMLLoss(loss_fn, num_classes, embedding_size)


@register_loss("multi_similarity")
def _multi_similarity(cfg: LossConfig, num_classes: int, embedding_size: int) -> PMLLoss:
    pml = _pml("multi_similarity")
    loss_fn = pml.losses.MultiSimilarityLoss(alpha=cfg.ms_alpha, beta=cfg.ms_beta, base=cfg.ms_base)
    miner = pml.miners.MultiSimilarityMiner(epsilon=cfg.ms_epsilon)
    return PMLLoss(loss_fn, num_classes, embedding_size, miner)


@register_loss("triplet")
def _triplet(cfg: LossConfig, num_classes: int, embedding_size: int) -> PMLLoss:
    pml = _pml("triplet")
    loss_fn = pml.losses.TripletMarginLoss(margin=cfg.triplet_margin)
    miner = pml.miners.TripletMarginMiner(margin=cfg.triplet_margin, type_of_triplets="semihard")
    return PMLLoss(loss_fn, num_classes, embedding_size, miner)


@register_loss("contrastive")
def _contrastive(cfg: LossConfig, num_classes: int, embedding_size: int) -> PMLLoss:
    pml = _pml("contrastive")
    loss_fn = pml.losses.ContrastiveLoss(pos_margin=cfg.contrastive_pos_margin,
                                     neg_margin=cfg.contrastive_neg_margin)
    return PMLLoss(loss_fn, num_classes, embedding_size)
