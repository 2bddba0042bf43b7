"""Losses by config name: ``loss.name`` picks a builder ``(cfg.loss, num_classes, embedding_size)``."""
from __future__ import annotations

from typing import Callable

from torch import nn

from rcdml.registry import Registry

LossBuilder = Callable[..., nn.Module]
LOSSES: Registry[LossBuilder] = Registry("loss")


def register_loss(name: str) -> Callable[[LossBuilder], LossBuilder]:
    return LOSSES.register(name)


def loss_names() -> list[str]:
    return LOSSES.names()


def build_loss(cfg, num_classes: int, embedding_size: int) -> nn.Module:
    """The loss module named by ``cfg.name``; it gathers the global batch itself under DDP."""
    return LOSSES[cfg.name](cfg, num_classes, embedding_size)
