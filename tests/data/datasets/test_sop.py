"""Stanford Online Products reader on fixture ``Ebay_train.txt`` / ``Ebay_test.txt``."""
from __future__ import annotations

import os

from rcdml.data.datasets import read_catalog, split_catalog

TRAIN = {1: 3, 2: 2, 3: 4}          # class id -> images, as in Ebay_train.txt (ids from 1)
TEST = {11319: 2, 11320: 5}         # the test classes continue the numbering


def make_sop(root: str, write_image) -> None:
    base = os.path.join(root, "Stanford_Online_Products")
    image_id = 0
    for name, classes in (("Ebay_train.txt", TRAIN), ("Ebay_test.txt", TEST)):
        lines = ["image_id class_id super_class_id path"]
        for class_id, n in classes.items():
            super_id, category = (1, "bicycle") if class_id % 2 else (2, "cabinet")
            for i in range(n):
                image_id += 1
                rel = f"{category}_final/{class_id}_{i}.JPG"
                write_image(os.path.join(base, rel), size=(10, 10), seed=image_id)
                lines.append(f"{image_id} {class_id} {super_id} {rel}")
        with open(os.path.join(base, name), "w") as f:
            f.write("\n".join(lines) + "\n")


def test_official_lists_give_the_split(tmp_path, image_writer):
    make_sop(str(tmp_path), image_writer)
    data = split_catalog(read_catalog("sop", str(tmp_path)))
    assert len(data.train) == 9 and data.train.num_classes == 3
    assert len(data.query) == 7 and data.query.num_classes == 2 and data.gallery is None
    assert data.query.class_names == ["11319", "11320"]
    assert data.query.labels == [0, 0, 1, 1, 1, 1, 1]
    assert all(os.path.isfile(p) for p in data.train.paths + data.query.paths)
    assert os.path.basename(data.train.paths[3]) == "2_0.JPG" and data.train.labels[3] == 1


def test_root_may_be_the_extracted_folder(tmp_path, image_writer):
    make_sop(str(tmp_path), image_writer)
    catalog = read_catalog("sop", str(tmp_path / "Stanford_Online_Products"))
    data = split_catalog(catalog, "1-2", [3])
    assert len(data.train) == 5 and len(data.query) == 4
