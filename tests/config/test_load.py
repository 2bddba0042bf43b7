"""Typed config loading: YAML, overrides, and one-line errors that name the key."""
from __future__ import annotations

import pytest

from rcdml.config import Config, ConfigError, dump_config, load_config


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_defaults_are_the_reference_implementation_recipe():
    cfg = load_config(None)
    assert isinstance(cfg, Config)
    assert (cfg.model.backbone, cfg.model.embedding_size) == ("bn_inception", 512)
    assert (cfg.optim.lr, cfg.optim.loss_lr_mult, cfg.train.batch_size) == (1e-4, 1000.0, 128)
    assert (cfg.train.grad_clip_value, cfg.train.warmup_epochs) == (10.0, 1)


def test_yaml_then_overrides(tmp_path):
    path = write(tmp_path, "run.yaml", "train:\n  epochs: 7\nloss:\n  src_weight: 0.05\n")
    cfg = load_config(path, ["train.epochs=5", "eval.ks=[1, 10]", "train.grad_clip_value=null"])
    assert cfg.train.epochs == 5
    assert cfg.loss.src_weight == 0.05
    assert cfg.eval.ks == [1, 10]
    assert cfg.train.grad_clip_value is None


def test_exponent_without_dot_is_a_float(tmp_path):
    path = write(tmp_path, "run.yaml", "optim:\n  lr: 1e-4\n")
    assert load_config(path).optim.lr == 1e-4
    assert load_config(None, ["optim.lr=3E-5"]).optim.lr == 3e-5


def test_int_is_accepted_for_float():
    cfg = load_config(None, ["optim.lr=1"])
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)


def test_base_recipe_is_merged(tmp_path):
    write(tmp_path, "base.yaml", "train:\n  epochs: 9\n  batch_size: 32\n")
    path = write(tmp_path, "child.yaml", "base: base.yaml\ntrain:\n  epochs: 3\n")
    cfg = load_config(path)
    assert (cfg.train.epochs, cfg.train.batch_size) == (3, 32)


@pytest.mark.parametrize("override, message", [
    ("train.epochz=3", "train.epochz: unknown key"),
    ("train.epochs=abc", "train.epochs: expected int"),
    ("train.epochs=2.5", "train.epochs: expected int"),
    ("train.epochs=0", "train.epochs: 0 is out of range; must be >= 1"),
    ("model.normalize=1", "model.normalize: expected bool"),
    ("loss.absent_proxies=drop", "loss.absent_proxies: 'drop' is not allowed; allowed values: zero, keep"),
    ("loss.pc_momentum=1.5", "loss.pc_momentum: 1.5 is out of range"),
    ("eval.ks=[1, 0]", "eval.ks: 0 is out of range"),
    ("nope.key=1", "nope: unknown key"),
    ("train=3", "train: expected a mapping"),
    ("train.epochs", "overrides take the form dotted.key=value"),
])
def test_errors_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_lists_allowed_ones():
    with pytest.raises(ConfigError, match="allowed keys in train: .*epochs"):
        load_config(None, ["train.epochz=3"])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "bad.yaml", "train: [\n"))
    with pytest.raises(ConfigError, match="circular"):
        load_config(write(tmp_path, "loop.yaml", "base: loop.yaml\n"))


def test_dump_round_trips(tmp_path):
    cfg = load_config(None, ["train.epochs=4", "data.crop_scale=[0.5, 1.0]"])
    again = load_config(write(tmp_path, "dumped.yaml", dump_config(cfg)))
    assert again == cfg
