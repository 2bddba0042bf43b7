"""benchmarks/data.py runs end to end in its smoke mode and prints its table with ratios."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

# Every test here starts processes (training, torchrun, a command line): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_smoke_run_prints_both_pipelines_and_ratios():
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install 'rcdml[dali]')")
    script = os.path.join(ROOT, "benchmarks", "data.py")
    result = subprocess.run([sys.executable, script, "--smoke"], capture_output=True, text=True,
                            timeout=300, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in result.stdout.splitlines()
            if line.startswith("| ") and "pipeline" not in line]
    assert [(r[0], r[1]) for r in rows] == [
        ("torchvision DataLoader", "train"), ("DALI (cpu)", "train"),
        ("torchvision DataLoader", "eval"), ("DALI (cpu)", "eval")]
    for row in rows:
        images, seconds, rate = int(row[2]), float(row[3]), float(row[4])
        # seconds are printed to the millisecond, images/s to 0.1
        assert images == 32 and seconds > 0
        assert images / (seconds + 5e-4) - 0.05 <= rate <= images / max(seconds - 5e-4, 1e-9) + 0.05
        assert re.fullmatch(r"\d+\.\d\dx", row[5])
        assert float(row[6]) > 0, "CPU time per image"
    assert rows[0][5] == rows[2][5] == "1.00x"
    assert re.search(r"DALI / torchvision images/s: train [\d.]+x, eval [\d.]+x", result.stdout)
