"""The module a backend wraps: embedding network + loss, so the loss's parameters (proxies) are
trained, synchronised and checkpointed exactly like the network's."""
from __future__ import annotations

import contextlib

import torch
from torch import nn


_AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(amp: str, device: torch.device | None = None) -> torch.dtype | None:
    """The autocast dtype of ``train.amp``; with ``device``, None off the GPU (inference on CPU
    gains nothing from bf16 and loses precision)."""
    if device is not None and device.type != "cuda":
        return None
    return _AMP_DTYPES[amp]


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
