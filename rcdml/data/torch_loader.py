"""torchvision DataLoader pipeline: decode with PIL, augment with torchvision transforms."""
from __future__ import annotations

from typing import Callable

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from rcdml.data.datasets.base import ImageList
from rcdml.data.sampler import GlobalBatchSampler, shard_bounds
from rcdml.data.transforms import TrainTransform


def load_rgb(path: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as e:
        raise OSError(f"cannot read image {path}: {e}") from e


class ImageDataset(Dataset):
    """Yields ``(image tensor, label, index)``. A training item is ``(index, seed)`` and goes
    through a :class:`TrainTransform` with that seed, so the augmentation does not depend on the
    worker or rank that loads it; an evaluation item is an index."""

    def __init__(self, images: ImageList, transform: Callable) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item):
        if isinstance(item, tuple):
            index, seed = item
            tensor = self.transform(load_rgb(self.images.paths[index]), seed)
        else:
            index = item
            tensor = self.transform(load_rgb(self.images.paths[index]))
        return tensor, self.images.labels[index], index


def train_loader(images: ImageList, transform: TrainTransform, sampler: GlobalBatchSampler,
                 num_workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(ImageDataset(images, transform), batch_sampler=sampler,
                      num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0)


def eval_loader(images: ImageList, transform: Callable, batch_size: int, num_workers: int,
                pin_memory: bool, world_size: int = 1, rank: int = 0) -> DataLoader:
    """This rank's contiguous shard of ``images`` in order: each image embedded exactly once."""
    lo, hi = shard_bounds(len(images), world_size)[rank:rank + 2]
    shard = torch.utils.data.Subset(ImageDataset(images, transform), range(int(lo), int(hi)))
    return DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=pin_memory)
