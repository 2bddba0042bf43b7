"""Optimizer with per-part learning rates, and the epoch-level schedule.

The schedule is a pure function of (epoch, total epochs) applied to the config's base learning
rates, so a resumed run takes the current config's learning rates and schedule from the resume
point (a longer cosine run recomputes its curve instead of restarting it from zero).
"""
from __future__ import annotations

import fnmatch
import math

import torch
from torch import nn

from rcdml.config import Config, ConfigError, OptimConfig
from rcdml.models.timm_backbones import FAMILY as TIMM


def base_lrs(cfg: OptimConfig) -> dict[str, float]:
    """Backbone at ``lr``, embedding head at ``lr * head_lr_mult``, loss parameters (proxies) at
    ``lr * loss_lr_mult``."""
    return {"backbone": cfg.lr, "head": cfg.lr * cfg.head_lr_mult, "loss": cfg.lr * cfg.loss_lr_mult}


def check_optim_config(cfg: Config) -> None:
    if cfg.optim.layer_decay < 1.0 and not cfg.model.backbone.startswith(f"{TIMM}:"):
        raise ConfigError(f"optim.layer_decay: {cfg.optim.layer_decay} needs a timm backbone "
                          f"(model.backbone: timm:<name>), whose layers timm knows; allowed with "
                          f"{cfg.model.backbone}: 1.0")


def _no_weight_decay(model: nn.Module, cfg: OptimConfig) -> set[str]:
    """Names of the parameters of ``model`` (an EmbeddingNet) that ``optim.no_weight_decay``
    exempts from weight decay."""
    named = dict(model.named_parameters())
    if cfg.no_weight_decay is not None:
        return {n for n in named if any(fnmatch.fnmatchcase(n, p) for p in cfg.no_weight_decay)}
    if not model.timm:
        return set()
    # As timm's create_optimizer: a model without no_weight_decay() lists nothing.
    listed = {f"backbone.{n}" for n in getattr(model.backbone, "no_weight_decay", set)()}
    return {n for n, p in named.items() if p.ndim <= 1 or n in listed}


def _layer_scales(model: nn.Module, cfg: OptimConfig) -> dict[str, tuple[int, float]]:
    """{backbone parameter name: (layer, lr scale)} under ``optim.layer_decay`` (empty at 1.0).
    The layers are timm's ``group_matcher`` groups; timm's own ``param_groups_layer_decay`` is not
    used because it returns unnamed groups of a whole timm model, while here the backbone is one
    part of the network and the embedding head is its top layer."""
    if cfg.layer_decay == 1.0:
        return {}
    from timm.models import group_parameters

    backbone = model.backbone
    layers = group_parameters(backbone, backbone.group_matcher(coarse=False), reverse=True)
    top = max(layers.values()) + 1
    return {f"backbone.{n}": (i, cfg.layer_decay ** (top - i)) for n, i in layers.items()}


def param_groups(model: nn.Module, loss: nn.Module, cfg: OptimConfig) -> list[dict]:
    """The groups of :func:`base_lrs`, split further by ``optim.layer_decay`` (groups
    ``backbone.layerN`` with their ``lr_scale``) and ``optim.no_weight_decay`` (groups
    ``*.no_decay``, weight decay 0). The part a group belongs to is its name up to the first dot.
    BatchNorm parameters frozen by ``model.freeze_bn`` (without ``model.train_bn_affine``) never
    train and are left out."""
    lrs = base_lrs(cfg)
    no_decay = _no_weight_decay(model, cfg)
    layers = _layer_scales(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    groups: dict[str, dict] = {}
    parts = (("backbone", model.backbone_parameters()), ("head", model.head_parameters()))
    for part, params in parts:
        for p in params:
            name = names[id(p)]
            layer, scale = layers.get(name, (None, 1.0))
            key = part + (f".layer{layer}" if layer is not None else "") + (
                ".no_decay" if name in no_decay else "")
            group = groups.setdefault(key, {
                "name": key, "params": [], "lr": lrs[part] * scale, "lr_scale": scale,
                "weight_decay": 0.0 if name in no_decay else cfg.weight_decay})
            group["params"].append(p)
    groups["loss"] = {"name": "loss", "params": list(loss.parameters()), "lr": lrs["loss"],
                      "lr_scale": 1.0, "weight_decay": cfg.weight_decay}
    return [g for g in groups.values() if g["params"]]


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
        group["initial_lr"] = lrs[group["name"].split(".")[0]] * group.get("lr_scale", 1.0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(cfg, epoch, epochs),
                                             last_epoch=start_epoch - 1)
