"""Any ``root/<class>/<image>`` tree; the sorted classes are split in two halves by default."""
from __future__ import annotations

import os

from rcdml.data.datasets.base import ImageList, RetrievalData, register_dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def scan_class_folders(root: str) -> dict[str, list[str]]:
    """``{class name: sorted image paths}`` for every sub-directory of ``root`` holding images."""
    classes: dict[str, list[str]] = {}
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            continue
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                       if f.lower().endswith(IMAGE_EXTENSIONS))
        if files:
            classes[name] = files
    return classes


def image_list(classes: dict[str, list[str]], names: list[str]) -> ImageList:
    paths, labels = [], []
    for label, name in enumerate(names):
        paths += classes[name]
        labels += [label] * len(classes[name])
    return ImageList(paths, labels, list(names))


def split_halves(classes: dict[str, list[str]]) -> RetrievalData:
    """Zero-shot protocol: train on the first half of the sorted classes, retrieve on the rest."""
    names = sorted(classes)
    if len(names) < 2:
        raise ValueError(f"need at least two classes to split, found {len(names)}")
    half = len(names) // 2
    return RetrievalData(train=image_list(classes, names[:half]),
                         query=image_list(classes, names[half:]))


@register_dataset("folder")
def read_folder(cfg) -> RetrievalData:
    return split_halves(scan_class_folders(cfg.root))
