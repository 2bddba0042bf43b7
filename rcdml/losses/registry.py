"""Losses by config name: ``loss.name`` picks a builder ``(cfg.loss, num_classes, embedding_size)``."""
from __future__ import annotations

from typing import Callable

from rcdml.config import LossConfig
from rcdml.losses.global_batch import GlobalBatchLoss
from rcdml.registry import Registry

LossBuilder = Callable[..., GlobalBatchLoss]
LOSSES: Registry[LossBuilder] = Registry("loss")


def register_loss(name: str) -> Callable[[LossBuilder], LossBuilder]:
    return LOSSES.register(name)


def loss_names() -> list[str]:
    return LOSSES.names()


def build_loss(cfg: LossConfig, num_classes: int, embedding_size: int) -> GlobalBatchLoss:
    """The loss named by ``cfg.name``; it sees the global batch (:class:`GlobalBatchLoss`)."""
    return LOSSES[cfg.name](cfg, num_classes, embedding_size)


def check_loss_config(cfg: LossConfig) -> None:
    LOSSES.check("loss.name", cfg.name)
