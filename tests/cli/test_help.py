"""Every console script answers --version and a --help of its own: its keys, a concrete example
and where that example writes."""
from __future__ import annotations

import configparser
import importlib
import os

import pytest

import rcdml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def console_scripts() -> dict[str, str]:
    meta = configparser.ConfigParser()
    meta.read(os.path.join(ROOT, "setup.cfg"))
    lines = meta["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=")) for line in lines)


# The keys each command's help must name (its own, not the training example's).
OWN_KEYS = {
    "rcdml-train": ["CONFIG", "output_dir="],
    "rcdml-eval": ["checkpoint="],
    "rcdml-prepare": ["--root", "--check"],
    "rcdml-embed": ["checkpoint=", "input=", "out=", "dtype="],
    "rcdml-index": ["out=", "index.type=", "index.nprobe="],
    "rcdml-search": ["query=", "queries=", "k=", "out=", "grid_queries="],
    "rcdml-export": ["checkpoint=", "format=", "out=", "opset="],
}


def test_every_console_script_is_covered():
    assert set(console_scripts()) == set(OWN_KEYS)


def run(script: str, arg: str, capsys) -> str:
    module, func = console_scripts()[script].split(":")
    with pytest.raises(SystemExit) as exit_:
        getattr(importlib.import_module(module), func)([arg])
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("script", sorted(OWN_KEYS))
def test_version(script, capsys):
    assert run(script, "--version", capsys).strip() == f"{script} (rcdml {rcdml.__version__})"


@pytest.mark.parametrize("script", sorted(OWN_KEYS))
def test_help_names_its_keys_and_a_concrete_example_of_its_own(script, capsys):
    text = run(script, "--help", capsys)
    for key in OWN_KEYS[script]:
        assert key in text, key
    example = text.split("\nexample:\n", 1)[1].splitlines()
    assert example[0].strip().startswith(f"{script} ")
    assert example[1].strip().startswith("writes ")
    if script != "rcdml-train":
        assert "train.epochs" not in text
