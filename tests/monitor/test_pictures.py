"""Retrieval grids: one row per query, green/red frames, and the training pictures (a seeded
sample and the worst queries) written as PNG and returned for TensorBoard."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from rcdml.data.datasets import ImageList, RetrievalData
from rcdml.monitor.pictures import (RIGHT, WRONG, Row, cell_size, grid, sample_queries,
                                   training_pictures)
from rcdml.eval.metrics import rank_stats
from rcdml.eval.retrieval import EvalEmbeddings
from rcdml.rundir import RunDir


def images(tmp_path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        path = str(tmp_path / f"{i}.png")
        Image.new("RGB", (20, 10), (i * 20 % 256, 0, 0)).save(path)
        paths.append(path)
    return paths


def test_grid_frames_show_correct_and_wrong_hits(tmp_path):
    paths = images(tmp_path, 3)
    image = grid([Row(paths[0], paths[1:], [0.9, 0.5], [True, False])])
    width, height = cell_size()
    assert image.size == (3 * width, height)
    assert image.getpixel((width + 1, 1)) == RIGHT and image.getpixel((2 * width + 1, 1)) == WRONG


def test_training_pictures_sample_and_worst(tmp_path):
    paths = images(tmp_path, 12)
    labels = [i // 3 for i in range(12)]
    emb = torch.randn(12, 8, generator=torch.Generator().manual_seed(0))
    data = RetrievalData(ImageList([], []), ImageList(paths, labels))
    stats = rank_stats(emb, torch.tensor(labels), with_map=False, chunk_size=5)
    out = training_pictures(EvalEmbeddings(emb, torch.tensor(labels)), stats, data, 4, 0,
                            RunDir(str(tmp_path / "run")).retrieval_pictures(3))
    width, height = cell_size()
    assert set(out) == {"retrieval/sample", "retrieval/worst"}
    for name in ("epoch_003.png", "epoch_003_worst.png"):
        with Image.open(tmp_path / "run" / "retrieval" / name) as image:
            assert image.size == (9 * width, 4 * height)
    assert out["retrieval/sample"].shape == (3, 4 * height, 9 * width)
    assert np.array_equal(sample_queries(12, 4, 0), sample_queries(12, 4, 0))
