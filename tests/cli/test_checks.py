"""The checks each command runs first: evaluation needs neither the training rules nor the
training backend."""
from __future__ import annotations

import os
import sys

import pytest

from rcdml.cli.checks import check_evaluation, check_training
from rcdml.config import ConfigError, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGITS = os.path.join(ROOT, "configs", "digits.yaml")


def test_a_deepspeed_run_evaluates_without_deepspeed(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepspeed", None)
    cfg = load_config(DIGITS, ["train.backend=deepspeed",
                               f"train.deepspeed_config={ROOT}/configs/deepspeed/zero2.yaml"])
    check_evaluation(cfg)
    with pytest.raises(ConfigError, match=r"^train\.backend: deepspeed is not installed"):
        check_training(cfg)


def test_training_only_rules_do_not_stop_an_evaluation():
    cfg = load_config(DIGITS, ["train.batch_size=130", "train.warmup_epochs=99",
                               "loss.name=nonsense"])
    check_evaluation(cfg)
    with pytest.raises(ConfigError, match=r"^loss\.name: 'nonsense' is not allowed"):
        check_training(cfg)


def test_evaluation_still_checks_what_it_reads():
    with pytest.raises(ConfigError, match=r"^model\.backbone: 'nonsense' is not allowed"):
        check_evaluation(load_config(DIGITS, ["model.backbone=nonsense"]))
    with pytest.raises(ConfigError, match=r"^eval\.ks: \[4, 1\] must be a non-empty increasing"):
        check_evaluation(load_config(DIGITS, ["eval.ks=[4, 1]"]))
