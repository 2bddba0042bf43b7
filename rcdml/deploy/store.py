"""The folders the deploy commands write and read: embeddings (``embeddings.npy``) or an index
(``index.faiss``), with ``items.tsv`` (row i: the path and label of id i; label -1 = unknown)
and ``manifest.json``. Rank 0 writes, each file atomically."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from rcdml.config import ConfigError
from rcdml.io import atomic_write_bytes, atomic_write_text

MANIFEST, ITEMS = "manifest.json", "items.tsv"
EMBEDDINGS, INDEX = "embeddings.npy", "index.faiss"


@dataclass
class Items:
    paths: list[str]
    labels: list[int]


def items_text(items: Items) -> str:
    return "".join(f"{p}\t{y}\n" for p, y in zip(items.paths, items.labels))


def parse_items(path: str) -> Items:
    """A list file: one image per line, optionally ``<tab>label``; relative paths are taken
    from the file's folder. Paths are normalised, so ``a/../b.png`` and a folder scan's
    ``b.png`` are the same image (search's self-match exclusion compares paths)."""
    folder = os.path.dirname(os.path.abspath(path))
    paths, labels = [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            name, _, label = line.partition("\t")
            try:
                labels.append(int(label) if label.strip() else -1)
            except ValueError:
                raise ConfigError(f"input: {path} line {number}: label {label!r} is not an "
                                  "integer") from None
            paths.append(os.path.normpath(os.path.join(folder, name)))
    return Items(paths, labels)


def write_folder(folder: str, items: Items, manifest: dict[str, Any], name: str, write) -> None:
    """``name`` (written by ``write(file)``), items.tsv and manifest.json under ``folder``; the
    manifest last, so a folder with a manifest is complete."""
    atomic_write_bytes(os.path.join(folder, name), write)
    atomic_write_text(os.path.join(folder, ITEMS), items_text(items))
    atomic_write_text(os.path.join(folder, MANIFEST), json.dumps(manifest, indent=2) + "\n")


def write_embeddings(folder: str, array: np.ndarray, items: Items, manifest: dict) -> None:
    write_folder(folder, items, manifest, EMBEDDINGS, lambda f: np.save(f, array))


def read_folder(key: str, folder: str, name: str) -> tuple[str, Items, dict[str, Any]]:
    """(path of ``name``, items, manifest) of a folder written by :func:`write_folder`."""
    if os.path.isfile(folder) and os.path.basename(folder) == name:
        folder = os.path.dirname(folder)
    path = os.path.join(folder, name)
    for required in (path, os.path.join(folder, MANIFEST), os.path.join(folder, ITEMS)):
        if not os.path.isfile(required):
            raise ConfigError(f"{key}: {folder} has no {os.path.basename(required)}; pass a folder "
                              f"written by rcdml-{'embed' if name == EMBEDDINGS else 'index'}")
    with open(os.path.join(folder, MANIFEST)) as f:
        manifest = json.load(f)
    items = parse_items(os.path.join(folder, ITEMS))
    if len(items.paths) != manifest.get("count", len(items.paths)):
        raise ConfigError(f"{key}: {os.path.join(folder, ITEMS)} lists {len(items.paths)} items but "
                          f"{os.path.join(folder, MANIFEST)} counts {manifest['count']}; the folder "
                          "is damaged, write it again")
    return path, items, manifest


def read_embeddings(key: str, folder: str) -> tuple[np.ndarray, Items, dict[str, Any]]:
    path, items, manifest = read_folder(key, folder, EMBEDDINGS)
    array = np.load(path, allow_pickle=False)
    if array.ndim != 2 or array.shape[0] != len(items.paths):
        raise ConfigError(f"{key}: {path} holds {array.shape} embeddings for {len(items.paths)} "
                          "items")
    # A NaN row is never found by a search and finds nothing as a query: refuse it by name.
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if len(bad):
        raise ConfigError(f"{key}: {path} row {bad[0]} ({items.paths[bad[0]]}) is not finite (NaN "
                          f"or inf), {len(bad)} such rows in all; embed those images again")
    return array, items, manifest
