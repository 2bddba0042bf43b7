"""Omniglot: ``images_background/`` (964 characters, the standard training split) and
``images_evaluation/`` (659 characters, retrieved at evaluation). Every character folder is a
class, whether nested as ``<alphabet>/<character>/`` (the original zips) or flattened as
``<alphabet>__<character>/``. Classes are numbered background
first, each split in sorted folder order."""
from __future__ import annotations

import os

from rcdml.data.datasets.base import Catalog, find_dir_with, register_dataset
from rcdml.data.datasets.folder import catalog_from_classes, scan_leaf_folders

SPLITS = ("images_background", "images_evaluation")


@register_dataset("omniglot", download=(
    "Omniglot: extract images_background.zip and images_evaluation.zip from "
    "https://github.com/brendenlake/omniglot (python/) into <data.root>, so that <data.root>/images_background/ and <data.root>/images_evaluation/ exist."))
def read_omniglot(root: str) -> Catalog:
    base = find_dir_with(root, SPLITS[0], ("omniglot",))
    groups = []
    for split in SPLITS:
        folder = os.path.join(find_dir_with(base, split), split)
        classes = scan_leaf_folders(folder)
        groups.append({f"{split}/{name}": files for name, files in classes.items()})
    catalog, (train, evaluation) = catalog_from_classes(groups)
    catalog.default_train, catalog.default_eval = train, evaluation
    return catalog
