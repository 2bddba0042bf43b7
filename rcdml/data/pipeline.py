"""The data side of a run: dataset, sampler and loaders (torchvision or DALI) for training and
evaluation. Both loaders give batches in the same layout (float NCHW, normalised for the
backbone) and value range."""
from __future__ import annotations

import importlib.util
from typing import Callable, Iterator

import torch

from rcdml.data import torch_loader
from rcdml.data.datasets import ImageList, RetrievalData, read_dataset
from rcdml.data.sampler import (BalancedBatchSampler, GlobalBatchSampler, RandomBatchSampler,
                                shard_bounds)
from rcdml.data.transforms import TrainTransform, eval_transform, normalization
from rcdml.distributed import DistInfo, is_main


def dali_available() -> bool:
    try:
        return importlib.util.find_spec("nvidia.dali") is not None
    except ModuleNotFoundError:
        return False


def choose_loader(setting: str, device: torch.device) -> str:
    """``data.loader``: auto means DALI on a GPU when it is installed, torchvision otherwise."""
    if setting == "auto":
        return "dali" if device.type == "cuda" and dali_available() else "torch"
    return setting


class Batches:
    """A re-iterable sequence of batches with a known length; each ``iter`` starts a new pass."""

    def __init__(self, start: Callable[[], Iterator], length: int) -> None:
        self.start = start
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator:
        return iter(self.start())


class DataPipeline:
    def __init__(self, cfg, dist: DistInfo, input_style: str) -> None:
        self.cfg = cfg
        self.dist = dist
        self.data: RetrievalData = read_dataset(cfg.data)
        self.sampler = self._sampler(cfg, self.data.train)
        self.loader = choose_loader(cfg.data.loader, dist.device)
        if self.loader == "dali":
            from rcdml.data.dali_loader import DaliLoaders

            self._dali = DaliLoaders(cfg.data, normalization(input_style), dist.device,
                                     cfg.train.seed, cfg.eval.batch_size, dist.world_size,
                                     dist.rank)
        else:
            pin = dist.device.type == "cuda"
            self._torch_train = torch_loader.train_loader(
                self.data.train, TrainTransform(cfg.data, input_style), self.sampler,
                cfg.data.num_workers, pin)
            self._pin = pin
        # Also used outside the loaders, e.g. to embed a monitoring sample on rank 0.
        self.eval_transform = eval_transform(cfg.data, input_style)
        if is_main():
            print(self.summary(), flush=True)

    def summary(self) -> str:
        parts = [f"{name} {len(images)} images / {images.num_classes} classes"
                 for name, images in (("train", self.data.train), ("query", self.data.query),
                                      ("gallery", self.data.gallery)) if images is not None]
        return (f"data: {self.cfg.data.name} ({self.cfg.data.root}): " + ", ".join(parts)
                + f"; loader {self.loader}")

    def _sampler(self, cfg, images: ImageList) -> GlobalBatchSampler:
        common = dict(batch_size=cfg.train.batch_size, world_size=self.dist.world_size,
                      rank=self.dist.rank, seed=cfg.train.seed)
        if cfg.data.sampler == "balanced":
            return BalancedBatchSampler(images.labels, samples_per_class=cfg.data.samples_per_class,
                                        **common)
        return RandomBatchSampler(images.labels, **common)

    @property
    def num_train_classes(self) -> int:
        return self.data.train.num_classes

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.steps_per_epoch

    def train_loader(self, epoch: int, start_step: int = 0) -> Batches:
        """This rank's ``(images, labels)`` batches of ``epoch``, from ``start_step`` on."""
        self.sampler.set_epoch(epoch, start_step)
        if self.loader == "dali":
            def start():
                return self._dali.train_batches(self.data.train, self.sampler, epoch, start_step)
        else:
            def start():
                return ((images, labels) for images, labels, _ in self._torch_train)
        return Batches(start, len(self.sampler))

    def eval_loader(self, images: ImageList) -> Batches:
        """This rank's contiguous shard of ``images`` as ``(images, labels, dataset index)``
        batches: each image on exactly one rank, no padding."""
        lo, hi = shard_bounds(len(images), self.dist.world_size)[self.dist.rank:self.dist.rank + 2]
        length = -(-(hi - lo) // self.cfg.eval.batch_size)
        if self.loader == "dali":
            return Batches(lambda: self._dali.eval_batches(images), length)
        loader = torch_loader.eval_loader(images, self.eval_transform, self.cfg.eval.batch_size,
                                          self.cfg.data.num_workers, self._pin,
                                          self.dist.world_size, self.dist.rank)
        return Batches(lambda: loader, length)


def build_pipeline(cfg, dist: DistInfo, input_style: str) -> DataPipeline:
    return DataPipeline(cfg, dist, input_style)
