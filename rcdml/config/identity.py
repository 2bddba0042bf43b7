"""The config keys a checkpoint fixes: the one list that training (resume) and evaluation share.

A checkpoint's weights, proxies and optimizer state only make sense with the model, loss, data
split, batch composition, backend, optimizer kind and seed they were trained with; continuing
or evaluating it under other values would silently mean something else. Every other key (epochs,
learning rates, schedule, evaluation, monitoring, logging, checkpoint cadence, timeouts) may
change when a run continues, and takes effect from the resume point.
"""
from __future__ import annotations

from typing import Any

# What an embedding is: evaluation checks these against the checkpoint it scores.
MODEL_KEYS = ("model.backbone", "model.embedding_size", "model.pooling", "model.normalize")

# What a run is: resuming checks these (whole sections where a section is named).
RUN_KEYS = MODEL_KEYS + (
    "model.freeze_bn", "model.train_bn_affine", "model.timm_kwargs",
    "loss",
    "data.name", "data.train_classes", "data.eval_classes", "data.val_classes", "data.image_size",
    "data.sampler", "data.samples_per_class",
    "train.batch_size", "train.backend", "train.seed",
    "optim.name",
    # They shape the optimizer's param groups, whose state a checkpoint holds.
    "optim.layer_decay", "optim.no_weight_decay",
)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> {"section.key": value}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _fixed(key: str, keys: tuple[str, ...]) -> bool:
    return any(key == k or key.startswith(k + ".") for k in keys)


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(dotted key, saved value, current value) for every leaf that differs; a key one side
    lacks (an older config) is not a difference."""
    old, new = flatten(saved), flatten(current)
    return [(k, old[k], new[k]) for k in new if k in old and old[k] != new[k]]


def split_differences(saved: dict[str, Any], current: dict[str, Any],
                      keys: tuple[str, ...] = RUN_KEYS):
    """(fixed, changeable): the differences of :func:`differences`, split by ``keys``."""
    diffs = differences(saved, current)
    return ([d for d in diffs if _fixed(d[0], keys)], [d for d in diffs if not _fixed(d[0], keys)])


def describe(diffs: list[tuple[str, Any, Any]]) -> str:
    """"model.pooling 'avg+max' -> 'avg', train.batch_size 64 -> 32"."""
    return ", ".join(f"{key} {old!r} -> {new!r}" for key, old, new in diffs)
