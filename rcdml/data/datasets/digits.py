"""The embedded datasets, built from scikit-learn's 8x8 handwritten digits (1,797 images).

* ``digits`` (the default): each digit drawn into a 32x32 canvas under its own random affine
  distortion (rotation, scale, shear, translation) and stroke thickness and blur, seeded per image
  and copy. Digits 0-4 get ``TRAIN_COPIES`` distorted copies each, digits 5-9 one each. Cosine
  similarity of the raw pixels no longer solves retrieval, so what a network learns shows.
* ``digits8x8``: the plain 8x8 images, for tests that need a run to take seconds. Cosine of the
  raw pixels already gives R@1 0.99 on it, so it cannot show learning.

Both are written once as a ``root/<digit>/<image>.png`` folder, so they go through the same reader
and image pipeline as any real dataset. Protocol: train on digits 0-4, retrieve among 5-9. Next
to the images, ``raw_pixels.npz`` holds the raw pixels and labels of the evaluation images
(digits 5-9): their cosine retrieval is the baseline a trained network must beat.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageFilter

from rcdml.config import ConfigError
from rcdml.data.datasets.base import Catalog, register_dataset
from rcdml.data.datasets.folder import halves_catalog, scan_class_folders
from rcdml.distributed import main_process_first

_COMPLETE = ".complete"
BASELINE_FILE = "raw_pixels.npz"
# Digits 0-4 train, 5-9 are retrieved (the default split of the sorted class folders).
FIRST_EVAL_DIGIT = 5

CANVAS = 32
# The digit is upsampled to this size and framed in black before the affine map, so that the
# map never cuts through a stroke at the source's border.
DIGIT_PX = 24
TRAIN_COPIES = 4
SEED = 20240
# Ranges of the per-image distortion, drawn uniformly.
ROTATION_DEG = 35.0
SCALE = (0.6, 1.05)
SHEAR = 0.3
SHIFT_PX = 5.0
BLUR_RADIUS = (0.0, 1.2)
# Probability of a thicker stroke (a 3x3 max filter before the affine map).
THICKEN_P = 0.5

# One record of how a tree was built: a tree built otherwise (another version of this module, or
# the other digits dataset) is refused rather than silently reused.
_CONSTRUCTIONS = {
    "digits": {"canvas": CANVAS, "digit_px": DIGIT_PX, "train_copies": TRAIN_COPIES, "seed": SEED,
               "rotation_deg": ROTATION_DEG, "scale": list(SCALE), "shear": SHEAR,
               "shift_px": SHIFT_PX, "blur_radius": list(BLUR_RADIUS), "thicken_p": THICKEN_P},
    # The empty marker of the plain digits predates construction records.
    "digits8x8": None,
}

Images = Iterator[tuple[int, str, np.ndarray]]


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(image * (255.0 / 16.0)).astype(np.uint8)


def plain_images(images: np.ndarray, labels: np.ndarray) -> Images:
    """(digit, file name, 8x8 uint8 pixels) of every image, unchanged."""
    for index, (image, label) in enumerate(zip(images, labels)):
        yield int(label), f"{index:04d}.png", _to_uint8(image)


def distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One 8x8 digit (0..16) drawn into the canvas under a random affine map, stroke and blur."""
    big = Image.new("L", (CANVAS, CANVAS))
    margin = (CANVAS - DIGIT_PX) // 2
    big.paste(Image.fromarray(_to_uint8(image), mode="L").resize((DIGIT_PX, DIGIT_PX), Image.BICUBIC),
              (margin, margin))
    if rng.random() < THICKEN_P:
        big = big.filter(ImageFilter.MaxFilter(3))
    angle = np.deg2rad(rng.uniform(-ROTATION_DEG, ROTATION_DEG))
    scale = rng.uniform(*SCALE)
    shear = rng.uniform(-SHEAR, SHEAR)
    shift = rng.uniform(-SHIFT_PX, SHIFT_PX, size=2)
    cos, sin = np.cos(angle), np.sin(angle)
    # canvas point = centre + shift + R @ Shear @ (scale * (source point - centre))
    forward = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, shear], [0.0, 1.0]]) * scale
    inverse = np.linalg.inv(forward)
    centre = np.full(2, (CANVAS - 1) / 2.0)
    # PIL's affine transform maps each output pixel back to its source pixel.
    offset = centre - inverse @ (centre + shift)
    coeffs = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    drawn = big.transform((CANVAS, CANVAS), Image.AFFINE, coeffs, resample=Image.BILINEAR)
    radius = rng.uniform(*BLUR_RADIUS)
    if radius > 0:
        drawn = drawn.filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(drawn, dtype=np.uint8)


