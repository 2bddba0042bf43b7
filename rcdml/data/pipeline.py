"""The data side of a run: dataset, sampler and one loader (torchvision or DALI, see
:mod:`rcdml.data.loader`) for training and evaluation; :class:`EvalPipeline` is the part that
commands which only embed the evaluation split need."""
from __future__ import annotations

import importlib.util
from typing import Callable, Iterator

import torch

from rcdml.config import Config, ConfigError, DataConfig
from rcdml.data.datasets import ImageList, RetrievalData, read_dataset
from rcdml.data.loader import ImageLoader
from rcdml.data.sampler import BalancedBatchSampler, GlobalBatchSampler, RandomBatchSampler
from rcdml.data.transforms import eval_transform
from rcdml.distributed import DistInfo, rank_share
from rcdml.log import get_logger
from rcdml.models.inputs import Normalization

log = get_logger(__name__)


def dali_available() -> bool:
    try:
        return importlib.util.find_spec("nvidia.dali") is not None
    except ModuleNotFoundError:
        return False


def check_loader_config(cfg: DataConfig) -> None:
    if cfg.loader == "dali" and not dali_available():
        raise ConfigError("data.loader: dali needs NVIDIA DALI (pip install rcdml[dali]); allowed "
                          "here: auto, torch")


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


def _image_loader(name: str, cfg: Config, dist: DistInfo, norm: Normalization,
                  transform: Callable) -> ImageLoader:
    if name == "dali":
        from rcdml.data.dali_loader import DaliLoader

        return DaliLoader(cfg.data, norm, dist.device, cfg.train.seed,
                          cfg.eval.batch_size)
    from rcdml.data.torch_loader import TorchLoader

    return TorchLoader(cfg.data, norm, transform, cfg.eval.batch_size,
                       pin_memory=dist.device.type == "cuda")


class EvalPipeline:
    """The evaluation split and its loader: only the evaluation images are checked and read."""

    _train = False

    def __init__(self, cfg: Config, dist: DistInfo, norm: Normalization) -> None:
        self.cfg = cfg
        self.dist = dist
        self.data: RetrievalData = read_dataset(cfg.data, train=self._train)
        self.loader = choose_loader(cfg.data.loader, dist.device)
        # Also used outside the loaders, e.g. to embed a monitoring sample on rank 0.
        self.eval_transform = eval_transform(cfg.data, norm)
        self.image_loader = _image_loader(self.loader, cfg, dist, norm, self.eval_transform)
        self._setup()
        log.info(self.summary())

    def _setup(self) -> None:
        """What a subclass adds before the summary line is logged."""

    def summary(self) -> str:
        parts = [f"{name} {len(images)} images / {images.num_classes} classes"
                 for name, images in (("train", self.data.train), ("query", self.data.query),
                                      ("gallery", self.data.gallery), ("val", self.data.val))
                 if images is not None]
        return (f"data: {self.cfg.data.name} ({self.cfg.data.root}): " + ", ".join(parts)
                + f"; loader {self.loader}")

    def eval_loader(self, images: ImageList) -> Batches:
        """This rank's contiguous shard of ``images`` as ``(images, labels, dataset index)``
        batches: each image on exactly one rank, no padding."""
        share = rank_share(len(images), self.dist.world_size, self.dist.rank)
        return Batches(lambda: self.image_loader.eval_batches(images, share),
                       -(-len(share) // self.cfg.eval.batch_size))


class DataPipeline(EvalPipeline):
    """Training batches from the global-batch sampler, plus the evaluation side."""

    _train = True

    sampler: GlobalBatchSampler

    def _setup(self) -> None:
        cfg, labels = self.cfg, self.data.train.labels
        common = dict(batch_size=cfg.train.batch_size, world_size=self.dist.world_size,
                      rank=self.dist.rank, seed=cfg.train.seed)
        if cfg.data.sampler == "balanced":
            self.sampler = BalancedBatchSampler(labels, samples_per_class=cfg.data.samples_per_class,
                                                **common)
        else:
            self.sampler = RandomBatchSampler(labels, **common)

    @property
    def num_train_classes(self) -> int:
        return self.data.train.num_classes

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.steps_per_epoch

    def train_loader(self, epoch: int, start_step: int = 0) -> Batches:
        """This rank's ``(images, labels)`` batches of ``epoch``, from ``start_step`` on."""
        self.sampler.set_epoch(epoch, start_step)
        return Batches(lambda: self.image_loader.train_batches(self.data.train, self.sampler,
                                                               epoch, start_step),
                       len(self.sampler))


def build_pipeline(cfg: Config, dist: DistInfo, norm: Normalization) -> DataPipeline:
    return DataPipeline(cfg, dist, norm)


def build_eval_pipeline(cfg: Config, dist: DistInfo, norm: Normalization) -> EvalPipeline:
    """The data of a command that only embeds the evaluation split (no training images read)."""
    return EvalPipeline(cfg, dist, norm)
