"""From a trained checkpoint to a retrieval service: embed image collections
(:mod:`~rcdml.deploy.embed`), build and search faiss indexes (:mod:`~rcdml.deploy.index`,
:mod:`~rcdml.deploy.search`), export the network for serving (:mod:`~rcdml.deploy.export`) and
draw what it retrieves (:mod:`~rcdml.monitor.pictures`)."""
from __future__ import annotations

import importlib

# Imported on first use, so the commands' --help does not load the model and data stacks.
_EXPORTS = {"load_trained": "rcdml.deploy.model", "TrainedModel": "rcdml.deploy.model"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rcdml.deploy' has no attribute {name!r}")
