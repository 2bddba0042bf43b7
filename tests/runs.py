"""Helpers for tests that launch real training runs on the embedded plain 8x8 digits."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from typing import Callable

import numpy as np
import torch
from PIL import Image

import pytest

from conftest import ROOT, run_torchrun

TRAIN = os.path.join(ROOT, "launch", "train.py")
DIGITS = os.path.join(ROOT, "configs", "digits8x8.yaml")
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)


def fast(tmp_path, name: str, *extra: str) -> list[str]:
    """Arguments of a short digits run: 16 px crops, the dataset shared by the test's runs, no
    epoch-0 evaluation (tests/engine/test_trainer.py tests it on its own)."""
    return [DIGITS, f"output_dir={tmp_path / name}", f"data.root={tmp_path / 'digits'}",
            "data.image_size=16", "data.resize_size=16", "train.progress=false",
            "monitor.sample_size=0", "eval.at_start=false", *extra]


def train(*args: str, timeout: float = 600, expect: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, TRAIN, *args], capture_output=True, text=True,
                            timeout=timeout, cwd=ROOT, env=ENV)
    assert result.returncode == expect, result.stdout + result.stderr
    return result


def start(cmd: list[str], log_path) -> subprocess.Popen:
    """Start ``cmd`` in the background with output to ``log_path``."""
    log = open(log_path, "w")
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended (code {proc.returncode}) before the condition held")
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def checkpoint_position(path) -> tuple[int, int] | None:
    """(epoch, step) of the checkpoint at ``path``, or None if there is none (yet)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, RuntimeError, EOFError):
        return None
    return ckpt["epoch"], ckpt["step"]


def metrics(run_dir) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def params(path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return {**{f"model.{k}": v for k, v in ckpt["model"].items()},
            **{f"loss.{k}": v for k, v in ckpt["loss"].items()}}


def assert_same_params(a, b, atol: float = 0.0) -> None:
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    diffs = {key: (pa[key].double() - pb[key].double()).abs().max().item() for key in pa
             if pa[key].numel()}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= atol, f"{worst} differs by {diffs[worst]:.3g} (> {atol})"


def worker_pids(parent: int) -> dict[int, int]:
    """{rank: pid} of the torchrun workers that are children of ``parent``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if b"RANK" in env:
            found[int(env[b"RANK"])] = int(entry)
    return found


def assert_ddp_equals_one_process(tmp_path, *args: str, ddp_args: tuple[str, ...] = (),
                                  param_atol: float = 1e-6) -> subprocess.CompletedProcess:
    """DDP over two gloo ranks makes the updates of one process on the same global batch, for a
    per-sample model (frozen BatchNorm, or none). Three steps of 500 images (5 classes x 100),
    with SGD: Adam turns the float rounding of differently ordered gradient sums into full +-lr
    steps for parameters whose gradient is ~0, which would hide a real discrepancy. ``ddp_args``
    apply to the DDP run only (options that must not change the result).

    The parameters are compared after one step from the same state (one process redoes DDP's last
    step from its previous checkpoint): two separate runs differ by float rounding (1.5e-8 after a
    step), and a ReLU input within fp32 rounding of zero (measured: 1.1e-7) can be on in one run and
    off in the other, moving a weight gradient by that sample's whole share (1e-4). Returns the
    torchrun process."""
    args = ("train.epochs=3", "train.batch_size=500", "data.samples_per_class=100",
            "optim.name=sgd", "optim.lr=0.01", *args)
    train(*fast(tmp_path, "single", *args))
    result = run_torchrun(TRAIN, 2, fast(tmp_path, "ddp", *args, *ddp_args), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    single, ddp = metrics(tmp_path / "single"), metrics(tmp_path / "ddp")
    assert len(ddp) == 3
    for a, b in zip(single, ddp):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-5)
        assert a["eval/R@1"] == pytest.approx(b["eval/R@1"], abs=0.002)
    train(*fast(tmp_path, "redo", *args, f"train.resume={tmp_path / 'ddp' / 'prev.pt'}"))
    assert_same_params(tmp_path / "redo" / "last.pt", tmp_path / "ddp" / "last.pt", atol=param_atol)
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``path``."""
    found = {}
    for folder, _, files in os.walk(path):
        for name in files:
            full = os.path.join(folder, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    return found


def folder_dataset(root) -> str:
    """A tiny ``folder`` dataset at ``root``: 8 classes of 6 random 16-px images."""
    rng = np.random.default_rng(0)
    for c in range(8):
        os.makedirs(root / f"c{c}", exist_ok=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.png")
    return str(root)
