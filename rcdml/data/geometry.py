"""Where each image is cropped and how it is resized, as plain numbers.

Both loaders (torchvision and DALI) take their geometry from here, so for the same
``(index, seed)`` they crop the same box and flip the same way, and the augmentation of a sample
is a function of its seed alone: it does not depend on the loader, the worker or the rank.
The rules are torchvision's (``RandomResizedCrop.get_params``, ``Resize(int)``, ``CenterCrop``);
this module has no torch import because DALI's worker processes use it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# torchvision's RandomResizedCrop default aspect-ratio range.
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
_CROP_ATTEMPTS = 10


@dataclass(frozen=True)
class Box:
    """A pixel rectangle of an image: top-left corner and size."""
    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True)
class TrainGeometry:
    """Crop ``box`` of the decoded image, resize it to the square training size, maybe mirror."""
    box: Box
    flip: bool


@dataclass(frozen=True)
class EvalGeometry:
    """Resize the whole image to ``height`` x ``width``, then take ``crop`` of the result."""
    height: int
    width: int
    crop: Box


def random_resized_crop(width: int, height: int, rng: np.random.Generator,
                        scale: tuple[float, float], ratio: tuple[float, float] = CROP_RATIO) -> Box:
    """torchvision's RandomResizedCrop box, drawn from ``rng``: an area fraction in ``scale`` and
    a log-uniform aspect ratio in ``ratio``; after 10 misses, the central crop clamped to
    ``ratio``."""
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(_CROP_ATTEMPTS):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return Box(top, left, h, w)
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return Box((height - h) // 2, (width - w) // 2, h, w)


def train_geometry(width: int, height: int, seed: int, scale: tuple[float, float],
                   flip: bool) -> TrainGeometry:
    """The augmentation of one training sample, a pure function of its size and ``seed``."""
    rng = np.random.default_rng(seed)
    box = random_resized_crop(width, height, rng, scale)
    return TrainGeometry(box, bool(flip and rng.random() < 0.5))


def eval_geometry(width: int, height: int, resize_size: int, image_size: int) -> EvalGeometry:
    """torchvision's ``Resize(resize_size)`` (short side, long side truncated) followed by
    ``CenterCrop(image_size)`` (offsets rounded half to even, as Python's ``round``)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = resize_size, int(resize_size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    top = int(round((new_h - image_size) / 2.0))
    left = int(round((new_w - image_size) / 2.0))
    return EvalGeometry(new_h, new_w, Box(top, left, image_size, image_size))
