"""benchmarks/eval.py runs end to end in its smoke mode: every method in a subprocess, the table
with ratios against AccuracyCalculator, and the same R@1 from every method."""
from __future__ import annotations

import pytest

import os
import re
import subprocess
import sys

from conftest import ROOT

# Every test here starts processes (training, torchrun, a command line): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow

SCRIPT = os.path.join(ROOT, "benchmarks", "eval.py")
METHODS = ["rcdml R@K", "rcdml R@K+MAP@R+RP", "brute force R@K", "PML p@1", "PML p@1+MAP@R+RP"]


def test_smoke_run_prints_a_table_with_ratios():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, SCRIPT, "--smoke", "--threads", "1"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in result.stdout.splitlines() if re.match(r"\|\s+1000 \|", line)]
    assert [r[1] for r in rows] == METHODS
    for row in rows:
        assert float(row[2]) >= 0 and 0 <= float(row[7]) < float(row[6]) < 2
        assert re.fullmatch(r"\d+\.\d\dx", row[4]), row
        assert re.fullmatch(r"(\d+\.\d\d|nan)x", row[5]), row  # CPU time may round to 0
    by_method = {r[1]: r for r in rows}
    assert by_method["PML p@1"][4] == "1.00x"
    assert len({r[8] for r in rows}) == 1  # R@1: every implementation agrees on the same data
    assert by_method["rcdml R@K+MAP@R+RP"][10] == by_method["PML p@1+MAP@R+RP"][10]  # MAP@R
    assert by_method["rcdml R@K"][9] == by_method["brute force R@K"][9]  # R@1000
    assert re.search(r"N=1000: R@\{1,10,100,1000\} took [\d.]+x the wall time", result.stdout)
