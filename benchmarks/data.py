"""Images per second of the DALI pipeline against the torchvision DataLoader pipeline, both as
rcdml builds them (DataPipeline), on the same synthetic JPEG folder, in the same run.

    python benchmarks/data.py                     # CPU: DALI's CPU-only mode vs DataLoader
    python benchmarks/data.py --device cuda       # GPU: DALI "mixed" (nvJPEG) vs DataLoader
    python benchmarks/data.py --root DIR          # an existing root/<class>/<image> folder
    python benchmarks/data.py --smoke             # tiny sizes, checks that the script works

The folder holds ``--images`` JPEGs of 500x375 (the size of typical CUB/SOP photos), quality 90,
in 32 classes; the training split is the first 16 classes. Training batches: random-resized crop to
224 px, flip, normalisation, class-balanced global batches of 64 (16 classes x 4). Evaluation:
resize to 256, centre crop 224. Each pipeline runs one untimed warm-up pass (worker start-up,
allocations), then ``--passes`` timed passes; the batches are moved to the device and, on a GPU,
synchronised before the clock stops. Ratios are against the torchvision DataLoader. "CPU
ms/image" counts the CPU time of every process and thread of the pipeline (Linux /proc): on a
shared machine it is steadier than images/s, and divided into the free cores it bounds the
throughput an idle machine would give.
"""
from __future__ import annotations

import argparse
import glob
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rcdml.config import load_config  # noqa: E402
from rcdml.data import build_pipeline  # noqa: E402
from rcdml.distributed import DistInfo  # noqa: E402
from rcdml.models.inputs import normalization  # noqa: E402

LOADERS = [("torch", "torchvision DataLoader"), ("dali", "DALI")]


def write_jpeg_folder(root: str, images: int, classes: int, size: tuple[int, int]) -> None:
    """Smooth random photos-like JPEGs: ``root/c<NN>/<i>.jpg``."""
    rng = np.random.default_rng(0)
    w, h = size
    for i in range(images):
        coarse = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
        folder = os.path.join(root, f"c{i % classes:02d}")
        os.makedirs(folder, exist_ok=True)
        image.save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        with open(task) as f:
            kids += [int(k) for k in f.read().split()]
    return kids


def cpu_seconds() -> float:
    """CPU time (user + system) used so far by this process, its reaped children and its live
    descendants (Linux /proc), so that the loaders' worker processes and threads all count."""
    total = sum(usage.ru_utime + usage.ru_stime for usage in (
        resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))
    tick = os.sysconf("SC_CLK_TCK")
    stack = _children(os.getpid())
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            stack += _children(pid)
        except OSError:  # exited meanwhile: counted with its parent's reaped children
            continue
        # utime, stime, and the children it reaped itself (cutime, cstime)
        total += sum(int(v) for v in fields[11:15]) / tick
    return total


def time_passes(make_batches, device: torch.device, passes: int) -> tuple[int, float, float]:
    """(images, wall seconds, CPU seconds) over ``passes`` timed passes after a warm-up pass."""
    count = 0
    start = cpu_start = 0.0
    for p in range(passes + 1):
        if p == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, cpu_start = time.perf_counter(), cpu_seconds()
        for batch in make_batches(p):
            images = batch[0].to(device, non_blocking=True)
            if p:
                count += images.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count, time.perf_counter() - start, cpu_seconds() - cpu_start


def measure(root: str, loader: str, args, device: torch.device) -> dict[str, tuple[int, float]]:
    cfg = load_config(None, [
        "data.name=folder", f"data.root={root}", f"data.loader={loader}",
        f"data.image_size={args.image_size}", f"data.resize_size={args.resize_size}",
        f"data.num_workers={args.workers}", f"train.batch_size={args.batch_size}",
        "data.samples_per_class=4", "eval.batch_size=128", "data.check_images=header"])
    pipe = build_pipeline(cfg, DistInfo(0, 1, device.index or 0, device, None),
                          normalization("imagenet"))
    # Training passes are successive epochs, as in a run (the DALI pipeline carries on).
    return {"train": time_passes(pipe.train_loader, device, args.passes),
            "eval": time_passes(lambda _: pipe.eval_loader(pipe.data.query), device, args.passes)}


def _pil_decode(path: str) -> int:
    with Image.open(path) as image:
        return image.convert("RGB").size[0]  # convert decodes the whole image


