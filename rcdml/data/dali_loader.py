"""NVIDIA DALI pipelines: the sampler feeds file bytes through a parallel external source, DALI
decodes (nvJPEG with ``device="mixed"`` on a GPU, libjpeg-turbo/libpng in CPU-only mode), crops,
resizes, flips and normalises, and the batches arrive as torch tensors.

The geometry of every sample comes from :mod:`rcdml.data.geometry` (see
:mod:`rcdml.data.dali_source`), so for the same ``(index, seed)`` this pipeline and the
torchvision one crop the same box; they differ only by their decoders and resize filters (within
one grey level, except the outermost pixels of a training crop shrunk more than 2x). EXIF
orientation is ignored, as PIL (and the reference implementations) do.

``data.num_workers`` sets both DALI's decoding threads and the Python worker processes of the
parallel external source (file reads, header sizes, crop boxes); the workers are forked, or
spawned once CUDA is initialised (fork is unsafe then). With 0 workers the source runs in the
training process. DALI's CPU-only mode (``device_id=None``, ``device="cpu"`` decoding) is what runs
where there is no GPU, and what the tests exercise.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from rcdml.config import DataConfig
from rcdml.data.dali_source import EvalSource, TrainSource
from rcdml.data.datasets.base import ImageList
from rcdml.data.loader import ImageLoader
from rcdml.data.sampler import GlobalBatchSampler
from rcdml.models.inputs import Normalization

_PREFETCH = 2
_INTERPOLATION = {"bilinear": types.INTERP_LINEAR, "bicubic": types.INTERP_CUBIC,
                  "nearest": types.INTERP_NN}


def _decode_args(device: torch.device, norm: Normalization) -> dict:
    args = dict(device="mixed" if device.type == "cuda" else "cpu",
                output_type=types.BGR if norm.bgr else types.RGB, adjust_orientation=False)
    if device.type == "cuda":
        # nvJPEG's default chroma upsampling differs from libjpeg-turbo's (and PIL's).
        args["jpeg_fancy_upsampling"] = True
    return args


def _normalize(images, norm: Normalization, mirror=None):
    return fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW",
                                    mean=list(norm.mean), std=list(norm.std),
                                    **({} if mirror is None else {"mirror": mirror}))


def _source_args(workers: int) -> dict:
    """A batch-mode parallel source gives each prefetched batch to one worker, so its queue
    depth caps the workers that run at once: one batch in flight per worker."""
    return {"prefetch_queue_depth": max(_PREFETCH, workers)} if workers else {}


@pipeline_def
def _train_graph(source: TrainSource, device: torch.device, norm: Normalization, image_size: int,
                 workers: int):
    data, anchor, shape, mirror, labels = fn.external_source(
        source=source, num_outputs=5, batch=True, batch_info=True, parallel=workers > 0,
        **_source_args(workers))
    images = fn.decoders.image_slice(data, anchor, shape, axis_names="WH", normalized_anchor=False,
                                     normalized_shape=False, **_decode_args(device, norm))
    images = fn.resize(images, size=[image_size, image_size],
                       interp_type=_INTERPOLATION[norm.interpolation])
    return _normalize(images, norm, mirror), labels


@pipeline_def
def _eval_graph(source: EvalSource, device: torch.device, norm: Normalization, image_size: int,
                workers: int):
    data, size, anchor, labels, index = fn.external_source(
        source=source, num_outputs=5, batch=True, batch_info=True, parallel=workers > 0,
        **_source_args(workers))
    images = fn.decoders.image(data, **_decode_args(device, norm))
    images = fn.resize(images, size=size, interp_type=_INTERPOLATION[norm.interpolation])
    # A plain list would become a constant on the GPU operator's device, copied back to the
    # host for every batch (slice reads its shape on the CPU).
    crop = types.Constant(np.full(2, image_size, dtype=np.float32), device="cpu")
    images = fn.slice(images, anchor, crop, axis_names="WH",
                      normalized_anchor=False, normalized_shape=False)
    return _normalize(images, norm), labels, index


class DaliLoader(ImageLoader):
    """Builds and reuses this rank's DALI pipelines: one for training (rebuilt only when an
    epoch does not follow the last one, e.g. on resume) and one per evaluation image list."""

    name = "dali"

    def __init__(self, cfg: DataConfig, norm: Normalization, device: torch.device, seed: int,
                 eval_batch_size: int) -> None:
        self.cfg = cfg
        self.norm = norm
        self.device = device
        self.seed = seed
        self.eval_batch_size = eval_batch_size
        self._train: tuple[DALIGenericIterator, int] | None = None  # (iterator, next epoch)
        # id(image list) -> (the list, its iterator); holding the list keeps its id unique.
        self._eval: dict[int, tuple[ImageList, DALIGenericIterator]] = {}

    def _device_id(self) -> int | None:
        """The GPU of this rank, or None for DALI's CPU-only mode."""
        if self.device.type != "cuda":
            return None
        return self.device.index if self.device.index is not None else torch.cuda.current_device()

    def _build(self, graph, source, batch_size: int):
        workers = self.cfg.num_workers
        # Forked workers are cheap, but fork is unsafe once CUDA is initialised.
        start = "spawn" if torch.cuda.is_available() and torch.cuda.is_initialized() else "fork"
        pipe = graph(source, self.device, self.norm, self.cfg.image_size, workers,
                     batch_size=batch_size, num_threads=max(1, workers),
                     device_id=self._device_id(),
                     seed=self.seed, prefetch_queue_depth=_PREFETCH,
                     **({"py_num_workers": workers, "py_start_method": start} if workers else {}))
        pipe.build()
        return pipe

    def train_batches(self, images: ImageList, sampler: GlobalBatchSampler, epoch: int,
                      start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if start_step >= sampler.steps_per_epoch:
            return
        follows = self._train is not None and self._train[1] == epoch and start_step == 0
        if follows:
            iterator = self._train[0]
        else:
            source = TrainSource(images.paths, images.labels, sampler, epoch, start_step,
                                 self.cfg.crop_scale, self.cfg.flip)
            pipe = self._build(_train_graph, source, sampler.max_rank_batch)
            iterator = DALIGenericIterator([pipe], ["images", "labels"])
        self._train = None  # an epoch left unfinished makes the next one rebuild the pipeline
        for out in iterator:
            yield out[0]["images"], out[0]["labels"].view(-1).long()
        iterator.reset()
        self._train = (iterator, epoch + 1)

    def eval_batches(self, images: ImageList, share: range
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if not share:
            return
        cached = self._eval.pop(id(images), None)  # a pass left unfinished rebuilds the pipeline
        iterator = cached[1] if cached is not None else None
        if iterator is None:
            source = EvalSource(images.paths, images.labels, share, self.eval_batch_size,
                                self.cfg.resize_size, self.cfg.image_size)
            pipe = self._build(_eval_graph, source, self.eval_batch_size)
            iterator = DALIGenericIterator([pipe], ["images", "labels", "index"])
        for out in iterator:
            batch = out[0]
            yield batch["images"], batch["labels"].view(-1).long(), batch["index"].view(-1).long()
        iterator.reset()
        self._eval[id(images)] = (images, iterator)
