"""DataPipeline: the DALI (CPU-only mode) and torchvision loaders agree, evaluation shards cover
every image once, and both loaders train end to end on Omniglot."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from rcdml.config import load_config
from rcdml.data import build_eval_pipeline, build_pipeline
from rcdml.data.image_check import UnreadableImagesError
from rcdml.data.pipeline import choose_loader, dali_available
from rcdml.models.inputs import normalization
from rcdml.distributed import DistInfo

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CPU = torch.device("cpu")
needs_dali = pytest.mark.skipif(not dali_available(),
                                reason="NVIDIA DALI is not installed (pip install 'rcdml[dali]')")
LOADERS = ["torch", pytest.param("dali", marks=needs_dali)]


def grey_levels(diff: torch.Tensor, style: str) -> torch.Tensor:
    """A difference of normalised NCHW batches in 0..255 grey levels, per channel."""
    return diff * torch.tensor(normalization(style).std).view(1, 3, 1, 1)


def _pipeline(root: str, loader: str, style: str = "imagenet", rank: int = 0, world: int = 1,
              *extra: str):
    cfg = load_config(None, ["data.name=folder", f"data.root={root}", "data.image_size=32",
                             "data.resize_size=40", "train.batch_size=8",
                             "data.samples_per_class=4", "data.num_workers=0", "eval.batch_size=5",
                             f"data.loader={loader}", *extra])
    return build_pipeline(cfg, DistInfo(rank, world, 0, CPU, None), normalization(style))


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, image_writer):
    """Four classes of JPEGs and PNGs of odd sizes (landscape, portrait), so resizing and
    centre cropping are non-trivial."""
    root = tmp_path_factory.mktemp("mixed")
    sizes = [(57, 41), (41, 63), (90, 90), (33, 47), (120, 70), (64, 64)]
    for c in range(4):
        for i, size in enumerate(sizes):
            ext = ".jpg" if (c + i) % 2 else ".png"
            image_writer(str(root / f"k{c}" / f"{i}{ext}"), size=size, seed=10 * c + i)
    return str(root)


@needs_dali
# timm:vit_small_patch16_224: inputs in [-1, 1], bicubic resizing (its timm data config).
@pytest.mark.parametrize("style", ["imagenet", "bn_inception", "timm:vit_small_patch16_224"])
def test_dali_and_torchvision_give_the_same_batches(mixed_folder, style):
    """Same layout, dtype and value range, and the same pixels up to the resize filters: PIL and
    DALI round differently (one grey level), and where a training crop is shrunk more than 2x
    the outermost ring of output pixels differs more, because PIL renormalises its filter at the
    crop's edge while DALI repeats the edge pixels; inside that ring, one grey level (two for
    bicubic filters, whose overshoot each side rounds and clips on its own)."""
    levels = 2.0 if normalization(style).interpolation == "bicubic" else 1.0
    torch_pipe = _pipeline(mixed_folder, "torch", style)
    dali_pipe = _pipeline(mixed_folder, "dali", style)
    assert (torch_pipe.loader, dali_pipe.loader) == ("torch", "dali")
    pairs = zip(torch_pipe.eval_loader(torch_pipe.data.query),
                dali_pipe.eval_loader(dali_pipe.data.query))
    batches = 0
    for (xt, yt, it), (xd, yd, id_) in pairs:
        batches += 1
        assert xt.shape == xd.shape and xt.shape[1:] == (3, 32, 32)
        assert xt.dtype == xd.dtype == torch.float32
        assert torch.equal(yt, yd) and torch.equal(it, id_) and yd.dtype == id_.dtype == torch.long
        diff = grey_levels((xt - xd).abs(), style)
        assert diff.max() <= levels + 1e-3 and diff.mean() < 0.3, (diff.max(), diff.mean())
        for reduce in (torch.amin, torch.amax):
            gap = grey_levels(reduce(xt, dim=(0, 2, 3), keepdim=True)
                              - reduce(xd, dim=(0, 2, 3), keepdim=True), style).abs()
            assert gap.max() <= levels + 1e-3
    assert batches == len(dali_pipe.eval_loader(dali_pipe.data.query)) == 3
    for epoch in (0, 1):
        train_pairs = list(zip(torch_pipe.train_loader(epoch), dali_pipe.train_loader(epoch)))
        assert len(train_pairs) == torch_pipe.steps_per_epoch == 1
        for (xt, yt), (xd, yd) in train_pairs:
            assert xt.shape == xd.shape == (8, 3, 32, 32) and torch.equal(yt, yd)
            diff = grey_levels((xt - xd).abs(), style)
            inner = diff[:, :, 1:-1, 1:-1]
            assert inner.max() <= levels + 1e-3 and diff.mean() < 0.35, (inner.max(), diff.mean())


@pytest.mark.parametrize("loader", LOADERS)
def test_eval_shards_cover_every_image_once(mixed_folder, loader):
    """Three ranks, 12 query images, batches of 5: uneven shards, contiguous, no padding."""
    seen = []
    for rank in range(3):
        pipe = _pipeline(mixed_folder, loader, "imagenet", rank, 3)
        shard = [int(i) for _, _, idx in pipe.eval_loader(pipe.data.query) for i in idx]
        assert shard == list(range(shard[0], shard[-1] + 1))
        labels = [int(y) for _, ys, _ in pipe.eval_loader(pipe.data.query) for y in ys]
        assert labels == [pipe.data.query.labels[i] for i in shard]
        seen += shard
    assert seen == list(range(12))


def test_auto_loader_is_dali_on_gpu_and_torch_on_cpu():
    assert choose_loader("auto", torch.device("cuda", 0)) == "dali"
    assert choose_loader("auto", CPU) == "torch"
    assert choose_loader("dali", CPU) == "dali"
    assert choose_loader("torch", torch.device("cuda", 0)) == "torch"


@pytest.mark.slow
@pytest.mark.parametrize("loader", LOADERS)
def test_short_training_run_on_omniglot(omniglot_root, tmp_path, loader):
    """launch/train.py with configs/omniglot.yaml, shrunk to 16 training and 16 evaluation
    characters at 24 px: 10 steps, then R@K on the unseen characters."""
    out = tmp_path / "run"
    cmd = [sys.executable, os.path.join(ROOT, "launch", "train.py"),
           os.path.join(ROOT, "configs", "omniglot.yaml"), f"data.root={omniglot_root}",
           f"output_dir={out}", f"data.loader={loader}", "data.train_classes=1-16",
           "data.eval_classes=965-980", "data.image_size=24", "data.resize_size=24",
           "train.epochs=1", "train.batch_size=32", "train.progress=false", "eval.batch_size=160"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (f"data: omniglot ({omniglot_root}): train 320 images / 16 classes, "
            f"query 320 images / 16 classes; loader {loader}") in result.stdout
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = metrics[-1]
    assert torch.isfinite(torch.tensor(last["train/loss"]))
    assert 0.0 <= last["eval/R@1"] <= last["eval/R@8"] <= 1.0
    assert (out / "last.pt").is_file()


def test_evaluation_pipeline_reads_only_the_evaluation_split(tmp_path, folder_dataset):
    """A truncated training image stops a training pipeline but not an evaluation-only one,
    which gives the evaluation batches of the training pipeline of an intact copy."""
    paths = folder_dataset(str(tmp_path / "broken"), 4, 3, ext=".jpg", size=(32, 24))
    folder_dataset(str(tmp_path / "intact"), 4, 3, ext=".jpg", size=(32, 24))
    data = open(paths[0], "rb").read()  # class c00: the training split
    with open(paths[0], "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(UnreadableImagesError, match="1 of 12 images"):
        _pipeline(str(tmp_path / "broken"), "torch")
    cfg = load_config(None, ["data.name=folder", f"data.root={tmp_path / 'broken'}",
                             "data.image_size=32", "data.resize_size=40", "data.num_workers=0",
                             "eval.batch_size=5", "data.loader=torch"])
    pipe = build_eval_pipeline(cfg, DistInfo(0, 1, 0, CPU, None), normalization("imagenet"))
    assert not hasattr(pipe, "sampler") and len(pipe.data.query) == 6
    intact = _pipeline(str(tmp_path / "intact"), "torch")
    batches = list(zip(pipe.eval_loader(pipe.data.query), intact.eval_loader(intact.data.query)))
    assert len(batches) == 2
    for (x, y, i), (xi, yi, ii) in batches:
        assert torch.equal(x, xi) and torch.equal(y, yi) and torch.equal(i, ii)
