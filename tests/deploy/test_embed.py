"""rcdml-embed's folder labels: a folder named by an integer is that label (digits/7 is 7);
otherwise the rank of the folder among the sorted folders; images at the top are unknown (-1)."""
from __future__ import annotations

from PIL import Image

from rcdml.deploy.embed import list_images


def tree(root, names):
    for name in names:
        (root / name).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(root / name / "a.png")


def test_integer_folder_names_are_the_labels(tmp_path):
    tree(tmp_path, ["5", "7", "9"])
    Image.new("RGB", (4, 4)).save(tmp_path / "loose.png")
    items = list_images("input", str(tmp_path))
    assert sorted(items.labels) == [-1, 5, 7, 9]


def test_other_folder_names_are_numbered_in_sorted_order(tmp_path):
    tree(tmp_path, ["dog", "cat", "7"])
    items = list_images("input", str(tmp_path))
    assert dict(zip((p.split("/")[-2] for p in items.paths), items.labels)) == {
        "7": 0, "cat": 1, "dog": 2}
