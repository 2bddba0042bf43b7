"""The DeepSpeed config of a run: the user's file (ZeRO settings and the like) completed with every
value that the run config already decides, so the two cannot disagree.

Importing this module does not import DeepSpeed: config validation runs before any work.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any

import yaml

from rcdml.config import Config, ConfigError

# Whole sections that rcdml owns: the torch optimizer carries the param groups with their lr
# multipliers and the trainer steps the schedule per epoch; mixed precision is train.amp.
_RUN_OWNED_SECTIONS = {
    "optimizer": "optim.name",
    "scheduler": "optim.scheduler",
    "amp": "train.amp",
    "torch_autocast": "train.amp",
    "elasticity": "train.batch_size",
}
_PRECISIONS = {"bf16": ("bf16", "bfloat16"), "fp16": ("fp16",)}


def deepspeed_installed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


def _read(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise ConfigError(f"train.deepspeed_config: {path} is not a file; allowed: none or the path of "
                          "a DeepSpeed config (YAML or JSON), e.g. configs/deepspeed/zero2.yaml")
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"train.deepspeed_config: {path} is not valid YAML/JSON "
                          f"({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"train.deepspeed_config: {path} must hold a mapping of DeepSpeed keys")
    return data


def _contradiction(key: str, value: Any, path: str, run_key: str, run_value: Any, why: str = "") -> ConfigError:
    return ConfigError(f"{key}: {value!r} in the DeepSpeed config {path} (train.deepspeed_config) "
                       f"contradicts {run_key}={run_value!r}{why}; leave {key} out, rcdml derives "
                       f"it from {run_key}")


def _precision_section(config: dict, name: str, amp: str, path: str) -> dict[str, Any]:
    """Pop the ``bf16``/``fp16`` section from ``config`` and return it with ``enabled`` set by
    ``train.amp``, keeping the user's other settings (loss scaling, ...). A section that is present
    without ``enabled: false`` asks for that precision, so it must match ``train.amp``."""
    section: dict[str, Any] = {}
    for key in [k for k in _PRECISIONS[name] if k in config]:
        value = config.pop(key)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping in the DeepSpeed config {path}, got {value!r}")
        section.update(value)
        wanted = bool(value.get("enabled", True))
        if wanted != (amp == name):
            raise _contradiction(f"{key}.enabled", wanted, path, "train.amp", amp)
    section["enabled"] = amp == name
    return section


def build_deepspeed_config(cfg: Config, world_size: int) -> dict[str, Any]:
    """The dict given to ``deepspeed.initialize`` for run config ``cfg`` on ``world_size`` ranks.

    Raises :class:`ConfigError` naming both keys when the user's file contradicts the run config.
    """
    path = cfg.train.deepspeed_config
    user = {} if path == "none" else _read(path)
    for section, run_key in _RUN_OWNED_SECTIONS.items():
        if section in user:
            raise ConfigError(f"{section}: the DeepSpeed config {path} (train.deepspeed_config) may not "
                              f"set {section}; rcdml derives it from {run_key}")
    batch = cfg.train.batch_size
    derived = {
        "train_batch_size": (batch, "train.batch_size", batch, ""),
        "train_micro_batch_size_per_gpu": (batch // world_size, "train.batch_size", batch,
                                           f" on {world_size} ranks"),
        "gradient_accumulation_steps": (1, "train.batch_size", batch,
                                        " (rcdml takes one optimizer step per global batch)"),
    }
    out = dict(user)
    for key, (value, run_key, run_value, why) in derived.items():
        if key in user and user[key] != value:
            raise _contradiction(key, user[key], path, run_key, run_value, why)
        out[key] = value
    clip = user.get("gradient_clipping", 0.0)
    if clip:
        raise _contradiction("gradient_clipping", clip, path, "train.grad_clip_value",
                             cfg.train.grad_clip_value,
                             " (DeepSpeed clips the gradient norm, rcdml clips gradient values)")
    out["gradient_clipping"] = 0.0
    for name in _PRECISIONS:
        out[name] = _precision_section(out, name, cfg.train.amp, path)
    if cfg.train.amp != "none":
        # DeepSpeed casts the parameters to bf16/fp16; recent versions keep buffers in fp32, but
        # BatchNorm needs its running statistics in the dtype of its weights. Frozen statistics
        # are therefore bf16/fp16-rounded copies of the pretrained ones (relative error 2^-8 in
        # bf16), and checkpoints save those rounded values as fp32: a DeepSpeed run's BatchNorm
        # statistics differ from a DDP run's by that rounding.
        # Gradients are reduced over ranks in fp32, as DDP does under autocast: DeepSpeed's
        # default (the model dtype) sums bf16 gradients, losing the low bits of the per-rank
        # contributions. grad_accum_dtype=fp32 is accepted from ZeRO-2 on only (stage 0 refuses a
        # model/accumulation dtype mix, stage 1 swaps in another optimizer wrapper); with one
        # micro-batch per step nothing is accumulated across backward passes anyway.
        data_types = {"buffer_dtype": cfg.train.amp}
        if int((out.get("zero_optimization") or {}).get("stage", 0)) >= 2:
            data_types["grad_accum_dtype"] = "fp32"
        out["data_types"] = {**data_types, **(out.get("data_types") or {})}
        out.setdefault("communication_data_type", "fp32")
    # A torch optimizer carries the param groups; SGD is elementwise like AdamW, hence safe to
    # partition, but not on DeepSpeed's list of tested ZeRO optimizers.
    out.setdefault("zero_allow_untested_optimizer", True)
    # rcdml logs once per epoch; DeepSpeed's own per-step lines only when asked for.
    out.setdefault("steps_per_print", 2**31 - 1)
    return out


# pytorch-metric-learning losses whose proxies PML re-points to an fp32 copy (``proxies.data``) in
# every forward, while DeepSpeed's mixed precision re-points them to its flat bf16/fp16 buffer
# after every step: the optimizer would then step a copy the model no longer uses.
_PML_PROXY_LOSSES = ("proxy_anchor", "proxy_nca")


def check_deepspeed(cfg: Config, world_size: int) -> None:
    """The checks of ``train.backend=deepspeed`` (:func:`rcdml.engine.backends.check_backend_config`
    calls this)."""
    if not deepspeed_installed():
        raise ConfigError("train.backend: deepspeed is not installed; install it with "
                          "pip install 'rcdml[deepspeed]', or use train.backend=ddp")
    if cfg.loss.name in _PML_PROXY_LOSSES and cfg.train.amp != "none":
        raise ConfigError(f"loss.name: {cfg.loss.name} (pytorch-metric-learning proxies) does not "
                          f"train under train.backend=deepspeed with train.amp={cfg.train.amp}; "
                          "allowed: train.amp=none with deepspeed, or train.backend=ddp")
    build_deepspeed_config(cfg, world_size)
