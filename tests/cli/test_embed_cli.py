"""rcdml-embed's inputs: a list file embeds its images as the folder tree does, with or without
a label column; an unreadable image is refused by default and left out with data.bad_images=skip."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from rcdml.cli import embed
from rcdml.deploy.store import parse_items

# Every test here starts processes (training, torchrun, a command line): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow


def embed_into(digits_run, out, *extra: str) -> int:
    run_dir, _, _ = digits_run
    return embed.main([str(run_dir / "config.yaml"), f"checkpoint={run_dir / 'best.pt'}",
                       f"out={out}", *extra])


def outputs(folder) -> tuple[np.ndarray, list[str], list[int]]:
    items = parse_items(str(folder / "items.tsv"))
    return np.load(folder / "embeddings.npy"), items.paths, items.labels


def test_list_with_labels_equals_the_folder(digits_run, embedded, tmp_path):
    array, paths, labels = outputs(embedded)
    _, _, folder = digits_run
    # Paths relative to the list file's folder, as a user writes them next to the images.
    listing = tmp_path / "images.txt"
    rel = [os.path.relpath(p, tmp_path) for p in paths]
    listing.write_text("".join(f"{p}\t{y}\n" for p, y in zip(rel, labels)))
    assert embed_into(digits_run, tmp_path / "out", f"input={listing}") == 0
    got, got_paths, got_labels = outputs(tmp_path / "out")
    assert got_paths == paths and got_labels == labels and len(set(labels)) == 5
    np.testing.assert_allclose(got, array, atol=1e-6)


def test_list_without_labels_keeps_its_order(digits_run, embedded, tmp_path):
    array, paths, _ = outputs(embedded)
    rows = list(range(len(paths)))[::-7]  # a subset, in an order the folder scan never gives
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{paths[i]}\n" for i in rows))
    assert embed_into(digits_run, tmp_path / "out", f"input={listing}") == 0
    got, got_paths, got_labels = outputs(tmp_path / "out")
    assert got_paths == [paths[i] for i in rows] and set(got_labels) == {-1}
    np.testing.assert_allclose(got, array[rows], atol=1e-6)


@pytest.fixture
def with_broken(digits_run, tmp_path):
    """A folder of 2 x 6 good evaluation images and a truncated PNG among them."""
    _, _, folder = digits_run
    target = tmp_path / "images"
    for name in ("5", "6"):
        (target / name).mkdir(parents=True)
        for image in sorted(os.listdir(folder / name))[:6]:
            shutil.copy(folder / name / image, target / name / image)
    good = sorted(os.listdir(folder / "6"))[0]
    broken = target / "6" / "broken.png"
    broken.write_bytes((folder / "6" / good).read_bytes()[:60])
    return target, broken


def test_unreadable_image_is_refused_by_default(digits_run, with_broken, tmp_path, capsys):
    target, broken = with_broken
    capsys.readouterr()
    assert embed_into(digits_run, tmp_path / "out", f"input={target}") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(broken) in err and "data.bad_images=skip" in err, err
    assert not (tmp_path / "out").exists()


def test_bad_images_skip_leaves_the_unreadable_image_out(digits_run, embedded, with_broken,
                                                         tmp_path, capsys):
    target, broken = with_broken
    capsys.readouterr()
    assert embed_into(digits_run, tmp_path / "out", f"input={target}", "data.bad_images=skip") == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(broken) in err and "left out" in err, err
    got, got_paths, got_labels = outputs(tmp_path / "out")
    assert len(got_paths) == 12 and str(broken) not in got_paths
    assert got_labels == [5] * 6 + [6] * 6  # the folders 5 and 6
    array, paths, _ = outputs(embedded)
    row = {os.path.relpath(p, digits_run[2]): i for i, p in enumerate(paths)}
    np.testing.assert_allclose(got, array[[row[os.path.relpath(p, target)] for p in got_paths]],
                               atol=1e-6)
