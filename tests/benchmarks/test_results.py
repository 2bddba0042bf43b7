"""benchmarks/results.py in its smoke mode: real Omniglot runs, a generated RESULTS table."""
from __future__ import annotations

import pytest

import os
import subprocess
import sys

from conftest import ROOT

# Every test here starts processes (training, torchrun, a command line): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow


def test_smoke_results_table(omniglot_root, tmp_path):
    report = tmp_path / "RESULTS.md"
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "results.py"), "--smoke",
           "--methods", "full", "pa", "--seeds", "0", "1", "--jobs", "2", "--root", omniglot_root,
           "--out", str(tmp_path / "out"), "--report", str(report)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = report.read_text()
    assert "| RCDML (PA + PC + PRC + SRC) |" in text and "| Proxy-Anchor (PA only) |" in text
    assert "± " in text and "more than one standard deviation" in text
    assert text.count("launch/train.py configs/ablations/") == 4
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 0 and again.stdout.count("reusing") == 4
