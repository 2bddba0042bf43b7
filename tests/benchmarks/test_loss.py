"""benchmarks/loss.py runs end to end in its smoke mode and prints the table and the ratios."""
from __future__ import annotations

import pytest

import os
import re
import subprocess
import sys

from conftest import ROOT

# Every test here starts processes (training, torchrun, a command line): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow

SCRIPT = os.path.join(ROOT, "benchmarks", "loss.py")
METHODS = ["rcdml", "rcdml keep", "loop (reference)", "PML ProxyAnchor"]


def test_smoke_run_prints_a_table_with_ratios():
    result = subprocess.run([sys.executable, SCRIPT, "--smoke", "--repeats", "2", "--threads", "1"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in result.stdout.splitlines() if line.startswith("| tiny")]
    assert [r[3] for r in rows] == METHODS * 2
    for row in rows:
        ms, mib = float(row[4]), float(row[5])
        assert ms > 0 and mib >= 0
        assert re.fullmatch(r"\d+\.\dx", row[6]), row
    assert all(r[6] == "1.0x" for r in rows if r[3] == "rcdml")
    assert re.search(r"RCDMLLoss is [\d.]+x faster than the loop implementation", result.stdout)
    assert re.search(r"RCDMLLoss is [\d.]+x faster than PML ProxyAnchorLoss", result.stdout)
