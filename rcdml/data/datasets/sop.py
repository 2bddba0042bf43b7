"""Stanford Online Products in its official layout: ``Ebay_train.txt`` and ``Ebay_test.txt``
(header, then ``image_id class_id super_class_id path`` per line) next to the
``<category>_final/`` image folders. Default split: the official lists (classes 1-11318 train,
11319-22634 are retrieved)."""
from __future__ import annotations

import os

from rcdml.data.datasets.base import Catalog, find_dir_with, read_lines, register_dataset


@register_dataset("sop", download=(
    "Stanford Online Products: download Stanford_Online_Products.zip from "
    "https://cvgl.stanford.edu/projects/lifted_struct/ and run `unzip "
    "Stanford_Online_Products.zip -d <data.root>`, so that "
    "<data.root>/Stanford_Online_Products/Ebay_train.txt exists (data.root may also name the "
    "Stanford_Online_Products folder itself)."))
def read_sop(root: str) -> Catalog:
    base = find_dir_with(root, "Ebay_train.txt", ("Stanford_Online_Products",))
    paths, ids, split_ids = [], [], []
    for name in ("Ebay_train.txt", "Ebay_test.txt"):
        classes = set()
        for _, class_id, _, rel in read_lines(os.path.join(base, name), skip=1):
            paths.append(os.path.join(base, rel))
            ids.append(int(class_id))
            classes.add(int(class_id))
        split_ids.append(sorted(classes))
    names = {c: str(c) for c in sorted(set(ids))}
    return Catalog(paths, ids, names, default_train=split_ids[0], default_eval=split_ids[1])
