"""Fixtures of the data tests: tiny image files and dataset trees (Omniglot: tests/conftest.py)."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image


def write_image(path: str, size: tuple[int, int] = (40, 30), seed: int = 0,
                color: tuple[int, int, int] | None = None) -> str:
    """A smooth random RGB image (or one flat ``color``) of ``size`` (w, h); the format follows
    the extension (JPEG at quality 95, PNG lossless)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    w, h = size
    if color is not None:
        pixels = np.broadcast_to(np.array(color, dtype=np.uint8), (h, w, 3))
        image = Image.fromarray(np.ascontiguousarray(pixels))
    else:
        coarse = np.random.default_rng(seed).integers(0, 256, (max(2, h // 6), max(2, w // 6), 3))
        image = Image.fromarray(coarse.astype(np.uint8)).resize((w, h), Image.BICUBIC)
    if path.lower().endswith((".jpg", ".jpeg")):
        image.save(path, quality=95)
    else:
        image.save(path)
    return path


def index_color(index: int) -> tuple[int, int, int]:
    """A flat colour that encodes ``index`` (< 2**18) in steps of 4 grey levels per channel, so
    it survives resizing and normalisation and decodes back with :func:`color_index`."""
    return (4 * (index % 64), 4 * ((index // 64) % 64), 4 * (index // 4096))


def color_index(rgb) -> int:
    r, g, b = (int(round(v / 4.0)) for v in rgb)
    return r + 64 * g + 4096 * b


@pytest.fixture(scope="session")
def image_writer():
    return write_image


@pytest.fixture(scope="session")
def index_colors():
    """``(index_color, color_index)``: encode a dataset index as a flat colour and back."""
    return index_color, color_index


def write_folder_dataset(root: str, classes: int, per_class, ext: str = ".png",
                         flat_index_colors: bool = False, size=(40, 30)) -> list[str]:
    """``root/c<NN>/<i>.ext``; class ``c`` has ``per_class`` images (or ``per_class[c]``). With
    ``flat_index_colors`` each image is one flat colour encoding its position in the sorted
    listing (the order the folder reader returns)."""
    paths = []
    for c in range(classes):
        n = per_class[c] if isinstance(per_class, (list, tuple)) else per_class
        for i in range(n):
            paths.append(os.path.join(root, f"c{c:02d}", f"{i:03d}{ext}"))
    for index, path in enumerate(paths):
        color = index_color(index) if flat_index_colors else None
        write_image(path, size=size, seed=index, color=color)
    return paths


@pytest.fixture(scope="session")
def folder_dataset():
    return write_folder_dataset


