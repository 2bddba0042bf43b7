"""End-to-end training on the embedded digits: run directory, resume, DDP vs one process."""
from __future__ import annotations

import json
import os
import signal
import sys

import pytest
import torch

from conftest import run_torchrun
from rcdml.data.datasets.digits import raw_pixel_baseline
from rcdml.eval.metrics import retrieval_metrics
from runs import (TRAIN, assert_ddp_equals_one_process, assert_same_params, fast, metrics,
                  start, train, wait_for)

# Every test here starts processes (training, torchrun, a command line): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow


def test_run_directory_holds_everything(tmp_path):
    out = train(*fast(tmp_path, "run", "train.epochs=2", "train.warmup_epochs=1",
                      "monitor.sample_size=64"))
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "last.pt", "best.pt"):
        assert (run / name).is_file(), name
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(run / "tensorboard"))
    assert (run / "tensorboard" / "projector_config.pbtxt").is_file()
    rows = metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("train/loss", "train/pa_pos", "train/pa_neg", "train/prc", "train/src",
                "lr/backbone", "lr/head", "lr/loss", "perf/images_per_s", "perf/train_s", "perf/eval_s",
                "eval/R@1", "eval/R@8"):
        assert key in rows[-1], key
    assert 0.0 <= rows[-1]["eval/R@1"] <= 1.0
    assert "final: eval/R@1" in out.stdout
    ckpt = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (2, 0) and "proxies" in ckpt["loss"]
    assert "optimizer" in ckpt and "scheduler" in ckpt and len(ckpt["rng"]) == 1


