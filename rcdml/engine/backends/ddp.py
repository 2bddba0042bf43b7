"""DistributedDataParallel backend (the bare module in a single process)."""
from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rcdml.distributed import is_distributed, is_main
from rcdml.engine.backends.base import Backend


# torch 2.14 deprecates broadcast_buffers (a FutureWarning per DDP) for forward_sync_buffers.
SYNC_BUFFERS = ("forward_sync_buffers" if "forward_sync_buffers"
                in inspect.signature(DistributedDataParallel).parameters else "broadcast_buffers")


class DDPBackend(Backend):
    """Gradients are averaged over ranks by DDP; the loss's all-gather sums them in backward, so
    the update is exactly that of one process on the global batch. Optional fp16 loss scaling
    and gradient-value clipping. Its whole state goes into the checkpoint file."""

    def __init__(self, learner: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                 grad_clip_value: float | None = None, fp16: bool = False) -> None:
        self.learner = learner
        self.optimizer = optimizer
        self.device = device
        self.grad_clip_value = grad_clip_value
        self.scaler = torch.amp.GradScaler(device.type) if fp16 else None
        self.wrapped: nn.Module = learner

    def prepare(self) -> None:
        if is_distributed():
            ids = [self.device.index] if self.device.type == "cuda" else None
            # Buffers that no forward changes (frozen BatchNorm statistics) need no broadcast
            # from rank 0 before every forward.
            self.wrapped = DistributedDataParallel(self.learner, device_ids=ids,
                                                   **{SYNC_BUFFERS: _buffers_change(self.learner)})

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.wrapped(images, labels)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, skip: bool = False) -> None:
        if skip:
            self.optimizer.zero_grad(set_to_none=True)
            return
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

    def save_state(self, path: str) -> dict[str, Any]:
        if not is_main():
            return {}
        trained = {"model": self.learner.model.state_dict(), "loss": self.learner.loss.state_dict(),
                   "optimizer": self.optimizer.state_dict()}
        if self.scaler is not None:
            trained["scaler"] = self.scaler.state_dict()
        return trained

    def load_state(self, path: str, ckpt: dict[str, Any]) -> None:
        if "deepspeed" in ckpt:
            raise ValueError(f"train.resume: {path} was written by train.backend=deepspeed (its "
                             "optimizer state is sharded next to it); resume it with that backend")
        self.learner.model.load_state_dict(ckpt["model"])
        self.learner.loss.load_state_dict(ckpt["loss"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and ckpt.get("scaler") is not None:
            self.scaler.load_state_dict(ckpt["scaler"])


def _buffers_change(module: nn.Module) -> bool:
    """Whether a training forward may update a buffer: a BatchNorm layer that tracks running
    statistics and stays in training mode under ``module.train()`` (frozen ones do not)."""
    was_training = module.training
    module.train()
    try:
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
                   and m.track_running_stats for m in module.modules())
    finally:
        module.train(was_training)
