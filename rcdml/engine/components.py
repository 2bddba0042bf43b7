"""What a run trains and with what: the network, the loss, the learner that joins them, the
optimizer, the backend and the data pipeline, built from a config."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rcdml.config import Config
from rcdml.data import DataPipeline, build_pipeline
from rcdml.distributed import DistInfo
from rcdml.engine.backends import Backend, build_backend
from rcdml.engine.learner import MetricLearner, prepare_network
from rcdml.engine.optim import build_optimizer, param_groups
from rcdml.eval.embed import amp_dtype
from rcdml.losses import GlobalBatchLoss, build_loss
from rcdml.models import EmbeddingNet, build_model, input_normalization


@dataclass
class Components:
    """What a :class:`Trainer` trains and with what. :func:`build_components` makes them from a
    config; a test may build its own (without ``pipeline``, the trainer only takes the steps it is
    given batches for). The schedule is not a component: the trainer derives it from
    ``cfg.optim`` and the resume point."""
    model: EmbeddingNet
    loss: GlobalBatchLoss
    learner: MetricLearner
    optimizer: torch.optim.Optimizer
    backend: Backend
    pipeline: DataPipeline | None = None


def build_components(cfg: Config, dist: DistInfo) -> Components:
    model = prepare_network(build_model(cfg.model).to(dist.device), cfg.train)
    pipeline = build_pipeline(cfg, dist, input_normalization(cfg.model))
    loss = build_loss(cfg.loss, pipeline.num_train_classes, cfg.model.embedding_size).to(dist.device)
    learner = MetricLearner(model, loss, amp_dtype(cfg.train.amp), cfg.train.channels_last)
    optimizer = build_optimizer(param_groups(model, loss, cfg.optim), cfg.optim)
    backend = build_backend(cfg, learner, optimizer, dist.device)
    return Components(model, loss, learner, optimizer, backend, pipeline)
