"""Class splits: which classes train and which are retrieved at evaluation.

``data.train_classes`` / ``data.eval_classes`` are null (the dataset's default split, as in the
papers), a list of class numbers, or a string of ranges such as ``"1-100"`` or ``"1-50,75,90-99"``.
Class numbers are the catalog's (1-based, the dataset's own numbering). ``data.val_classes`` holds
classes out of the training split for model selection: class numbers as above, or a fraction of
the training classes, spread evenly over them.
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


def validation_classes(spec: str | Sequence[int] | float | None, train_ids: list[int]) -> list[int]:
    """The class numbers ``data.val_classes`` holds out of ``train_ids`` (none for null).

    A fraction f picks round(f x n) of the n training classes, evenly spaced in their sorted
    order: deterministic, independent of ``train.seed`` (so runs with different seeds select on
    the same classes), and spread over the dataset's class order (Omniglot's alphabets, CUB's
    bird families) rather than taking one end of it."""
    key = "data.val_classes"
    if spec is None:
        return []
    if isinstance(spec, float):
        if not 0.0 < spec < 1.0:
            raise ConfigError(f"{key}: {spec!r} is not a fraction of the training classes; use a "
                              "number between 0 and 1 (exclusive), or class numbers as a list or "
                              "ranges such as '1-10'")
        ordered = sorted(train_ids)
        count = round(spec * len(ordered))
        if not 2 <= count < len(ordered):
            raise ConfigError(f"{key}: {spec} of {len(ordered)} training classes is {count}; "
                              f"validation needs at least 2 classes and leaves at least 1 for "
                              f"training, so allowed: {2 / len(ordered):.3g} to "
                              f"{(len(ordered) - 1) / len(ordered):.3g}")
        return [ordered[int((i + 0.5) * len(ordered) / count)] for i in range(count)]
    ids = parse_classes(spec, key)
    train = set(train_ids)
    outside = [c for c in ids if c not in train]
    if outside:
        raise ConfigError(f"{key}: class(es) {outside[:10]} are not training classes; validation "
                          f"classes are held out of data.train_classes ({_describe(train_ids)})")
    if len(ids) < 2 or len(ids) == len(train):
        raise ConfigError(f"{key}: {len(ids)} of {len(train)} training classes; validation needs "
                          "at least 2 classes and leaves at least 1 for training")
    return ids


def split_catalog(catalog: Catalog, train_classes=None, eval_classes=None,
                  val_classes=None) -> RetrievalData:
    """Training images of the train classes (less the validation classes); evaluation images of
    the eval classes, as one query set or, when the catalog has query/gallery roles, as queries
    against a gallery; validation images, every image of their classes, as one query set."""
    train_ids = parse_classes(train_classes, "data.train_classes") or catalog.default_train
    eval_ids = parse_classes(eval_classes, "data.eval_classes") or catalog.default_eval
    val_ids = validation_classes(val_classes, train_ids)
    held_out = set(val_ids)
    (train,) = _select(catalog, [c for c in train_ids if c not in held_out], "data.train_classes",
                       (None,))
    (val,) = _select(catalog, val_ids, "data.val_classes", (None,)) if val_ids else (None,)
    if catalog.roles is None:
        (query,) = _select(catalog, eval_ids, "data.eval_classes", (None,))
        return RetrievalData(train, query, val=val)
    query, gallery = _select(catalog, eval_ids, "data.eval_classes", (QUERY, GALLERY))
    return RetrievalData(train, query, gallery, val)


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
