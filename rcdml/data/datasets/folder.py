"""Any ``root/<class>/<image>`` tree. Classes are numbered 1..N in sorted folder order; by default
the first half trains and the second half is retrieved."""
from __future__ import annotations

import os

from rcdml.data.datasets.base import Catalog, LayoutError, register_dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def _images_in(folder: str) -> list[str]:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.lower().endswith(IMAGE_EXTENSIONS))


def scan_class_folders(root: str) -> dict[str, list[str]]:
    """``{class name: sorted image paths}`` for every sub-directory of ``root`` holding images."""
    if not os.path.isdir(root):
        raise LayoutError(f"data.root: {root} is not a directory")
    classes: dict[str, list[str]] = {}
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        if os.path.isdir(folder):
            files = _images_in(folder)
            if files:
                classes[name] = files
    return classes


def scan_leaf_folders(root: str) -> dict[str, list[str]]:
    """``{relative folder: sorted image paths}`` for every folder under ``root`` (at any depth)
    that holds images directly, so ``root/a/b/*.png`` is class ``a/b``."""
    if not os.path.isdir(root):
        raise LayoutError(f"{root} is not a directory")
    classes: dict[str, list[str]] = {}
    for folder, dirs, _ in os.walk(root):
        dirs.sort()
        files = _images_in(folder)
        if files:
            classes[os.path.relpath(folder, root)] = files
    return dict(sorted(classes.items()))


def catalog_from_classes(groups: list[dict[str, list[str]]]) -> tuple[Catalog, list[list[int]]]:
    """A catalog numbering the classes of ``groups`` 1..N in order, and the class numbers of each
    group; the default split is left to the caller."""
    paths: list[str] = []
    ids: list[int] = []
    names: dict[int, str] = {}
    group_ids: list[list[int]] = []
    for classes in groups:
        numbers = []
        for name, files in classes.items():
            number = len(names) + 1
            names[number] = name
            numbers.append(number)
            paths += files
            ids += [number] * len(files)
        group_ids.append(numbers)
    return Catalog(paths, ids, names, [], []), group_ids


def halves_catalog(classes: dict[str, list[str]]) -> Catalog:
    """Zero-shot default: the first half of the sorted classes trains, the rest is retrieved."""
    if len(classes) < 2:
        raise LayoutError(f"need at least two class folders with images, found {len(classes)}")
    catalog, (numbers,) = catalog_from_classes([classes])
    half = len(numbers) // 2
    catalog.default_train, catalog.default_eval = numbers[:half], numbers[half:]
    return catalog


@register_dataset("folder", download="data.root must hold one sub-folder of images per class "
                  "(root/<class>/<image>).")
def read_folder(root: str) -> Catalog:
    return halves_catalog(scan_class_folders(root))
