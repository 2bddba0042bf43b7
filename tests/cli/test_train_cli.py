"""``launch/train.py`` end to end on the embedded digits dataset, and its config errors."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Every test here starts processes (training, torchrun, a command line): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "launch", "train.py")
DIGITS = os.path.join(ROOT, "configs", "digits.yaml")


def run_train(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TRAIN, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("override, key", [
    ("train.epochz=3", "train.epochz"),
    ("train.epochs=three", "train.epochs"),
    ("data.name=folder", "data.root"),
    ("model.backbone=vgg", "model.backbone"),
    ("loss.name=arcface", "loss.name"),
    ("train.batch_size=42", "train.batch_size"),
])
def test_config_errors_exit_2_with_one_line(override, key, tmp_path):
    extra = [f"data.root={tmp_path / 'missing'}"] if override.startswith("data.name") else []
    result = run_train(DIGITS, override, *extra, f"output_dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert key in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_missing_config_file_exits_2(tmp_path):
    result = run_train(str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "config file not found" in result.stderr


def test_missing_config_argument_gives_one_usage_line_and_exits_2():
    result = run_train()
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("usage: rcdml-train") and "CONFIG" in lines[0]


def test_help_lists_the_config_sections_and_how_to_see_every_key(capsys):
    from dataclasses import fields

    from rcdml.cli.train import main
    from rcdml.config import Config

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for section in fields(Config):
        assert f"\n  {section.name} " in text, section.name
    assert "rcdml-train CONFIG --print-config" in text


def test_version(capsys):
    import rcdml
    from rcdml.cli.train import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"rcdml-train (rcdml {rcdml.__version__})"


def test_print_config_prints_the_resolved_config_and_starts_nothing(tmp_path, capsys):
    import yaml

    from rcdml.cli.train import main

    with pytest.raises(SystemExit) as exit_:
        main([DIGITS, "train.epochs=3", "--print-config", f"output_dir={tmp_path / 'run'}"])
    assert exit_.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["epochs"] == 3 and printed["data"]["name"] == "digits"
    assert printed["output_dir"] == str(tmp_path / "run") and "at_start" in printed["eval"]
    assert not (tmp_path / "run").exists()
    assert main([DIGITS, "train.epochz=3", "--print-config"]) == 2
