"""Two torchrun "nodes" on 127.0.0.1 meet through c10d rendezvous and train digits together."""
from __future__ import annotations

import sys

import pytest

from runs import TRAIN, fast, free_port, metrics, start

# Every test here starts processes (training, torchrun, a command line): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow


def test_two_nodes_train_together(tmp_path):
    port = free_port()
    args = fast(tmp_path, "run", "train.epochs=1")
    procs = [start([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                    "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=rcdml-test",
                    f"--node_rank={node}", TRAIN, *args], tmp_path / f"node{node}.log")
             for node in (0, 1)]
    codes = [p.wait(timeout=600) for p in procs]
    logs = [(tmp_path / f"node{node}.log").read_text() for node in (0, 1)]
    assert codes == [0, 0], "\n".join(logs)[-4000:]
    rows = metrics(tmp_path / "run")
    assert [r["epoch"] for r in rows] == [1] and rows[0]["eval/R@1"] > 0.5
    # Ranks follow join order under c10d rendezvous: exactly one node hosted rank 0 and printed.
    assert sum("final: eval/R@1" in log for log in logs) == 1
