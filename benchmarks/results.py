"""Omniglot zero-shot retrieval: RCDML, its ablations and two pytorch-metric-learning baselines,
same budget and seeds, written to benchmarks/RESULTS.md with mean +- std per metric.

    python benchmarks/results.py                      # every method x seeds 0 1 2 (hours on a CPU)
    python benchmarks/results.py --methods full pa --seeds 0
    python benchmarks/results.py --smoke --out /tmp/r  # a tiny run that checks the script

Each run is ``launch/train.py`` in a subprocess with the method's recipe; the reported numbers are
those of the last epoch's evaluation (no selection of the best epoch on the evaluation classes).
Finished runs are reused, so an interrupted benchmark continues where it stopped.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join("launch", "train.py")

# name -> (label, recipe, overrides); the ablations differ only in the loss keys of their recipe.
METHODS = {
    "pa": ("Proxy-Anchor (PA only)", "configs/ablations/pa.yaml", []),
    "pa_pc": ("PA + PC", "configs/ablations/pa_pc.yaml", []),
    "pa_pc_prc": ("PA + PC + PRC", "configs/ablations/pa_pc_prc.yaml", []),
    "full": ("RCDML (PA + PC + PRC + SRC)", "configs/ablations/full.yaml", []),
    # The reference zero-vector proxies of absent classes drop them as negatives; with 32 of 964
    # classes per batch that is most of them, so the variant that keeps them is measured too.
    "full_keep": ("RCDML, absent proxies kept", "configs/ablations/full.yaml",
                  ["loss.absent_proxies=keep"]),
    "pml_proxy_anchor": ("PML ProxyAnchorLoss", "configs/omniglot.yaml", ["loss.name=proxy_anchor"]),
    "pml_multi_similarity": ("PML MultiSimilarityLoss", "configs/omniglot.yaml",
                             ["loss.name=multi_similarity"]),
}
METRICS = ["eval/R@1", "eval/R@2", "eval/R@4", "eval/R@8", "eval/MAP@R"]
# A tiny version of every run, for checking the script.
SMOKE = ["train.epochs=1", "data.train_classes=1-8", "data.eval_classes=965-972", "data.image_size=16",
         "data.resize_size=16", "train.batch_size=16"]


def run_dir(out: str, method: str, seed: int) -> str:
    return os.path.join(out, "runs", f"{method}-seed{seed}")


def command(method: str, seed: int, out: str, root: str, extra: list[str]) -> list[str]:
    _, recipe, overrides = METHODS[method]
    return [sys.executable, TRAIN, recipe, *overrides, f"train.seed={seed}",
            f"output_dir={run_dir(out, method, seed)}", f"data.root={root}",
            "train.progress=false", *extra]


def read_result(folder: str) -> dict | None:
    """The last epoch's metrics and the wall time of a finished run, or None."""
    done = os.path.join(folder, "result.json")
    if not os.path.exists(done):
        return None
    with open(done) as f:
        return json.load(f)


def train_once(method: str, seed: int, args) -> dict:
    folder = run_dir(args.out, method, seed)
    cached = read_result(folder)
    if cached is not None:
        print(f"{method} seed {seed}: reusing {folder}", flush=True)
        return cached
    cmd = command(method, seed, args.out, args.root, SMOKE if args.smoke else [])
    print(f"{method} seed {seed}: {shlex.join(cmd)}", flush=True)
    os.makedirs(folder, exist_ok=True)
    start = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    with open(os.path.join(folder, "train.log"), "w") as log:
        code = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"{method} seed {seed} failed (exit {code}); see {folder}/train.log")
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        last = [json.loads(line) for line in f][-1]
    result = {"method": method, "seed": seed, "wall_s": wall, "threads": args.threads,
              "jobs": args.jobs, "command": shlex.join(cmd),
              "epochs": last["epoch"], **{m: last[m] for m in METRICS if m in last}}
    with open(os.path.join(folder, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"{cpu}, {os.cpu_count()} logical CPUs, GPU: {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def report(results: list[dict], args, total_s: float) -> str:
    by_method: dict[str, list[dict]] = {}
    for r in results:
        by_method.setdefault(r["method"], []).append(r)
    header = "| method | " + " | ".join(m.split("/")[1] for m in METRICS) + " | runs | wall per run |"
    lines = [header, "|" + " --- |" * (len(METRICS) + 3)]
    for method, runs in by_method.items():
        cells = [mean_std([r[m] for r in runs if m in r]) for m in METRICS]
        wall = statistics.mean(r["wall_s"] for r in runs)
        lines.append(f"| {METHODS[method][0]} | " + " | ".join(cells)
                     + f" | {len(runs)} | {wall / 60:.1f} min |")
    full, pa = by_method.get("full"), by_method.get("pa")
    verdict = ""
    if full and pa and len(full) > 1 and len(pa) > 1:
        f1 = [r["eval/R@1"] for r in full]
        p1 = [r["eval/R@1"] for r in pa]
        gap = statistics.mean(f1) - statistics.mean(p1)
        sd = max(statistics.stdev(f1), statistics.stdev(p1))
        verdict = (f"\nRCDML (full) minus Proxy-Anchor only, R@1: {100 * gap:+.2f} points; the larger "
                   f"of the two standard deviations is {100 * sd:.2f} points, so RCDML (full) "
                   f"{'beats' if gap > sd else 'does not beat'} Proxy-Anchor by more than one "
                   f"standard deviation.\n")
    commands = "\n".join(r["command"] for r in results)
    seeds = sorted({r["seed"] for r in results})
    return f"""# Omniglot zero-shot retrieval results

Generated by `{shlex.join(['python', 'benchmarks/results.py', *sys.argv[1:]])}` on
{datetime.date.today().isoformat()}; do not edit by hand.

Protocol: train on the 964 characters of `images_background`, retrieve among the 13,180 images of
the 659 unseen characters of `images_evaluation` (each query against all other images). Recipe:
`configs/omniglot.yaml` (see its comments for backbone, input size and schedule); the ablations
change only the loss keys (`configs/ablations/`). Metrics of the last epoch, in percent,
mean ± standard deviation over seeds {', '.join(map(str, seeds))}.

Hardware: {hardware()}.
Runs: {args.jobs} at a time with {args.threads} CPU thread(s) each; summed run time
{total_s / 60:.1f} minutes. "wall per run" is the mean wall time of one run under that sharing.

{chr(10).join(lines)}
{verdict}
## Commands

```
{commands}
```
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--root", default="data/omniglot", help="extracted Omniglot folder")
    parser.add_argument("--out", default="runs/results", help="run directories")
    parser.add_argument("--report", default=os.path.join(ROOT, "benchmarks", "RESULTS.md"))
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads per run (default: the CPUs divided by --jobs)")
    parser.add_argument("--smoke", action="store_true", help="tiny runs that check the script")
    args = parser.parse_args()
    args.out, args.root = os.path.abspath(args.out), os.path.abspath(args.root)
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    # Seed by seed, so a partial run already compares every method.
    plan = [(method, seed) for seed in args.seeds for method in args.methods]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: train_once(*job, args), plan))
    total = sum(r["wall_s"] for r in results)
    text = report(results, args, total)
    tmp = args.report + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, args.report)
    print(text)


if __name__ == "__main__":
    main()
