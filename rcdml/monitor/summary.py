"""The closing report of a training run: what the network scored before training, after it and at
its best epoch, next to the baseline its dataset records, and where the run's files are."""
from __future__ import annotations

import json
import os
from typing import Any

from rcdml.rundir import RunDir


def read_rows(metrics_path: str) -> list[dict[str, Any]]:
    """The rows of a run's metrics file (none when it has no file yet)."""
    if not os.path.exists(metrics_path):
        return []
    with open(metrics_path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _row(rows: list[dict[str, Any]], epoch: int, split: str = "eval") -> dict[str, float]:
    """The ``split`` metrics logged for ``epoch`` (the last such row: a resumed epoch is logged
    once more only if the checkpoint preceded its row)."""
    prefix = f"{split}/"
    found = [r for r in rows if r.get("epoch") == epoch and any(k.startswith(prefix) for k in r)]
    return {k[len(prefix):]: v for k, v in found[-1].items() if k.startswith(prefix)} if found else {}


def selected_and_last(rows: list[dict[str, Any]], best: dict[str, Any], epochs: int,
                      key: str) -> dict[str, Any]:
    """``summary.json``: the test (``eval``) and validation metrics at the epoch ``best.pt`` holds,
    chosen on ``key``, and at the last epoch; results tables take one of these, never the best
    test epoch of a run selected on validation."""
    def at(epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "eval": _row(rows, epoch), "val": _row(rows, epoch, "val")}

    return {"selected_on": key, "selected": at(best.get("epoch", -1)), "last": at(epochs)}


def run_summary(rows: list[dict[str, Any]], final: dict[str, float], best: dict[str, Any],
                epochs: int, baseline: dict[str, float], wall_s: float, run: RunDir,
                checkpoints: list[str]) -> str:
    """Lines a user reads once the run is over. ``final`` are the last evaluation's metrics
    (``eval/`` keys), ``best`` the trainer's {"metric", "epoch"}, ``baseline`` the dataset's
    recorded baseline metrics (may be empty)."""
    after = {k[len("eval/"):]: v for k, v in final.items() if k.startswith("eval/")}
    columns = [("before training", _row(rows, 0)), (f"after epoch {epochs}", after)]
    if best.get("epoch", -1) > 0:
        on_val = best.get("key", "eval/").startswith("val/")
        title = f"selected on val (epoch {best['epoch']})" if on_val else f"best (epoch {best['epoch']})"
        columns.append((title, _row(rows, best["epoch"])))
    if baseline:
        columns.append(("raw-pixel cosine", baseline))
    columns = [(title, values) for title, values in columns if values]
    width = max(len(title) for title, _ in columns) + 2
    lines = ["summary of the run on the evaluation split:",
             "  " + " " * 8 + "".join(title.rjust(width) for title, _ in columns)]
    for name in after:
        cells = "".join((f"{values[name]:.4f}" if name in values else "-").rjust(width)
                        for _, values in columns)
        lines.append(f"  {name:<8}{cells}")
    lines += [f"wall time: {wall_s:.0f} s (training and evaluation in this process)",
              f"run directory: {run.output_dir}",
              f"curves: tensorboard --logdir {run.tensorboard}"]
    if checkpoints:
        lines.append("checkpoints: " + ", ".join(checkpoints))
    return "\n".join(lines)
