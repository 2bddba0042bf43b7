"""In-Shop reader: train items, and query images retrieved among gallery images."""
from __future__ import annotations

import os

import pytest

from rcdml.config import ConfigError
from rcdml.data.datasets import read_catalog, split_catalog

# (item id, status, images): two training items, two test items with query and gallery images.
ROWS = [(1, "train", 3), (3, "train", 2), (2, "query", 2), (2, "gallery", 1), (7, "query", 1),
        (7, "gallery", 3)]


def make_inshop(root: str, write_image, under_eval: bool) -> None:
    lines = []
    for item, status, n in ROWS:
        for i in range(n):
            rel = f"img/WOMEN/Dresses/id_{item:08d}/{i:02d}_{status[0]}_front.jpg"
            write_image(os.path.join(root, rel), size=(8, 12), seed=len(lines))
            lines.append(f"{rel} id_{item:08d} {status}")
    folder = os.path.join(root, "Eval") if under_eval else root
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "list_eval_partition.txt"), "w") as f:
        f.write(f"{len(lines)}\nimage_name item_id evaluation_status\n" + "\n".join(lines) + "\n")


@pytest.mark.parametrize("under_eval", [False, True])
def test_query_and_gallery_share_one_labelling(tmp_path, image_writer, under_eval):
    make_inshop(str(tmp_path), image_writer, under_eval)
    data = split_catalog(read_catalog("inshop", str(tmp_path)))
    assert len(data.train) == 5 and data.train.class_names == ["id_00000001", "id_00000003"]
    assert data.train.labels == [0, 0, 0, 1, 1]
    assert len(data.query) == 3 and len(data.gallery) == 4
    assert data.query.class_names == data.gallery.class_names == ["id_00000002", "id_00000007"]
    assert data.query.labels == [0, 0, 1] and data.gallery.labels == [0, 1, 1, 1]
    assert all("_q_" in p for p in data.query.paths) and all("_g_" in p for p in data.gallery.paths)
    assert all(os.path.isfile(p) for p in data.query.paths + data.gallery.paths)


def test_eval_class_without_query_or_gallery_images_is_a_config_error(tmp_path, image_writer):
    make_inshop(str(tmp_path), image_writer, False)
    with pytest.raises(ConfigError, match="data.eval_classes.*\\[1\\].*query or gallery"):
        split_catalog(read_catalog("inshop", str(tmp_path)), None, [1, 2])
