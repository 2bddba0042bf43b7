"""The fault matrix's refusals (tests/launch/test_fault_matrix.py has the stops and the ranks that
disagree): bad input to a command exits 2 with one line naming the key or the file, and changes
no file (the sha256 of every file of the folders involved, before and after).

One row of REFUSALS per case: ``prepare(tmp, run_dir, overrides, embedded)`` builds the bad
input and returns (command's main, its argv, the folders to hash); ``message`` is a regex.
"""
from __future__ import annotations

import re
import shutil
import struct
import zipfile
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

from rcdml.cli import embed, evaluate, index, search
from rcdml.cli.train import main as train_main
from runs import fast, folder_dataset, tree


def unreadable_images(tmp, run_dir, overrides, embedded):
    folder = tmp / "broken"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes(b"not an image")
    return embed.main, [str(run_dir / "config.yaml"), f"checkpoint={run_dir / 'best.pt'}",
                        f"input={folder}", f"out={tmp / 'out'}", "data.bad_images=skip"], [folder]


def out_is_a_file(tmp, run_dir, overrides, embedded):
    out = tmp / "taken"
    out.write_text("someone's file\n")
    return embed.main, [str(run_dir / "config.yaml"), f"checkpoint={run_dir / 'best.pt'}",
                        f"input={embedded.parent / 'evalset'}", f"out={out}"], [tmp]


