"""Class-split parsing, validation classes held out of training, and the dropping of unreadable
images."""
from __future__ import annotations

import pytest

from rcdml.config import ConfigError
from rcdml.data.datasets.base import Catalog, ImageList
from rcdml.data.datasets.splits import drop_images, parse_classes, split_catalog, validation_classes


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


def catalog(classes: int = 20, per_class: int = 3) -> Catalog:
    """``classes`` classes numbered 1.., the first half training by default, the rest evaluation."""
    ids = [c for c in range(1, classes + 1) for _ in range(per_class)]
    return Catalog([f"c{c}/{i}.png" for i, c in enumerate(ids)], ids,
                   {c: f"class{c}" for c in range(1, classes + 1)},
                   list(range(1, classes // 2 + 1)), list(range(classes // 2 + 1, classes + 1)))


def test_a_fraction_holds_out_evenly_spread_training_classes_whatever_their_order():
    assert validation_classes(0.2, list(range(1, 11))) == [3, 8]
    assert validation_classes(0.2, list(range(10, 0, -1))) == [3, 8]
    assert validation_classes(0.1, list(range(1, 101))) == list(range(6, 101, 10))
    assert validation_classes(None, [1, 2, 3]) == []


def test_validation_classes_leave_training_and_keep_every_image_of_theirs():
    data = split_catalog(catalog(), None, None, "4-5")
    assert data.train.class_names == [f"class{c}" for c in (1, 2, 3, 6, 7, 8, 9, 10)]
    assert data.train.labels == [i for i in range(8) for _ in range(3)]
    assert data.val.class_names == ["class4", "class5"] and data.val.labels == [0, 0, 0, 1, 1, 1]
    assert not set(data.val.paths) & set(data.train.paths)
    assert len(data.query) == 30 and data.query.class_names[0] == "class11"
    assert split_catalog(catalog()).val is None


@pytest.mark.parametrize("spec, message", [
    (0.0, "not a fraction"), (1.0, "not a fraction"), (5.0, "not a fraction"),
    (0.05, "0.05 of 10 training classes is 0; .* allowed: 0.2 to 0.9"),
    (0.99, "is 10; .* allowed: 0.2 to 0.9"),
    ("9-12", r"class\(es\) \[11, 12\] are not training classes;.*\(1-10\)"),
    ([3], "1 of 10 training classes"), ("1-10", "10 of 10 training classes"),
    ("1-", "not a class list"),
])
def test_bad_validation_classes_name_the_key_and_what_is_allowed(spec, message):
    with pytest.raises(ConfigError, match=f"^data.val_classes: .*{message}"):
        split_catalog(catalog(), None, None, spec)
