"""What a dataset reader returns: image paths with contiguous labels, per split."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


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
    each other (leaving themselves out) when ``gallery`` is None."""
    train: ImageList
    query: ImageList
    gallery: ImageList | None = None


@dataclass(frozen=True)
class DatasetSpec:
    read: Callable[..., RetrievalData]
    # Embedded datasets create their root themselves; the others need it to exist.
    embedded: bool = False


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, embedded: bool = False):
    def add(read: Callable[..., RetrievalData]) -> Callable[..., RetrievalData]:
        if name in _DATASETS:
            raise KeyError(f"dataset {name!r} is registered twice")
        _DATASETS[name] = DatasetSpec(read, embedded)
        return read
    return add


def dataset_names() -> list[str]:
    return sorted(_DATASETS)


def dataset_spec(name: str) -> DatasetSpec:
    return _DATASETS[name]


def read_dataset(cfg) -> RetrievalData:
    """Read the dataset named by ``cfg.name`` (a DataConfig) from ``cfg.root``."""
    return _DATASETS[cfg.name].read(cfg)
