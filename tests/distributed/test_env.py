"""rcdml.distributed.env: shutdown() ends every process group's gloo worker threads while Python
is alive, DeepSpeed's clone of the world group and the watchdog's side group included. A group
left to interpreter exit can abort a finished run (exit -6): one of its threads, still releasing
a collective's tensors, cannot take the GIL during finalisation (seen in 5 of 60 DeepSpeed
torchrun exits under a loaded CPU, 0 of 60 with this teardown)."""
from __future__ import annotations

import os
import re

import pytest

from conftest import ROOT, run_torchrun

WORKER = os.path.join(ROOT, "tests", "distributed", "dist_worker_shutdown.py")


@pytest.mark.parametrize("stack", ["torch", "deepspeed"])
def test_shutdown_ends_the_gloo_threads_of_every_group_it_can_reach(stack):
    env = {"DS_ACCELERATOR": "cpu"} if stack == "deepspeed" else {}
    result = run_torchrun(WORKER, 2, [stack], timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = re.findall(r"rank (\d): gloo threads (\d+) -> (\d+)", result.stdout)
    assert sorted(rank for rank, _, _ in counts) == ["0", "1"], result.stdout
    for _, before, after in counts:
        # 2 threads per group (the world group, the watchdog's, DeepSpeed's clone), each named
        # by itself once it runs: the count before is a lower bound.
        assert int(before) > int(after), result.stdout
        # DeepSpeed's CPU accelerator, imported once the world group exists, keeps a reference
        # to it that no teardown reaches (importing it before, the group goes too).
        assert int(after) == (2 if stack == "deepspeed" else 0), result.stdout
