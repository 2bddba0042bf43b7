"""Forward+backward time and peak memory of RCDMLLoss against the per-class-loop implementation
(rcdml.losses.reference, written as the reference implementation computes it) and pytorch-metric-learning's
ProxyAnchorLoss, at CUB scale (C=100, B=128), SOP scale (C=11,318, B=128) and an 8-GPU SOP global
batch (C=11,318, B=1,024), d=512.

    python benchmarks/loss.py                  # CPU
    python benchmarks/loss.py --device cuda    # GPU
    python benchmarks/loss.py --smoke          # tiny sizes, checks that the script works

Batches are class-balanced like the training sampler (B/4 classes x 4 images) with l2-normalised
random embeddings. Time is the median over repeats after one warm-up step; peak memory is the
most memory allocated above the inputs and parameters during one step (CUDA: the allocator's
peak statistics; CPU: the allocation and free events of torch's profiler, in order). Ratios are
against RCDMLLoss measured in the same run.
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
from pytorch_metric_learning import losses as pml_losses

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rcdml.losses import RCDMLLoss  # noqa: E402
from rcdml.losses.reference import rcdml_loss_loop  # noqa: E402

SAMPLES_PER_CLASS = 4


@dataclass(frozen=True)
class Scale:
    name: str
    num_classes: int
    batch: int
    dim: int


SCALES = [Scale("CUB", 100, 128, 512), Scale("SOP", 11318, 128, 512),
          Scale("SOP 8-GPU", 11318, 1024, 512)]
SMOKE_SCALES = [Scale("tiny", 12, 8, 16), Scale("tiny 2x", 40, 16, 16)]


class LoopLoss(torch.nn.Module):
    """The per-class-loop reference behind the same (embeddings, labels) interface."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.proxies = torch.nn.Parameter(torch.empty(num_classes, dim))
        torch.nn.init.kaiming_normal_(self.proxies, mode="fan_out")

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return rcdml_loss_loop(x, y, self.proxies)[0]


METHODS: dict[str, Callable[[int, int], torch.nn.Module]] = {
    "rcdml": lambda c, d: RCDMLLoss(c, d),
    "rcdml keep": lambda c, d: RCDMLLoss(c, d, absent_proxies="keep"),
    "loop (reference)": LoopLoss,
    "PML ProxyAnchor": lambda c, d: pml_losses.ProxyAnchorLoss(c, d, margin=0.1, alpha=32),
}


def peak_memory(run: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated while ``run`` runs, above what was allocated when it started."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    # CPU: replay the allocator's allocation and free events recorded by the profiler.
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        run()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    return max(itertools.accumulate((e.nbytes() for e in events), initial=0))


def balanced_batch(scale: Scale, device: torch.device, gen: torch.Generator):
    classes = torch.randperm(scale.num_classes, generator=gen)[: scale.batch // SAMPLES_PER_CLASS]
    labels = classes.repeat_interleave(SAMPLES_PER_CLASS).to(device)
    x = torch.nn.functional.normalize(torch.randn(scale.batch, scale.dim, generator=gen), dim=1)
    return x.to(device).requires_grad_(), labels


def step(loss_fn: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    loss_fn(x, y).backward()
    x.grad = None
    loss_fn.zero_grad(set_to_none=True)


def measure(loss_fn: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
            repeats: int, budget_s: float) -> tuple[float, int]:
    """(median seconds per forward+backward, peak bytes)."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    step(loss_fn, x, y)  # warm-up: lazy initialisation, allocator growth
    peak = peak_memory(lambda: step(loss_fn, x, y), device)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - started < budget_s):
        sync()
        t0 = time.perf_counter()
        step(loss_fn, x, y)
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), peak


def run(scales: list[Scale], device: torch.device, repeats: int, budget_s: float) -> list[dict]:
    rows = []
    gen = torch.Generator().manual_seed(0)
    for scale in scales:
        x, y = balanced_batch(scale, device, gen)
        ours = None
        for method, build in METHODS.items():
            torch.manual_seed(0)
            seconds, peak = measure(build(scale.num_classes, scale.dim).to(device), x, y, device,
                                    repeats, budget_s)
            row = {"scale": scale, "method": method, "seconds": seconds, "peak": peak}
            ours = ours or row
            row["time_x"] = seconds / ours["seconds"]
            row["mem_x"] = peak / ours["peak"] if ours["peak"] > 0 else float("nan")
            rows.append(row)
            print(f"  measured {scale.name:<10} {method:<17} {seconds * 1e3:10.2f} ms", flush=True,
                  file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    head = (f"| {'scale':<10} | {'C':>6} | {'B':>5} | {'method':<17} | {'fwd+bwd ms':>11} | "
            f"{'peak MiB':>9} | {'time / rcdml':>12} | {'mem / rcdml':>11} |")
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        s = r["scale"]
        lines.append(f"| {s.name:<10} | {s.num_classes:>6} | {s.batch:>5} | {r['method']:<17} | "
                     f"{r['seconds'] * 1e3:>11.2f} | {r['peak'] / 2**20:>9.2f} | "
                     f"{r['time_x']:>11.1f}x | {r['mem_x']:>10.2f}x |")
    return "\n".join(lines)


def summary(rows: list[dict], scales: list[Scale]) -> str:
    """The acceptance ratios: loop vs RCDMLLoss at SOP scale, PML vs RCDMLLoss at 8-GPU SOP."""
    by = {(r["scale"].name, r["method"]): r for r in rows}
    sop, sop8 = scales[1].name, scales[-1].name
    loop = by[(sop, "loop (reference)")]["time_x"]
    pml = by[(sop8, "PML ProxyAnchor")]["time_x"]
    return (f"{sop}: RCDMLLoss is {loop:.1f}x faster than the loop implementation (target >= 100x)\n"
            f"{sop8}: RCDMLLoss is {pml:.2f}x faster than PML ProxyAnchorLoss (target >= 1x)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per method (median)")
    parser.add_argument("--budget-s", type=float, default=20.0,
                        help="stop repeating a method after this many seconds (at least one step)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    scales = SMOKE_SCALES if args.smoke else SCALES
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"loss forward+backward, d={scales[0].dim}, {SAMPLES_PER_CLASS} images per class, "
          f"{where}, torch {torch.__version__}")
    rows = run(scales, device, args.repeats, args.budget_s)
    print(table(rows))
    print(summary(rows, scales))


if __name__ == "__main__":
    main()
