"""rcdml-embed -> rcdml-index -> rcdml-search on a short digits run: the flat index's top-1
accuracy is rcdml-eval's R@1, embedding under torchrun equals one process, a checkpoint of
another model is refused with one line, and training wrote its retrieval pictures."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from rcdml.cli import evaluate, export, index, search
from rcdml.monitor.pictures import cell_size
from runs import ROOT, metrics

# Every test here starts processes (training, torchrun, a command line): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow

EMBED = os.path.join(ROOT, "launch", "embed.py")


def test_flat_search_top1_is_the_eval_r1(digits_run, embedded, capsys):
    run_dir, overrides, _ = digits_run
    assert index.main([str(embedded), "index.type=flat"]) == 0
    assert search.main([str(embedded / "index"), f"queries={embedded}", "k=5"]) == 0
    with open(embedded / "index" / "search" / "results.json") as f:
        found = json.load(f)
    assert evaluate.main([str(run_dir / "config.yaml"), f"checkpoint={run_dir / 'best.pt'}"]) == 0
    with open(run_dir / "best.eval.json") as f:
        r1 = json.load(f)["metrics"]["R@1"]
    rows = found["queries"]
    assert len(rows) == 896 and all(r["query"] not in r["paths"] for r in rows)
    hits = sum(r["labels"][0] == r["label"] for r in rows)
    assert hits == round(r1 * len(rows)) and found["top1_accuracy"] == pytest.approx(r1, abs=1e-12)
    width, height = cell_size()
    with Image.open(embedded / "index" / "search" / "grid.png") as image:
        assert image.size == (6 * width, 16 * height)


def test_torchrun_embedding_equals_one_process(digits_run, embedded, torchrun):
    run_dir, overrides, folder = digits_run
    out = run_dir.parent / "emb2"
    result = torchrun(EMBED, 2, [str(run_dir / "config.yaml"), f"checkpoint={run_dir / 'best.pt'}",
                                 f"input={folder}", f"out={out}"])
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = np.load(embedded / "embeddings.npy"), np.load(out / "embeddings.npy")
    assert one.shape == two.shape == (896, 128)
    np.testing.assert_allclose(two, one, atol=1e-5)
    assert (out / "items.tsv").read_text() == (embedded / "items.tsv").read_text()
    paths = [line.split("\t")[0] for line in (out / "items.tsv").read_text().splitlines()]
    assert len(set(paths)) == len(paths) == 896


def test_another_checkpoint_is_refused_with_one_line(digits_run, embedded, capsys):
    run_dir, _, folder = digits_run
    assert index.main([str(embedded), "index.type=flat", f"out={embedded / 'flat'}"]) == 0
    ckpt = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][name] = ckpt["model"][name] + 1e-3
    torch.save(ckpt, run_dir / "other.pt")
    capsys.readouterr()
    code = search.main([str(embedded / "flat"), f"query={folder / '5'}",
                        f"checkpoint={run_dir / 'other.pt'}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "fingerprint" in err, err
    assert search.main([str(embedded / "flat"), f"query={folder / '5'}", "k=3",
                        f"out={run_dir.parent / 's'}"]) == 0
    assert index.main([str(embedded), "index.type=annoy"]) == 2
    assert "index.type" in capsys.readouterr().err


def test_training_wrote_retrieval_pictures_and_their_cost(digits_run):
    run_dir, _, _ = digits_run
    row = metrics(run_dir)[-1]
    # What the pictures cost, next to the epoch's training and evaluation time.
    assert all(row[f"perf/{k}_s"] > 0 for k in ("train", "eval", "pictures")), row
    width, height = cell_size()
    for name in ("epoch_001.png", "epoch_001_worst.png"):
        with Image.open(run_dir / "retrieval" / name) as image:
            assert image.size == (9 * width, 4 * height)
    events = [f for f in os.listdir(run_dir / "tensorboard") if "tfevents" in f]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for f in events:
        acc = EventAccumulator(str(run_dir / "tensorboard" / f), size_guidance={"images": 0})
        acc.Reload()
        tags |= set(acc.Tags()["images"])
    assert {"retrieval/sample", "retrieval/worst"} <= tags


def test_export_cli_checks_parity_on_the_run_images(digits_run, capsys):
    run_dir, overrides, _ = digits_run
    out = run_dir.parent / "model.pt2"
    assert export.main([str(run_dir / "config.yaml"), f"checkpoint={run_dir / 'best.pt'}",
                        "format=pt2", f"out={out}", "parity_images=4"]) == 0
    assert "parity max abs diff" in capsys.readouterr().out and out.stat().st_size > 0
    assert export.main([str(run_dir / "config.yaml"), "format=tflite"]) == 2
    assert "format" in capsys.readouterr().err
