"""Evaluate a saved checkpoint with a run config: rebuild the model, load weights, score."""
from __future__ import annotations

from rcdml.config import Config, ConfigError
from rcdml.data import build_pipeline
from rcdml.distributed import DistInfo
from rcdml.engine.checkpoint import load_checkpoint
from rcdml.engine.learner import amp_dtype
from rcdml.eval.retrieval import evaluate_retrieval
from rcdml.models import backbone_spec, build_model


def evaluate_checkpoint(cfg: Config, dist: DistInfo, path: str) -> dict[str, float]:
    ckpt = load_checkpoint(path)
    saved = ckpt.get("config", {}).get("model", {})
    for key in ("backbone", "embedding_size", "pooling", "normalize"):
        if key in saved and saved[key] != getattr(cfg.model, key):
            raise ConfigError(f"model.{key}: the checkpoint {path} was trained with {saved[key]!r}, "
                              f"the config says {getattr(cfg.model, key)!r}")
    model = build_model(cfg.model).to(dist.device)
    model.load_state_dict(ckpt["model"])
    pipeline = build_pipeline(cfg, dist, backbone_spec(cfg.model.backbone).input_style)
    return evaluate_retrieval(model, pipeline, dist.device, cfg.eval,
                              amp_dtype(cfg.train.amp, dist.device))
