"""Run monitoring (rank 0 only): metrics.jsonl, TensorBoard scalars, histograms and projector,
console lines and the progress bar."""
from rcdml.monitor.diagnostics import EmbeddingProbe, intra_class_similarities, proxy_similarities
from rcdml.monitor.run import RunMonitor

__all__ = ["EmbeddingProbe", "RunMonitor", "intra_class_similarities", "proxy_similarities"]
