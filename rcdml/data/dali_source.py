"""The Python side of the DALI pipelines: batch callables for DALI's parallel external source.

They run in DALI's worker processes (forked, or spawned when CUDA is already initialised), so
this module imports neither torch nor DALI. Each call returns one batch as file bytes plus the
per-sample geometry from :mod:`rcdml.data.geometry`; DALI decodes, crops, resizes and normalises.
A batch is a function of ``BatchInfo`` (iteration, epoch) alone, as parallel workers require.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from rcdml.data.geometry import eval_geometry, train_geometry
from rcdml.data.image_io import read_image_file
from rcdml.data.sampler import GlobalBatchSampler


def _xy(x: float, y: float) -> np.ndarray:
    return np.array([x, y], dtype=np.float32)


class TrainSource:
    """This rank's slice of global batch ``step`` of ``epoch`` from the sampler.

    DALI counts epochs from 0 for each pipeline; the pipeline for a run's ``first_epoch`` starts
    that epoch at ``start_step`` (a resumed run) and later epochs at step 0.
    Outputs: bytes, crop anchor (x, y), crop shape (w, h), mirror flag, label.
    """

    def __init__(self, paths: Sequence[str], labels: Sequence[int], sampler: GlobalBatchSampler,
                 first_epoch: int, start_step: int, scale: Sequence[float], flip: bool) -> None:
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.sampler = sampler
        self.first_epoch = first_epoch
        self.start_step = start_step
        self.scale = (float(scale[0]), float(scale[1]))
        self.flip = flip

    def __call__(self, info):
        step = info.iteration + (self.start_step if info.epoch_idx == 0 else 0)
        if step >= self.sampler.steps_per_epoch:
            raise StopIteration
        data, anchors, shapes, mirrors, labels = [], [], [], [], []
        for index, seed in self.sampler.rank_slice(self.first_epoch + info.epoch_idx, step):
            raw, width, height = read_image_file(self.paths[index])
            geo = train_geometry(width, height, seed, self.scale, self.flip)
            data.append(raw)
            anchors.append(_xy(geo.box.left, geo.box.top))
            shapes.append(_xy(geo.box.width, geo.box.height))
            mirrors.append(np.array(int(geo.flip), dtype=np.int32))
            labels.append(self.labels[index:index + 1])
        return data, anchors, shapes, mirrors, labels


class EvalSource:
    """Consecutive batches of ``indices`` (this rank's shard), in order, once per epoch.
    Outputs: bytes, resized size (h, w), crop anchor (x, y), label, dataset index."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int], indices: Sequence[int],
                 batch_size: int, resize_size: int, image_size: int) -> None:
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = batch_size
        self.resize_size = resize_size
        self.image_size = image_size

    def __call__(self, info):
        start = info.iteration * self.batch_size
        batch = self.indices[start:start + self.batch_size]
        if len(batch) == 0:
            raise StopIteration
        data, sizes, anchors, labels, indices = [], [], [], [], []
        for index in batch.tolist():
            raw, width, height = read_image_file(self.paths[index])
            geo = eval_geometry(width, height, self.resize_size, self.image_size)
            data.append(raw)
            sizes.append(np.array([geo.height, geo.width], dtype=np.float32))
            anchors.append(_xy(geo.crop.left, geo.crop.top))
            labels.append(self.labels[index:index + 1])
            indices.append(np.array([index], dtype=np.int64))
        return data, sizes, anchors, labels, indices
