"""``launch/train.py`` end to end on the embedded digits dataset, and its config errors."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "launch", "train.py")
DIGITS = os.path.join(ROOT, "configs", "digits.yaml")


def run_train(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TRAIN, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("override, key", [
    ("train.epochz=3", "train.epochz"),
    ("train.epochs=three", "train.epochs"),
    ("data.name=folder", "data.root"),
    ("model.backbone=vgg", "model.backbone"),
    ("loss.name=arcface", "loss.name"),
    ("train.batch_size=42", "train.batch_size"),
])
def test_config_errors_exit_2_with_one_line(override, key, tmp_path):
    extra = [f"data.root={tmp_path / 'missing'}"] if override.startswith("data.name") else []
    result = run_train(DIGITS, override, *extra, f"output_dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert key in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_missing_config_file_exits_2(tmp_path):
    result = run_train(str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "config file not found" in result.stderr