def distorted_images(images: np.ndarray, labels: np.ndarray) -> Images:
    """(digit, file name, canvas pixels): ``TRAIN_COPIES`` distorted copies of every training
    digit, one of every evaluation digit, each from its own seed (SEED, image index, copy)."""
    for index, (image, label) in enumerate(zip(images, labels)):
        copies = TRAIN_COPIES if label < FIRST_EVAL_DIGIT else 1
        for copy in range(copies):
            rng = np.random.default_rng((SEED, index, copy))
            yield int(label), f"{index:04d}_{copy}.png", distort(image, rng)


def materialize(root: str, name: str, build: Callable[[np.ndarray, np.ndarray], Images]) -> None:
    """Write dataset ``name`` as PNGs under ``root`` unless a complete copy is already there.

    The tree, its raw-pixel baseline and its marker are built in a temporary sibling directory
    and renamed into place, so a crash never leaves a half-written dataset, and concurrent runs
    sharing ``root`` never see one: the first rename wins and the others discard their copy.
    """
    marker = os.path.join(root, _COMPLETE)
    record = _CONSTRUCTIONS[name]
    expected = "" if record is None else json.dumps({"dataset": name, **record}, sort_keys=True)
    if os.path.exists(marker):
        with open(marker) as f:
            if f.read() == expected:
                return
        raise ConfigError(f"data.root: {root} holds digits written for another dataset or "
                          f"version than data.name={name}; remove it or choose another data.root")
    if os.path.exists(root):
        raise ConfigError(f"data.root: {root} exists but is not a dataset written by rcdml "
                          f"(no {_COMPLETE} marker); remove it or choose another data.root")
    from sklearn.datasets import load_digits

    digits = load_digits()
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}-", dir=parent)
    evaluation = []
    for label, filename, pixels in build(digits.images, digits.target):
        folder = os.path.join(tmp, str(label))
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(os.path.join(folder, filename))
        if label >= FIRST_EVAL_DIGIT:
            evaluation.append((label, filename, pixels))
    # In the order a scan of the folders lists the files.
    evaluation.sort(key=lambda item: item[:2])
    np.savez(os.path.join(tmp, BASELINE_FILE), pixels=np.stack([p for _, _, p in evaluation]),
             labels=np.array([label for label, _, _ in evaluation]))
    with open(os.path.join(tmp, _COMPLETE), "w") as f:
        f.write(expected)
    try:
        os.rename(tmp, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.exists(marker):
            raise


def raw_pixel_baseline(root: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The raw pixels (one float64 row per image) and labels of the evaluation digits, recorded
    when ``root`` was written; None for a tree written before they were recorded."""
    path = os.path.join(root, BASELINE_FILE)
    if not os.path.exists(path):
        return None
    with np.load(path) as saved:
        return saved["pixels"].reshape(len(saved["pixels"]), -1).astype(np.float64), saved["labels"]


def _reader(name: str, build: Callable[[np.ndarray, np.ndarray], Images]) -> Callable[[str], Catalog]:
    def read(root: str) -> Catalog:
        with main_process_first():
            materialize(root, name, build)
        return halves_catalog(scan_class_folders(root))
    return read


register_dataset("digits", embedded=True, baseline=raw_pixel_baseline)(
    _reader("digits", distorted_images))
register_dataset("digits8x8", embedded=True, baseline=raw_pixel_baseline)(
    _reader("digits8x8", plain_images))
