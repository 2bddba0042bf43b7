"""The host-device synchronisations of a training step, counted on the CPU
(benchmarks/host_syncs.py): every operation that would make the host wait for a GPU, in real
training steps of the trainer, on one process and on each of two ranks, held at its exact count
so that none is added unnoticed."""
from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import load_worker
from rcdml.distributed import DistInfo

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "dist_worker_host_syncs.py")
worker = load_worker(WORKER)
host_syncs = worker.host_syncs
STEPS = worker.STEPS

# "operation caller" -> count in one epoch of STEPS steps.
EXPECTED = {
    # per step, one read: the global batch's value checks, whether the loss is finite, the loss
    # on logging steps, and under DDP the stop flag (in the same all-reduce)
    "tolist rcdml/distributed/stop.py read_agreed": STEPS,
    # once per epoch, after the epoch's end has drained the queue anyway: the loss sums (loss
    # and RCDML's four terms, read together)
    "tolist rcdml/engine/checkpoint.py merge_totals": 1,
}
# Under DDP, once per epoch as well: the images all ranks trained on (one all-reduce).
EXPECTED_PER_RANK = {**EXPECTED, "_local_scalar_dense rcdml/distributed/env.py sum_over_ranks": 1}


def test_a_training_step_syncs_the_host_exactly_as_listed(tmp_path):
    counts = worker.epoch_syncs(str(tmp_path / "run"), DistInfo(0, 1, 0, torch.device("cpu"), None))
    assert counts == EXPECTED


@pytest.mark.slow
def test_each_of_two_ranks_syncs_the_host_once_per_step(tmp_path, torchrun):
    result = torchrun(WORKER, 2, [str(tmp_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):
        with open(tmp_path / f"rank{rank}.json") as f:
            assert json.load(f) == EXPECTED_PER_RANK, f"rank {rank}"


def test_the_counter_sees_every_kind_of_sync_and_nothing_else():
    x = torch.arange(6.0)
    with host_syncs.count_syncs() as syncs:
        y = (x * 2 + 1).exp().sum(0)  # stays on the device
        x[torch.tensor([0, 2])].clamp_(0)
        float(y), bool(x.sum() > 0), x.tolist(), x.numpy(), x.cpu()
        x[x > 2], x.nonzero(), torch.unique(x), torch.masked_select(x, x > 1)
        x.repeat_interleave(torch.tensor([1, 0, 2, 1, 1, 1]))
    assert [op for op, _ in syncs.ops] == [
        "_local_scalar_dense", "_local_scalar_dense", "tolist", "numpy", "cpu", "index",
        "nonzero", "_unique2", "masked_select", "repeat_interleave"]
    assert all(where.startswith("test_host_syncs.py:") for _, where in syncs.ops)
