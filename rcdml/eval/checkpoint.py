"""Evaluate a saved checkpoint with a run config: rebuild the model, load weights, score.

Checkpoints are read, verified and checked against the config's model by
:mod:`rcdml.checkpoint_file` (the same keys the trainer's resume checks); nothing here imports the
training engine.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rcdml.checkpoint_file import check_model_config, load_network, read_checkpoint
from rcdml.config import Config
from rcdml.data import build_eval_pipeline
from rcdml.distributed import DistInfo
from rcdml.eval.retrieval import EvalEmbeddings, embed_eval_data, score
from rcdml.models import build_model, input_normalization


@dataclass
class CheckpointEval:
    metrics: dict[str, float]
    embeddings: EvalEmbeddings
    epoch: int | None


def read_checked_checkpoint(path: str, cfg: Config) -> dict[str, Any]:
    """The verified checkpoint at ``path``, after checking it was trained with ``cfg``'s model."""
    ckpt = read_checkpoint(path)
    check_model_config(ckpt, cfg, path)
    return ckpt


def load_model(cfg: Config, ckpt: dict[str, Any], path: str) -> nn.Module:
    """``cfg``'s model with the weights of ``ckpt`` (from :func:`read_checked_checkpoint`, loaded
    from ``path``), on the CPU."""
    return load_network(build_model(cfg.model), ckpt, path, cfg)


def evaluate_checkpoint(cfg: Config, dist: DistInfo, ckpt: dict[str, Any], path: str,
                        amp: torch.dtype | None) -> CheckpointEval:
    """Score ``ckpt`` (from :func:`read_checked_checkpoint`, loaded from ``path``) on ``cfg``'s
    evaluation split, under autocast to ``amp`` (None: full precision)."""
    model = load_model(cfg, ckpt, path).to(dist.device)
    pipeline = build_eval_pipeline(cfg, dist, input_normalization(cfg.model))
    embeddings = embed_eval_data(model, pipeline, dist.device, amp)
    return CheckpointEval(score(embeddings, cfg.eval), embeddings, ckpt.get("epoch"))