def damaged_checkpoint(tmp, run_dir, overrides, embedded):
    """16 finite floats written over the middle of the largest tensor of a copy of best.pt: a
    file that loads, whose weights are wrong."""
    run = tmp / "run"
    run.mkdir()
    for name in ("config.yaml", "best.pt"):
        shutil.copyfile(run_dir / name, run / name)
    path = run / "best.pt"
    with zipfile.ZipFile(path) as archive:
        member = max((m for m in archive.infolist() if "/data/" in m.filename),
                     key=lambda m: m.file_size)
    with open(path, "r+b") as f:
        f.seek(member.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
        f.seek(member.header_offset + 30 + name_len + extra_len + member.file_size // 2)
        f.write(struct.pack("<16f", *range(16)))
    return evaluate.main, [str(run / "config.yaml"), f"checkpoint={path}"], [run]


def an_index(tmp, embedded):
    assert index.main([str(embedded), "index.type=flat", f"out={tmp / 'index'}"]) == 0
    return tmp / "index"


def truncated_index(tmp, run_dir, overrides, embedded):
    folder = an_index(tmp, embedded)
    data = (folder / "index.faiss").read_bytes()
    (folder / "index.faiss").write_bytes(data[:len(data) // 2])
    return search.main, [str(folder), f"queries={embedded}", f"out={tmp / 'found'}"], [folder]


def foreign_index(tmp, run_dir, overrides, embedded):
    folder = an_index(tmp, embedded)
    shutil.copyfile(run_dir / "best.pt", folder / "index.faiss")
    return search.main, [str(folder), f"queries={embedded}", f"out={tmp / 'found'}"], [folder]


def items_one_line_short(tmp, run_dir, overrides, embedded):
    folder = an_index(tmp, embedded)
    lines = (folder / "items.tsv").read_text().splitlines(keepends=True)
    (folder / "items.tsv").write_text("".join(lines[:-1]))
    return search.main, [str(folder), f"queries={embedded}", f"out={tmp / 'found'}"], [folder]


def nan_rows(tmp, run_dir, overrides, embedded):
    folder = tmp / "emb"
    shutil.copytree(embedded, folder, ignore=shutil.ignore_patterns("index"))
    array = np.load(folder / "embeddings.npy")
    array[3] = np.nan
    np.save(folder / "embeddings.npy", array)
    return index.main, [str(folder), "index.type=flat", f"out={tmp / 'index'}"], [folder]


def run_inside_folder_data(tmp, run_dir, overrides, embedded):
    root = folder_dataset(tmp / "images")
    return train_main, [*fast(tmp, "unused", "data.name=folder", f"data.root={root}",
                              "train.batch_size=8", "data.samples_per_class=2"),
                        f"output_dir={tmp / 'images' / 'run'}"], [tmp / "images"]


def random_batch_larger_than_data(tmp, run_dir, overrides, embedded):
    return train_main, fast(tmp, "run", "data.sampler=random", "train.batch_size=4000",
                            f"data.root={run_dir.parent / 'digits'}"), [run_dir.parent / "digits"]


@dataclass(frozen=True)
class Refusal:
    name: str
    prepare: Callable
    message: str


REFUSALS = [
    Refusal("eval-damaged-checkpoint", damaged_checkpoint,
            r"^rcdml-eval: checkpoint error: checkpoint: cannot read \S+best\.pt: damaged"),
    Refusal("embed-every-image-unreadable", unreadable_images,
            r"^rcdml-embed: config error: input: none of the 2 images is readable \("),
    Refusal("embed-out-is-a-file", out_is_a_file,
            r"^rcdml-embed: config error: out: .*/taken is a file; pass out=DIR"),
    Refusal("search-truncated-index", truncated_index,
            r"^rcdml-search: config error: INDEX: .*/index\.faiss is not a readable faiss index"),
    Refusal("search-foreign-index", foreign_index,
            r"^rcdml-search: config error: INDEX: .*/index\.faiss is not a readable faiss index"),
    Refusal("search-items-one-line-short", items_one_line_short,
            r"^rcdml-search: config error: INDEX: .*/items\.tsv lists 895 items but .*/manifest"
            r"\.json counts 896"),
    Refusal("index-nan-rows", nan_rows,
            r"^rcdml-index: config error: EMBEDDINGS: .*/embeddings\.npy row 3 \(.*\.png\) is not "
            r"finite"),
    Refusal("output-dir-inside-folder-data", run_inside_folder_data,
            r"^rcdml-train: config error: output_dir: .*/images/run is inside data\.root"),
    Refusal("random-batch-larger-than-the-data", random_batch_larger_than_data,
            r"^rcdml-train: config error: train\.batch_size: 4000 is larger than the training "
            r"split \(\d+ images\)"),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[c.name for c in REFUSALS])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(digits_run, embedded, tmp_path, capsys,
                                                          case):
    run_dir, overrides, _ = digits_run
    main, argv, folders = case.prepare(tmp_path, run_dir, overrides, embedded)
    capsys.readouterr()
    before = {str(f): tree(f) for f in folders}
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(case.message, lines[0]), lines[0]
    assert {str(f): tree(f) for f in folders} == before
    assert not (tmp_path / "out").exists() and not (tmp_path / "found").exists()


def tiny_run(tmp, epochs: int) -> list[str]:
    """rcdml-train's arguments for a run of seconds: 8 classes of 6 images, 16 px."""
    root = folder_dataset(tmp / "images")
    return fast(tmp, "run", "data.name=folder", f"data.root={root}", "train.batch_size=8",
                "data.samples_per_class=2", f"train.epochs={epochs}")


def full(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.mark.slow  # three training runs of seconds
def test_a_full_disk_is_one_line_exit_2_and_the_checkpoints_survive(tmp_path, capsys, monkeypatch):
    """The disk fills while the second epoch's checkpoint is written: one line naming the file,
    exit 2 (it was a 40-line traceback and exit 1), the first epoch's checkpoint intact as
    prev.pt, and the run resumes from it."""
    import torch

    args = tiny_run(tmp_path, 1)
    assert train_main(args) == 0
    first = tree(tmp_path / "run")["last.pt"]
    monkeypatch.setattr(torch, "save", full)
    capsys.readouterr()
    assert train_main([*args, "train.epochs=2", "train.resume=auto"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert re.search(r"^rcdml-train: checkpoint error: checkpoint: cannot write \S+last\.pt: no space left "
                     r"on device; the checkpoints already there are intact",
                     err.strip().splitlines()[-1]), err
    assert tree(tmp_path / "run")["prev.pt"] == first and "last.pt" not in tree(tmp_path / "run")
    monkeypatch.undo()
    assert train_main([*args, "train.epochs=2", "train.resume=auto"]) == 0


@pytest.mark.slow  # three training runs of seconds
def test_a_damaged_last_never_replaces_the_good_prev(tmp_path, capsys, monkeypatch):
    """last.pt damaged, the resume falls back to prev.pt, and the process dies while writing its
    next checkpoint (here: the disk fills): prev.pt is still the good file (it used to be
    replaced by the damaged last.pt, leaving no readable checkpoint), and the run resumes."""
    import torch

    args = tiny_run(tmp_path, 2)
    assert train_main(args) == 0
    last = tmp_path / "run" / "last.pt"
    last.write_bytes(last.read_bytes()[:last.stat().st_size // 2])
    before = tree(tmp_path / "run")
    monkeypatch.setattr(torch, "save", full)
    capsys.readouterr()
    assert train_main([*args, "train.epochs=3", "train.resume=auto"]) == 2
    captured = capsys.readouterr()
    assert re.search(r"resumed from \S+prev\.pt after epoch 1", captured.out), captured.out
    assert re.search(r"^rcdml-train: checkpoint error: checkpoint: cannot write \S+last\.pt: no "
                     r"space left", captured.err.strip().splitlines()[-1]), captured.err
    after = tree(tmp_path / "run")
    assert after["prev.pt"] == before["prev.pt"] and after["last.pt"] == before["last.pt"]
    monkeypatch.undo()
    assert train_main([*args, "train.epochs=3", "train.resume=auto"]) == 0


@pytest.mark.slow  # two training runs of seconds
def test_a_crash_between_checkpoint_and_metrics_row_loses_no_row(tmp_path, capsys, monkeypatch):
    """The process dies after epoch 2's checkpoint and before its metrics row (the row used to
    be lost for good, and summary.json's selected epoch had no metrics): the resume writes it."""
    import json

    from rcdml.monitor.run import RunMonitor

    args = tiny_run(tmp_path, 2)
    log_epoch = RunMonitor.log_epoch

    def dies_before_row_2(self, metrics, step):
        if metrics.get("epoch") == 2:
            raise KeyboardInterrupt("killed")
        log_epoch(self, metrics, step)

    monkeypatch.setattr(RunMonitor, "log_epoch", dies_before_row_2)
    with pytest.raises(KeyboardInterrupt):
        train_main(args)
    metrics = tmp_path / "run" / "metrics.jsonl"
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1]
    monkeypatch.undo()
    capsys.readouterr()
    assert train_main([*args, "train.resume=auto"]) == 0
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2] and "eval/R@1" in rows[1]
    assert "restored the row of epoch 2" in capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["selected"]["eval"], summary
