"""Class splits: which classes train and which are retrieved at evaluation.

``data.train_classes`` / ``data.eval_classes`` are null (the dataset's default split, as in the
papers), a list of class numbers, or a string of ranges such as ``"1-100"`` or ``"1-50,75,90-99"``.
Class numbers are the catalog's (1-based, the dataset's own numbering).
"""
from __future__ import annotations

import re
from typing import Sequence

from rcdml.config import ConfigError
from rcdml.data.datasets.base import GALLERY, QUERY, Catalog, ImageList, RetrievalData

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_classes(spec: str | Sequence[int] | None, key: str) -> list[int] | None:
    """The class numbers of ``spec`` in the order given, or None for the dataset default."""
    if spec is None:
        return None
    if isinstance(spec, str):
        numbers: list[int] = []
        for part in spec.split(","):
            match = _RANGE.match(part)
            if not match:
                raise ConfigError(f"{key}: {spec!r} is not a class list; use ranges and numbers "
                                  "such as '1-100' or '1-50,75,90-99', or a YAML list of numbers")
            lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
            if hi < lo:
                raise ConfigError(f"{key}: range {part.strip()!r} is empty (end before start)")
            numbers.extend(range(lo, hi + 1))
    else:
        numbers = list(spec)
    if not numbers:
        raise ConfigError(f"{key}: no classes selected; use null for the dataset's default split")
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    if repeated:
        raise ConfigError(f"{key}: classes listed twice: {repeated[:10]}")
    return numbers


def _describe(ids: Sequence[int]) -> str:
    """Compact ranges of sorted class numbers, e.g. '1-100, 102'."""
    parts: list[str] = []
    ids = sorted(ids)
    start = prev = ids[0]
    for n in ids[1:] + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(f"{start}-{prev}" if prev > start else f"{start}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


def _select(catalog: Catalog, classes: list[int], key: str, roles: tuple) -> list[ImageList]:
    """One ImageList per entry of ``roles`` (QUERY, GALLERY or None for any image), all labelled
    with one mapping class -> position in ``classes``."""
    label_of = {c: i for i, c in enumerate(classes)}
    unknown = [c for c in classes if c not in catalog.class_names]
    if unknown:
        raise ConfigError(f"{key}: class(es) {unknown[:10]} do not exist; this dataset has classes "
                          f"{_describe(list(catalog.class_names))}")
    names = [catalog.class_names[c] for c in classes]
    lists = [ImageList([], [], names) for _ in roles]
    counts = dict.fromkeys(classes, 0)
    for i, (path, cid) in enumerate(zip(catalog.paths, catalog.class_ids)):
        label = label_of.get(cid)
        if label is None:
            continue
        role = catalog.roles[i] if catalog.roles is not None else None
        for wanted, out in zip(roles, lists):
            if wanted is None or wanted == role:
                out.paths.append(path)
                out.labels.append(label)
                counts[cid] += 1
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        what = " or ".join(r for r in roles if r)
        kind = f"{what} images" if what else "images"
        raise ConfigError(f"{key}: class(es) {empty[:10]} have no {kind}")
    return lists


def split_catalog(catalog: Catalog, train_classes=None, eval_classes=None) -> RetrievalData:
    """Training images of the train classes; evaluation images of the eval classes, as one query
    set or, when the catalog has query/gallery roles, as queries against a gallery."""
    train_ids = parse_classes(train_classes, "data.train_classes") or catalog.default_train
    eval_ids = parse_classes(eval_classes, "data.eval_classes") or catalog.default_eval
    (train,) = _select(catalog, train_ids, "data.train_classes", (None,))
    if catalog.roles is None:
        (query,) = _select(catalog, eval_ids, "data.eval_classes", (None,))
        return RetrievalData(train, query)
    query, gallery = _select(catalog, eval_ids, "data.eval_classes", (QUERY, GALLERY))
    return RetrievalData(train, query, gallery)


def drop_images(images: ImageList, bad: set[str], relabel: bool) -> ImageList:
    """``images`` without the paths in ``bad``. With ``relabel``, classes left without images are
    removed and the labels made contiguous again (training: one proxy per class that has images);
    without, labels keep their meaning (evaluation: query and gallery share one mapping)."""
    keep = [i for i, p in enumerate(images.paths) if p not in bad]
    paths = [images.paths[i] for i in keep]
    labels = [images.labels[i] for i in keep]
    if not relabel:
        return ImageList(paths, labels, list(images.class_names))
    present = sorted(set(labels))
    new = {old: i for i, old in enumerate(present)}
    names = [images.class_names[old] for old in present] if images.class_names else []
    return ImageList(paths, [new[label] for label in labels], names)
