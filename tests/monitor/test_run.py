"""metrics.jsonl on a fresh start and on resume."""
from __future__ import annotations

import json

from rcdml.monitor import RunMonitor
from rcdml.rundir import RunDir


def write_rows(path, epochs) -> None:
    path.write_text("".join(json.dumps({"epoch": e, "eval/R@1": 0.5}) + "\n" for e in epochs))


def epochs(path) -> list[int]:
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines()]


def test_fresh_start_drops_every_row_even_a_stale_epoch_0(tmp_path):
    write_rows(tmp_path / "metrics.jsonl", [0, 1, 2])
    RunMonitor(RunDir(str(tmp_path)), True).close()
    assert epochs(tmp_path / "metrics.jsonl") == []


def test_resume_keeps_the_rows_of_the_checkpoint_and_the_epoch_0_evaluation(tmp_path):
    write_rows(tmp_path / "metrics.jsonl", [0, 1, 2])
    RunMonitor(RunDir(str(tmp_path)), True, resume_epoch=0, resume_step=5).close()
    assert epochs(tmp_path / "metrics.jsonl") == [0]
    write_rows(tmp_path / "metrics.jsonl", [0, 1, 2])
    RunMonitor(RunDir(str(tmp_path)), True, resume_epoch=1, resume_step=36).close()
    assert epochs(tmp_path / "metrics.jsonl") == [0, 1]


def test_resume_restores_the_checkpoints_row_a_crash_lost(tmp_path):
    write_rows(tmp_path / "metrics.jsonl", [1])
    row = {"epoch": 2, "eval/R@1": 0.75}
    RunMonitor(RunDir(str(tmp_path)), True, resume_epoch=2, resume_step=72, resumed_row=row).close()
    assert epochs(tmp_path / "metrics.jsonl") == [1, 2]
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[1]) == row
    # Written already: kept as it is, not doubled.
    RunMonitor(RunDir(str(tmp_path)), True, resume_epoch=2, resume_step=72, resumed_row=row).close()
    assert epochs(tmp_path / "metrics.jsonl") == [1, 2]
