"""benchmarks/cars.py's report from its ledger alone (no training): the zero-shot rows, the
losses at their validation-selected epoch, the verdicts, runs missing from the plan, and runs of
earlier settings of the recipe kept apart from the current ones."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import cars  # noqa: E402

METRICS = ["eval/R@1", "eval/R@2", "eval/R@4", "eval/R@8", "eval/MAP@R"]


def _run(method: str, seed: int, r1: float, selected: float | None = None, wall: float = 600.0,
         recipe: dict | None = None, pooled: bool = False):
    row = {"method": method, "seed": seed, "wall_s": wall, "threads": 2, "jobs": 1,
           "recipe": recipe or cars.recipe_settings(), "pooled": pooled,
           "command": f"train {method} {seed}", "epochs": 8 if selected is not None else 0,
           **{m: r1 for m in METRICS}}
    if selected is not None:
        row.update({"selected_epoch": 6, **{f"selected/{m}": selected for m in METRICS}})
    return row


@pytest.mark.slow  # starts the study script
def test_report_from_the_ledger(tmp_path):
    now = cars.fingerprint(cars.recipe_settings())
    before = cars.recipe_settings()
    before["optim"] = {**before.get("optim", {}), "lr": 1e-5}
    then = cars.fingerprint(before)
    ledger = {f"{now}/zero_shot-pooled-seed0": _run("zero_shot", 0, 0.30, pooled=True),
              f"{now}/zero_shot-seed0": _run("zero_shot", 0, 0.32),
              f"{now}/zero_shot-seed1": _run("zero_shot", 1, 0.34),
              f"{now}/pa-seed0": _run("pa", 0, 0.50, 0.52), f"{now}/pa-seed1": _run("pa", 1, 0.54, 0.56),
              f"{now}/full-seed0": _run("full", 0, 0.55, 0.58),
              f"{now}/full-seed1": _run("full", 1, 0.57, 0.60),
              # The same run names under other settings: never mixed into the current table.
              f"{then}/pa-seed0": _run("pa", 0, 0.40, 0.41, recipe=before),
              f"{then}/pa-seed1": _run("pa", 1, 0.40, 0.43, recipe=before)}
    with open(tmp_path / "CARS.jsonl", "w") as f:
        for name, row in ledger.items():
            f.write(json.dumps({"run": name, **row}) + "\n")
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "cars.py"), "--report-only",
           "--seeds", "0", "1", "--out", str(tmp_path / "out"), "--report", str(tmp_path / "CARS.md")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"recipe {now}: 7 of 11 runs finished already; 0 to train" in result.stdout
    text = (tmp_path / "CARS.md").read_text()
    current, earlier = text.split("## Earlier settings of the recipe")
    lr_now = cars.flat(cars.recipe_settings()).get("optim.lr", "unset")
    assert f"(recipe {now})" in current
    assert f"### Recipe {then}: `optim.lr` 1e-05, now {lr_now}" in earlier
    assert "| Proxy-Anchor | 42.00 ± 1.41 |" in earlier and "| Proxy-Anchor | 42.00" not in current
    text = current
    assert "| zero-shot: pooled backbone features (1,280-d) | 30.00 | 30.00 |" in text
    assert "| zero-shot: pretrained backbone, untrained 512-d head | 33.00 ± 1.41 |" in text
    # Losses: the selected epoch's metrics, then the last epoch's R@1, seeds and wall time.
    assert ("| Proxy-Anchor | 54.00 ± 2.83 | 54.00 ± 2.83 | 54.00 ± 2.83 | 54.00 ± 2.83 | "
            "54.00 ± 2.83 | 52.00 ± 2.83 | 2 | 10.0 min |") in text
    assert "| RCDML (reference) | 59.00 ± 1.41 |" in text
    assert "| RCDML, negatives over present classes | - | - | - | - | - | - | 0 | - |" in text
    assert "the best loss, RCDML (reference), reaches R@1 59.00, +26.00 points" in text
    assert "RCDML (reference) minus Proxy-Anchor R@1 +5.00 points, larger std 2.83: it beats" in text
    # The ledger is rewritten unchanged: only finished runs, one line each.
    rows = [json.loads(line) for line in (tmp_path / "CARS.jsonl").read_text().splitlines()]
    assert sorted(r["run"] for r in rows) == sorted(ledger)
