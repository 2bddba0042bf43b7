"""benchmarks/gpu_check.sh runs every step to completion in its CPU dry-run mode."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def test_dry_run_completes(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "out"), PYTHON=sys.executable, OMP_NUM_THREADS="1")
    result = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu_check.sh"), "--dry-run"],
                            capture_output=True, text=True, timeout=1200, env=env)
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert result.returncode == 0, summary + result.stderr[-3000:]
    for step in ("environment", "make_jpegs", "train_dali", "train_torch", "train_deepspeed_zero2",
                 "bench_loss", "bench_eval", "bench_data"):
        assert f"   {step}: exit 0" in summary, step
    assert summary.count("images/s in epoch") == 3
    assert "== bench_loss table" in summary and "| " in summary
    assert not list((tmp_path / "out").glob("train_*/*.pt")), "checkpoints are removed"
