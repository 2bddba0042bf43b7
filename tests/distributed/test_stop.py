"""The stop contract's ends that need no process of their own: a stop request during teardown
(after the last step) leaves a finished run, and one during start-up stops before any work."""
from __future__ import annotations

import json
import os
import signal

import pytest

from rcdml.cli import train as train_cli
from rcdml.distributed import stop

from runs import fast


@pytest.fixture
def contract(tmp_path, monkeypatch):
    """rcdml-train's handlers for one test, the stop record in ``tmp_path``; the process's own
    handlers back afterwards."""
    previous = {s: signal.getsignal(s) for s in stop.STOP_SIGNALS}
    record = tmp_path / "stop.json"
    monkeypatch.setenv(stop.STOP_FILE_ENV, str(record))
    for name in ("RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    yield record
    stop.restore(previous)


def test_a_stop_during_teardown_leaves_a_finished_run(contract, tmp_path, monkeypatch):
    import rcdml.engine.trainer as trainer

    class TrainedThenSignalled:
        """The whole run done, then SIGTERM while the process winds down (Slurm's time limit
        arriving during the closing report, say)."""

        def __init__(self, cfg, info):
            pass

        def fit(self):
            os.kill(os.getpid(), signal.SIGTERM)
            return {}

    monkeypatch.setattr(trainer, "Trainer", TrainedThenSignalled)
    assert train_cli.main(fast(tmp_path, "run", "train.epochs=1")) == 0
    assert stop.requested() == signal.SIGTERM  # received, and not a kill (exit status 143)
    assert json.loads(contract.read_text()) == {"state": "finished"}


def test_a_stop_while_starting_ends_before_any_work(contract, tmp_path, monkeypatch, capsys):
    import rcdml.engine.trainer as trainer

    def never(*args):
        raise AssertionError("the run started")

    monkeypatch.setattr(trainer, "Trainer", never)
    # The checks pass, then the request arrives before the ranks agree to start (main imports
    # check_training when it runs, so the module's attribute is the one to patch).
    import rcdml.cli.checks as checks

    original = checks.check_training

    def check_then_signal(cfg, world_size):
        original(cfg, world_size)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(checks, "check_training", check_then_signal)
    assert train_cli.main(fast(tmp_path, "run", "train.epochs=1")) == stop.EXIT_PREEMPTED
    assert "stopped by SIGTERM while starting, before any step" in capsys.readouterr().err
    assert json.loads(contract.read_text()) == {"state": "stopped", "signal": "SIGTERM"}
    assert not (tmp_path / "run").exists()
