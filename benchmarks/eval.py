"""Time and peak memory of exact retrieval evaluation at N = 10k and 60k (SOP's test set has 60,502
images), d = 512: rcdml's chunked evaluation against a brute-force full-matrix implementation and
pytorch-metric-learning's AccuracyCalculator (faiss IndexFlatL2), on the CPU.

    python benchmarks/eval.py                  # N = 10k and 60k
    python benchmarks/eval.py --smoke          # tiny sizes, checks that the script works

The embeddings are SOP-like: classes of 2-9 images (5.5 on average; no single-image class, so
AccuracyCalculator's precision_at_1 and our R@1 are the same number), l2-normalised class centre
plus noise. Every method runs in a fresh subprocess on the same data (same seed): only the metric
call is timed (wall and CPU seconds). Its peak memory is the process's peak resident set while the
call runs (VmHWM, reset through /proc/self/clear_refs just before the call): it includes the
embeddings and the Python/torch runtime, i.e. what a job's memory limit sees ("of it added": the
part above the resident set just before the call). Ratios are against
AccuracyCalculator computing precision_at_1 alone, measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KS = (1, 10, 100, 1000)
BASELINE = "PML p@1"
OURS = "rcdml R@K"


def sop_like(n: int, dim: int, seed: int = 0, noise: float = 2.5,
             center_rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``center_rank`` > 0 draws the class centres in a random subspace of that dimension (same
    expected norm), so classes have near and far neighbour classes as in a trained embedding,
    whose variance sits in a few dozen directions; 0: independent centres in all ``dim``."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 10, n // 2)
    labels = np.repeat(np.arange(len(sizes)), sizes)[:n]
    if np.sum(labels == labels[-1]) == 1:  # the cut left a single-image class
        labels[-1] = labels[-2]
    if center_rank:
        basis = np.linalg.qr(rng.standard_normal((dim, center_rank)))[0].T.astype(np.float32)
        centers = (rng.standard_normal((len(sizes), center_rank), dtype=np.float32)
                   @ (basis * np.float32(np.sqrt(dim / center_rank))))
    else:
        centers = rng.standard_normal((len(sizes), dim), dtype=np.float32)
    x = centers[labels] + noise * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return torch.from_numpy(x), torch.from_numpy(labels)


# Each method is built by a function that does its imports (a child process imports only what
# its method needs, before the timed call) and returns the call to time.

def rcdml(with_map: bool) -> Callable:
    def build(args) -> Callable:
        sys.path.insert(0, ROOT)
        from rcdml.eval import retrieval_metrics

        return lambda x, y: retrieval_metrics(x, y, KS, with_map=with_map,
                                              chunk_size=args.chunk_size)
    return build


def brute_force(args) -> Callable:
    """Proxy-Anchor's evaluation: the full N x N cosine matrix, then top-K per row."""
    def run(x, y):
        sim = x @ x.t()
        sim.fill_diagonal_(float("-inf"))
        top = sim.topk(min(max(KS), len(x) - 1), dim=1).indices
        match = y[top] == y[:, None]
        return {f"R@{k}": float(match[:, :k].any(1).double().mean()) for k in KS}
    return run


def pml(include: tuple[str, ...], k) -> Callable:
    def build(args) -> Callable:
        import faiss
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

        if args.threads:
            faiss.omp_set_num_threads(args.threads)
        names = {"precision_at_1": "R@1", "mean_average_precision_at_r": "MAP@R",
                 "r_precision": "RP"}

        def run(x, y):
            calculator = AccuracyCalculator(include=include, k=k, device=torch.device("cpu"))
            return {names[name]: value for name, value in calculator.get_accuracy(x, y).items()}
        return run
    return build


PML_METHODS = (BASELINE, "PML p@1+MAP@R+RP")
METHODS: dict[str, Callable] = {
    OURS: rcdml(with_map=False),
    "rcdml R@K+MAP@R+RP": rcdml(with_map=True),
    "brute force R@K": brute_force,
    BASELINE: pml(("precision_at_1",), 1),
    "PML p@1+MAP@R+RP": pml(("precision_at_1", "mean_average_precision_at_r", "r_precision"),
                            "max_bin_count"),
}


