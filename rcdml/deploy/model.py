"""The network of a checkpoint, its fingerprint, and the evaluation-only loader of rcdml.deploy."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rcdml.checkpoint_file import fingerprint
from rcdml.config import Config
from rcdml.data.datasets import ImageList
from rcdml.data.torch_loader import TorchLoader
from rcdml.data.transforms import eval_transform
from rcdml.distributed import DistInfo, rank_share
from rcdml.eval.checkpoint import load_model, read_checked_checkpoint
from rcdml.eval.embed import amp_dtype, embed_shard, gather_in_order
from rcdml.models import Normalization, input_normalization


@dataclass
class TrainedModel:
    network: nn.Module
    fingerprint: str
    # What the network expects of its input (the loader and the exported model apply it).
    normalization: Normalization
    checkpoint: str
    epoch: int | None


def load_trained(cfg: Config, checkpoint: str) -> TrainedModel:
    """The network of ``checkpoint`` in eval mode on the CPU; config errors for a file that is
    not a checkpoint of ``cfg``'s model."""
    ckpt: dict[str, Any] = read_checked_checkpoint(checkpoint, cfg)
    return TrainedModel(load_model(cfg, ckpt, checkpoint).eval(), fingerprint(ckpt["model"]),
                        input_normalization(cfg.model), checkpoint,
                        ckpt.get("epoch"))


def image_loader(images: ImageList, cfg: Config, dist: DistInfo, norm: Normalization):
    """This rank's contiguous shard of ``images`` as ``(images, labels, index)`` batches through
    the evaluation transform: the evaluation-only data path of every rcdml.deploy command."""
    loader = TorchLoader(cfg.data, norm, eval_transform(cfg.data, norm),
                         cfg.eval.batch_size, pin_memory=dist.device.type == "cuda")
    return loader.eval_batches(images, rank_share(len(images), dist.world_size, dist.rank))


def embed_images(model: TrainedModel, images: ImageList, cfg: Config,
                 dist: DistInfo) -> torch.Tensor:
    """float32 embeddings of ``images`` in order, each embedded on one rank; every rank gets
    all of them."""
    model.network.to(dist.device)
    emb, labels, idx = embed_shard(model.network, image_loader(images, cfg, dist, model.normalization),
                                   dist.device, amp_dtype(cfg.eval.amp, dist.device))
    return gather_in_order(emb, labels, idx, len(images))[0]
