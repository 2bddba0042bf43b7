"""Training backends by ``train.backend``; all implement :class:`Backend`."""
from __future__ import annotations

import os
import shutil

import torch
from torch import nn

from rcdml.config import Config, ConfigError
from rcdml.distributed import get_world_size
from rcdml.engine.backends.base import Backend
from rcdml.engine.backends.ddp import DDPBackend
from rcdml.engine.backends.deepspeed_config import build_deepspeed_config, check_deepspeed


def check_backend_config(cfg: Config, world_size: int) -> None:
    """What ``train.backend`` and ``train.amp`` need of the machine and the DeepSpeed file."""
    if cfg.train.amp == "fp16" and not torch.cuda.is_available():
        raise ConfigError("train.amp: fp16 needs a GPU; use bf16 or none on CPU")
    if cfg.train.backend == "deepspeed":
        check_deepspeed(cfg, world_size)
    if cfg.train.compile:
        check_compile(cfg.train.compile_backend)


def check_compile(backend: str) -> None:
    """``train.compile_backend`` is one of torch.compile's, and inductor on a CPU has the C++
    compiler it generates its kernels with."""
    from torch._dynamo import list_backends

    allowed = list_backends(exclude_tags=())
    if backend not in allowed:
        raise ConfigError(f"train.compile_backend: {backend!r} is not a torch.compile backend; "
                          f"allowed: {', '.join(allowed)}")
    compilers = [os.environ.get("CXX", ""), "g++", "clang++", "c++"]
    if (backend == "inductor" and not torch.cuda.is_available()
            and not any(c and shutil.which(c) for c in compilers)):
        raise ConfigError("train.compile: inductor needs a C++ compiler on a CPU (g++ or clang++ "
                          "on PATH, or CXX); install one, or set train.compile_backend=aot_eager")


def build_backend(cfg: Config, learner: nn.Module, optimizer: torch.optim.Optimizer,
                  device: torch.device) -> Backend:
    """The backend of ``cfg.train.backend`` (``cfg`` is the whole run Config)."""
    if get_world_size() > 1 and cfg.model.sync_bn is not False:
        from rcdml.distributed.batchnorm import to_global_batchnorm

        # Before the optimizer's parameters reach DDP or DeepSpeed: the layers keep their tensors.
        to_global_batchnorm(learner.model)
    if cfg.train.backend == "ddp":
        return DDPBackend(learner, optimizer, device, cfg.train.grad_clip_value,
                          fp16=cfg.train.amp == "fp16")
    if cfg.train.backend == "deepspeed":
        from rcdml.engine.backends.deepspeed import DeepSpeedBackend

        return DeepSpeedBackend(learner, optimizer, build_deepspeed_config(cfg, get_world_size()),
                                cfg.train.grad_clip_value)
    raise ValueError(f"train.backend: unknown backend {cfg.train.backend!r}")


__all__ = ["Backend", "DDPBackend", "build_backend", "check_backend_config"]
