"""The run directory without a training process: its file names, one owner at a time, no silent
overwrite of another run, crash leftovers removed."""
from __future__ import annotations

import os

import pytest

from rcdml.config import load_config
from rcdml.rundir import RunDir, RunDirLocked, RunExists


def test_every_file_name_comes_from_the_run_directory(tmp_path):
    run = RunDir(str(tmp_path))
    names = {os.path.relpath(p, tmp_path) for p in
             (run.last, run.prev, run.best, run.metrics, run.tensorboard, run.config, run.history,
              run.summary, run.lock, *run.retrieval_pictures(7))}
    assert names == {"last.pt", "prev.pt", "best.pt", "metrics.jsonl", "tensorboard", "config.yaml",
                     "config_history.jsonl", "summary.json", ".lock",
                     os.path.join("retrieval", "epoch_007.png"),
                     os.path.join("retrieval", "epoch_007_worst.png")}


def test_a_second_owner_is_refused_naming_the_first(tmp_path):
    first, second = RunDir(str(tmp_path)), RunDir(str(tmp_path))
    first.acquire()
    try:
        with pytest.raises(RunDirLocked, match=f"in use by another run \\(host .* pid {os.getpid()}"):
            second.acquire()
    finally:
        first.release()
    second.acquire()
    second.release()


def test_another_runs_files_are_refused_or_moved_aside_never_deleted(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    (out / ".last.pt.abc.tmp").write_text("cut")
    run = RunDir(str(out))
    with pytest.raises(RunExists, match=r"holds another run \(2 epochs in metrics.jsonl\)"):
        run.open_new_run("none", overwrite=False, elastic_restart=False)
    assert (out / "metrics.jsonl").exists() and not (out / ".last.pt.abc.tmp").exists()
    notes = run.open_new_run("none", overwrite=True, elastic_restart=False)
    run.release()
    assert len(notes) == 1 and "moved the previous run" in notes[0]
    aside = notes[0].rsplit(" to ", 1)[1]
    assert open(os.path.join(aside, "metrics.jsonl")).read().count("\n") == 2
    assert not (out / "metrics.jsonl").exists()


def test_a_resumed_run_keeps_its_files_and_records_each_start(tmp_path):
    run = RunDir(str(tmp_path))
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n')
    assert run.open_new_run("auto", overwrite=False, elastic_restart=False) == []
    cfg = load_config(None, [f"output_dir={tmp_path}"])
    run.record_config(cfg, 0, 0, [])
    run.record_config(cfg, 1, 0, [("train.epochs", 1, 2)])
    run.release()
    rows = open(run.history).read().splitlines()
    assert len(rows) == 2 and '"train.epochs": [1, 2]' in rows[1]
    assert os.path.exists(run.config) and (tmp_path / "metrics.jsonl").exists()
