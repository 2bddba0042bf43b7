"""The interface every training backend implements, so the training loop has no backend branches.

A backend owns how the :class:`~rcdml.engine.learner.MetricLearner` is wrapped for data
parallelism, how gradients are computed, clipped and applied, and how the trainable state
(network, proxies, optimizer, loss scaler) goes into and comes out of a checkpoint; the
checkpoint manager owns the file.
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
    def save_state(self, path: str) -> dict[str, Any]:
        """Every rank: the trainable state that goes into the checkpoint file ``path`` (rank 0
        writes it, :class:`rcdml.engine.checkpoint.CheckpointManager` decides when), at least
        ``model`` and ``loss`` (network and proxies, fp32) so evaluation never needs the backend.
        A backend that keeps state beside the file (DeepSpeed's shards) writes it here."""

    def after_save(self, path: str, saved: dict[str, Any]) -> None:
        """Rank 0, once the file ``path`` holding ``saved`` (what :meth:`save_state` returned) is
        committed: drop what it no longer refers to."""

    @abstractmethod
    def load_state(self, path: str, ckpt: dict[str, Any]) -> None:
        """Every rank: restore the trainable state from ``ckpt``, the content of the file
        ``path`` (already read and verified), and whatever the backend keeps beside it; a
        ``ValueError`` says in one line why the checkpoint does not fit this backend."""

    def close(self) -> None:
        """Training is over: drop what the backend holds beyond the learner (hooks, references
        to process groups), so that :func:`rcdml.distributed.shutdown` ends every group's
        threads. Nothing calls the backend after this (ZeRO-3 parameters stay partitioned)."""

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
