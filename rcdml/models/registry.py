"""Backbones by config name (``model.backbone``), one file per architecture family.

A backbone maps an image batch to a feature map (N, C, H, W); the embedding head is added by
:mod:`rcdml.models.embedding`. Each entry states how its inputs are normalised, because
BN-Inception expects BGR pixels in [0, 255] minus a mean while torchvision models expect
ImageNet-standardised RGB.
"""
from __future__ import annotations

from dataclasses import dataclass
import os
from typing import Callable, Literal

from torch import nn

from rcdml.config import ConfigError, ModelConfig
from rcdml.registry import Registry

InputStyle = Literal["imagenet", "bn_inception"]


@dataclass(frozen=True)
class BackboneSpec:
    # Called with ``imagenet=True`` to load ImageNet weights (this downloads on first use).
    build: Callable[[bool], nn.Module]
    channels: int
    input_style: InputStyle


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def register_backbone(name: str, channels: int, input_style: InputStyle = "imagenet"):
    return BACKBONES.register(name, lambda build: BackboneSpec(build, channels, input_style))


def backbone_names() -> list[str]:
    return BACKBONES.names()


def backbone_spec(name: str) -> BackboneSpec:
    return BACKBONES[name]


def check_model_config(cfg: ModelConfig) -> None:
    BACKBONES.check("model.backbone", cfg.backbone)
    pretrained = cfg.pretrained
    if pretrained not in ("none", "imagenet") and not os.path.isfile(os.path.expanduser(pretrained)):
        raise ConfigError(f"model.pretrained: {pretrained} is not a file; allowed: none, imagenet, "
                          "or the path of a backbone state_dict")
