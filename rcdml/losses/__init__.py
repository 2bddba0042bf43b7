"""Metric-learning losses, chosen by ``loss.name``; each sees the global batch under DDP."""
from rcdml.losses import pml as _pml  # noqa: F401  (registers the PML baselines)
from rcdml.losses import rcdml as _rcdml  # noqa: F401  (registers "rcdml")
from rcdml.losses.global_batch import GlobalBatchLoss, NonFiniteEmbeddings
from rcdml.losses.pml import PMLLoss
from rcdml.losses.rcdml import RCDMLLoss
from rcdml.losses.registry import build_loss, loss_names, register_loss

__all__ = ["GlobalBatchLoss", "NonFiniteEmbeddings", "PMLLoss", "RCDMLLoss", "build_loss", "loss_names", "register_loss"]
