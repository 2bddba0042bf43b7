"""Optimizer with per-part learning rates, and the epoch-level schedule."""
from __future__ import annotations

import torch
from torch import nn

from rcdml.config import OptimConfig


def param_groups(model: nn.Module, loss: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Backbone at ``lr``, embedding head at ``lr * head_lr_mult``, loss parameters (proxies) at
    ``lr * loss_lr_mult``. Frozen-BatchNorm parameters never train and are left out."""
    groups = [
        {"name": "backbone", "params": model.backbone_parameters(), "lr": cfg.lr},
        {"name": "head", "params": list(model.head.parameters()), "lr": cfg.lr * cfg.head_lr_mult},
        {"name": "loss", "params": list(loss.parameters()), "lr": cfg.lr * cfg.loss_lr_mult},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, epochs: int):
    """Stepped once per epoch."""
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