def test_epoch_0_evaluates_the_untrained_network_once_and_the_summary_says_what_happened(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = train(*fast(tmp_path, "run", "train.epochs=1", "eval.at_start=true"))
    run = tmp_path / "run"
    rows = metrics(run)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert {k for k in rows[0] if k != "epoch"} == {k for k in rows[1] if k.startswith("eval/")}
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    for tag in ("eval/R@1", "eval/MAP@R"):
        assert [e.step for e in events.Scalars(tag)][0] == 0, tag
        assert events.Scalars(tag)[0].value == pytest.approx(rows[0][tag], abs=1e-6)
    summary = out.stdout[out.stdout.index("summary of the run"):]
    r1 = next(line.split() for line in summary.splitlines() if line.strip().startswith("R@1 "))
    features, labels = raw_pixel_baseline(str(tmp_path / "digits"))
    baseline = retrieval_metrics(torch.from_numpy(features), torch.from_numpy(labels), [1])
    # before training, after epoch 1, best (epoch 1), raw-pixel cosine
    assert [float(v) for v in r1[1:]] == pytest.approx(
        [rows[0]["eval/R@1"], rows[1]["eval/R@1"], rows[1]["eval/R@1"], baseline["R@1"]], abs=1e-4)
    for text in ("before training", "best (epoch 1)", "raw-pixel cosine", "wall time:",
                 f"run directory: {run}", f"tensorboard --logdir {run / 'tensorboard'}",
                 f"checkpoints: {run / 'last.pt'}, {run / 'best.pt'}"):
        assert text in summary, text

    resumed = train(*fast(tmp_path, "run", "train.epochs=2", "eval.at_start=true",
                          "train.resume=auto"))
    assert "epoch 0:" not in resumed.stdout
    assert [r["epoch"] for r in metrics(run)] == [0, 1, 2]


def test_warmup_trains_only_head_and_proxies(tmp_path):
    train(*fast(tmp_path, "init", "train.epochs=1", "optim.lr=1e-12", "optim.loss_lr_mult=1",
                "optim.head_lr_mult=1"))
    train(*fast(tmp_path, "warm", "train.epochs=2", "train.warmup_epochs=1"))
    init = torch.load(tmp_path / "init" / "last.pt", map_location="cpu", weights_only=True)
    prev = torch.load(tmp_path / "warm" / "prev.pt", map_location="cpu", weights_only=True)
    assert prev["epoch"] == 1
    for key, value in prev["model"].items():
        if key.startswith("backbone."):
            torch.testing.assert_close(value, init["model"][key], rtol=0, atol=1e-9, msg=key)
    assert not torch.allclose(prev["model"]["head.weight"], init["model"]["head.weight"])


def test_resume_after_finished_run_equals_uninterrupted(tmp_path):
    train(*fast(tmp_path, "straight", "train.epochs=3"))
    train(*fast(tmp_path, "split", "train.epochs=2"))
    out = train(*fast(tmp_path, "split", "train.epochs=3", "train.resume=auto"))
    assert "resumed from" in out.stdout
    assert [r["epoch"] for r in metrics(tmp_path / "split")] == [1, 2, 3]
    assert_same_params(tmp_path / "straight" / "last.pt", tmp_path / "split" / "last.pt")


def test_resume_after_interrupted_run(tmp_path):
    args = fast(tmp_path, "killed", "train.epochs=6")
    proc = start([sys.executable, TRAIN, *args], tmp_path / "log.txt")
    metrics_path = tmp_path / "killed" / "metrics.jsonl"
    wait_for(lambda: metrics_path.exists() and metrics_path.read_text().count("\n") >= 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = torch.load(tmp_path / "killed" / "last.pt", map_location="cpu", weights_only=True)["epoch"]
    assert 2 <= done < 6
    out = train(*args, "train.resume=auto")
    assert f"resumed from {tmp_path / 'killed' / 'last.pt'} after epoch {done}" in out.stdout
    assert [r["epoch"] for r in metrics(tmp_path / "killed")] == list(range(1, 7))


def test_resume_auto_without_checkpoint_starts_fresh(tmp_path):
    out = train(*fast(tmp_path, "fresh", "train.epochs=1", "train.resume=auto"))
    assert "resumed" not in out.stdout
    assert [r["epoch"] for r in metrics(tmp_path / "fresh")] == [1]


def test_ddp_two_ranks_equals_one_process(tmp_path):
    """Frozen BatchNorm makes the model per-sample, so the global-batch loss gives DDP over two
    gloo ranks the same updates as one process (see :func:`runs.assert_ddp_equals_one_process`)."""
    result = assert_ddp_equals_one_process(tmp_path)
    assert result.stdout.count("epoch 1:") == 1, "only rank 0 prints"


def test_validation_classes_select_best_pt_alike_on_one_process_and_two_ranks(tmp_path):
    """``data.val_classes`` holds digits 4 and 5 out of training; both ranks embed their share of
    them, ``best.pt`` is the epoch of the best ``val/R@1``, and summary.json gives the test metrics
    there and at the last epoch. Two separate runs agree only where rounding cannot grow: the
    steps of :func:`runs.assert_ddp_equals_one_process` (large batches, SGD; measured with 24-image
    batches and Adam, 2 epochs: val/MAP@R 0.9392 against 0.9427)."""
    args = ("train.epochs=3", "data.val_classes=4,5", "train.batch_size=300",
            "data.samples_per_class=100", "optim.name=sgd", "optim.lr=0.01")
    out = train(*fast(tmp_path, "single", *args))
    result = run_torchrun(TRAIN, 2, fast(tmp_path, "ddp", *args), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "train 537 images / 3 classes" in out.stdout and "val 364 images / 2 classes" in out.stdout
    single, ddp = metrics(tmp_path / "single"), metrics(tmp_path / "ddp")
    for a, b in zip(single, ddp, strict=True):
        for key in ("val/R@1", "val/MAP@R", "eval/R@1"):
            assert a[key] == pytest.approx(b[key], abs=0.003), key
    for name, rows in (("single", single), ("ddp", ddp)):
        run = tmp_path / name
        val = [r["val/R@1"] for r in rows]
        chosen = rows[val.index(max(val))]
        best = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
        assert best["epoch"] == chosen["epoch"]
        assert best["best"] == {"metric": chosen["val/R@1"], "epoch": chosen["epoch"], "key": "val/R@1"}
        summary = json.loads((run / "summary.json").read_text())
        assert summary["selected_on"] == "val/R@1"
        assert summary["selected"]["epoch"] == chosen["epoch"]
        assert summary["selected"]["eval"]["R@1"] == chosen["eval/R@1"]
        assert summary["selected"]["val"]["R@1"] == chosen["val/R@1"]
        assert summary["last"]["epoch"] == 3 and summary["last"]["eval"]["R@1"] == rows[-1]["eval/R@1"]
    assert f"selected on val (epoch {summary['selected']['epoch']})" in result.stdout
