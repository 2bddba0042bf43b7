"""The embedded default dataset: scikit-learn's 8x8 handwritten digits (1,797 images).

It is written once as a ``root/<digit>/<index>.png`` folder, so it goes through the same reader
and image pipeline as any real dataset. Protocol: train on digits 0-4, retrieve among 5-9.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
from PIL import Image

from rcdml.data.datasets.base import Catalog, register_dataset
from rcdml.data.datasets.folder import halves_catalog, scan_class_folders
from rcdml.distributed import main_process_first

_COMPLETE = ".complete"


def materialize_digits(root: str) -> None:
    """Write the digits as PNGs under ``root`` unless a complete copy is already there.

    The tree is built in a temporary sibling directory and renamed into place, so a crash never
    leaves a half-written dataset, and concurrent runs sharing ``root`` never see one: the first
    rename wins and the others discard their copy.
    """
    marker = os.path.join(root, _COMPLETE)
    if os.path.exists(marker):
        return
    if os.path.exists(root):
        raise ValueError(f"data.root: {root} exists but is not a dataset written by rcdml "
                         f"(no {_COMPLETE} marker); remove it or choose another data.root")
    from sklearn.datasets import load_digits

    digits = load_digits()
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".digits-", dir=parent)
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        folder = os.path.join(tmp, str(int(label)))
        os.makedirs(folder, exist_ok=True)
        pixels = np.round(image * (255.0 / 16.0)).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(os.path.join(folder, f"{index:04d}.png"))
    open(os.path.join(tmp, _COMPLETE), "w").close()
    try:
        os.rename(tmp, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.exists(marker):
            raise


@register_dataset("digits", embedded=True)
def read_digits(root: str) -> Catalog:
    with main_process_first():
        materialize_digits(root)
    return halves_catalog(scan_class_folders(root))
