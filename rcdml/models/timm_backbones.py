"""Any timm model as a backbone: ``model.backbone: timm:<name>`` (optionally ``<name>.<tag>``,
e.g. ``timm:vit_small_patch16_224.dino``), built by ``timm.create_model`` without classifier and
global pool, with ``model.timm_kwargs`` passed through. The embedding head and pooling stay
rcdml's (:mod:`rcdml.models.pooling`).

A timm model's ``forward_features`` gives either a feature map (N, C, H, W), or (N, H, W, C)
where its ``output_fmt`` says NHWC (Swin), or a token sequence (N, T, D) whose first
``num_prefix_tokens`` are the class / register / distillation tokens (ViT, DeiT, EVA, ...). The
input normalisation is the one of the model's pretrained config (its tag's: DINO weights were
trained on ImageNet-standardised inputs, the default ``vit_small_patch16_224`` tag on inputs in
[-1, 1]).
"""
from __future__ import annotations

import difflib
import functools
import json
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from rcdml.config import ConfigError
from rcdml.models.pooling import Layout
from rcdml.models.registry import BackboneSpec, register_backbone_family

FAMILY = "timm"


@dataclass(frozen=True)
class TimmInput:
    """The inputs a timm model's pretrained weights expect: RGB in [0, 1] standardised by
    ``mean``/``std``, resized with ``interpolation`` (timm's data config)."""
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str


def create(name: str, kwargs: Mapping[str, Any], pretrained: bool = False) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=pretrained, num_classes=0, global_pool="", **kwargs)


@functools.lru_cache(maxsize=16)
def _meta_model(name: str, kwargs_json: str) -> nn.Module:
    """The model without memory or initialisation work (parameters on the meta device): what its
    structure says (widths, tokens, data config) costs no more than its constructor's Python."""
    with torch.device("meta"):
        # Eval mode: BatchNorm on a one-image probe batch of 1x1 maps has no batch statistics.
        return create(name, json.loads(kwargs_json)).eval()


def meta_model(name: str, kwargs: Mapping[str, Any]) -> nn.Module:
    return _meta_model(name, json.dumps(dict(kwargs), sort_keys=True))


def timm_input(name: str) -> TimmInput:
    """timm's data config of ``name`` (``model.backbone`` without ``timm:``)."""
    from timm.data import resolve_model_data_config

    config = resolve_model_data_config(meta_model(name, {}))
    return TimmInput(tuple(config["mean"]), tuple(config["std"]), config["interpolation"])


def features(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The trunk's output, (N, C, H, W) or (N, T, D)."""
    out = backbone.forward_features(images)
    if getattr(backbone, "output_fmt", "NCHW") == "NHWC":
        out = out.permute(0, 3, 1, 2)
    return out


def layout(backbone: nn.Module, out: torch.Tensor) -> Layout:
    if out.ndim == 4:
        return Layout(tokens=False)
    prefix = int(getattr(backbone, "num_prefix_tokens", 0))
    return Layout(tokens=True, prefix=prefix, cls=getattr(backbone, "cls_token", None) is not None)


def check_timm_backbone(name: str, kwargs: Mapping[str, Any], image_size: int) -> Layout:
    """The layout of ``timm:<name>`` on ``image_size`` px inputs, found by a forward pass on the
    meta device (shapes only); a ConfigError naming the key for a name timm does not know,
    arguments it refuses, or inputs the model cannot take."""
    import timm

    key = "model.backbone"
    if not name:
        raise ConfigError(f"{key}: timm: needs a model name, e.g. timm:vit_small_patch16_224; "
                          "allowed: any of timm.list_models()")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=3)
        hint = f" (close: {', '.join(close)})" if close else ""
        raise ConfigError(f"{key}: timm:{name} is not a timm model{hint}; allowed: any of "
                          "timm.list_models()")
    for arg in kwargs:
        if not arg.isidentifier():
            # {img_size:16} is YAML for the key "img_size:16" (without a value), which timm,
            # dropping arguments that are None, would ignore.
            raise ConfigError(f"model.timm_kwargs: {arg!r} is not an argument name; write "
                              "{img_size: 16} with a space after each colon")
    try:
        model = meta_model(name, kwargs)
    except (TypeError, ValueError, RuntimeError, AssertionError, KeyError) as e:
        raise ConfigError(f"model.timm_kwargs: timm.create_model({name!r}, **{dict(kwargs)}) "
                          f"failed: {_first_line(e)}") from None
    try:
        with torch.device("meta"):
            out = features(model, torch.empty(1, 3, image_size, image_size))
    except (RuntimeError, AssertionError, ValueError) as e:
        raise ConfigError(f"data.image_size: timm:{name} does not take {image_size} px inputs "
                          f"({_first_line(e)}); set model.timm_kwargs.img_size or data.image_size"
                          ) from None
    if out.ndim not in (3, 4):
        raise ConfigError(f"{key}: timm:{name} gives features of shape {tuple(out.shape)}; allowed: "
                          "timm models whose forward_features gives a feature map or tokens")
    return layout(model, out)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@register_backbone_family(FAMILY)
def timm_backbone(name: str, kwargs: Mapping[str, Any]) -> BackboneSpec:
    def build(imagenet: bool) -> nn.Module:
        # imagenet: timm's own pretrained weights of the name's tag (a download, cached by
        # timm / the Hugging Face hub).
        return create(name, kwargs, pretrained=imagenet)

    return BackboneSpec(build, meta_model(name, kwargs).num_features, f"{FAMILY}:{name}")
