"""Data: dataset readers, global-batch samplers, image transforms and loaders."""
from rcdml.data.pipeline import DataPipeline, build_pipeline

__all__ = ["DataPipeline", "build_pipeline"]
