"""Retrieval evaluation: distributed embedding and exact, chunked Recall@K."""
from rcdml.eval.embed import embed_shard, gather_in_order
from rcdml.eval.recall import recall_at_k

__all__ = ["embed_shard", "gather_in_order", "recall_at_k"]
