"""Cars-196 reader on a fixture ``cars_annos.mat`` with the real file's structure."""
from __future__ import annotations

import os

import numpy as np
from scipy.io import loadmat, savemat

from rcdml.data.datasets import read_catalog, split_catalog


def make_cars(root: str, write_image, per_class: int = 2) -> list[tuple[str, int]]:
    """``root/cars_annos.mat`` (1xN struct ``annotations`` with relative_im_path, bbox_x1..y2,
    class, test; 1x196 cell ``class_names``) and ``root/car_ims/NNNNNN.jpg``; images of a class
    are interleaved with the others, and half are flagged test, as in the real file."""
    fields = [("relative_im_path", "O"), ("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"),
              ("bbox_y2", "O"), ("class", "O"), ("test", "O")]
    rows = [(i, c) for i in range(per_class) for c in range(1, 197)]
    annotations = np.zeros((1, len(rows)), dtype=fields)
    expected = []
    for n, (i, c) in enumerate(rows):
        rel = f"car_ims/{n + 1:06d}.jpg"
        write_image(os.path.join(root, rel), size=(14, 9), seed=n)
        annotations[0, n] = (np.array([rel]), np.array([[1]], dtype=np.uint8),
                             np.array([[2]], dtype=np.uint8), np.array([[13]], dtype=np.uint8),
                             np.array([[8]], dtype=np.uint8), np.array([[c]], dtype=np.uint8),
                             np.array([[n % 2]], dtype=np.uint8))
        expected.append((rel, c))
    names = np.empty((1, 196), dtype=object)
    for c in range(196):
        names[0, c] = np.array([f"Make Model {c + 1} 2012"])
    savemat(os.path.join(root, "cars_annos.mat"),
            {"annotations": annotations, "class_names": names})
    return expected


def test_fixture_has_the_real_structure(tmp_path, image_writer):
    make_cars(str(tmp_path), image_writer, per_class=1)
    mat = loadmat(str(tmp_path / "cars_annos.mat"))
    ann = mat["annotations"]
    assert ann.shape == (1, 196)
    assert set(ann.dtype.names) >= {"relative_im_path", "class", "test", "bbox_x1"}
    assert ann[0, 5]["relative_im_path"][0] == "car_ims/000006.jpg"
    assert ann[0, 5]["class"][0, 0] == 6
    assert mat["class_names"].shape == (1, 196)


def test_default_split_is_classes_1_to_98_then_99_to_196(tmp_path, image_writer):
    expected = make_cars(str(tmp_path), image_writer)
    data = split_catalog(read_catalog("cars", str(tmp_path)))
    assert len(data.train) == 98 * 2 and len(data.query) == 98 * 2
    assert data.train.num_classes == 98 and data.query.num_classes == 98
    assert data.train.class_names[0] == "Make Model 1 2012"
    assert data.query.class_names[-1] == "Make Model 196 2012"
    truth = {os.path.join(str(tmp_path), rel): c for rel, c in expected}
    for path, label in zip(data.train.paths, data.train.labels):
        assert truth[path] == label + 1
    for path, label in zip(data.query.paths, data.query.labels):
        assert truth[path] == label + 99
