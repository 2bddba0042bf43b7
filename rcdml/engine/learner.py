"""The module a backend wraps: embedding network + loss, so the loss's parameters (proxies) are
trained, synchronised and checkpointed exactly like the network's."""
from __future__ import annotations

import torch
from torch import nn

from rcdml.config import TrainConfig
from rcdml.losses import GlobalBatchLoss


def prepare_network(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """``train.grad_checkpointing``, ``train.channels_last`` and ``train.compile`` applied to the
    network (an EmbeddingNet), before the optimizer and the backend see it. Compiled in place
    (``nn.Module.compile``), so parameter names, state_dicts and checkpoints stay those of the
    eager network."""
    if cfg.grad_checkpointing:
        model.backbone.set_grad_checkpointing(True)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.compile:
        model.compile(backend=cfg.compile_backend)
    return model


class MetricLearner(nn.Module):
    def __init__(self, model: nn.Module, loss: GlobalBatchLoss,
                 amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.amp_dtype = amp_dtype
        self.channels_last = channels_last

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(images.device.type, dtype=self.amp_dtype,
                            enabled=self.amp_dtype is not None):
            embeddings = self.model(images)
        # The loss leaves autocast and upcasts to fp32 itself (GlobalBatchLoss).
        return self.loss(embeddings, labels.to(embeddings.device))
