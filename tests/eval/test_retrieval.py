"""Distributed evaluation (torchrun, gloo): every image embedded exactly once, uneven shards, and
numbers on every rank equal to single-process evaluation and to brute force."""
from __future__ import annotations

import json
import os

import pytest

from conftest import load_worker

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "dist_worker_retrieval.py")


worker = load_worker(WORKER)


@pytest.mark.parametrize("kind", worker.KINDS)
def test_single_process_equals_brute_force(kind, brute_force):
    metrics, seen = worker.run(kind)
    case = worker.build_case(kind)
    expected = brute_force(case["query"], case["query_labels"], worker.EVAL.ks,
                           case.get("gallery"), case.get("gallery_labels"))
    assert metrics == pytest.approx(expected, abs=1e-12)
    assert sorted(seen) == list(range(len(case["query"]) + len(case.get("gallery", []))))


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_distributed_equals_single_process_and_embeds_each_image_once(world, torchrun, tmp_path):
    result = torchrun(WORKER, world, [str(tmp_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = []
    for rank in range(world):
        with open(tmp_path / f"rank{rank}.json") as f:
            ranks.append(json.load(f))
    for kind in worker.KINDS:
        single, _ = worker.run(kind)
        case = worker.build_case(kind)
        total = len(case["query"]) + len(case.get("gallery", []))
        splits = [case["query"]] + ([case["gallery"]] if "gallery" in case else [])
        assert all(len(split) % world for split in splits)  # uneven shards
        for report in ranks:
            assert report["metrics"][kind] == single  # exactly, on every rank
        seen = [report["seen"][kind] for report in ranks]
        assert all(seen) and sorted(sum(seen, [])) == list(range(total))  # each image once
    for report in ranks:
        assert "exactly once" in report["padding_error"]
