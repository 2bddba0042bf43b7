"""benchmarks/backbones.py runs end to end in its smoke mode: one row per backbone and mode
(channels_last for convolutional backbones only), ratios against eager."""
from __future__ import annotations

import pytest

import os
import subprocess
import sys

from conftest import ROOT

# Every test here starts processes (training, torchrun, a command line): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow

SCRIPT = os.path.join(ROOT, "benchmarks", "backbones.py")


def test_smoke_run_prints_a_row_per_backbone_and_mode():
    result = subprocess.run([sys.executable, SCRIPT, "--smoke", "--compile-backend", "aot_eager",
                             "--repeats", "1", "--warmup", "1"], capture_output=True, text=True,
                            timeout=300, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in result.stdout.splitlines() if line.startswith("| ") and "images/s" not in line]
    assert [(r[0], r[2]) for r in rows] == [
        ("Conv-4", "eager"), ("Conv-4", "compile"), ("Conv-4", "channels_last"),
        ("tiny ViT", "eager"), ("tiny ViT", "compile")]
    for row in rows:
        assert float(row[3]) > 0 and float(row[4]) > 0
    assert [float(r[5]) for r in rows if r[2] == "eager"] == [1.0, 1.0]
