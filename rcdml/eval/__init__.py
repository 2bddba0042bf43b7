"""Retrieval evaluation: distributed embedding; exact, chunked Recall@K, MAP@R, R-Precision."""
from rcdml.eval.embed import embed_shard, gather_in_order
from rcdml.eval.metrics import map_at_r, r_precision, recall_at_k, retrieval_metrics

__all__ = ["embed_shard", "gather_in_order", "map_at_r", "r_precision", "recall_at_k",
           "retrieval_metrics"]
