"""The loader interface: how a pipeline turns image lists into batches. Two implementations,
:class:`rcdml.data.torch_loader.TorchLoader` (torchvision) and
:class:`rcdml.data.dali_loader.DaliLoader` (NVIDIA DALI), give batches in the same layout (float
NCHW, normalised for the backbone) and value range; a pipeline picks one, once."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator

import torch

from rcdml.data.datasets.base import ImageList
from rcdml.data.sampler import GlobalBatchSampler


class ImageLoader(ABC):
    name: str

    @abstractmethod
    def train_batches(self, images: ImageList, sampler: GlobalBatchSampler, epoch: int,
                      start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's ``(images, labels)`` of ``epoch`` from ``start_step`` on; ``sampler`` is
        already set to that epoch and step."""

    @abstractmethod
    def eval_batches(self, images: ImageList, share: range
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``images[share]`` in order as ``(images, labels, dataset index)`` batches."""
