"""The one reader of checkpoint files: every read verifies the archive's checksums, so a damaged,
cut or foreign file is refused in one line naming it; a full disk while writing is one line too."""
from __future__ import annotations

import errno
import os
import zipfile

import pytest
import torch

from rcdml.checkpoint_file import (CheckpointReadError, CheckpointWriteError, fingerprint, read_checkpoint,
                                   read_file, verify, write_checkpoint)


def saved(tmp_path, name="last.pt"):
    path = tmp_path / name
    write_checkpoint({"model": {"w": torch.arange(4096.0)}, "epoch": 3}, str(path))
    return path


def damage_inside_a_tensor(path) -> None:
    """4 KiB of finite garbage in the middle of the tensor's bytes: torch.load does not notice."""
    with zipfile.ZipFile(path) as archive:
        member = next(i for i in archive.infolist() if i.filename.endswith("/data/0"))
    data = bytearray(path.read_bytes())
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra) + 1024
    data[start:start + 4096] = torch.full((1024,), 7.0).numpy().tobytes()
    path.write_bytes(bytes(data))


def test_a_clean_checkpoint_reads_back(tmp_path):
    ckpt = read_checkpoint(str(saved(tmp_path)))
    assert ckpt["epoch"] == 3 and torch.equal(ckpt["model"]["w"], torch.arange(4096.0))


def test_damage_inside_a_tensor_is_refused_by_name(tmp_path):
    path = saved(tmp_path)
    damage_inside_a_tensor(path)
    # The garbage is finite, so the load alone would succeed with other weights.
    assert not torch.equal(torch.load(path, weights_only=True)["model"]["w"], torch.arange(4096.0))
    for read in (read_checkpoint, read_file, verify):
        with pytest.raises(CheckpointReadError, match=r"checkpoint: cannot read .*last\.pt: damaged: "
                                                      r"the checksum of its member .*data/0"):
            read(str(path))


def test_a_file_cut_short_or_empty_or_foreign_is_one_line(tmp_path):
    path = saved(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointReadError, match="not a complete torch.save archive"):
        read_checkpoint(str(path))
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointReadError, match=r"empty file \(0 bytes\)"):
        read_checkpoint(str(tmp_path / "empty.pt"))
    write_checkpoint({"state_dict": {"w": torch.zeros(1)}}, str(tmp_path / "weights.pt"))
    with pytest.raises(CheckpointReadError, match="not an rcdml checkpoint"):
        read_checkpoint(str(tmp_path / "weights.pt"))
    with pytest.raises(CheckpointReadError, match="model.pretrained: cannot read .*: no such file"):
        read_file(str(tmp_path / "missing.pt"), key="model.pretrained")


def test_legacy_weights_files_load_where_foreign_weights_are_allowed(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(read_file(str(path), key="model.pretrained")["w"], torch.ones(2))
    with pytest.raises(CheckpointReadError, match="not a complete torch.save archive"):
        read_checkpoint(str(path))


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     RuntimeError("[enforce fail at inline_container.cc:595] . "
                                                  "unexpected pos 64 vs 0: No space left on device")])
def test_a_full_disk_is_one_line_naming_the_path_and_keeps_the_file(tmp_path, monkeypatch, failure):
    path = saved(tmp_path)
    before = path.read_bytes()

    def full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise failure

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointWriteError) as caught:
        write_checkpoint({"model": {}}, str(path))
    message = str(caught.value)
    assert message.count("\n") == 0 and f"cannot write {path}: no space left on device" in message
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["last.pt"]


def test_other_write_errors_are_not_disguised(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        write_checkpoint({}, str(tmp_path / "x.pt"))


def test_fingerprint_depends_on_the_weights_not_the_file(tmp_path):
    a = {"w": torch.arange(3.0)}
    write_checkpoint({"model": a}, str(tmp_path / "a.pt"))
    assert fingerprint(read_checkpoint(str(tmp_path / "a.pt"))["model"]) == fingerprint(a)
    assert fingerprint({"w": torch.arange(3.0) + 1}) != fingerprint(a)
