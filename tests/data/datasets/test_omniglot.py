"""Omniglot from ../shared/data/omniglot.tar.gz: 964 training and 659 evaluation classes."""
from __future__ import annotations

import os

from rcdml.data.datasets import read_catalog, split_catalog


def test_standard_split_from_the_shared_archive(omniglot_root):
    catalog = read_catalog("omniglot", omniglot_root)
    data = split_catalog(catalog)
    assert data.train.num_classes == 964 and data.query.num_classes == 659
    assert len(data.train) == 964 * 20 and len(data.query) == 659 * 20
    assert set(data.train.labels) == set(range(964)) and set(data.query.labels) == set(range(659))
    assert all("/images_background/" in p for p in data.train.paths[:: 997])
    assert all("/images_evaluation/" in p for p in data.query.paths[:: 997])
    # A class is one character folder; its 20 drawings share a label.
    first = os.path.dirname(data.train.paths[0])
    assert [os.path.dirname(p) for p in data.train.paths[:20]] == [first] * 20
    assert data.train.labels[:21] == [0] * 20 + [1]
    # The parent of the extracted folder works too; classes are numbered background first.
    assert split_catalog(read_catalog("omniglot", os.path.dirname(omniglot_root)), [965], [1]) \
        .train.class_names == [data.query.class_names[0]]


def test_nested_alphabet_character_layout(tmp_path, image_writer):
    for split, alphabets in (("images_background", ("Greek", "Latin")),
                             ("images_evaluation", ("Tengwar",))):
        for alphabet in alphabets:
            for char in ("character01", "character02"):
                for i in range(3):
                    image_writer(str(tmp_path / split / alphabet / char / f"{i}.png"), size=(8, 8))
    data = split_catalog(read_catalog("omniglot", str(tmp_path)))
    assert data.train.class_names == ["images_background/Greek/character01",
                                      "images_background/Greek/character02",
                                      "images_background/Latin/character01",
                                      "images_background/Latin/character02"]
    assert len(data.train) == 12 and len(data.query) == 6 and data.query.num_classes == 2
