"""Generic ``root/<class>/<image>`` reader and the embedded plain digits built on it."""
from __future__ import annotations

import os

import pytest

from rcdml.data.datasets import LayoutError, read_catalog, split_catalog


def test_sorted_classes_split_in_halves_and_non_images_ignored(tmp_path, folder_dataset):
    folder_dataset(str(tmp_path), 5, [1, 2, 3, 4, 5], ext=".jpg", size=(6, 6))
    (tmp_path / "c01" / "notes.txt").write_text("not an image")
    (tmp_path / "README").write_text("a file at the top level")
    os.makedirs(tmp_path / "empty")
    data = split_catalog(read_catalog("folder", str(tmp_path)))
    assert data.train.class_names == ["c00", "c01"] and data.train.labels == [0, 1, 1]
    assert data.query.class_names == ["c02", "c03", "c04"] and len(data.query) == 12
    custom = split_catalog(read_catalog("folder", str(tmp_path)), "3-5", "1-2")
    assert custom.train.class_names == ["c02", "c03", "c04"] and len(custom.query) == 3


def test_one_class_cannot_be_split(tmp_path, folder_dataset):
    folder_dataset(str(tmp_path), 1, 2)
    with pytest.raises(LayoutError, match="two class folders"):
        read_catalog("folder", str(tmp_path))


def test_digits8x8_are_written_once_and_split_0_4_against_5_9(tmp_path):
    root = str(tmp_path / "digits")
    data = split_catalog(read_catalog("digits8x8", root))
    assert data.train.class_names == ["0", "1", "2", "3", "4"]
    assert data.query.class_names == ["5", "6", "7", "8", "9"]
    assert len(data.train) + len(data.query) == 1797
    stamp = os.path.getmtime(os.path.join(root, "0"))
    read_catalog("digits8x8", root)
    assert os.path.getmtime(os.path.join(root, "0")) == stamp
