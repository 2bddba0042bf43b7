"""The checkpoint manager: rotation of last/prev/best."""
from __future__ import annotations

from rcdml.engine.checkpoint import rotate


def test_rotate_moves_files_and_directories(tmp_path):
    (tmp_path / "last.pt").write_text("new")
    (tmp_path / "last.pt.ds").mkdir()
    (tmp_path / "prev.pt.ds").mkdir()
    (tmp_path / "prev.pt.ds" / "old").write_text("old")
    rotate([str(tmp_path / "last.pt"), str(tmp_path / "last.pt.ds")],
           [str(tmp_path / "prev.pt"), str(tmp_path / "prev.pt.ds")])
    assert (tmp_path / "prev.pt").read_text() == "new"
    assert (tmp_path / "prev.pt.ds").is_dir() and not (tmp_path / "prev.pt.ds" / "old").exists()
    assert not (tmp_path / "last.pt").exists()
