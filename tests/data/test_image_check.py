"""Unreadable-file detection at each check depth."""
from __future__ import annotations

import os

import pytest

from rcdml.data.image_check import UnreadableImagesError, find_unreadable, image_problem


@pytest.fixture
def files(tmp_path, image_writer):
    good_jpg = image_writer(str(tmp_path / "good.jpg"), size=(64, 48))
    good_png = image_writer(str(tmp_path / "good.png"), size=(20, 20))
    data = open(good_jpg, "rb").read()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    png = open(good_png, "rb").read()
    truncated_png = tmp_path / "truncated.png"
    truncated_png.write_bytes(png[: len(png) - 40])
    text = tmp_path / "text.jpg"
    text.write_text("<html>404 not found</html>")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    gif = tmp_path / "anim.gif"
    from PIL import Image
    Image.new("P", (4, 4)).save(gif)
    return {"good_jpg": good_jpg, "good_png": good_png, "truncated": str(truncated),
            "truncated_png": str(truncated_png), "text": str(text), "empty": str(empty),
            "gif": str(gif), "missing": str(tmp_path / "missing.jpg")}


def test_levels_find_what_they_promise(files):
    found = {level: find_unreadable(sorted(files.values()), level, threads=2)
             for level in ("exists", "header", "decode")}
    by_name = {level: {name for name, p in files.items() if p in bad}
               for level, bad in found.items()}
    assert by_name["exists"] == {"missing", "empty"}
    assert by_name["header"] == {"missing", "empty", "text", "gif"}
    assert by_name["decode"] == {"missing", "empty", "text", "gif", "truncated", "truncated_png"}
    assert found["decode"][files["missing"]] == "missing"
    assert "truncated" in found["decode"][files["truncated"]]
    assert "GIF" in found["header"][files["gif"]]


def test_good_images_pass_every_level(files):
    for level in ("exists", "header", "decode"):
        assert image_problem(files["good_jpg"], level) is None
        assert image_problem(files["good_png"], level) is None


def test_error_message_lists_paths_and_the_way_out(files):
    problems = find_unreadable([files["missing"], files["truncated"], files["good_jpg"]], "decode")
    message = str(UnreadableImagesError(problems, total=3, level="decode"))
    assert message.startswith("2 of 3 images cannot be read (data.check_images=decode)")
    assert f"{files['missing']}: missing" in message and files["truncated"] in message
    assert "data.bad_images=skip" in message
    long = str(UnreadableImagesError({f"/x/{i}.jpg": "missing" for i in range(30)}, 30, "exists"))
    assert "... and 10 more" in long and os.path.join("/x", "29.jpg") not in long
