"""docs/api.md's code blocks run as printed: the loss and the evaluator in a user's own loop (one
process, and two ranks under torchrun give the same result), and loading a trained model."""
from __future__ import annotations

import os
import re

import pytest
import torch

from runs import ROOT

PAGE = os.path.join(ROOT, "docs", "api.md")


def code_blocks() -> list[str]:
    with open(PAGE) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_the_loss_and_evaluator_in_a_users_loop(capsys, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    exec(compile(code_blocks()[0], PAGE, "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out
    before, after = map(float, re.findall(r"(\d\.\d+) (?:before|after)", printed))
    assert after > before + 0.05, printed


@pytest.mark.slow  # torchrun, or a trained run
def test_the_users_loop_under_two_ranks_prints_what_one_process_prints(tmp_path, torchrun, capsys,
                                                                      monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    script = tmp_path / "loop.py"
    script.write_text(code_blocks()[0])
    exec(compile(code_blocks()[0], PAGE, "exec"), {"__name__": "__main__"})
    one = capsys.readouterr().out.strip()
    result = torchrun(str(script), 2)
    assert result.returncode == 0, result.stderr[-3000:]
    two = result.stdout.strip().splitlines()[-1]
    # Same global batches, so the same numbers up to float summation order.
    numbers = [re.findall(r"\d\.\d+", line) for line in (one, two)]
    for a, b in zip(*numbers):
        assert float(a) == pytest.approx(float(b), abs=0.01), (one, two)


@pytest.mark.slow  # torchrun, or a trained run
def test_loading_a_trained_model(digits_run, tmp_path, monkeypatch, capsys):
    run_dir, _, _ = digits_run
    (tmp_path / "runs").mkdir()
    os.symlink(run_dir, tmp_path / "runs" / "digits")
    monkeypatch.chdir(tmp_path)
    scope = {"__name__": "__main__"}
    exec(compile(code_blocks()[1], PAGE, "exec"), scope)
    embeddings = scope["embeddings"]
    assert embeddings.shape == (4, 128)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(4))
