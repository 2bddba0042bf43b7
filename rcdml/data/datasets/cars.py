"""Cars-196 in its official layout: ``cars_annos.mat`` (struct array ``annotations`` with
``relative_im_path``, ``class``, ``test``, bounding boxes; cell array ``class_names``) and
``car_ims/``. Default split (zero-shot, as in the papers): classes 1-98 train, 99-196 are
retrieved; the file's own train/test flag is for classification and is not used."""
from __future__ import annotations

import os

import numpy as np

from rcdml.data.datasets.base import Catalog, find_dir_with, register_dataset


def _text(value) -> str:
    """A MATLAB char array as loaded by scipy (possibly wrapped in 1-element arrays)."""
    while isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else "".join(value.tolist())
    return str(value)


@register_dataset("cars", download=(
    "Cars-196: download car_ims.tgz and cars_annos.mat from "
    "https://ai.stanford.edu/~jkrause/cars/car_dataset.html ('all images and annotations'), "
    "run `tar xzf car_ims.tgz -C <data.root>` and put cars_annos.mat in <data.root>, so that "
    "<data.root>/cars_annos.mat and <data.root>/car_ims/ exist."))
def read_cars(root: str) -> Catalog:
    from scipy.io import loadmat

    base = find_dir_with(root, "cars_annos.mat", ("cars196", "stanford_cars"))
    mat = loadmat(os.path.join(base, "cars_annos.mat"), squeeze_me=True)
    annotations = np.atleast_1d(mat["annotations"])
    paths = [os.path.join(base, _text(a["relative_im_path"])) for a in annotations]
    ids = [int(a["class"]) for a in annotations]
    if "class_names" in mat:
        names = {i + 1: _text(n) for i, n in enumerate(np.atleast_1d(mat["class_names"]))}
    else:
        names = {c: str(c) for c in sorted(set(ids))}
    return Catalog(paths, ids, names, default_train=list(range(1, 99)),
                   default_eval=list(range(99, 197)))
