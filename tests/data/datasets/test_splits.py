"""Class-split parsing and the dropping of unreadable images."""
from __future__ import annotations

import pytest

from rcdml.config import ConfigError
from rcdml.data.datasets.base import ImageList
from rcdml.data.datasets.splits import drop_images, parse_classes


@pytest.mark.parametrize("spec, expected", [
    (None, None), ("1-3", [1, 2, 3]), ("5", [5]), (" 1-2 , 7,9-10", [1, 2, 7, 9, 10]),
    ([4, 2], [4, 2]),
])
def test_parse_classes(spec, expected):
    assert parse_classes(spec, "data.train_classes") == expected


@pytest.mark.parametrize("spec, message", [
    ("1-", "not a class list"), ("a-b", "not a class list"), ("5-2", "empty"),
    ("1-3,2", "twice"), ([], "no classes"),
])
def test_bad_class_specs_name_the_key(spec, message):
    with pytest.raises(ConfigError, match=f"data.eval_classes: .*{message}"):
        parse_classes(spec, "data.eval_classes")


def test_drop_images_relabels_training_but_keeps_evaluation_labels():
    images = ImageList(["a", "b", "c", "d", "e"], [0, 0, 1, 2, 2], ["x", "y", "z"])
    train = drop_images(images, {"b", "c"}, relabel=True)
    assert train.paths == ["a", "d", "e"] and train.labels == [0, 1, 1]
    assert train.class_names == ["x", "z"]
    query = drop_images(images, {"b", "c"}, relabel=False)
    assert query.labels == [0, 2, 2] and query.class_names == ["x", "y", "z"]