def pil_decode_rate(files: list[str], workers: int) -> float:
    """Images/s of PIL decoding ``files`` alone in ``workers`` processes (a warm-up pass first)."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_pil_decode, files[: 8 * workers])
        start = time.perf_counter()
        pool.map(_pil_decode, files, chunksize=16)
        return len(files) / (time.perf_counter() - start)


def dali_decode_rate(files: list[str], workers: int, batch: int = 64) -> float:
    """Images/s of DALI's CPU decoder on ``files`` alone (reader + decoder, ``workers`` threads,
    device_id=None), after a warm-up pass."""
    from nvidia.dali import fn, pipeline_def

    @pipeline_def(batch_size=batch, num_threads=workers, device_id=None, prefetch_queue_depth=2)
    def decode():
        jpegs, _ = fn.readers.file(files=files, name="reader")
        return fn.decoders.image(jpegs, device="cpu")

    pipe = decode()
    pipe.build()
    batches = -(-len(files) // batch)
    for _ in range(batches):
        pipe.run()
    start = time.perf_counter()
    for _ in range(batches):
        pipe.run()
    return batches * batch / (time.perf_counter() - start)


def loaders_against_limits(args, device: torch.device) -> None:
    """The loaders' images/s on real JPEGs (``--root``, its first ``--classes`` classes) at each
    worker count, as ratios to decoding alone on the same files: the torchvision DataLoader
    against PIL, DALI's CPU mode against DALI's decoder."""
    classes = sorted(os.listdir(args.root))[: args.classes]
    with tempfile.TemporaryDirectory(prefix="rcdml-loaders-") as tmp:
        for name in classes:
            os.symlink(os.path.join(os.path.abspath(args.root), name), os.path.join(tmp, name))
        files = sorted(glob.glob(os.path.join(tmp, "*", "*.jpg")))
        print(f"{len(files)} JPEGs of {len(classes)} classes from {args.root}; {args.image_size} "
              f"px, batch {args.batch_size}, device {device.type}, {os.cpu_count()} CPUs, "
              f"{args.passes} timed pass(es) after a warm-up")
        print("| workers | pipeline | phase | images/s | decode-only limit | images/s | loader / limit |")
        print("|---|---|---|---|---|---|---|")
        for workers in args.worker_counts:
            args.workers = workers
            limits = {"torch": ("PIL decode", pil_decode_rate(files, workers)),
                      "dali": ("DALI decoder (cpu)", dali_decode_rate(files, workers))}
            for loader, name in LOADERS:
                measured = measure(tmp, loader, args, device)
                limit_name, limit = limits[loader]
                for phase in ("train", "eval"):
                    n, sec, _ = measured[phase]
                    print(f"| {workers} | {name} | {phase} | {n / sec:.1f} | {limit_name} | "
                          f"{limit:.1f} | {n / sec / limit:.2f} |", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--root", help="existing folder dataset (default: a synthetic one)")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="data.num_workers (DataLoader workers; DALI threads and workers)")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny run that checks the script")
    parser.add_argument("--loaders", action="store_true", help="each loader against decoding "
                        "alone on --root's JPEGs, at --worker-counts workers")
    parser.add_argument("--worker-counts", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--classes", type=int, default=32, help="--loaders: the first N classes")
    args = parser.parse_args(argv)
    args.image_size, args.resize_size, args.batch_size = 224, 256, 64
    photo, classes = (500, 375), 32
    if args.smoke:
        args.images, args.workers, args.passes = 64, 1, 1
        args.image_size, args.resize_size, args.batch_size = 32, 40, 16
        photo, classes = (80, 60), 8
    device = (torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda"
              else torch.device("cpu"))
    if args.loaders:
        if args.root is None:
            parser.error("--loaders needs --root, a folder of real JPEGs (root/<class>/<image>.jpg)")
        loaders_against_limits(args, device)
        return 0
    with tempfile.TemporaryDirectory(prefix="rcdml-data-bench-") as tmp:
        root = args.root
        if root is None:
            root = os.path.join(tmp, "jpegs")
            write_jpeg_folder(root, args.images, classes, photo)
        results = {loader: measure(root, loader, args, device) for loader, _ in LOADERS}
    dali_name = f"DALI ({'mixed' if device.type == 'cuda' else 'cpu'})"
    print(f"\n{args.image_size} px, {args.workers} workers, device {device.type}, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs")
    print("| pipeline | phase | images | seconds | images/s | vs torchvision | CPU ms/image |")
    print("|---|---|---|---|---|---|---|")
    ratios = {}
    for phase in ("train", "eval"):
        base = results["torch"][phase][0] / results["torch"][phase][1]
        for loader, name in LOADERS:
            n, sec, cpu = results[loader][phase]
            ratio = n / sec / base
            if loader == "dali":
                ratios[phase] = ratio
            print(f"| {dali_name if loader == 'dali' else name} | {phase} | {n} | {sec:.3f} "
                  f"| {n / sec:.1f} | {ratio:.2f}x | {1000 * cpu / n:.2f} |")
    print(f"DALI / torchvision images/s: train {ratios['train']:.2f}x, eval {ratios['eval']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
