"""Data: dataset readers, global-batch samplers, image transforms and loaders (torchvision, DALI).

The loader classes are imported on first use: DALI's worker processes import
:mod:`rcdml.data.dali_source`, which must not pull in torch.
"""
from __future__ import annotations

_PIPELINE = ("DataPipeline", "EvalPipeline", "build_eval_pipeline", "build_pipeline",
             "dali_available")
__all__ = list(_PIPELINE)


def __getattr__(name: str):
    if name in _PIPELINE:
        from rcdml.data import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'rcdml.data' has no attribute {name!r}")
