"""Image transforms of the torchvision pipeline, and the per-backbone normalisation (and resize
filter) that the DALI pipeline applies with the same constants."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as F

from rcdml.config import DataConfig
from rcdml.data.geometry import train_geometry

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


def _interpolation(norm: Normalization) -> T.InterpolationMode:
    return T.InterpolationMode(norm.interpolation)


class Normalize(torch.nn.Module):
    """RGB tensor in [0, 1] (``ToTensor``'s output) -> the network's normalised input."""

    def __init__(self, norm: Normalization) -> None:
        super().__init__()
        self.bgr = norm.bgr
        self.register_buffer("mean", torch.tensor(norm.mean).view(3, 1, 1))
        self.register_buffer("std", torch.tensor(norm.std).view(3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(0)
        return (x * 255.0 - self.mean) / self.std


class TrainTransform:
    """Random-resized crop and optional flip whose randomness comes from the sample's seed only
    (see :mod:`rcdml.data.geometry`), then the backbone's normalisation."""

    def __init__(self, cfg: DataConfig, input_style: str) -> None:
        self.size = cfg.image_size
        self.scale = tuple(cfg.crop_scale)
        self.flip = cfg.flip
        norm = normalization(input_style)
        self.interpolation = _interpolation(norm)
        self.finish = T.Compose([T.ToTensor(), Normalize(norm)])

    def __call__(self, image: Image.Image, seed: int) -> torch.Tensor:
        geo = train_geometry(image.width, image.height, seed, self.scale, self.flip)
        box = geo.box
        image = F.resized_crop(image, box.top, box.left, box.height, box.width,
                               [self.size, self.size], interpolation=self.interpolation,
                               antialias=True)
        if geo.flip:
            image = F.hflip(image)
        return self.finish(image)


def eval_transform(cfg: DataConfig, input_style: str) -> T.Compose:
    """Resize the short side to ``resize_size``, centre-crop ``image_size``, normalise."""
    norm = normalization(input_style)
    return T.Compose([T.Resize(cfg.resize_size, interpolation=_interpolation(norm), antialias=True),
                      T.CenterCrop(cfg.image_size), T.ToTensor(), Normalize(norm)])
