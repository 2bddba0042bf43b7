"""The embedded distorted digits: layout, deterministic construction, and the raw-pixel baseline
recomputed from the written PNGs without rcdml's evaluation code."""
from __future__ import annotations

import filecmp
import os

import numpy as np
import pytest
import torch
from PIL import Image

from rcdml.config import ConfigError
from rcdml.data.datasets import read_catalog, split_catalog
from rcdml.data.datasets.digits import (CANVAS, TRAIN_COPIES, materialize, plain_images,
                                        raw_pixel_baseline)
from rcdml.eval.metrics import retrieval_metrics

# scikit-learn's digits: 901 images of 0-4, 896 of 5-9.
TRAIN_IMAGES, EVAL_IMAGES = 901, 896


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("digits") / "digits")
    read_catalog("digits", path)
    return path


def test_distorted_digits_split_0_4_with_copies_against_5_9_once(root):
    data = split_catalog(read_catalog("digits", root))
    assert data.train.class_names == ["0", "1", "2", "3", "4"]
    assert data.query.class_names == ["5", "6", "7", "8", "9"]
    assert len(data.train) == TRAIN_COPIES * TRAIN_IMAGES and len(data.query) == EVAL_IMAGES
    with Image.open(data.query.paths[0]) as image:
        assert image.size == (CANVAS, CANVAS) and image.mode == "L"
    # Each copy has its own distortion.
    copies = [np.asarray(Image.open(p)) for p in data.train.paths[:TRAIN_COPIES]]
    assert all(not np.array_equal(copies[0], c) for c in copies[1:])


def test_construction_is_deterministic(root, tmp_path):
    again = str(tmp_path / "again")
    read_catalog("digits", again)
    comparison = filecmp.dircmp(root, again)
    assert not comparison.left_only and not comparison.right_only
    for digit in map(str, range(10)):
        names = sorted(os.listdir(os.path.join(root, digit)))
        assert names == sorted(os.listdir(os.path.join(again, digit)))
        for name in names:
            a = np.asarray(Image.open(os.path.join(root, digit, name)))
            b = np.asarray(Image.open(os.path.join(again, digit, name)))
            assert np.array_equal(a, b), f"{digit}/{name}"


def exact_recall(pixels: np.ndarray, labels: np.ndarray, ks) -> dict[str, float]:
    """R@K of cosine similarity on raw pixels, every query against all other images, a tie
    counting against the query."""
    x = pixels.reshape(len(pixels), -1).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    same = labels[:, None] == labels[None, :]
    best_same = np.where(same, sim, -np.inf).max(axis=1)
    # Rank of the first same-class image: the other-class images at least as similar, plus one.
    rank = (np.where(same, -np.inf, sim) >= best_same[:, None]).sum(axis=1) + 1
    return {f"R@{k}": float((rank <= k).mean()) for k in ks}


def test_raw_pixel_baseline_matches_an_independent_computation(root):
    paths, labels = [], []
    for digit in range(5, 10):
        folder = os.path.join(root, str(digit))
        for name in sorted(os.listdir(folder)):
            paths.append(os.path.join(folder, name))
            labels.append(digit)
    pixels = np.stack([np.asarray(Image.open(p), dtype=np.float64) for p in paths])
    expected = exact_recall(pixels, np.array(labels), (1, 2, 4, 8))
    features, recorded_labels = raw_pixel_baseline(root)
    # The recorded features are the PNGs' pixels, and rcdml's R@K on them is the exact one.
    assert np.array_equal(features, pixels.reshape(len(pixels), -1))
    assert np.array_equal(recorded_labels, labels)
    recorded = retrieval_metrics(torch.from_numpy(features), torch.from_numpy(recorded_labels),
                                 (1, 2, 4, 8), with_map=False)
    for name, value in expected.items():
        assert recorded[name] == pytest.approx(value, abs=1e-12), name
    # Far from solved by raw pixels (the plain 8x8 digits give 0.99), so learning can show.
    assert 0.5 < expected["R@1"] < 0.7


def test_a_tree_of_the_other_digits_is_refused(tmp_path):
    root = str(tmp_path / "digits")
    materialize(root, "digits8x8", plain_images)
    with pytest.raises(ConfigError, match="data.root"):
        read_catalog("digits", root)
