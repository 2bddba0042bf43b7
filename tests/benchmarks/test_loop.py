"""benchmarks/loop.py in its smoke mode: both networks, two batches, one process and two gloo
ranks, the profile with its host syncs, and the summary as the last line."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow  # starts the benchmark
def test_smoke_run_prints_the_table_the_profile_and_the_summary():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "loop.py"), "--smoke"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:3])
            for line in lines if re.match(r"\| (cheap|real) ", line)}
    assert rows == {(n, b, p) for n in ("cheap", "real") for b in ("16", "32") for p in ("1", "2")}
    assert "profile of rcdml's step (cheap network, batch 16, 1 process" in result.stdout
    profile = lines[lines.index(next(l for l in lines if l.startswith("profile of"))):]
    assert len([l for l in profile if re.match(r"\| +[0-9.]+ \| +[0-9.]+ \| +[0-9.]+ \| ", l)]) == 15
    syncs = next(l for l in lines if l.startswith("host syncs per step: "))
    # One read per step; the epoch's loss sums add one per epoch.
    assert re.search(r"[(; ]1 x tolist at rcdml/distributed/stop\.py:\d+ read_agreed", syncs), syncs
    assert re.fullmatch(r"overhead: -?[0-9.]+% over the bare loop \(real network, batch 16, "
                        r"1 process\); -?[0-9.]+ ms/step \(cheap network\)", lines[-1]), lines[-1]
