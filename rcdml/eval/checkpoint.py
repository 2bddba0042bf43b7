"""Evaluate a saved checkpoint with a run config: rebuild the model, load weights, score.

Reads checkpoints with :func:`rcdml.io.read_checkpoint` and checks them against the config with
the keys of :data:`rcdml.config.identity.MODEL_KEYS`, the same list the trainer's resume uses;
nothing here imports the training engine.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rcdml.config import Config, ConfigError
from rcdml.config.identity import MODEL_KEYS, split_differences
from rcdml.config.typed import to_dict
from rcdml.data import build_eval_pipeline
from rcdml.distributed import DistInfo
from rcdml.eval.retrieval import EvalEmbeddings, embed_eval_data, score
from rcdml.io import read_checkpoint
from rcdml.models import build_model, input_style


@dataclass
class CheckpointEval:
    metrics: dict[str, float]
    embeddings: EvalEmbeddings
    epoch: int | None


def read_checked_checkpoint(path: str, cfg: Config) -> dict[str, Any]:
    """The checkpoint at ``path``, after checking it was trained with ``cfg``'s model."""
    ckpt = read_checkpoint(path)
    fixed, _ = split_differences({"model": ckpt.get("config", {}).get("model", {})},
                                 {"model": to_dict(cfg)["model"]}, MODEL_KEYS)
    if fixed:
        key, old, new = fixed[0]
        raise ConfigError(f"{key}: {path} was trained with {old!r} but the config says {new!r}; "
                          "evaluate with the run's config.yaml or override the key")
    return ckpt


def load_model(cfg: Config, ckpt: dict[str, Any], path: str) -> nn.Module:
    """``cfg``'s model with the weights of ``ckpt`` (from :func:`read_checked_checkpoint`, loaded
    from ``path``), on the CPU."""
    model = build_model(cfg.model)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise ConfigError(f"checkpoint: {path} does not fit model.backbone={cfg.model.backbone} "
                          f"model.embedding_size={cfg.model.embedding_size}: {detail}") from None
    return model


def evaluate_checkpoint(cfg: Config, dist: DistInfo, ckpt: dict[str, Any], path: str,
                        amp: torch.dtype | None) -> CheckpointEval:
    """Score ``ckpt`` (from :func:`read_checked_checkpoint`, loaded from ``path``) on ``cfg``'s
    evaluation split, under autocast to ``amp`` (None: full precision)."""
    model = load_model(cfg, ckpt, path).to(dist.device)
    pipeline = build_eval_pipeline(cfg, dist, input_style(cfg.model))
    embeddings = embed_eval_data(model, pipeline, dist.device, amp)
    return CheckpointEval(score(embeddings, cfg.eval), embeddings, ckpt.get("epoch"))
