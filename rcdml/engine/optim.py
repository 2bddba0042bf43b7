"""Optimizer with per-part learning rates, and the epoch-level schedule.

The schedule is a pure function of (epoch, total epochs) applied to the config's base learning
rates, so a resumed run takes the current config's learning rates and schedule from the resume
point (a longer cosine run recomputes its curve instead of restarting it from zero).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from rcdml.config import OptimConfig


def base_lrs(cfg: OptimConfig) -> dict[str, float]:
    """Backbone at ``lr``, embedding head at ``lr * head_lr_mult``, loss parameters (proxies) at
    ``lr * loss_lr_mult``."""
    return {"backbone": cfg.lr, "head": cfg.lr * cfg.head_lr_mult, "loss": cfg.lr * cfg.loss_lr_mult}


def param_groups(model: nn.Module, loss: nn.Module, cfg: OptimConfig) -> list[dict]:
    """The groups of :func:`base_lrs`. Frozen-BatchNorm parameters never train and are left out."""
    lrs = base_lrs(cfg)
    groups = [
        {"name": "backbone", "params": model.backbone_parameters(), "lr": lrs["backbone"]},
        {"name": "head", "params": model.head_parameters(), "lr": lrs["head"]},
        {"name": "loss", "params": list(loss.parameters()), "lr": lrs["loss"]},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: OptimConfig, epoch: int, epochs: int) -> float:
    """Multiplier of the base learning rates in ``epoch`` (from 0) of a run of ``epochs``."""
    if cfg.scheduler == "step":
        return cfg.gamma ** (epoch // cfg.step_size)
    if cfg.scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / epochs))
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, epochs: int,
                    start_epoch: int = 0):
    """Stepped once per epoch; sets the learning rates of ``start_epoch`` now.

    The base learning rates come from ``cfg``, not from the optimizer: a resumed optimizer's
    state_dict carries the old run's learning rates, which must not survive a changed config.
    """
    lrs = base_lrs(cfg)
    for group in optimizer.param_groups:
        group["initial_lr"] = lrs[group["name"]]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(cfg, epoch, epochs),
                                             last_epoch=start_epoch - 1)
