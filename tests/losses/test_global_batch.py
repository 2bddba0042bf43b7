"""Every loss sees the global batch: bad input raises a clear error, and under torchrun (gloo,
world size 2 and 3, uneven per-rank batches and class mixes) the loss, the gradients and three
AdamW updates equal one process training on the concatenated batches, with bit-identical
parameters (proxies included) on every rank."""
from __future__ import annotations

import os

import pytest
import torch

from conftest import load_worker, run_torchrun
from rcdml.config import load_config
from rcdml.losses import build_loss, loss_names
from rcdml.losses.global_batch import compute_dtype, global_batch, present_classes

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "dist_worker_batch.py")


@pytest.mark.parametrize("name", loss_names())
@pytest.mark.parametrize("embeddings, labels, message", [
    (torch.zeros(4, 8), torch.tensor([0, 1, 2, 5]), r"labels must lie in \[0, 5\).*from 0 to 5"),
    (torch.zeros(4, 8), torch.tensor([0, -1, 2, 3]), r"labels must lie in \[0, 5\).*from -1 to 3"),
    (torch.zeros(4, 7), torch.tensor([0, 1, 2, 3]), "embedding size mismatch: embeddings have 7 "
                                                    "columns.*embedding_size=8"),
    (torch.tensor([[0.0] * 7 + [float("nan")]] * 4), torch.tensor([0, 1, 2, 3]),
     "embeddings contain 4 NaN or inf values"),
    (torch.tensor([[float("inf")] + [0.0] * 7] * 4), torch.tensor([0, 1, 2, 3]),
     "embeddings contain 4 NaN or inf values"),
    (torch.zeros(0, 8), torch.zeros(0, dtype=torch.long), "empty batch"),
    (torch.zeros(4, 8), torch.tensor([0.0, 1.0, 2.0, 3.0]), "labels must be integer class indices"),
    (torch.zeros(4, 8), torch.tensor([0, 1, 2]), "expected 4 labels"),
    (torch.zeros(8), torch.tensor([0]), r"must be a \(batch, 8\) matrix"),
])
def test_bad_input_raises_a_clear_error(name, embeddings, labels, message):
    loss = build_loss(load_config(None, [f"loss.name={name}"]).loss, 5, 8)
    with pytest.raises(ValueError, match=message):
        loss(embeddings, labels)


@pytest.mark.parametrize("name", loss_names())
@pytest.mark.parametrize("labels, nan, message", [
    ([0, 1, 2, 5], False, r"labels must lie in \[0, 5\).*from 0 to 5"),
    ([-3, 1, 2, 3], False, r"labels must lie in \[0, 5\).*from -3 to 3"),
    ([0, 1, 2, 3], True, "embeddings contain 1 NaN or inf values"),
])
def test_deferred_value_checks_raise_from_the_callers_read(name, labels, nan, message):
    """The trainer's mode: the forward pass neither reads nor faults on a bad batch (labels are
    clamped into range), and the checks, read later, raise what an eager forward raises."""
    loss = build_loss(load_config(None, [f"loss.name={name}"]).loss, 5, 8)
    x = torch.randn(4, 8)
    if nan:
        x[0, 0] = float("nan")
    loss.defer_checks = True
    loss(x, torch.tensor(labels))
    with pytest.raises(ValueError, match=message):
        loss.raise_for(loss.checks.tolist())
    loss.defer_checks = False
    with pytest.raises(ValueError, match=message):
        loss(x, torch.tensor(labels))


@pytest.mark.parametrize("labels", [[3], [2, 2, 2], [7, 0, 7, 3, 0, 9], list(range(6))])
def test_present_classes_are_unique_padded_to_a_fixed_size(labels):
    y = torch.tensor(labels)
    present, inverse, valid, count = present_classes(y, 6)
    distinct, expected_inverse = torch.unique(y, return_inverse=True)
    m = distinct.numel()
    assert present.shape == valid.shape == (6,) and int(count) == m
    assert present[:m].tolist() == distinct.tolist() and present[m:].tolist() == [0] * (6 - m)
    assert valid.tolist() == [True] * m + [False] * (6 - m)
    assert inverse.tolist() == expected_inverse.tolist()


def test_single_process_batch_is_the_input_in_the_compute_dtype():
    x = torch.randn(3, 4, dtype=torch.bfloat16, requires_grad=True)
    y = torch.tensor([1, 0, 1], dtype=torch.int32)
    gx, gy = global_batch(x, y, 2, 4, "test", compute_dtype(x))
    assert gx.dtype == torch.float32 and gy.dtype == torch.long
    torch.testing.assert_close(gx, x.float(), rtol=0, atol=0)
    assert gx.requires_grad and gy.tolist() == [1, 0, 1]
    assert compute_dtype(x, torch.zeros(1, dtype=torch.float64)) == torch.float64


@pytest.fixture(scope="module")
def single_process():
    worker = load_worker(WORKER)
    torch.manual_seed(0)
    return worker, {v: worker.train(v, 1, 0) for v in worker.VARIANTS}


def assert_close(actual, expected, what: str) -> None:
    """fp32 rounding differs between one big and several small matmuls: entries agree to 1e-5 of
    the tensor's largest entry (a gradient world_size x off is far outside)."""
    atol = 1e-5 * max(float(expected.abs().max()), 0.1)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=atol, msg=what)


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_train_like_one_process_on_the_global_batch(world_size, single_process, tmp_path):
    worker, reference = single_process
    result = run_torchrun(WORKER, world_size, [str(tmp_path)])
    assert result.returncode == 0, result.stdout + result.stderr
    for variant, ref in reference.items():
        ranks = [torch.load(tmp_path / variant / f"rank{r}.pt", weights_only=True)
                 for r in range(world_size)]
        for step in range(len(worker.LABELS)):
            for rank, rec in enumerate(ranks):
                where = f"{variant} step {step} rank {rank}"
                assert_close(rec["loss"][step], ref["loss"][step], f"{where}: loss")
                for name, grad in ref["grads"][step].items():
                    assert grad.abs().max() > 0, f"{where}: {name} has no gradient to compare"
                    assert_close(rec["grads"][step][name], grad, f"{where}: grad of {name}")
                    assert_close(rec["params"][step][name], ref["params"][step][name],
                                 f"{where}: {name} after the step")
                    # Bit-identical on every rank, proxies included.
                    assert (rec["params"][step][name].numpy().tobytes()
                            == ranks[0]["params"][step][name].numpy().tobytes()), where
    # The same check catches PML's DistributedLossWrapper, whose proxy gradient is world_size x.
    wrapped = torch.load(tmp_path / worker.PML_WRAPPER / "rank0.pt", weights_only=True)
    ours = reference["proxy_anchor"]["grads"][0]
    torch.testing.assert_close(wrapped["grads"][0]["loss.inner.loss.proxies"],
                               world_size * ours["loss.loss_fn.proxies"], rtol=1e-4, atol=1e-6)
