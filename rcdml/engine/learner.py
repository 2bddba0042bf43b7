"""The module a backend wraps: embedding network + loss, so the loss's parameters (proxies) are
trained, synchronised and checkpointed exactly like the network's."""
from __future__ import annotations

import contextlib

import torch
from torch import nn


class MetricLearner(nn.Module):
    def __init__(self, model: nn.Module, loss: nn.Module, amp_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.amp_dtype = amp_dtype

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        device_type = images.device.type
        autocast = (torch.autocast(device_type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            embeddings = self.model(images)
        # The loss exponentiates scaled cosines (alpha=32): it always runs in fp32.
        with torch.autocast(device_type, enabled=False):
            return self.loss(embeddings.float(), labels.to(embeddings.device))
