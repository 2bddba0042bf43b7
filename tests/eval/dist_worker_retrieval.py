"""torchrun worker for test_retrieval.py: ``score(embed_eval_data(...))``, the evaluation's two
steps, with a fake model and loader that record which images each rank embeds. Writes ``OUT/rank<r>.json``.

An "image" is its row number in one embedding table (queries, then gallery), so the fake model
returns fixed embeddings whichever rank embeds them and can record exactly what it saw.
"""
from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from rcdml.config.schema import EvalConfig
from rcdml.distributed import get_rank, get_world_size, init_distributed, shutdown
from rcdml.eval.retrieval import embed_eval_data, score

KINDS = ("self", "inshop")
EVAL = EvalConfig(ks=[1, 2, 4, 8, 500], batch_size=10, chunk_size=16)


def build_case(kind: str) -> dict[str, np.ndarray]:
    """301 queries among themselves (five single-image classes), or 149 queries against a
    gallery of 211: sizes that no world size of 2 or 3 divides evenly."""
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(40, 16))
    n = 301 if kind == "self" else 360
    labels = rng.integers(0, 40, n)
    x = (centers[labels] + 0.7 * rng.normal(size=(n, 16))).astype(np.float32)
    labels[:5] = 100 + np.arange(5)
    if kind == "self":
        return {"query": x, "query_labels": labels}
    return {"query": x[:149], "query_labels": labels[:149], "gallery": x[149:],
            "gallery_labels": labels[149:]}


class Split:
    """An evaluation split: table rows ``rows`` with their labels."""

    def __init__(self, rows: np.ndarray, labels: np.ndarray) -> None:
        self.rows, self.labels = rows, labels

    def __len__(self) -> int:
        return len(self.rows)


class TableModel(nn.Module):
    def __init__(self, table: np.ndarray) -> None:
        super().__init__()
        self.table = torch.from_numpy(table)
        self.seen: list[int] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen.extend(images.long().tolist())
        return self.table[images.long()]


class FakePipeline:
    """``eval_loader`` gives this rank's contiguous, uneven shard in batches; with ``pad`` it
    repeats images so that every rank gets as many as the largest shard (DistributedSampler's
    padding), which must be caught."""

    def __init__(self, data, pad: bool = False) -> None:
        self.data = data
        self.pad = pad

    def eval_loader(self, split: Split):
        shards = np.array_split(np.arange(len(split)), get_world_size())
        shard = shards[get_rank()]
        if self.pad:
            longest = max(len(s) for s in shards)
            shard = np.resize(shard, longest)
        for start in range(0, len(shard), EVAL.batch_size):
            idx = shard[start:start + EVAL.batch_size]
            yield (torch.from_numpy(split.rows[idx]).float(), torch.from_numpy(split.labels[idx]),
                   torch.from_numpy(idx))


def model_and_pipeline(kind: str, pad: bool = False) -> tuple[TableModel, FakePipeline]:
    case = build_case(kind)
    n_query = len(case["query"])
    table = case["query"] if kind == "self" else np.concatenate([case["query"], case["gallery"]])
    query = Split(np.arange(n_query), case["query_labels"])
    gallery = (None if kind == "self"
               else Split(np.arange(n_query, len(table)), case["gallery_labels"]))
    return TableModel(table), FakePipeline(SimpleNamespace(query=query, gallery=gallery), pad)


def run(kind: str) -> tuple[dict[str, float], list[int]]:
    model, pipeline = model_and_pipeline(kind)
    metrics = score(embed_eval_data(model, pipeline, torch.device("cpu")), EVAL)
    return metrics, model.seen


def main(out: str) -> None:
    init_distributed("gloo", 120)
    report: dict = {"metrics": {}, "seen": {}}
    for kind in KINDS:
        report["metrics"][kind], report["seen"][kind] = run(kind)
    model, pipeline = model_and_pipeline("self", pad=True)
    try:
        score(embed_eval_data(model, pipeline, torch.device("cpu")), EVAL)
        report["padding_error"] = None
    except RuntimeError as e:
        report["padding_error"] = str(e)
    with open(os.path.join(out, f"rank{get_rank()}.json"), "w") as f:
        json.dump(report, f)
    shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
