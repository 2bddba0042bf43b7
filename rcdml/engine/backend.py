"""Training backends behind one interface, so the training loop has no backend branches.

A backend owns how the :class:`MetricLearner` is wrapped for data parallelism, how gradients are
computed, clipped and applied, and the optimizer/scaler state that goes into checkpoints.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rcdml.distributed import is_distributed


class Backend(ABC):
    optimizer: torch.optim.Optimizer

    @abstractmethod
    def prepare(self, learner: nn.Module) -> None:
        """(Re)wrap ``learner``; called again whenever the set of trainable parameters changes."""

    @abstractmethod
    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Forward pass of the wrapped learner: the loss on the global batch."""

    @abstractmethod
    def backward(self, loss: torch.Tensor) -> None: ...

    @abstractmethod
    def step(self) -> None:
        """Clip, apply and clear the gradients."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class DDPBackend(Backend):
    """DistributedDataParallel (or the bare module in a single process), with optional fp16 loss
    scaling and gradient-value clipping. Gradients are averaged over ranks by DDP; the loss's
    all-gather sums them in backward, so the update is that of one process on the global batch."""

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device,
                 grad_clip_value: float | None = None, fp16: bool = False) -> None:
        self.optimizer = optimizer
        self.device = device
        self.grad_clip_value = grad_clip_value
        self.scaler = torch.amp.GradScaler(device.type) if fp16 else None
        self.module: nn.Module | None = None
        self.wrapped: nn.Module | None = None

    def prepare(self, learner: nn.Module) -> None:
        self.module = learner
        if is_distributed():
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(learner, device_ids=ids)
        else:
            self.wrapped = learner

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.wrapped(images, labels)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.grad_clip_value is not None:
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_value_(params, self.grad_clip_value)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        state = {"optimizer": self.optimizer.state_dict()}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


def build_backend(name: str, optimizer: torch.optim.Optimizer, device: torch.device,
                  grad_clip_value: float | None, amp: str) -> Backend:
    if name == "ddp":
        return DDPBackend(optimizer, device, grad_clip_value, fp16=amp == "fp16")
    raise ValueError(f"train.backend: unknown backend {name!r}")
