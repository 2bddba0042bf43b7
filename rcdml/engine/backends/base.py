"""The interface every training backend implements, so the training loop has no backend branches.

A backend owns how the :class:`~rcdml.engine.learner.MetricLearner` is wrapped for data
parallelism, how gradients are computed, clipped and applied, and how the trainable state
(network, proxies, optimizer, loss scaler) is written to and read from checkpoints.
"""
from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Any, Iterable

import torch
from torch import nn


class Backend(ABC):
    optimizer: torch.optim.Optimizer

    learner: nn.Module

    @abstractmethod
    def prepare(self) -> None:
        """(Re)wrap the learner; called before training and again whenever the set of
        trainable parameters changes (end of warm-up)."""

    @abstractmethod
    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Forward pass of the wrapped learner: the loss on the global batch."""

    @abstractmethod
    def backward(self, loss: torch.Tensor) -> None: ...

    @abstractmethod
    def step(self, skip: bool = False) -> None:
        """Clip, apply and clear the gradients; with ``skip``, clear them without an update
        (a step whose loss was not finite)."""

    @abstractmethod
    def save(self, path: str, state: dict[str, Any]) -> None:
        """Write a checkpoint at ``path`` holding the trainable state plus the trainer's
        ``state``; called on every rank, written atomically. ``path`` must afterwards be
        readable by :func:`rcdml.io.load_checkpoint` with at least the keys
        ``model`` and ``loss`` (network and proxies), so evaluation never needs the backend."""

    @abstractmethod
    def load(self, path: str) -> dict[str, Any]:
        """Restore the trainable state from ``path`` on every rank; return the trainer's state."""

    def artifacts(self, path: str) -> list[str]:
        """Every file or directory that makes up the checkpoint saved at ``path``."""
        return [path]

    @property
    def collective_forward(self) -> bool:
        """Whether a forward pass of the model is a collective (ZeRO-3 gathers the parameters
        of each layer as it runs): every rank must then run the same forwards, evaluation and
        the monitoring probe included."""
        return False

    def full_parameters(self, params: Iterable[nn.Parameter]):
        """A context in which ``params`` hold their full values on every rank (a collective
        where they are sharded; every rank enters it)."""
        return contextlib.nullcontext()
