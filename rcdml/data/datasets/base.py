"""What dataset readers return, and the registry of readers by config name (``data.name``).

A reader lists a dataset as a :class:`Catalog`: every image with its class number, in the
dataset's own numbering, plus the default class split of the papers. Splitting into training and
evaluation images (:mod:`rcdml.data.datasets.splits`) and checking that the files can be read
(:mod:`rcdml.data.image_check`) are shared by all readers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from rcdml.registry import Registry


@dataclass
class ImageList:
    """Images of one split; ``labels`` are contiguous 0..num_classes-1 within the split."""
    paths: list[str]
    labels: list[int]
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} paths but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else len(set(self.labels))


@dataclass
class RetrievalData:
    """Training images and the evaluation protocol: queries retrieve from ``gallery``, or from
    each other (leaving themselves out) when ``gallery`` is None. ``val``: images of training
    classes held out of ``train`` (``data.val_classes``), retrieving among themselves."""
    train: ImageList
    query: ImageList
    gallery: ImageList | None = None
    val: ImageList | None = None


# Evaluation roles of an image in a catalog with a query/gallery protocol (In-Shop).
QUERY, GALLERY = "query", "gallery"


@dataclass
class Catalog:
    """Every image of a dataset. Classes are numbered 1..N in the dataset's own numbering (its
    class ids where it has them, else the sorted order of its class folders); ``data.train_classes``
    and ``data.eval_classes`` refer to these numbers."""
    paths: list[str]
    class_ids: list[int]
    class_names: dict[int, str]
    default_train: list[int]
    default_eval: list[int]
    # Per image: QUERY, GALLERY, or None for images outside a query/gallery protocol.
    roles: list[str | None] | None = None

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.class_ids):
            raise ValueError(f"{len(self.paths)} paths but {len(self.class_ids)} class ids")
        if self.roles is not None and len(self.roles) != len(self.paths):
            raise ValueError(f"{len(self.paths)} paths but {len(self.roles)} roles")


class LayoutError(FileNotFoundError):
    """The dataset root does not hold the files of the dataset's official layout."""


@dataclass(frozen=True)
class DatasetSpec:
    read: Callable[[str], Catalog]
    # Embedded datasets create their root themselves; the others need it to exist.
    embedded: bool = False
    # Where the official archives come from and how ``data.root`` must look once extracted.
    download: str = ""
    # Raw features (rows) and labels of the default evaluation split recorded with the dataset,
    # whose cosine retrieval is the baseline a network must beat (e.g. raw pixels), read from
    # ``data.root``; None when the dataset records none.
    baseline: Callable[[str], tuple[np.ndarray, np.ndarray] | None] | None = None


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(name: str, embedded: bool = False, download: str = "",
                     baseline: Callable[[str], tuple[np.ndarray, np.ndarray] | None] | None = None):
    """Register ``read(root) -> Catalog`` under ``name``."""
    return DATASETS.register(name, lambda read: DatasetSpec(read, embedded, download, baseline))


def dataset_names() -> list[str]:
    return DATASETS.names()


def dataset_spec(name: str) -> DatasetSpec:
    return DATASETS[name]


def read_catalog(name: str, root: str) -> Catalog:
    """The catalog of dataset ``name`` under ``root``; raises :class:`LayoutError` naming what is
    missing and where to get it."""
    try:
        return DATASETS[name].read(root)
    except LayoutError as e:
        hint = DATASETS[name].download
        raise LayoutError(f"{e}" + (f"\n{hint}" if hint else "")) from None


def find_dir_with(root: str, marker: str, subdirs: tuple[str, ...] = ()) -> str:
    """``root`` or the first of ``root/<subdir>`` that contains ``marker`` (a file or folder), so
    that ``data.root`` may name the extracted folder itself or its parent."""
    folders = [root] + [os.path.join(root, s) for s in subdirs]
    for folder in folders:
        if os.path.exists(os.path.join(folder, marker)):
            return folder
    tried = ", ".join(os.path.join(f, marker) for f in folders)
    raise LayoutError(f"data.root: {root} does not look like this dataset: none of {tried} exists")


def read_lines(path: str, skip: int = 0) -> list[list[str]]:
    """Whitespace-split non-empty lines of a text list file, after ``skip`` header lines."""
    with open(path) as f:
        lines = f.read().splitlines()[skip:]
    return [line.split() for line in lines if line.strip()]
