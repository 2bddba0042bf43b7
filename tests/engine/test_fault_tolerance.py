"""Faults cost minutes, not the run: exact mid-epoch resume, elastic restarts, a damaged newest
checkpoint, a stalled rank, a non-finite loss."""
from __future__ import annotations

import pytest

import itertools
import math
import os
import signal
import sys
import time

from rcdml.cli.train import main as train_main
from rcdml.losses import RCDMLLoss

from runs import (TRAIN, assert_same_params, checkpoint_position, fast, metrics, start, train,
                  wait_for, worker_pids)

# Every test here starts processes (training, torchrun, a command line): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow


def torchrun_cmd(nproc: int, *args: str, restarts: int = 0) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", f"--max-restarts={restarts}", TRAIN, *args]


def mid_epoch_checkpoint(path):
    def ready() -> bool:
        position = checkpoint_position(path)
        return position is not None and position[1] > 0
    return ready


def test_resume_mid_epoch_equals_uninterrupted(tmp_path):
    common = ("train.epochs=2", "train.checkpoint_every_steps=4")
    train(*fast(tmp_path, "straight", *common))
    args = fast(tmp_path, "killed", *common)
    proc = start([sys.executable, TRAIN, *args], tmp_path / "killed.log")
    wait_for(mid_epoch_checkpoint(tmp_path / "killed" / "last.pt"), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epoch, step = checkpoint_position(tmp_path / "killed" / "last.pt")
    out = train(*args, "train.resume=auto")
    assert f"+ {step} steps" in out.stdout
    assert_same_params(tmp_path / "straight" / "last.pt", tmp_path / "killed" / "last.pt")
    straight, resumed = metrics(tmp_path / "straight"), metrics(tmp_path / "killed")
    assert [r["epoch"] for r in resumed] == [1, 2]
    assert resumed[-1]["train/loss"] == straight[-1]["train/loss"]


def test_elastic_restart_after_killed_worker_matches_uninterrupted(tmp_path):
    common = ("train.epochs=2", "train.checkpoint_every_steps=4")
    straight = start(torchrun_cmd(2, *fast(tmp_path, "straight", *common)), tmp_path / "straight.log")
    assert straight.wait(timeout=600) == 0, (tmp_path / "straight.log").read_text()
    proc = start(torchrun_cmd(2, *fast(tmp_path, "elastic", *common), restarts=1),
                 tmp_path / "elastic.log")
    wait_for(mid_epoch_checkpoint(tmp_path / "elastic" / "last.pt"), proc)
    os.kill(worker_pids(proc.pid)[1], signal.SIGKILL)
    assert proc.wait(timeout=600) == 0, (tmp_path / "elastic.log").read_text()
    assert "resumed from" in (tmp_path / "elastic.log").read_text()
    assert_same_params(tmp_path / "straight" / "last.pt", tmp_path / "elastic" / "last.pt")


def test_damaged_newest_checkpoint_falls_back_to_previous(tmp_path):
    run = tmp_path / "run"
    train(*fast(tmp_path, "run", "train.epochs=2"))
    assert checkpoint_position(run / "prev.pt") == (1, 0)
    with open(run / "last.pt", "r+b") as f:
        f.truncate(os.path.getsize(run / "last.pt") // 2)
    out = train(*fast(tmp_path, "run", "train.epochs=3", "train.resume=auto"))
    assert "cannot read checkpoint" in out.stdout
    assert f"resumed from {run / 'prev.pt'} after epoch 1" in out.stdout
    assert [r["epoch"] for r in metrics(run)] == [1, 2, 3]


def test_resuming_another_model_is_a_config_error_and_keeps_the_checkpoint(tmp_path):
    train(*fast(tmp_path, "run", "train.epochs=1"))
    before = (tmp_path / "run" / "last.pt").read_bytes()
    result = train(*fast(tmp_path, "run", "train.epochs=2", "train.resume=auto",
                         "model.embedding_size=64"), expect=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.embedding_size 128 -> 64" in lines[0]
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    train(*fast(tmp_path, "run", "train.epochs=1"))
    (tmp_path / "run" / "last.pt").write_bytes(b"not a checkpoint")
    result = train(*fast(tmp_path, "run", "train.epochs=2", "train.resume=auto"), expect=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no readable checkpoint" in lines[0], result.stderr
    assert (tmp_path / "run" / "last.pt").read_bytes() == b"not a checkpoint"


def test_stalled_rank_is_named_within_the_timeout(tmp_path):
    timeout_s = 10
    proc = start(torchrun_cmd(2, *fast(tmp_path, "stall", "train.epochs=50",
                                       f"dist.timeout_s={timeout_s}")), tmp_path / "stall.log")
    wait_for(lambda: (tmp_path / "stall" / "config.yaml").exists(), proc)
    time.sleep(2)
    stalled = worker_pids(proc.pid)[1]
    os.kill(stalled, signal.SIGSTOP)
    stopped_at = time.time()
    try:
        code = proc.wait(timeout=timeout_s + 90)
    finally:
        if os.path.exists(f"/proc/{stalled}"):
            os.kill(stalled, signal.SIGKILL)
    elapsed = time.time() - stopped_at
    log = (tmp_path / "stall.log").read_text()
    assert code != 0
    assert "rank 1 stopped responding" in log, log[-3000:]
    assert f"dist.timeout_s={timeout_s}" in log
    assert elapsed < timeout_s + 60


def nan_at(monkeypatch, loss_calls=(), embedding_calls=()) -> None:
    """Make RCDMLLoss see NaN embeddings, or return a NaN loss, at the given calls (from 1)."""
    original = RCDMLLoss.forward
    calls = itertools.count(1)

    def forward(self, embeddings, labels):
        call = next(calls)
        if call in embedding_calls:
            embeddings = embeddings * float("nan")
        loss = original(self, embeddings, labels)
        return loss * float("nan") if call in loss_calls else loss

    monkeypatch.setattr(RCDMLLoss, "forward", forward)


def test_nonfinite_loss_stops_and_names_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    nan_at(monkeypatch, loss_calls={8})
    code = train_main(fast(tmp_path, "run", "train.epochs=2", "train.checkpoint_every_steps=5"))
    assert code == 3
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rcdml-train: error: non-finite loss nan")
    assert "at epoch 1 step 8" in lines[0]
    assert f"last good checkpoint: {tmp_path / 'run' / 'last.pt'}" in lines[0]
    assert checkpoint_position(tmp_path / "run" / "last.pt") == (0, 5)


def test_nonfinite_steps_can_be_skipped(tmp_path, monkeypatch, capsys):
    nan_at(monkeypatch, loss_calls={3, 7}, embedding_calls={10})
    assert train_main(fast(tmp_path, "run", "train.epochs=1", "train.on_nonfinite=skip")) == 0
    out = capsys.readouterr().out
    assert out.count("step skipped") == 3 and "embeddings contain" in out
    row = metrics(tmp_path / "run")[0]
    assert row["train/skipped_steps"] == 3
    assert all(math.isfinite(v) for k, v in row.items() if k.startswith(("train/", "eval/")))
