"""Rules a config must satisfy that need nothing but the config (and, for training, the world
size). Checks that need a registry, the file system or the machine live next to what they
check; :mod:`rcdml.cli.checks` composes them for each command."""
from __future__ import annotations

import os
from typing import Sequence

from rcdml.config.schema import Config
from rcdml.config.typed import ConfigError


def check_choice(key: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not allowed; allowed values: {', '.join(allowed)}")


def check_config(cfg: Config) -> None:
    """What every command needs: a sound evaluation geometry and Recall@K list."""
    if cfg.model.sync_bn is True and cfg.model.freeze_bn:
        raise ConfigError("model.sync_bn: true needs BatchNorm that trains; with model.freeze_bn: "
                          "true its statistics are fixed (use sync_bn: auto or false)")
    lo, hi = cfg.data.crop_scale if len(cfg.data.crop_scale) == 2 else (None, None)
    if lo is None or lo > hi:
        raise ConfigError(f"data.crop_scale: {cfg.data.crop_scale} must be [min, max] with min <= max")
    if cfg.data.resize_size < cfg.data.image_size:
        raise ConfigError(f"data.resize_size: {cfg.data.resize_size} must be >= data.image_size "
                          f"({cfg.data.image_size})")
    if sorted(set(cfg.eval.ks)) != cfg.eval.ks or not cfg.eval.ks:
        raise ConfigError(f"eval.ks: {cfg.eval.ks} must be a non-empty increasing list")


def check_training_config(cfg: Config, world_size: int) -> None:
    """What training adds: batches that split over the ranks and the sampler, the schedule, the
    checkpoint to resume from."""
    if cfg.train.batch_size % world_size:
        raise ConfigError(f"train.batch_size: {cfg.train.batch_size} must be divisible by the world "
                          f"size {world_size}")
    if cfg.data.sampler == "balanced" and cfg.train.batch_size % cfg.data.samples_per_class:
        raise ConfigError(f"train.batch_size: {cfg.train.batch_size} must be a multiple of "
                          f"data.samples_per_class ({cfg.data.samples_per_class})")
    if cfg.train.warmup_epochs >= cfg.train.epochs and cfg.train.warmup_epochs > 0:
        raise ConfigError(f"train.warmup_epochs: {cfg.train.warmup_epochs} must be smaller than "
                          f"train.epochs ({cfg.train.epochs})")
    resume = cfg.train.resume
    if resume not in ("none", "auto") and not os.path.isfile(resume):
        raise ConfigError(f"train.resume: {resume} is not a file; allowed: none, auto, or a "
                          "checkpoint path")
    if cfg.train.backend != "deepspeed" and cfg.train.deepspeed_config != "none":
        raise ConfigError(f"train.deepspeed_config: {cfg.train.deepspeed_config} is only read by "
                          f"train.backend=deepspeed, but train.backend is {cfg.train.backend}")
