"""``rcdml-prepare``: counts per split, unreadable files by path, download hints."""
from __future__ import annotations

import configparser
import os

import pytest

from conftest import load_worker
from rcdml.cli.prepare import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The image fixtures of the data tests (tests/data/conftest.py).
DATA_HELPERS = load_worker(os.path.join(ROOT, "tests", "data", "conftest.py"))


@pytest.fixture(scope="session")
def image_writer():
    return DATA_HELPERS.write_image


def _sop(root, image_writer, corrupt: bool = False, missing: bool = False) -> dict[str, str]:
    """A small SOP tree; optionally one corrupt JPEG (bytes cut off) and one listed file that
    is not on disk."""
    rows = {"Ebay_train.txt": [(1, "bicycle_final/1_a.JPG"), (1, "bicycle_final/1_b.JPG"),
                               (2, "bicycle_final/2_a.JPG")],
            "Ebay_test.txt": [(3, "chair_final/3_a.JPG"), (3, "chair_final/3_b.JPG"),
                              (4, "chair_final/4_a.JPG")]}
    n = 0
    for name, items in rows.items():
        lines = ["image_id class_id super_class_id path"]
        for class_id, rel in items:
            n += 1
            image_writer(os.path.join(root, rel), size=(40, 30), seed=n)
            lines.append(f"{n} {class_id} 1 {rel}")
        (root / name).write_text("\n".join(lines) + "\n")
    bad = {}
    if corrupt:
        bad["corrupt"] = os.path.join(root, "bicycle_final/1_b.JPG")
        data = open(bad["corrupt"], "rb").read()
        open(bad["corrupt"], "wb").write(data[: len(data) // 2])
    if missing:
        bad["missing"] = os.path.join(root, "chair_final/4_a.JPG")
        os.remove(bad["missing"])
    return bad


@pytest.mark.slow
def test_ready_dataset_prints_counts_and_exits_0(tmp_path, image_writer, capsys):
    _sop(tmp_path, image_writer)
    assert main(["sop", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "train: 3 images, 2 classes" in out and "query: 3 images, 2 classes" in out
    assert "all 6 images readable (check: decode)" in out


@pytest.mark.slow
def test_corrupt_jpeg_and_missing_file_are_named(tmp_path, image_writer, capsys):
    bad = _sop(tmp_path, image_writer, corrupt=True, missing=True)
    assert main(["sop", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "2 of 6 images cannot be read" in err
    assert f"{bad['missing']}: missing" in err
    assert f"{bad['corrupt']}: not a readable image" in err
    # The cheap check only sees the missing file.
    assert main(["sop", "--root", str(tmp_path), "--check", "exists"]) == 1
    err = capsys.readouterr().err
    assert bad["missing"] in err and bad["corrupt"] not in err


@pytest.mark.slow
def test_missing_layout_says_what_to_download(tmp_path, capsys):
    assert main(["cars", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "cars_annos.mat" in err and "car_ims.tgz" in err and "https://" in err


@pytest.mark.slow
def test_bad_class_split_exits_2(tmp_path, image_writer, capsys):
    _sop(tmp_path, image_writer)
    assert main(["sop", "--root", str(tmp_path), "--train-classes", "1-9"]) == 2
    assert "data.train_classes" in capsys.readouterr().err


def test_console_script_is_declared():
    setup = configparser.ConfigParser()
    setup.read(os.path.join(ROOT, "setup.cfg"))
    scripts = setup["options.entry_points"]["console_scripts"]
    assert "rcdml-prepare = rcdml.cli.prepare:main" in scripts
