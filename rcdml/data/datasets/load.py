"""Read a run's dataset: catalog, class split, then a check that every image can be read."""
from __future__ import annotations

import os
from collections import Counter

from rcdml.config import ConfigError
from rcdml.config.schema import DataConfig
from rcdml.data.datasets.base import DATASETS, LayoutError, RetrievalData, read_catalog
from rcdml.data.datasets.splits import drop_images, parse_classes, split_catalog
from rcdml.data.image_check import UnreadableImagesError, describe_problems, find_unreadable
from rcdml.distributed import all_gather_object, get_rank, get_world_size, rank_share
from rcdml.log import get_logger

log = get_logger(__name__)


def all_paths(data: RetrievalData, train: bool = True) -> list[str]:
    """Every image path of ``data``; with ``train=False`` those of the evaluation split only."""
    sets = ([data.train] + ([data.val] if data.val is not None else []) if train else [])
    sets += [data.query] + ([data.gallery] if data.gallery is not None else [])
    return sorted({p for images in sets for p in images.paths})


def find_unreadable_across_ranks(paths: list[str], level: str) -> dict[str, str]:
    """Each rank checks a contiguous share of ``paths``; every rank gets all the problems."""
    share = rank_share(len(paths), get_world_size(), get_rank())
    mine = find_unreadable(paths[share.start:share.stop], level)
    return {p: why for part in all_gather_object(mine) for p, why in part.items()}


def read_dataset(cfg: DataConfig, train: bool = True) -> RetrievalData:
    """The train/query/gallery images of ``cfg``, checked at ``cfg.check_images``.

    Unreadable files raise :class:`UnreadableImagesError` naming them, or with
    ``cfg.bad_images == "skip"`` are left out with a warning that counts them. With
    ``train=False`` (commands that only evaluate) only the evaluation split is checked, and the
    training split is left as listed. Under torchrun every rank must call this (the check is
    shared between the ranks).
    """
    data = split_catalog(read_catalog(cfg.name, cfg.root), cfg.train_classes, cfg.eval_classes,
                         cfg.val_classes if train else None)
    paths = all_paths(data, train)
    problems = find_unreadable_across_ranks(paths, cfg.check_images)
    if not problems:
        return data
    if cfg.bad_images == "error":
        raise UnreadableImagesError(problems, len(paths), cfg.check_images)
    log.warning("warning: leaving out unreadable images (data.bad_images=skip): "
                + describe_problems(problems, len(paths), cfg.check_images))
    bad = set(problems)
    gallery = None if data.gallery is None else drop_images(data.gallery, bad, relabel=False)
    val = None if data.val is None else drop_images(data.val, bad, relabel=False)
    return RetrievalData(drop_images(data.train, bad, relabel=True) if train else data.train,
                         drop_images(data.query, bad, relabel=False), gallery, val)


def check_dataset_config(cfg: DataConfig, batch_size: int | None) -> None:
    """Config-time checks of ``cfg`` that need the dataset's lists but not its images: the
    dataset's name and root, the layout under ``data.root``, the class split, and (for training,
    with the global ``batch_size``) a balanced batch that can be filled as configured. Raises
    ConfigError naming the key. An embedded dataset is written to ``data.root`` here (once), so
    its batches are checked like any other's."""
    DATASETS.check("data.name", cfg.name)
    if not DATASETS[cfg.name].embedded and not os.path.isdir(cfg.root):
        raise ConfigError(f"data.root: {cfg.root} does not exist (dataset {cfg.name})")
    parse_classes(cfg.train_classes, "data.train_classes")
    parse_classes(cfg.eval_classes, "data.eval_classes")
    try:
        catalog = read_catalog(cfg.name, cfg.root)
    except LayoutError as e:
        raise ConfigError(str(e).replace("\n", " ")) from None
    data = split_catalog(catalog, cfg.train_classes, cfg.eval_classes,
                         cfg.val_classes if batch_size is not None else None)
    if batch_size is not None and cfg.sampler == "balanced":
        check_balanced_batch(data.train.labels, batch_size, cfg.samples_per_class)
    if batch_size is not None and cfg.sampler == "random" and batch_size > len(data.train.labels):
        raise ConfigError(f"train.batch_size: {batch_size} is larger than the training split "
                          f"({len(data.train.labels)} images), so no batch of data.sampler=random "
                          f"could be that large; choose at most {len(data.train.labels)}")


def check_balanced_batch(labels, batch_size: int, samples_per_class: int) -> None:
    """A batch of P = batch_size / K classes x K images needs P classes, and K no larger than
    every class's image count (the sampler takes all images of a smaller class; when every
    class is smaller, no batch is ever the size asked)."""
    counts = Counter(labels)
    wanted = batch_size // samples_per_class
    if wanted > len(counts):
        raise ConfigError(f"train.batch_size: {batch_size} images of data.samples_per_class="
                          f"{samples_per_class} need {wanted} training classes per batch; the "
                          f"training split has {len(counts)}")
    largest = max(counts.values())
    if samples_per_class > largest:
        raise ConfigError(f"data.samples_per_class: {samples_per_class} images per class, but no "
                          f"training class has more than {largest}, so a batch of {batch_size} "
                          f"would hold at most {wanted * largest}; allowed: 1 to {largest}")
