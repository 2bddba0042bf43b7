"""torchvision DataLoader pipeline: decode with PIL, augment with torchvision transforms."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from rcdml.data.datasets.base import ImageList
from rcdml.data.sampler import GlobalBatchSampler


def load_rgb(path: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as e:
        raise OSError(f"cannot read image {path}: {e}") from e


class ImageDataset(Dataset):
    """Yields ``(image tensor, label, index)``. An item may be ``(index, seed)``: the transform
    then draws its randomness from ``seed`` alone, so augmentations are reproducible whichever
    worker or rank loads the image."""

    def __init__(self, images: ImageList, transform: Callable) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item):
        index, seed = item if isinstance(item, tuple) else (item, None)
        image = load_rgb(self.images.paths[index])
        if seed is None:
            tensor = self.transform(image)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                tensor = self.transform(image)
        return tensor, self.images.labels[index], index


def shard_indices(n: int, world_size: int, rank: int) -> np.ndarray:
    """Contiguous, near-equal shard of ``range(n)``: every index on exactly one rank, no padding."""
    bounds = np.linspace(0, n, world_size + 1).round().astype(int)
    return np.arange(bounds[rank], bounds[rank + 1])


def train_loader(images: ImageList, transform: Callable, sampler: GlobalBatchSampler,
                 num_workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(ImageDataset(images, transform), batch_sampler=sampler,
                      num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0)


def eval_loader(images: ImageList, transform: Callable, batch_size: int, num_workers: int,
                pin_memory: bool, world_size: int = 1, rank: int = 0) -> DataLoader:
    """This rank's shard of ``images`` in order, for embedding each image exactly once."""
    shard = torch.utils.data.Subset(ImageDataset(images, transform),
                                    shard_indices(len(images), world_size, rank).tolist())
    return DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=pin_memory)
