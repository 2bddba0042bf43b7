"""In-Shop Clothes Retrieval (DeepFashion) in its official layout: ``img/`` and
``list_eval_partition.txt`` (image count, header, then ``image_name item_id evaluation_status``
with status train, query or gallery), at the root or under ``Eval/``. Classes are the items,
numbered by their id (``id_00000001`` is class 1). Default split: the official one; evaluation
retrieves the query images among the gallery images."""
from __future__ import annotations

import os

from rcdml.data.datasets.base import (GALLERY, QUERY, Catalog, LayoutError, find_dir_with,
                                      read_lines, register_dataset)

_ROLES = {"train": None, "query": QUERY, "gallery": GALLERY}


@register_dataset("inshop", download=(
    "In-Shop Clothes Retrieval: from https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/"
    "InShopRetrieval.html download Img/img.zip and Eval/list_eval_partition.txt, run `unzip "
    "img.zip -d <data.root>` and put list_eval_partition.txt in <data.root> (or "
    "<data.root>/Eval/), so that <data.root>/img/ exists."))
def read_inshop(root: str) -> Catalog:
    listing = find_dir_with(root, "list_eval_partition.txt", ("Eval",))
    if not os.path.isdir(os.path.join(root, "img")):
        raise LayoutError(f"data.root: {root} has list_eval_partition.txt but no img/ folder")
    rows = read_lines(os.path.join(listing, "list_eval_partition.txt"), skip=2)
    paths, ids, roles, names = [], [], [], {}
    train, test = set(), set()
    for rel, item, status in rows:
        if status not in _ROLES:
            raise ValueError(f"list_eval_partition.txt: unknown status {status!r} for {rel}; "
                             "expected train, query or gallery")
        number = int(item.rsplit("_", 1)[-1])
        names[number] = item
        paths.append(os.path.join(root, rel))
        ids.append(number)
        roles.append(_ROLES[status])
        (train if status == "train" else test).add(number)
    return Catalog(paths, ids, names, default_train=sorted(train), default_eval=sorted(test),
                   roles=roles)
