"""Image transforms of the torchvision pipeline: random-resized crops for training, resize and
centre crop for evaluation, each ending in the model's :class:`Normalization` (which the DALI
pipeline applies with the same constants)."""
from __future__ import annotations

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as F

from rcdml.config import DataConfig
from rcdml.data.geometry import train_geometry
from rcdml.models.inputs import Normalization, Normalize


def _interpolation(norm: Normalization) -> T.InterpolationMode:
    return T.InterpolationMode(norm.interpolation)


class TrainTransform:
    """Random-resized crop and optional flip whose randomness comes from the sample's seed only
    (see :mod:`rcdml.data.geometry`), then the backbone's normalisation."""

    def __init__(self, cfg: DataConfig, norm: Normalization) -> None:
        self.size = cfg.image_size
        self.scale = tuple(cfg.crop_scale)
        self.flip = cfg.flip
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


def eval_transform(cfg: DataConfig, norm: Normalization) -> T.Compose:
    """Resize the short side to ``resize_size``, centre-crop ``image_size``, normalise."""
    return T.Compose([T.Resize(cfg.resize_size, interpolation=_interpolation(norm), antialias=True),
                      T.CenterCrop(cfg.image_size), T.ToTensor(), Normalize(norm)])
