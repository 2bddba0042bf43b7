"""Checks of a typed config against the installed registries, the file system and the world
size; they run before any work so a mistake costs seconds, not a queued job."""
from __future__ import annotations

import os

import torch

from rcdml.config import Config, ConfigError
from rcdml.data import dali_available
from rcdml.data.datasets import check_dataset_config, dataset_names, dataset_spec
from rcdml.engine.backends.deepspeed_config import check_deepspeed
from rcdml.losses import loss_names
from rcdml.models import backbone_names


def _choice(key: str, value: str, allowed: list[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not allowed; allowed values: {', '.join(allowed)}")


def validate(cfg: Config, world_size: int = 1) -> None:
    _choice("model.backbone", cfg.model.backbone, backbone_names())
    _choice("loss.name", cfg.loss.name, loss_names())
    _choice("data.name", cfg.data.name, dataset_names())
    pretrained = cfg.model.pretrained
    if pretrained not in ("none", "imagenet") and not os.path.isfile(os.path.expanduser(pretrained)):
        raise ConfigError(f"model.pretrained: {pretrained} is not a file; allowed: none, imagenet, "
                          "or the path of a backbone state_dict")
    if not dataset_spec(cfg.data.name).embedded and not os.path.isdir(cfg.data.root):
        raise ConfigError(f"data.root: {cfg.data.root} does not exist (dataset {cfg.data.name})")
    lo, hi = cfg.data.crop_scale if len(cfg.data.crop_scale) == 2 else (None, None)
    if lo is None or lo > hi:
        raise ConfigError(f"data.crop_scale: {cfg.data.crop_scale} must be [min, max] with min <= max")
    if cfg.data.resize_size < cfg.data.image_size:
        raise ConfigError(f"data.resize_size: {cfg.data.resize_size} must be >= data.image_size "
                          f"({cfg.data.image_size})")
    if cfg.train.batch_size % world_size:
        raise ConfigError(f"train.batch_size: {cfg.train.batch_size} must be divisible by the world "
                          f"size {world_size}")
    if cfg.data.sampler == "balanced" and cfg.train.batch_size % cfg.data.samples_per_class:
        raise ConfigError(f"train.batch_size: {cfg.train.batch_size} must be a multiple of "
                          f"data.samples_per_class ({cfg.data.samples_per_class})")
    if cfg.data.loader == "dali" and not dali_available():
        raise ConfigError("data.loader: dali needs NVIDIA DALI (pip install rcdml[dali]); allowed "
                          "here: auto, torch")
    check_dataset_config(cfg.data, cfg.train.batch_size)
    if cfg.train.warmup_epochs >= cfg.train.epochs and cfg.train.warmup_epochs > 0:
        raise ConfigError(f"train.warmup_epochs: {cfg.train.warmup_epochs} must be smaller than "
                          f"train.epochs ({cfg.train.epochs})")
    if cfg.train.amp == "fp16" and not torch.cuda.is_available():
        raise ConfigError("train.amp: fp16 needs a GPU; use bf16 or none on CPU")
    resume = cfg.train.resume
    if resume not in ("none", "auto") and not os.path.isfile(resume):
        raise ConfigError(f"train.resume: {resume} is not a file; allowed: none, auto, or a "
                          "checkpoint path")
    if sorted(set(cfg.eval.ks)) != cfg.eval.ks or not cfg.eval.ks:
        raise ConfigError(f"eval.ks: {cfg.eval.ks} must be a non-empty increasing list")
    if cfg.dist.backend == "nccl" and not torch.cuda.is_available():
        raise ConfigError("dist.backend: nccl needs a GPU; allowed here: auto, gloo")
    if cfg.train.backend == "deepspeed":
        check_deepspeed(cfg, world_size)
    elif cfg.train.deepspeed_config != "none":
        raise ConfigError(f"train.deepspeed_config: {cfg.train.deepspeed_config} is only read by "
                          f"train.backend=deepspeed, but train.backend is {cfg.train.backend}")
