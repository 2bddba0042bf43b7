"""Collective timeouts are recognised by torch's exception types (gloo's by its messages), and
NCCL's timeout reporting defaults leave a user's settings alone."""
from __future__ import annotations

import pytest

import os

import torch.distributed as dist

from conftest import ROOT, run_torchrun
from rcdml.distributed import watchdog


def test_dist_error_types_are_timeouts_and_other_errors_are_not():
    assert watchdog.is_collective_timeout(dist.DistBackendError("watchdog caught collective timeout"))
    assert watchdog.is_collective_timeout(dist.DistNetworkError("peer gone"))
    assert watchdog.is_collective_timeout(dist.DistStoreError("wait timeout"))
    assert not watchdog.is_collective_timeout(RuntimeError("dist.timeout_s: timeout must be > 0"))
    assert not watchdog.is_collective_timeout(ValueError("Timed out waiting"))


@pytest.mark.slow
def test_real_gloo_timeouts_are_recognised():
    result = run_torchrun(os.path.join(ROOT, "tests", "distributed", "dist_worker_watchdog.py"), 2,
                          timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["timeout=True", "RuntimeError"] * 2, result.stdout


def test_nccl_defaults_keep_the_users_values(monkeypatch):
    for key in watchdog.NCCL_ENV_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TORCH_NCCL_DESYNC_DEBUG", "0")
    watchdog.set_nccl_env_defaults()
    assert os.environ["TORCH_NCCL_DESYNC_DEBUG"] == "0"
    assert os.environ["TORCH_NCCL_DUMP_ON_TIMEOUT"] == "1"
    assert os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "3"
