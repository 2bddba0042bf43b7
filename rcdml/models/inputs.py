"""The input a backbone expects, as one object: :class:`Normalization` (channel order, mean, std,
resize filter). The model declares it (:func:`rcdml.models.input_normalization`); the torchvision
and DALI pipelines, the deploy commands' loader, the exported model and its parity check all
take it from there, so they cannot disagree about what the network sees."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# BN-Inception was trained on BGR pixels in [0, 255] minus this per-channel (B, G, R) mean.
BN_INCEPTION_MEAN_BGR = (104.0, 117.0, 128.0)


@dataclass(frozen=True)
class Normalization:
    """``out[c] = (pixel[c] - mean[c]) / std[c]`` on 0..255 pixels in the channel order of the
    network input (BGR when ``bgr``), resized with ``interpolation`` (bilinear | bicubic |
    nearest)."""
    bgr: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"


def normalization(input_style: str) -> Normalization:
    """The inputs of a backbone's input style (:class:`rcdml.models.registry.BackboneSpec`):
    imagenet, bn_inception, or ``timm:<name>``, whose pretrained config (timm's data config)
    gives the mean, std and resize filter its weights were trained with."""
    if input_style == "bn_inception":
        return Normalization(True, BN_INCEPTION_MEAN_BGR, (1.0, 1.0, 1.0))
    if input_style == "imagenet":
        return Normalization(False, tuple(255.0 * m for m in IMAGENET_MEAN),
                             tuple(255.0 * s for s in IMAGENET_STD))
    family, _, name = input_style.partition(":")
    if family == "timm" and name:
        from rcdml.models.timm_backbones import timm_input

        found = timm_input(name)
        return Normalization(False, tuple(255.0 * m for m in found.mean),
                             tuple(255.0 * s for s in found.std), found.interpolation)
    raise ValueError(f"unknown input style {input_style!r}; allowed: imagenet, bn_inception, "
                     "timm:<name>")


class Normalize(nn.Module):
    """RGB in [0, 1], one image (3, H, W) or a batch (N, 3, H, W) -> the network's normalised
    input: the data pipeline's last transform and the exported model's first layer."""

    def __init__(self, norm: Normalization) -> None:
        super().__init__()
        # index_select rather than flip: every export format traces it.
        self.register_buffer("order", torch.tensor([2, 1, 0] if norm.bgr else [0, 1, 2]))
        self.register_buffer("mean", torch.tensor(norm.mean).view(3, 1, 1))
        self.register_buffer("std", torch.tensor(norm.std).view(3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.index_select(-3, self.order) * 255.0 - self.mean) / self.std
