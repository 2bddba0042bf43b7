"""benchmarks/search.py runs end to end at a tiny size: every method in the table, ratios against
faiss flat, exact methods at recall 1; its recall is the overlap of the top-10 lists."""
from __future__ import annotations

import pytest

import os
import re
import subprocess
import sys

import numpy as np

from conftest import ROOT, load_worker

SCRIPT = os.path.join(ROOT, "benchmarks", "search.py")


@pytest.mark.slow
def test_smoke_run_prints_a_table_with_ratios():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, SCRIPT, "--smoke", "--threads", "1"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {cells[1]: cells for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in result.stdout.splitlines()
             if re.match(r"\|\s+2000 \|", line))}
    assert list(rows) == ["faiss flat", "torch matmul+topk", "ivfpq nprobe=8 refine=8",
                          "hnsw M=32 efC=80 ef=32"]
    assert rows["faiss flat"][4] == "1.00x" and rows["torch matmul+topk"][7:9] == ["1.000", "1.000"]
    for cells in rows.values():
        assert re.fullmatch(r"\d+\.\d\dx", cells[4])
        assert 0 <= float(cells[7]) <= 1 and 0 <= float(cells[8]) <= 1
    assert re.search(r"^N=2000: ", result.stdout, re.M)
    assert "noise 0.5, class centres of rank 8" in result.stdout


def test_recall_at_10_is_the_overlap_with_the_exact_top_10():
    recalls = load_worker(SCRIPT).recalls
    exact = np.arange(20).reshape(2, 10)
    # Query 0 finds its nearest and 4 more of its exact 10; query 1 finds 9 but not the nearest.
    found = np.array([[0, 1, 2, 3, 4, 90, 91, 92, 93, 94],
                      [11, 12, 13, 14, 15, 16, 17, 18, 19, 95]])
    overlap, first = recalls(found, exact)
    assert overlap == (0.5 + 0.9) / 2 and first == 0.5
