"""CUB-200-2011 in its official layout: ``CUB_200_2011/{images.txt, image_class_labels.txt,
classes.txt, images/}``. Default split (zero-shot, as in the papers): classes 1-100 train,
101-200 are retrieved."""
from __future__ import annotations

import os

from rcdml.data.datasets.base import Catalog, find_dir_with, read_lines, register_dataset


@register_dataset("cub", download=(
    "CUB-200-2011: download CUB_200_2011.tgz from https://www.vision.caltech.edu/datasets/"
    "cub_200_2011/ (CaltechDATA record https://data.caltech.edu/records/65de6-vp158) and run "
    "`tar xzf CUB_200_2011.tgz -C <data.root>`, so that <data.root>/CUB_200_2011/images.txt "
    "exists (data.root may also name the CUB_200_2011 folder itself)."))
def read_cub(root: str) -> Catalog:
    base = find_dir_with(root, "images.txt", ("CUB_200_2011",))
    names = {int(i): name for i, name in read_lines(os.path.join(base, "classes.txt"))}
    label_of = {image_id: int(c) for image_id, c in
                read_lines(os.path.join(base, "image_class_labels.txt"))}
    paths, ids = [], []
    for image_id, rel in read_lines(os.path.join(base, "images.txt")):
        if image_id not in label_of:
            raise ValueError(f"{base}/image_class_labels.txt has no class for image {image_id}")
        paths.append(os.path.join(base, "images", rel))
        ids.append(label_of[image_id])
    return Catalog(paths, ids, names, default_train=list(range(1, 101)),
                   default_eval=list(range(101, 201)))