def resident_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(args) -> None:
    """Run one method once and print one JSON line with its measurements."""
    if args.threads:
        torch.set_num_threads(args.threads)
    run = METHODS[args.child](args)
    x, y = sop_like(args.n, args.dim)
    # faiss-cpu (PML) only runs on the CPU; ours and the brute force run on --device.
    device = torch.device(args.device if args.child not in PML_METHODS else "cpu")
    x, y = x.to(device), y.to(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    before = resident_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM, the peak resident set, to the current one
    cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    results = run(x, y)
    if cuda:
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - wall0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    gpu_peak = torch.cuda.max_memory_allocated(device) if cuda else 0
    print(json.dumps({"seconds": wall, "cpu_seconds": cpu, "peak": resident_bytes("VmHWM"),
                      "before": before, "gpu_peak": gpu_peak, "results": results}))


def measure(method: str, n: int, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", method, "--n", str(n),
           "--dim", str(args.dim), "--chunk-size", str(args.chunk_size), "--threads",
           str(args.threads), "--device", args.device]
    runs = []
    for _ in range(args.repeats):
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"{method} at N={n} failed:\n{result.stderr[-2000:]}")
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(f"  measured N={n:<6} {method:<20} {runs[-1]['seconds']:8.2f} s", file=sys.stderr,
              flush=True)
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
            "peak": max(r["peak"] for r in runs), "before": runs[0]["before"],
            "gpu_peak": max(r["gpu_peak"] for r in runs),
            "results": runs[0]["results"]}


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")  # CPU time of a tiny smoke run may round to 0


def run_all(args) -> list[dict]:
    rows = []
    for n in args.sizes:
        for method in METHODS:
            row = {"n": n, "method": method}
            matrix_gib = n * n * 4 / 2**30
            if method == "brute force R@K" and matrix_gib > args.max_matrix_gib:
                row["skipped"] = f"N x N matrix {matrix_gib:.1f} GiB > --max-matrix-gib"
            else:
                row.update(measure(method, n, args))
            rows.append(row)
        base = next(r for r in rows if r["n"] == n and r["method"] == BASELINE)
        for r in rows:
            if r["n"] == n and "seconds" in r:
                r["time_x"] = ratio(r["seconds"], base["seconds"])
                r["cpu_x"] = ratio(r["cpu_seconds"], base["cpu_seconds"])
    return rows


def table(rows: list[dict]) -> str:
    head = (f"| {'N':>6} | {'method':<20} | {'wall s':>8} | {'CPU s':>8} | {'wall / PML p@1':>14} | "
            f"{'CPU / PML p@1':>13} | {'peak RSS GiB':>12} | {'of it added':>11} | {'R@1':>7} | "
            f"{'R@1000':>7} | {'MAP@R':>7} | {'GPU peak GiB':>12} |")
    lines = [head, "|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['n']:>6} | {r['method']:<20} | skipped: {r['skipped']}")
            continue
        res = r["results"]
        cell = lambda name: f"{res[name]:>7.4f}" if name in res else f"{'-':>7}"  # noqa: E731
        lines.append(f"| {r['n']:>6} | {r['method']:<20} | {r['seconds']:>8.3f} | "
                     f"{r['cpu_seconds']:>8.3f} | {r['time_x']:>13.2f}x | {r['cpu_x']:>12.2f}x | "
                     f"{r['peak'] / 2**30:>12.3f} | {(r['peak'] - r['before']) / 2**30:>11.3f} | "
                     f"{cell('R@1')} | {cell('R@1000')} | "
                     f"{cell('MAP@R')} | {r['gpu_peak'] / 2**30:>12.3f} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    out = []
    for r in rows:
        if r["method"] == OURS:
            out.append(f"N={r['n']}: R@{{{','.join(map(str, KS))}}} took {r['time_x']:.2f}x the "
                       f"wall time (CPU: {r['cpu_x']:.2f}x) of AccuracyCalculator's precision_at_1 "
                       f"(target <= 1.5x); peak RSS {r['peak'] / 2**30:.2f} GiB (target < 2 GiB)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 60_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk-size", type=int, default=1024, help="rcdml's eval.chunk_size")
    parser.add_argument("--repeats", type=int, default=1, help="runs per method (median time)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads of torch and faiss (0: their defaults)")
    parser.add_argument("--max-matrix-gib", type=float, default=4.0,
                        help="skip the brute force when its N x N matrix is larger")
    parser.add_argument("--device", default="cpu",
                        help="device of rcdml and the brute force (PML's faiss-cpu stays on CPU)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return
    if args.smoke:
        args.sizes, args.dim, args.chunk_size = [1000], 32, 128
    print(f"exact retrieval evaluation, d={args.dim}, K={list(KS)}, {args.device}, "
          f"{args.threads or torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"eval.chunk_size={args.chunk_size}", flush=True)
    rows = run_all(args)
    print(table(rows))
    print(summary(rows))


if __name__ == "__main__":
    main()
