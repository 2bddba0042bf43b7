"""benchmarks/gpu_check.sh in its CPU dry run: every step completes within the GPU machine's
limits (python3 only, carried wheels installed offline into a temporary target, data under the
work folder, at most 8 files back in $OUT)."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile

import pytest

from conftest import ROOT, load_worker

gpu_check = load_worker(os.path.join(ROOT, "benchmarks", "gpu_check.py"))
STEPS = [step.name for step in gpu_check.STEPS]


def test_step_budgets_fit_the_total_and_the_gpu_only_numbers_come_first():
    assert sum(step.budget_s for step in gpu_check.STEPS) <= gpu_check.TOTAL_S
    # The whole command, packing included, ends well inside the device's 600-s limit per call.
    assert gpu_check.TOTAL_S <= 480
    assert STEPS[:4] == ["install", "environment", "throughput_resnet50", "loop_overhead"]


def tiny_wheel(folder) -> None:
    """A pure-Python wheel (a zip with its dist-info), built without any tool or network."""
    folder.mkdir()
    info = "gpu_check_probe-1.0.dist-info"
    files = {"gpu_check_probe/__init__.py": "VALUE = 42\n",
             f"{info}/METADATA": "Metadata-Version: 2.1\nName: gpu-check-probe\nVersion: 1.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(folder / "gpu_check_probe-1.0-py3-none-any.whl", "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)


@pytest.mark.slow  # the whole dry run: processes, installs, training
def test_dry_run_follows_the_device_limits(tmp_path):
    tiny_wheel(tmp_path / "wheels")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    # The device may have no `python`: calling it leaves a mark and fails.
    (bin_dir / "python").write_text(f'#!/bin/sh\ntouch "{tmp_path}/python_called"\nexit 127\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    out, work = tmp_path / "out", tmp_path / "work"
    dead = "http://127.0.0.1:9"  # any download attempt fails
    env = dict(os.environ, OUT=str(out), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               http_proxy=dead, https_proxy=dead, HTTP_PROXY=dead, HTTPS_PROXY=dead,
               OMP_NUM_THREADS="1")
    result = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu_check.sh"), "--dry-run",
                             "--work", str(work), "--wheels", str(tmp_path / "wheels")],
                            capture_output=True, text=True, timeout=1500, env=env)
    summary = (out / "summary.txt").read_text()
    assert result.returncode == 0, summary + result.stderr[-3000:]
    for step in STEPS:
        assert f"\n{step}: ok after " in "\n" + summary, step
    assert not (tmp_path / "python_called").exists(), "only python3 exists on the device"
    assert (work / "site" / "gpu_check_probe" / "__init__.py").is_file(), "wheel installed offline"
    assert sorted(p.name for p in out.rglob("*")) == ["logs.tar.gz", "summary.txt"]  # <= 8 files
    assert (work / "jpegs").is_dir() and not list(out.rglob("*.jpg"))
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = tar.getnames()
    assert {f"logs/{step}.log" for step in STEPS} <= set(names)
    assert "runs/train_bninception/metrics.jsonl" in names
    assert "resumed from" in summary and "after epoch 1 + 2 steps" in summary, summary
    assert summary.count("gather with gradient on cpu") == 2 and "WRONG" not in summary
    assert "watchdog (RuntimeError): rank 1 stopped responding" in summary
    assert "data.loader=auto -> torch" in summary
    assert summary.count("| ") >= 2, "the benchmark tables"
    for mode in ("eager", "train.compile"):
        assert f"resnet18 32 px none channels_last {mode}: " in summary, mode
    assert "overhead: " in summary and "over the bare loop" in summary
