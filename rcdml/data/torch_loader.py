"""torchvision DataLoader pipeline: decode with PIL, augment with torchvision transforms."""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from rcdml.config import DataConfig
from rcdml.data.datasets.base import ImageList
from rcdml.data.image_io import load_rgb
from rcdml.data.loader import ImageLoader
from rcdml.data.sampler import GlobalBatchSampler
from rcdml.data.transforms import TrainTransform
from rcdml.models.inputs import Normalization


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


class TorchLoader(ImageLoader):
    """DataLoaders with ``data.num_workers`` workers; the training one (its workers persist
    across epochs) is built on first use."""

    name = "torch"

    def __init__(self, cfg: DataConfig, norm: Normalization, eval_transform: Callable,
                 eval_batch_size: int, pin_memory: bool) -> None:
        self.cfg = cfg
        self.norm = norm
        self.eval_transform = eval_transform
        self.eval_batch_size = eval_batch_size
        self.pin_memory = pin_memory
        self._train: DataLoader | None = None

    def train_batches(self, images: ImageList, sampler: GlobalBatchSampler, epoch: int,
                      start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._train is None:
            workers = self.cfg.num_workers
            self._train = DataLoader(ImageDataset(images, TrainTransform(self.cfg, self.norm)),
                                     batch_sampler=sampler, num_workers=workers,
                                     pin_memory=self.pin_memory, persistent_workers=workers > 0)
        return ((x, y) for x, y, _ in self._train)

    def eval_batches(self, images: ImageList, share: range
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        shard = torch.utils.data.Subset(ImageDataset(images, self.eval_transform), share)
        return iter(DataLoader(shard, batch_size=self.eval_batch_size, shuffle=False,
                               num_workers=self.cfg.num_workers, pin_memory=self.pin_memory))
