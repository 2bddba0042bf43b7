"""End-to-end training on the embedded digits: run directory, resume, DDP vs one process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, run_torchrun

TRAIN = os.path.join(ROOT, "launch", "train.py")
DIGITS = os.path.join(ROOT, "configs", "digits.yaml")


def fast(tmp_path, name: str, *extra: str) -> list[str]:
    """A short digits run: small crops, few steps, the dataset shared across the test's runs."""
    return [DIGITS, f"output_dir={tmp_path / name}", f"data.root={tmp_path / 'digits'}",
            "data.image_size=16", "data.resize_size=16", "train.progress=false", *extra]


def train(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, TRAIN, *args], capture_output=True, text=True,
                            timeout=timeout, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def metrics(run_dir) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def params(path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return {**{f"model.{k}": v for k, v in ckpt["model"].items()},
            **{f"loss.{k}": v for k, v in ckpt["loss"].items()}}


def assert_same_params(a, b, atol=0.0) -> None:
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for key in pa:
        torch.testing.assert_close(pa[key].float(), pb[key].float(), rtol=0, atol=atol, msg=key)


def test_run_directory_holds_everything(tmp_path):
    out = train(*fast(tmp_path, "run", "train.epochs=2", "train.warmup_epochs=1"))
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "last.pt", "best.pt"):
        assert (run / name).is_file(), name
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(run / "tensorboard"))
    rows = metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("train/loss", "train/pa_pos", "train/pa_neg", "train/prc", "train/src",
                "lr/backbone", "lr/head", "lr/loss", "perf/images_per_s", "eval/R@1", "eval/R@8"):
        assert key in rows[-1], key
    assert 0.0 <= rows[-1]["eval/R@1"] <= 1.0
    assert "final: eval/R@1" in out.stdout
    ckpt = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 2 and "proxies" in ckpt["loss"]
    assert "optimizer" in ckpt and "scheduler" in ckpt and ckpt["rng"]


def test_resume_after_finished_run_equals_uninterrupted(tmp_path):
    train(*fast(tmp_path, "straight", "train.epochs=3"))
    train(*fast(tmp_path, "split", "train.epochs=2"))
    out = train(*fast(tmp_path, "split", "train.epochs=3", "train.resume=auto"))
    assert "resumed from" in out.stdout
    assert [r["epoch"] for r in metrics(tmp_path / "split")] == [1, 2, 3]
    assert_same_params(tmp_path / "straight" / "last.pt", tmp_path / "split" / "last.pt", atol=1e-6)


def test_resume_after_interrupted_run(tmp_path):
    args = fast(tmp_path, "killed", "train.epochs=6")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, TRAIN, *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics_path = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if metrics_path.exists() and metrics_path.read_text().count("\n") >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = torch.load(tmp_path / "killed" / "last.pt", map_location="cpu", weights_only=True)["epoch"]
    assert 2 <= done < 6
    out = train(*args, "train.resume=auto")
    assert f"resumed from {tmp_path / 'killed' / 'last.pt'} after epoch {done}" in out.stdout
    assert [r["epoch"] for r in metrics(tmp_path / "killed")] == list(range(1, 7))


def test_resume_none_starts_over_and_missing_last_starts_fresh(tmp_path):
    out = train(*fast(tmp_path, "fresh", "train.epochs=1", "train.resume=auto"))
    assert "resumed" not in out.stdout
    assert [r["epoch"] for r in metrics(tmp_path / "fresh")] == [1]


def test_ddp_two_ranks_equals_one_process(tmp_path):
    """Frozen BatchNorm makes the model per-sample, so the global-batch loss gives DDP over two
    gloo ranks the same updates as one process (to float tolerance)."""
    common = ("train.epochs=2", "model.freeze_bn=true")
    train(*fast(tmp_path, "single", *common))
    result = run_torchrun(TRAIN, 2, fast(tmp_path, "ddp", *common), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    single, ddp = metrics(tmp_path / "single"), metrics(tmp_path / "ddp")
    assert len(ddp) == 2
    for a, b in zip(single, ddp):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-4)
        assert a["eval/R@1"] == pytest.approx(b["eval/R@1"], abs=0.005)
    assert_same_params(tmp_path / "single" / "last.pt", tmp_path / "ddp" / "last.pt", atol=1e-4)
    assert result.stdout.count("epoch 1:") == 1, "only rank 0 prints"
