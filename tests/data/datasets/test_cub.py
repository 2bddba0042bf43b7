"""CUB-200-2011 reader on a fixture tree in the official layout."""
from __future__ import annotations

import os

import pytest

from rcdml.config import ConfigError
from rcdml.data.datasets import LayoutError, read_catalog, split_catalog


def make_cub(parent: str, write_image, per_class: int = 2) -> str:
    """``parent/CUB_200_2011`` with 200 classes of ``per_class`` tiny JPEGs; image ids run over
    the classes in order, as in the real images.txt."""
    base = os.path.join(parent, "CUB_200_2011")
    os.makedirs(base)
    images, labels, classes = [], [], []
    image_id = 0
    for c in range(1, 201):
        folder = f"{c:03d}.Bird_{c}"
        classes.append(f"{c} {folder}")
        for i in range(per_class):
            image_id += 1
            rel = f"{folder}/Bird_{c}_{i:04d}.jpg"
            write_image(os.path.join(base, "images", rel), size=(12, 10), seed=image_id)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c}")
    for name, lines in (("images.txt", images), ("image_class_labels.txt", labels),
                        ("classes.txt", classes)):
        with open(os.path.join(base, name), "w") as f:
            f.write("\n".join(lines) + "\n")
    return base


def test_default_split_is_classes_1_to_100_then_101_to_200(tmp_path, image_writer):
    base = make_cub(str(tmp_path), image_writer)
    for root in (str(tmp_path), base):
        data = split_catalog(read_catalog("cub", root))
        assert len(data.train) == 200 and len(data.query) == 200 and data.gallery is None
        assert data.train.num_classes == 100 and data.query.num_classes == 100
        assert data.train.class_names[0] == "001.Bird_1"
        assert data.query.class_names[0] == "101.Bird_101"
        for images, first in ((data.train, 1), (data.query, 101)):
            for path, label in zip(images.paths, images.labels):
                assert os.path.isfile(path)
                assert os.path.basename(os.path.dirname(path)).startswith(f"{label + first:03d}.")


def test_custom_split_by_ranges_and_lists(tmp_path, image_writer):
    make_cub(str(tmp_path), image_writer)
    catalog = read_catalog("cub", str(tmp_path))
    data = split_catalog(catalog, "1-10,20", [150, 3])
    assert data.train.num_classes == 11 and len(data.train) == 22
    assert data.query.class_names == ["150.Bird_150", "003.Bird_3"]
    assert sorted(set(data.query.labels)) == [0, 1]
    with pytest.raises(ConfigError, match="data.eval_classes.*201"):
        split_catalog(catalog, None, "195-201")


def test_missing_layout_names_the_file_and_the_download(tmp_path):
    with pytest.raises(LayoutError, match="images.txt") as e:
        read_catalog("cub", str(tmp_path))
    assert "CUB_200_2011.tgz" in str(e.value)
