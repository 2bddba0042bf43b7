"""All-gather with gradient: rank-ordered concatenation of uneven batches (a rank may hold none),
and a backward that sums every rank's gradient into each rank's slice."""
from __future__ import annotations

import pytest

import os

import torch

from conftest import run_torchrun
from rcdml.distributed import all_gather_batch, all_gather_no_grad, all_gather_with_grad

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dist_worker_gather.py")


def test_single_process_gathers_are_the_identity():
    x = torch.randn(3, 2, requires_grad=True)
    y = torch.tensor([4, 5, 6])
    assert all_gather_with_grad(x) is x
    assert all_gather_no_grad(x) is x
    gx, gy = all_gather_batch(x, y)
    assert gx is x and gy is y


@pytest.mark.slow
def test_uneven_gather_and_summed_gradient():
    result = run_torchrun(WORKER, 3)
    assert result.returncode == 0, result.stdout + result.stderr
    done = sorted(line for line in result.stdout.splitlines() if line.startswith("ok"))
    assert done == ["ok 0", "ok 1", "ok 2"], result.stdout
