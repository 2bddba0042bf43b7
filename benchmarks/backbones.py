"""Training speed and memory of each backbone's network (backbone, pooling, embedding head):
forward+backward images/s and peak memory, eager against ``train.compile`` and
``train.channels_last`` (convolutional backbones only), measured in the same run.

    python benchmarks/backbones.py                          # CPU, small batches
    python benchmarks/backbones.py --device cuda            # GPU
    python benchmarks/backbones.py --smoke                  # tiny sizes, checks that it works

Backbones: Conv-4 and the tiny ViT of configs/omniglot_vit.yaml at 28 px, ResNet-18,
BN-Inception and ViT-S/16 (timm) at 224 px. Each (backbone, mode) is the network a run builds
(rcdml.models.build_model, then rcdml.engine.learner.prepare_network), in training mode, on random
images; the loss is the sum of the embeddings. Time is the median over ``--repeats`` steps after
warm-up steps (which include torch.compile's compilation, reported on its own); peak memory is
the most memory allocated above the parameters during one step (see benchmarks/loss.py's
peak_memory). Ratios are against eager in the same run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from loss import peak_memory  # noqa: E402  (benchmarks/loss.py)
from rcdml.config import load_config  # noqa: E402
from rcdml.engine.learner import prepare_network  # noqa: E402
from rcdml.models import build_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Backbone:
    name: str
    size: int
    overrides: tuple[str, ...]
    convolutional: bool
    # The recipe whose model section this is (the tiny ViT: configs/omniglot_vit.yaml's, so the
    # two cannot drift apart); None: the defaults with the overrides.
    recipe: str | None = None


BACKBONES = [
    Backbone("Conv-4", 28, ("model.backbone=conv4",), True),
    Backbone("ResNet-18", 224, ("model.backbone=resnet18",), True),
    Backbone("BN-Inception", 224, ("model.backbone=bn_inception",), True),
    Backbone("ViT-S/16", 224, ("model.backbone=timm:vit_small_patch16_224", "model.pooling=cls"), False),
    Backbone("tiny ViT", 28, (), False, os.path.join(ROOT, "configs", "omniglot_vit.yaml")),
]
SMOKE = [
    Backbone("Conv-4", 28, ("model.backbone=conv4",), True),
    Backbone("tiny ViT", 16, ("model.backbone=timm:vit_tiny_patch16_224", "model.pooling=cls",
                              "model.timm_kwargs={img_size: 16, patch_size: 4, depth: 1, "
                              "embed_dim: 16, num_heads: 2}"), False),
]
MODES = {"eager": (), "compile": ("train.compile=true",), "channels_last": ("train.channels_last=true",)}


def network(backbone: Backbone, mode: str, compile_backend: str, device: torch.device):
    cfg = load_config(backbone.recipe, [*backbone.overrides, "model.embedding_size=128",
                             "model.freeze_bn=false", f"train.compile_backend={compile_backend}",
                             *MODES[mode]])
    torch.manual_seed(0)
    return prepare_network(build_model(cfg.model).to(device), cfg.train).train(), cfg.train


def measure(backbone: Backbone, mode: str, batch: int, device: torch.device, repeats: int,
            warmup: int, compile_backend: str) -> dict:
    model, train = network(backbone, mode, compile_backend, device)
    images = torch.randn(batch, 3, backbone.size, backbone.size, device=device)
    if train.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def step() -> None:
        model(images).sum().backward()
        model.zero_grad(set_to_none=True)

    started = time.perf_counter()
    for _ in range(warmup):
        step()
    sync()
    warm_s = time.perf_counter() - started
    peak = peak_memory(step, device)
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return {"backbone": backbone, "mode": mode, "images_per_s": batch / statistics.median(times),
            "peak": peak, "warm_s": warm_s}


HEAD = (f"| {'backbone':<12} | {'px':>3} | {'mode':<13} | {'images/s':>9} | {'peak MiB':>9} | "
        f"{'speed / eager':>13} | {'mem / eager':>11} | {'warm-up s':>9} |")


def row_line(r: dict) -> str:
    b = r["backbone"]
    return (f"| {b.name:<12} | {b.size:>3} | {r['mode']:<13} | {r['images_per_s']:9.1f} | "
            f"{r['peak'] / 2**20:9.1f} | {r['speed_x']:13.2f} | {r['mem_x']:11.2f} | "
            f"{r['warm_s']:9.1f} |")


def run(backbones: list[Backbone], modes: list[str], batch: int, device: torch.device,
        repeats: int, warmup: int, compile_backend: str) -> list[dict]:
    """Prints the table row by row (a run cut short by a time limit keeps what it measured)."""
    print(f"batch {batch}, forward+backward in training mode, {device.type}, compile backend "
          f"{compile_backend}")
    print(HEAD)
    print("|" + "|".join("-" * len(c) for c in HEAD.strip("|").split("|")) + "|", flush=True)
    rows = []
    for backbone in backbones:
        eager = None
        for mode in modes:
            if mode == "channels_last" and not backbone.convolutional:
                continue  # a config error for token models (train.channels_last)
            row = measure(backbone, mode, batch, device, repeats, warmup, compile_backend)
            eager = eager or row
            row["speed_x"] = row["images_per_s"] / eager["images_per_s"]
            row["mem_x"] = row["peak"] / eager["peak"] if eager["peak"] else float("nan")
            rows.append(row)
            print(row_line(row), flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch", type=int, help="images per step (default: 8 on CPU, 64 on GPU)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per (backbone, mode)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation)")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--compile-backend", default="inductor",
                        help="train.compile_backend of the compile mode")
    parser.add_argument("--backbones", nargs="+", choices=[b.name for b in BACKBONES],
                        help="measure these only (default: all)")
    parser.add_argument("--smoke", action="store_true", help="two tiny backbones, batch 2")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU is visible")
    batch = 2 if args.smoke else args.batch or (64 if device.type == "cuda" else 8)
    backbones = SMOKE if args.smoke else [b for b in BACKBONES
                                          if args.backbones is None or b.name in args.backbones]
    run(backbones, args.modes, batch, device, args.repeats, args.warmup, args.compile_backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
