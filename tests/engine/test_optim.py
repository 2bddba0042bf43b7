"""The schedule is a function of (epoch, total epochs) on the config's base learning rates, so a
resumed run takes the new config's values from the resume point."""
from __future__ import annotations

import math
import warnings

import pytest
import torch

from rcdml.config import load_config
from rcdml.engine.optim import build_scheduler


def _optimizer(lr: float) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(3)]
    return torch.optim.AdamW([{"name": n, "params": [p], "lr": lr}
                              for n, p in zip(("backbone", "head", "loss"), params)], lr=lr)


def _lrs(*overrides: str, epochs: int, start: int, steps: int) -> list[float]:
    cfg = load_config(None, list(overrides)).optim
    optimizer = _optimizer(1e-4)  # a resumed optimizer carries the old run's learning rates
    scheduler = build_scheduler(optimizer, cfg, epochs, start)
    seen = [optimizer.param_groups[0]["lr"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no optimizer.step() between the scheduler's steps here
        for _ in range(steps):
            scheduler.step()
            seen.append(optimizer.param_groups[0]["lr"])
    return seen


def test_longer_cosine_run_recomputes_the_curve_from_the_resume_point():
    resumed = _lrs("optim.scheduler=cosine", "optim.lr=0.01", epochs=4, start=2, steps=1)
    straight = _lrs("optim.scheduler=cosine", "optim.lr=0.01", epochs=4, start=0, steps=3)
    assert resumed == pytest.approx(straight[2:])
    assert resumed[0] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 2 / 4)))
    assert resumed[0] > 0


def test_step_schedule_applies_the_new_base_lr():
    assert _lrs("optim.lr=0.01", "optim.step_size=2", "optim.gamma=0.5", epochs=6, start=3,
                steps=1) == pytest.approx([0.005, 0.0025])
