"""R@K, MAP@R and R-Precision against an independent brute-force NumPy computation and against
pytorch-metric-learning's AccuracyCalculator, on random, clustered and query/gallery data."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from rcdml.eval import map_at_r, r_precision, recall_at_k, retrieval_metrics

KS = [1, 2, 4, 8, 16, 32, 10_000]  # 10,000 exceeds every gallery here


def clustered(rng, n: int, d: int, classes: int, spread: float):
    centers = rng.normal(size=(classes, d))
    labels = rng.integers(0, classes, n)
    return centers[labels] + spread * rng.normal(size=(n, d)), labels


def with_singletons(rng):
    x, labels = clustered(rng, 300, 24, 30, 0.8)
    labels[:12] = 100 + np.arange(12)  # twelve classes with a single image
    return x, labels


def inshop(rng):
    """Query and gallery images of the same items; a few query items have no gallery image."""
    x, labels = clustered(rng, 500, 32, 60, 0.6)
    in_query = rng.random(500) < 0.4
    in_query[labels < 4] = True
    return x[in_query], labels[in_query], x[~in_query], labels[~in_query]


CASES = {
    "random": lambda rng: (rng.normal(size=(300, 24)), rng.integers(0, 25, 300)),
    "clustered": lambda rng: clustered(rng, 400, 32, 50, 0.3),
    "singletons": with_singletons,
    "inshop": inshop,
}


def tensors(*arrays):
    return [torch.as_tensor(a, dtype=torch.float32 if a.dtype.kind == "f" else torch.long)
            for a in arrays]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("chunk_size", [1, 13, 4096])
def test_equals_brute_force(case, chunk_size, brute_force):
    arrays = CASES[case](np.random.default_rng(len(case)))
    expected = brute_force(arrays[0], arrays[1], KS, *arrays[2:])
    got = retrieval_metrics(*tensors(*arrays[:2]), KS, *tensors(*arrays[2:]), chunk_size=chunk_size)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


@pytest.mark.parametrize("case", sorted(CASES))
def test_equals_pytorch_metric_learning(case):
    arrays = CASES[case](np.random.default_rng(len(case) + 100))
    query, query_labels, *rest = tensors(*arrays)
    unit = torch.nn.functional.normalize  # PML's default k-NN is L2, equal to cosine on unit rows
    calculator = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r",
                                             "r_precision"), k="max_bin_count",
                                    device=torch.device("cpu"))
    if rest:
        gallery, gallery_labels = rest
        pml = calculator.get_accuracy(unit(query), query_labels, unit(gallery), gallery_labels)
        has_match = torch.isin(query_labels, gallery_labels)
    else:
        pml = calculator.get_accuracy(unit(query), query_labels)
        counts = torch.bincount(query_labels)
        has_match = counts[query_labels] > 1
    got = retrieval_metrics(query, query_labels, [1], *rest)
    assert got["MAP@R"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-9)
    assert got["RP"] == pytest.approx(pml["r_precision"], abs=1e-9)
    # PML leaves queries without any match out of precision_at_1; our R@1 counts them as misses.
    share = float(has_match.double().mean())
    assert got["R@1"] == pytest.approx(pml["precision_at_1"] * share, abs=1e-12)
    assert (share < 1) == (case in ("singletons", "inshop"))


def test_single_image_class_is_a_miss_for_recall_and_left_out_of_map_at_r():
    # Classes 0 and 1 have two images each, class 2 a single one (the last row).
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.7, 0.7]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    got = retrieval_metrics(x, labels, [1, 100])
    assert got["R@1"] == pytest.approx(4 / 5)
    assert got["R@100"] == pytest.approx(4 / 5)  # K beyond the gallery cannot rescue it
    assert got["MAP@R"] == pytest.approx(1.0)   # the four others are perfect; it is left out
    assert got["RP"] == pytest.approx(1.0)


def test_only_single_image_classes_give_zero_recall_and_undefined_map_at_r():
    x = torch.randn(20, 8)
    got = retrieval_metrics(x, torch.arange(20), [1, 50])
    assert got["R@1"] == got["R@50"] == 0.0  # a query never retrieves itself
    assert math.isnan(got["MAP@R"]) and math.isnan(got["RP"])


def test_wrappers_agree_with_retrieval_metrics():
    x, labels = tensors(*clustered(np.random.default_rng(3), 120, 8, 10, 0.5))
    full = retrieval_metrics(x, labels, [1, 4])
    assert recall_at_k(x, labels, [1, 4]) == {1: full["R@1"], 4: full["R@4"]}
    assert map_at_r(x, labels) == full["MAP@R"]
    assert r_precision(x, labels) == full["RP"]
    assert set(retrieval_metrics(x, labels, [1], with_map=False)) == {"R@1"}


def test_scale_of_embeddings_does_not_matter():
    x, labels = tensors(*clustered(np.random.default_rng(4), 150, 8, 12, 0.5))
    scale = torch.rand(150, 1) * 100 + 0.01
    assert retrieval_metrics(x * scale, labels, KS) == retrieval_metrics(x, labels, KS)


@pytest.mark.parametrize("kwargs, message", [
    ({"gallery": torch.randn(4, 3)}, "gallery_labels"),
    ({"gallery": torch.randn(4, 5), "gallery_labels": torch.zeros(4)}, "dim"),
    ({"ks": [0]}, "ks"),
    ({"ks": []}, "ks"),
])
def test_bad_arguments_are_named(kwargs, message):
    args = {"ks": [1], **kwargs}
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(torch.randn(6, 3), torch.zeros(6), **args)


def test_non_finite_embeddings_are_an_error_not_a_perfect_score():
    x = torch.randn(10, 4)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(x, torch.arange(10) % 2, [1])
