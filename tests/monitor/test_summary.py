"""The closing report of a run: before, after, best and baseline side by side."""
from __future__ import annotations

from rcdml.monitor.summary import read_rows, run_summary
from rcdml.rundir import RunDir


def test_summary_puts_before_after_best_and_baseline_side_by_side():
    rows = [{"epoch": 0, "eval/R@1": 0.4, "eval/MAP@R": 0.1},
            {"epoch": 1, "train/loss": 3.0, "eval/R@1": 0.8, "eval/MAP@R": 0.3},
            {"epoch": 2, "train/loss": 2.0, "eval/R@1": 0.7, "eval/MAP@R": 0.35}]
    text = run_summary(rows, {"eval/R@1": 0.7, "eval/MAP@R": 0.35}, {"metric": 0.8, "epoch": 1},
                       2, {"R@1": 0.6, "R@2": 0.7}, 12.3, RunDir("runs/x"), ["runs/x/last.pt"])
    lines = text.splitlines()
    assert "before training" in lines[1] and "raw-pixel cosine" in lines[1]
    assert lines[2].split() == ["R@1", "0.4000", "0.7000", "0.8000", "0.6000"]
    assert lines[3].split() == ["MAP@R", "0.1000", "0.3500", "0.3000", "-"]
    assert "wall time: 12 s" in text and "tensorboard --logdir runs/x/tensorboard" in text
    assert "checkpoints: runs/x/last.pt" in text


def test_summary_without_epoch_0_or_baseline_leaves_their_columns_out(tmp_path):
    assert read_rows(str(tmp_path / "none.jsonl")) == []
    text = run_summary([{"epoch": 1, "eval/R@1": 0.5}], {"eval/R@1": 0.5},
                       {"metric": 0.5, "epoch": 1}, 1, {}, 1.0, RunDir("runs/x"), [])
    assert "before training" not in text and "raw-pixel" not in text and "checkpoints" not in text
    assert text.splitlines()[2].split() == ["R@1", "0.5000", "0.5000"]
