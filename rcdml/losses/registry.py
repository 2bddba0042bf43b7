"""Losses by config name: ``loss.name`` picks a builder ``(cfg.loss, num_classes, embedding_size)``."""
from __future__ import annotations

from typing import Callable

from torch import nn

LossBuilder = Callable[..., nn.Module]
_LOSSES: dict[str, LossBuilder] = {}


def register_loss(name: str) -> Callable[[LossBuilder], LossBuilder]:
    def add(builder: LossBuilder) -> LossBuilder:
        if name in _LOSSES:
            raise KeyError(f"loss {name!r} is registered twice")
        _LOSSES[name] = builder
        return builder
    return add


def loss_names() -> list[str]:
    return sorted(_LOSSES)


def build_loss(cfg, num_classes: int, embedding_size: int) -> nn.Module:
    """The loss module named by ``cfg.name``; it gathers the global batch itself under DDP."""
    return _LOSSES[cfg.name](cfg, num_classes, embedding_size)
