"""Backbones by config name (``model.backbone``), one file per architecture family.

A backbone maps an image batch to a feature map (N, C, H, W) or, for transformers, a token
sequence (N, T, D); pooling and the embedding head are added by :mod:`rcdml.models.embedding`.
Each entry states how its inputs are normalised (its input style), because BN-Inception expects
BGR pixels in [0, 255] minus a mean, torchvision models ImageNet-standardised RGB, and each timm
model what its pretrained config says.

A name is either a backbone registered on its own (``resnet18``) or ``family:variant`` for a
family that builds any of its members (``timm:vit_small_patch16_224``).
"""
from __future__ import annotations

from dataclasses import dataclass
import os
from typing import Any, Callable, Mapping

from torch import nn

from rcdml.config import Config, ConfigError, ModelConfig
from rcdml.config.checks import check_choice
from rcdml.models.inputs import Normalization, normalization
from rcdml.registry import Registry


@dataclass(frozen=True)
class BackboneSpec:
    # Called with ``imagenet=True`` to load ImageNet weights (this downloads on first use).
    build: Callable[[bool], nn.Module]
    channels: int
    # imagenet | bn_inception | timm:<name> (rcdml.models.inputs.normalization)
    input_style: str


# name -> (variant, model.timm_kwargs) -> spec; a plain backbone has no variant.
BACKBONES: Registry[Callable[[str, Mapping[str, Any]], BackboneSpec]] = Registry("backbone")
_FAMILIES: set[str] = set()


def register_backbone(name: str, channels: int, input_style: str = "imagenet"):
    def entry(build):
        spec = BackboneSpec(build, channels, input_style)
        return lambda variant, kwargs: spec
    return BACKBONES.register(name, entry)


def register_backbone_family(name: str):
    """Registers ``function(variant, kwargs) -> BackboneSpec`` for the names ``name:variant``."""
    _FAMILIES.add(name)
    return BACKBONES.register(name)


def backbone_names() -> list[str]:
    return [f"{n}:<name>" if n in _FAMILIES else n for n in BACKBONES.names()]


def backbone_spec(name: str, kwargs: Mapping[str, Any] | None = None) -> BackboneSpec:
    family, _, variant = name.partition(":")
    return BACKBONES[family](variant, kwargs or {})


def input_normalization(cfg: ModelConfig) -> Normalization:
    """The input ``cfg``'s network expects, for the data pipelines and the exported model."""
    return normalization(backbone_spec(cfg.backbone, cfg.timm_kwargs).input_style)


def check_model_config(cfg: Config) -> None:
    """``model.backbone`` with its pooling and pretrained weights, and what ``train`` asks of the
    backbone's kind."""
    from rcdml.models.pooling import Layout, check_pooling
    from rcdml.models.timm_backbones import FAMILY, check_timm_backbone
    from rcdml.models.weights import PACKAGE, PACKAGES, package_weights

    model = cfg.model
    family, sep, variant = model.backbone.partition(":")
    if family not in BACKBONES or bool(sep) != (family in _FAMILIES):
        check_choice("model.backbone", model.backbone, backbone_names())
    if family == FAMILY:
        layout = check_timm_backbone(variant, model.timm_kwargs, cfg.data.image_size)
    else:
        if model.timm_kwargs:
            raise ConfigError(f"model.timm_kwargs: {model.timm_kwargs} is only read by timm "
                              f"backbones (model.backbone: timm:<name>), not {model.backbone}")
        layout = Layout(tokens=False)
    check_pooling(model.pooling, layout, model.backbone)
    if cfg.train.channels_last and layout.tokens:
        raise ConfigError(f"train.channels_last: true applies to convolutional backbones, not "
                          f"{model.backbone}, whose output is tokens; allowed: false")
    if cfg.train.grad_checkpointing and family != FAMILY:
        raise ConfigError(f"train.grad_checkpointing: true needs a timm backbone (model.backbone: "
                          f"timm:<name>); allowed with {model.backbone}: false")
    if model.train_bn_affine and not model.freeze_bn:
        raise ConfigError("model.train_bn_affine: true applies with model.freeze_bn: true (false "
                          "trains BatchNorm's statistics and affine parameters both); allowed "
                          "with model.freeze_bn: false: false")
    pretrained = model.pretrained
    if pretrained.startswith(PACKAGE):
        package_weights(pretrained, model.backbone)
    elif pretrained not in ("none", "imagenet") and not os.path.isfile(os.path.expanduser(pretrained)):
        raise ConfigError(f"model.pretrained: {pretrained} is not a file; allowed: none, imagenet, "
                          f"{PACKAGE}<distribution> ({', '.join(PACKAGES)}), or the path of a "
                          "backbone state_dict")
