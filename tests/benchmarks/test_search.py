"""benchmarks/search.py runs end to end at a tiny size: every method in the table, ratios against
faiss flat, exact methods at recall 1."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import ROOT

SCRIPT = os.path.join(ROOT, "benchmarks", "search.py")


def test_smoke_run_prints_a_table_with_ratios():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, SCRIPT, "--smoke", "--threads", "1"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {cells[1]: cells for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in result.stdout.splitlines()
             if re.match(r"\|\s+2000 \|", line))}
    assert list(rows) == ["faiss flat", "torch matmul+topk", "ivfpq nprobe=8 refine=4",
                          "hnsw M=16 ef=32"]
    assert rows["faiss flat"][4] == "1.00x" and rows["torch matmul+topk"][7:9] == ["1.000", "1.000"]
    for cells in rows.values():
        assert re.fullmatch(r"\d+\.\d\dx", cells[4]) and 0 <= float(cells[8]) <= 1
    assert re.search(r"^N=2000: ", result.stdout, re.M)
