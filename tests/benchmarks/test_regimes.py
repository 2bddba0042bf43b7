"""benchmarks/regimes.py in its smoke mode: the cached pretraining step, fine-tuned cells on real
Omniglot runs, a generated REGIMES table, and reuse of finished runs, also from the ledger once
their run directories are gone."""
from __future__ import annotations

import pytest

import os
import shutil
import subprocess
import sys

from conftest import ROOT

# Every test here starts processes (training, torchrun, a command line): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow


def test_smoke_regimes_table(omniglot_root, tmp_path):
    report = tmp_path / "REGIMES.md"
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "regimes.py"), "--smoke",
           "--regimes", "c", "--methods", "pa", "full_present", "--seeds", "0", "1", "--jobs", "2",
           "--root", omniglot_root, "--out", str(tmp_path / "out"), "--report", str(report)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = report.read_text()
    assert "| c: 100 characters, fine-tuned from 864 | random | Proxy-Anchor |" in text
    assert "| RCDML, negatives over present classes |" in text and "± " in text
    assert "minus Proxy-Anchor R@1" in text
    # The fine-tuned cells start from the pretraining run's checkpoint, which ran once.
    assert text.count("model.pretrained=") == 4 and text.count("output_dir=") == 5
    assert (tmp_path / "out" / "pretrain-pa-864" / "last.pt").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert again.returncode == 0 and "4 of 4 runs finished already; 0 to train" in again.stdout
    assert report.read_text() == text
    shutil.rmtree(tmp_path / "out")
    ledger = subprocess.run(cmd + ["--report-only"], capture_output=True, text=True, timeout=300,
                            cwd=ROOT, env=env)
    assert ledger.returncode == 0 and "4 of 4 runs finished already; 0 to train" in ledger.stdout
    # The same report but for the command line it names.
    assert report.read_text().split("Protocol:")[1] == text.split("Protocol:")[1]
    assert len((tmp_path / "REGIMES.jsonl").read_text().splitlines()) == 5
