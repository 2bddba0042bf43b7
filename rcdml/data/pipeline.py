"""The data side of a run: dataset, sampler and loaders for training and evaluation."""
from __future__ import annotations

from typing import Iterator

import torch

from rcdml.data import torch_loader
from rcdml.data.datasets import ImageList, RetrievalData, read_dataset
from rcdml.data.sampler import BalancedBatchSampler, GlobalBatchSampler, RandomBatchSampler
from rcdml.data.transforms import eval_transform, train_transform
from rcdml.distributed import DistInfo


class TrainBatches:
    """One epoch of this rank's ``(images, labels)`` batches, with a known length."""

    def __init__(self, loader, length: int) -> None:
        self.loader = loader
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels, _ in self.loader:
            yield images, labels


class DataPipeline:
    def __init__(self, cfg, dist: DistInfo, input_style: str) -> None:
        self.cfg = cfg
        self.dist = dist
        self.data: RetrievalData = read_dataset(cfg.data)
        self.sampler = self._sampler(cfg, self.data.train)
        pin = dist.device.type == "cuda"
        self._train = torch_loader.train_loader(self.data.train, train_transform(cfg.data, input_style),
                                                self.sampler, cfg.data.num_workers, pin)
        self.eval_transform = eval_transform(cfg.data, input_style)
        self._pin = pin

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

    def train_loader(self, epoch: int, start_step: int = 0) -> TrainBatches:
        self.sampler.set_epoch(epoch, start_step)
        return TrainBatches(self._train, len(self.sampler))

    def eval_loader(self, images: ImageList):
        """This rank's shard of ``images`` (each image on exactly one rank)."""
        return torch_loader.eval_loader(images, self.eval_transform, self.cfg.eval.batch_size,
                                        self.cfg.data.num_workers, self._pin,
                                        self.dist.world_size, self.dist.rank)


def build_pipeline(cfg, dist: DistInfo, input_style: str) -> DataPipeline:
    return DataPipeline(cfg, dist, input_style)
