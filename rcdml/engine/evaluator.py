"""Evaluate a saved checkpoint with a run config: rebuild the model, load weights, score."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from rcdml.config import Config, ConfigError
from rcdml.data import build_pipeline
from rcdml.distributed import DistInfo
from rcdml.engine.checkpoint import load_checkpoint
from rcdml.engine.learner import amp_dtype
from rcdml.eval.retrieval import EvalEmbeddings, embed_eval_data, score
from rcdml.models import backbone_spec, build_model

# The model settings a checkpoint's weights only make sense with.
MODEL_KEYS = ("backbone", "embedding_size", "pooling", "normalize")


@dataclass
class CheckpointEval:
    metrics: dict[str, float]
    embeddings: EvalEmbeddings
    epoch: int | None


def read_checkpoint(path: str, cfg: Config) -> dict[str, Any]:
    """The checkpoint at ``path``, after checking it was trained with ``cfg``'s model."""
    try:
        ckpt = load_checkpoint(path)
    except Exception as e:  # torch raises several types for a file that is not a checkpoint
        raise ConfigError(f"checkpoint: cannot read {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ConfigError(f"checkpoint: {path} is not an rcdml checkpoint (no 'model' weights)")
    saved = ckpt.get("config", {}).get("model", {})
    for key in MODEL_KEYS:
        if key in saved and saved[key] != getattr(cfg.model, key):
            raise ConfigError(f"model.{key}: {path} was trained with {saved[key]!r} but the config "
                              f"says {getattr(cfg.model, key)!r}; evaluate with the run's "
                              "config.yaml or override the key")
    return ckpt


def load_model(cfg: Config, ckpt: dict[str, Any], path: str) -> nn.Module:
    """``cfg``'s model with the weights of ``ckpt`` (from :func:`read_checkpoint`, loaded from
    ``path``), on the CPU."""
    model = build_model(cfg.model)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise ConfigError(f"checkpoint: {path} does not fit model.backbone={cfg.model.backbone} "
                          f"model.embedding_size={cfg.model.embedding_size}: {detail}") from None
    return model


def evaluate_checkpoint(cfg: Config, dist: DistInfo, ckpt: dict[str, Any],
                        path: str) -> CheckpointEval:
    """Score ``ckpt`` (from :func:`read_checkpoint`, loaded from ``path``) on ``cfg``'s
    evaluation split."""
    model = load_model(cfg, ckpt, path).to(dist.device)
    pipeline = build_pipeline(cfg, dist, backbone_spec(cfg.model.backbone).input_style)
    amp = amp_dtype(cfg.train.amp, dist.device)
    embeddings = embed_eval_data(model, pipeline, dist.device, amp)
    return CheckpointEval(score(embeddings, cfg.eval), embeddings, ckpt.get("epoch"))
