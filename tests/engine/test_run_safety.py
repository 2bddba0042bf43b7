"""Fault matrix of the run directory (issue 12): every case a user can cause ends with the
documented exit code and one line, and leaves the files of the run already there unchanged
(hashes of best.pt, last.pt, metrics.jsonl before and after)."""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from rcdml.cli.evaluate import main as eval_main
from rcdml.cli.train import EXIT_PREEMPTED, main as train_main
from rcdml.rundir import RunDirError, check_output_dir
from rcdml.losses import RCDMLLoss

from runs import (DIGITS, ENV, TRAIN, assert_same_params, checkpoint_position, fast, metrics,
                  start, train, wait_for, worker_pids)

KEPT = ("best.pt", "last.pt", "metrics.jsonl")


def hashes(run_dir) -> dict[str, str]:
    return {name: hashlib.sha256((run_dir / name).read_bytes()).hexdigest() for name in KEPT
            if (run_dir / name).exists()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-epoch digits run: (tmp folder, run folder, its hashes)."""
    tmp = tmp_path_factory.mktemp("safety")
    train(*fast(tmp, "run", "train.epochs=1"))
    run = tmp / "run"
    return tmp, run, hashes(run)


def one_line(capsys, code: int, main, argv) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.slow
def test_new_run_into_a_finished_run_is_refused(finished, capsys):
    tmp, run, before = finished
    line = one_line(capsys, 2, train_main, fast(tmp, "run", "train.epochs=1", "train.seed=7"))
    assert f"output_dir: {run} holds another run (1 epochs in metrics.jsonl" in line
    assert "best R@1 0." in line and "at epoch 1" in line
    for way in ("train.resume=auto", "another output_dir", "train.overwrite=true"):
        assert way in line
    assert hashes(run) == before


@pytest.mark.slow
def test_overwrite_moves_the_old_run_aside(finished, capsys):
    """The move happens before any model work; a bad pretrained file then stops the new run
    before it trains, which keeps the test fast."""
    tmp, run, before = finished
    copy = tmp / "overwritten"
    shutil.copytree(run, copy)
    assert train_main(fast(tmp, "overwritten", "train.epochs=1", "train.seed=7",
                           "train.overwrite=true", f"model.pretrained={DIGITS}")) == 2
    aside = [p for p in tmp.iterdir() if p.name.startswith("overwritten.replaced-")]
    assert len(aside) == 1 and hashes(aside[0]) == before
    assert (aside[0] / "config.yaml").exists()
    assert f"moved the previous run (1 epochs in metrics.jsonl" in capsys.readouterr().out
    assert sorted(p.name for p in copy.iterdir()) == [".lock"]


@pytest.mark.slow
def test_locked_directory_refuses_a_second_run_while_the_first_resumes_honestly(finished):
    """Two runs on one directory; crash leftovers; a partial metrics line; a changed lr."""
    tmp, run, before = finished
    copy = tmp / "locked"
    shutil.copytree(run, copy)
    (copy / ".last.pt.k3j9x.tmp").write_bytes(b"\0" * 1024)
    with open(copy / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "train/lo')
    args = fast(tmp, "locked", "train.epochs=2", "train.resume=auto", "optim.lr=0.01")
    first = start([sys.executable, TRAIN, *args], tmp / "locked.log")
    wait_for(lambda: f"pid {first.pid} " in (copy / ".lock").read_text(), first, timeout=120)
    began = time.time()
    second = subprocess.run([sys.executable, TRAIN, *args], capture_output=True, text=True,
                            timeout=120, env=ENV)
    assert time.time() - began < 30
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"is in use by another run (host " in lines[0]
    assert f"pid {first.pid} started " in lines[0]
    assert first.wait(timeout=600) == 0, (tmp / "locked.log").read_text()
    log = (tmp / "locked.log").read_text()
    assert "removed 1 temporary file(s) left by an interrupted write: .last.pt.k3j9x.tmp" in log
    assert "dropped 1 unreadable line(s)" in log
    assert "resume: optim.lr 0.0001 -> 0.01 from epoch 2" in log
    assert not list(copy.glob(".*.tmp"))
    rows = metrics(copy)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["lr/backbone"] == 0.01
    with open(copy / "config_history.jsonl") as f:
        history = [json.loads(line) for line in f]
    assert history[-1]["changes"]["optim.lr"] == [0.0001, 0.01] and history[-1]["epoch"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("override, named", [
    ("model.pooling=avg", "model.pooling 'avg+max' -> 'avg'"),
    ("train.batch_size=32", "train.batch_size 40 -> 32"),
    ("loss.name=proxy_anchor", "loss.name 'rcdml' -> 'proxy_anchor'"),
])
def test_resume_with_a_key_the_checkpoint_fixes_exits_2_naming_it(finished, capsys, override, named):
    tmp, run, before = finished
    line = one_line(capsys, 2, train_main,
                    fast(tmp, "run", "train.epochs=2", "train.resume=auto", override))
    assert "keys a checkpoint fixes" in line and named in line
    assert hashes(run) == before


def _broken_folder(root) -> None:
    from PIL import Image

    for c in range(4):
        os.makedirs(root / f"c{c}")
        for i in range(4):
            Image.new("RGB", (12, 12), (c * 40, i * 40, 0)).save(root / f"c{c}" / f"{i}.png")
    (root / "c0" / "0.png").write_bytes(b"\x89PNG cut short")


YAML_CASES = {
    "duplicate.yaml": f"base: {DIGITS}\ntrain:\n  epochs: 2\n  epochs: 3\n",
    "syntax.yaml": f"base: {DIGITS}\ntrain:\n  epochs: [2\n",
}


@pytest.mark.slow
@pytest.mark.parametrize("make, message", [
    (lambda t: ["optim.lr=.nan"], "optim.lr: nan is not a finite number"),
    (lambda t: ["loss.margin=.inf"], "loss.margin: inf is not a finite number"),
    (lambda t: ["train.batch_size=48"], "need 6 training classes per batch; the training split has 5"),
    (lambda t: ["data.samples_per_class=200", "train.batch_size=400"],
     "data.samples_per_class: 200 images per class, but no training class has more than"),
    (lambda t: [f"model.pretrained={DIGITS}"], "model.pretrained: cannot read"),
    (lambda t: [f"output_dir={t / 'run' / 'metrics.jsonl'}"], "is a file, not a directory"),
    (lambda t: ["output_dir="], "output_dir: empty"),
    (lambda t: ["data.name=folder", f"data.root={t / 'broken'}", "data.samples_per_class=2",
                "train.batch_size=4"], "1 of 16 images cannot be read"),
    (lambda t: ["config=duplicate.yaml"], "duplicate.yaml:4:3: duplicate key 'epochs'"),
    (lambda t: ["config=syntax.yaml"], "syntax.yaml: not valid YAML (line 4, column 1:"),
])
def test_user_errors_are_one_line_exit_2_and_change_nothing(finished, capsys, make, message):
    tmp, run, before = finished
    if not (tmp / "broken").exists():
        _broken_folder(tmp / "broken")
    for name, text in YAML_CASES.items():
        (tmp / name).write_text(text)
    extra = make(tmp)
    argv = fast(tmp, "run", "train.resume=auto", "train.epochs=2",
                *[e for e in extra if not e.startswith("config=")])
    if extra[0].startswith("config="):
        argv[0] = str(tmp / extra[0].split("=", 1)[1])
    line = one_line(capsys, 2, train_main, argv)
    # The line says what went wrong: the config, the run directory, a checkpoint or the data.
    assert re.match(r"rcdml-train: (config|run directory|checkpoint|data) error: ", line), line
    assert message in line, line
    assert "weights_only=False" not in line
    assert hashes(run) == before


def test_output_dir_not_writable(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(RunDirError, match="is not writable"):
        check_output_dir(str(tmp_path / "run"))


@pytest.mark.slow
def test_evaluating_an_empty_file_is_one_line_exit_2(finished, capsys):
    tmp, run, before = finished
    (tmp / "empty.pt").write_bytes(b"")
    line = one_line(capsys, 2, eval_main, [DIGITS, f"checkpoint={tmp / 'empty.pt'}",
                                           f"data.root={tmp / 'digits'}"])
    assert "empty file (0 bytes)" in line


@pytest.mark.slow
def test_sigint_stops_at_a_step_with_a_checkpoint(tmp_path, monkeypatch, capsys):
    original = RCDMLLoss.forward
    calls = itertools.count(1)

    def forward(self, embeddings, labels):
        if next(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, embeddings, labels)

    monkeypatch.setattr(RCDMLLoss, "forward", forward)
    line = one_line(capsys, EXIT_PREEMPTED, train_main, fast(tmp_path, "run", "train.epochs=1"))
    assert line == (f"rcdml-train: stopped by SIGINT at epoch 1 step 3; {tmp_path / 'run' / 'last.pt'} "
                    "holds that position; continue with train.resume=auto")
    assert checkpoint_position(tmp_path / "run" / "last.pt") == (0, 3)


def torchrun_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            TRAIN, *args]


@pytest.mark.slow
def test_sigterm_to_two_ranks_stops_both_mid_epoch_and_resumes_exactly(tmp_path):
    common = ("train.epochs=1", "train.checkpoint_every_steps=3")
    straight = start(torchrun_cmd(*fast(tmp_path, "straight", *common)), tmp_path / "straight.log")
    assert straight.wait(timeout=600) == 0, (tmp_path / "straight.log").read_text()
    args = fast(tmp_path, "stopped", *common)
    proc = start(torchrun_cmd(*args), tmp_path / "stopped.log")
    wait_for(lambda: (checkpoint_position(tmp_path / "stopped" / "last.pt") or (0, 0))[1] > 0, proc)
    for pid in worker_pids(proc.pid).values():
        os.kill(pid, signal.SIGTERM)
    # Under torchrun a stopped worker exits 0, so that --max-restarts does not restart it (the
    # stop record says it stopped: tests/launch/test_fault_matrix.py).
    assert proc.wait(timeout=300) == 0
    log = (tmp_path / "stopped.log").read_text()
    assert log.count("rcdml-train: stopped by SIGTERM at epoch 1 step") == 1, log[-3000:]
    epoch, step = checkpoint_position(tmp_path / "stopped" / "last.pt")
    assert epoch == 0 and 0 < step < 22
    resumed = start(torchrun_cmd(*args, "train.resume=auto"), tmp_path / "resumed.log")
    assert resumed.wait(timeout=600) == 0, (tmp_path / "resumed.log").read_text()
    assert f"+ {step} steps" in (tmp_path / "resumed.log").read_text()
    assert_same_params(tmp_path / "straight" / "last.pt", tmp_path / "stopped" / "last.pt")
    assert torch.load(tmp_path / "stopped" / "last.pt", weights_only=True)["epoch"] == 1
