"""Embed a user's images with a trained checkpoint: a folder tree or a list file, alone or under
torchrun (each image embedded once, on one rank)."""
from __future__ import annotations

import os
import sys

import numpy as np

from rcdml.config import Config, ConfigError
from rcdml.config.typed import to_dict
from rcdml.data.datasets import ImageList
from rcdml.data.datasets.folder import scan_leaf_folders
from rcdml.data.image_check import describe_problems, find_unreadable
from rcdml.deploy.model import TrainedModel, embed_images
from rcdml.deploy.store import Items, parse_items
from rcdml.distributed import DistInfo, is_main


def list_images(key: str, source: str) -> Items:
    """The images of a folder tree or of a list file, in a fixed order. A folder's label is its
    name when every folder is named by a non-negative integer (``digits/7`` is 7), else its rank
    among the sorted folders; -1 for images directly in ``source``."""
    if os.path.isfile(source):
        items = parse_items(source)
    else:
        folders = scan_leaf_folders(source)
        numbered = all(name.isdigit() for name in folders if name != ".")
        items = Items([], [])
        for number, (name, files) in enumerate(folders.items()):
            label = -1 if name == "." else int(name) if numbered else number
            items.paths += [os.path.abspath(p) for p in files]
            items.labels += [label] * len(files)
    if not items.paths:
        raise ConfigError(f"{key}: {source} holds no images")
    return items


def readable(key: str, items: Items, cfg: Config) -> Items:
    """``items`` after the dataset's image check (``data.check_images``); unreadable images stop
    the command (``data.bad_images=error``) or are left out with one warning line (``skip``)."""
    problems = find_unreadable(items.paths, cfg.data.check_images)
    if not problems:
        return items
    first = describe_problems(problems, len(items.paths), cfg.data.check_images, shown=1)
    summary = "; ".join(line.strip() for line in first.splitlines())
    if cfg.data.bad_images == "error":
        raise ConfigError(f"{key}: {summary} (data.bad_images=skip leaves them out)")
    keep = [i for i, p in enumerate(items.paths) if p not in problems]
    if not keep:
        raise ConfigError(f"{key}: none of the {len(items.paths)} images is readable ({summary})")
    if is_main():
        print(f"warning: {key}: {summary}; left out (data.bad_images=skip)", file=sys.stderr)
    return Items([items.paths[i] for i in keep], [items.labels[i] for i in keep])


def embed_items(model: TrainedModel, items: Items, cfg: Config, dist: DistInfo) -> np.ndarray:
    images = ImageList(items.paths, items.labels)
    return embed_images(model, images, cfg, dist).cpu().numpy()


def manifest(model: TrainedModel, cfg: Config, source: str, array: np.ndarray) -> dict:
    """What the embeddings are, and what it takes to embed more images the same way."""
    return {"kind": "rcdml-embeddings", "checkpoint": os.path.abspath(model.checkpoint),
            "epoch": model.epoch, "fingerprint": model.fingerprint, "model": to_dict(cfg.model),
            "input": os.path.abspath(source), "count": int(array.shape[0]),
            "dim": int(array.shape[1]), "dtype": str(array.dtype),
            "normalized": cfg.model.normalize, "config": to_dict(cfg)}
