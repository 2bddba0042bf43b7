"""The module a backend wraps: embedding network + loss, so the loss's parameters (proxies) are
trained, synchronised and checkpointed exactly like the network's."""
from __future__ import annotations

import torch
from torch import nn

from rcdml.losses import GlobalBatchLoss


_AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(amp: str, device: torch.device | None = None) -> torch.dtype | None:
    """The autocast dtype of ``train.amp``; with ``device``, None off the GPU (inference on CPU
    gains nothing from bf16 and loses precision)."""
    if device is not None and device.type != "cuda":
        return None
    return _AMP_DTYPES[amp]


class MetricLearner(nn.Module):
    def __init__(self, model: nn.Module, loss: GlobalBatchLoss,
                 amp_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.amp_dtype = amp_dtype

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(images.device.type, dtype=self.amp_dtype,
                            enabled=self.amp_dtype is not None):
            embeddings = self.model(images)
        # The loss leaves autocast and upcasts to fp32 itself (GlobalBatchLoss).
        return self.loss(embeddings, labels.to(embeddings.device))
