"""Reading a run's dataset: unreadable files reported by path or skipped; config-time checks."""
from __future__ import annotations

import os

import pytest

from rcdml.config import ConfigError, load_config
from rcdml.data.datasets import check_dataset_config, read_dataset
from rcdml.data.image_check import UnreadableImagesError


def _broken_folder(root: str, folder_dataset) -> tuple[str, str]:
    """A folder dataset with one corrupt (truncated) JPEG and one missing file (a dangling
    symlink, as left by a half-finished copy)."""
    paths = folder_dataset(root, 4, 3, ext=".jpg", size=(32, 24))
    corrupt = paths[1]
    data = open(corrupt, "rb").read()
    with open(corrupt, "wb") as f:
        f.write(data[: len(data) * 2 // 3])
    missing = paths[8]
    os.remove(missing)
    os.symlink(os.path.join(root, "gone.jpg"), missing)
    return corrupt, missing


def _cfg(root: str, *extra: str):
    return load_config(None, ["data.name=folder", f"data.root={root}", *extra]).data


def test_corrupt_jpeg_and_missing_file_are_both_reported(tmp_path, folder_dataset):
    corrupt, missing = _broken_folder(str(tmp_path), folder_dataset)
    with pytest.raises(UnreadableImagesError) as e:
        read_dataset(_cfg(str(tmp_path)))
    message = str(e.value)
    assert f"{missing}: missing" in message
    assert f"{corrupt}: not a readable image" in message and "truncated" in message
    assert set(e.value.problems) == {corrupt, missing}


def test_header_check_misses_truncation_but_finds_the_missing_file(tmp_path, folder_dataset):
    corrupt, missing = _broken_folder(str(tmp_path), folder_dataset)
    with pytest.raises(UnreadableImagesError) as e:
        read_dataset(_cfg(str(tmp_path), "data.check_images=header"))
    assert set(e.value.problems) == {missing}


def test_skip_leaves_them_out_with_a_counted_warning(tmp_path, folder_dataset, capsys):
    corrupt, missing = _broken_folder(str(tmp_path), folder_dataset)
    data = read_dataset(_cfg(str(tmp_path), "data.bad_images=skip"))
    assert corrupt not in data.train.paths and missing not in data.query.paths
    assert len(data.train) == 5 and len(data.query) == 5
    err = capsys.readouterr().err
    assert "2 of 12 images cannot be read" in err and corrupt in err and missing in err


def test_config_time_checks_name_the_key(tmp_path, folder_dataset):
    folder_dataset(str(tmp_path), 4, 3, size=(8, 8))
    check_dataset_config(_cfg(str(tmp_path), "data.samples_per_class=2"), batch_size=4)
    with pytest.raises(ConfigError, match="train.batch_size: 8 .* need 4 training classes.*has 2"):
        check_dataset_config(_cfg(str(tmp_path), "data.samples_per_class=2"), batch_size=8)
    with pytest.raises(ConfigError, match="data.train_classes: class\\(es\\) \\[9\\] do not exist"):
        check_dataset_config(_cfg(str(tmp_path), "data.train_classes=[1,9]"), batch_size=4)
    with pytest.raises(ConfigError, match="data.root: .*cub.*images.txt"):
        check_dataset_config(load_config(None, ["data.name=cub", f"data.root={tmp_path}"]).data, 4)
    with pytest.raises(ConfigError, match="data.eval_classes"):
        check_dataset_config(load_config(None, ["data.eval_classes=x"]).data, 4)


def test_run_validation_checks_the_dataset_keys(tmp_path, folder_dataset, monkeypatch):
    from rcdml.cli.checks import check_training
    from rcdml.data import pipeline

    folder_dataset(str(tmp_path), 4, 3, size=(8, 8))
    base = ["data.name=folder", f"data.root={tmp_path}", "train.batch_size=4",
            "data.samples_per_class=2", "train.epochs=2"]
    check_training(load_config(None, base))
    with pytest.raises(ConfigError, match="data.train_classes"):
        check_training(load_config(None, base + ["data.train_classes=1-9"]))
    monkeypatch.setattr(pipeline, "dali_available", lambda: False)
    with pytest.raises(ConfigError, match="data.loader: dali needs NVIDIA DALI"):
        check_training(load_config(None, base + ["data.loader=dali"]))
