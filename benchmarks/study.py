"""What benchmarks/results.py and benchmarks/regimes.py share: running ``launch/train.py`` once per
(cell, seed) in a subprocess with its own run directory, reusing finished runs, and describing the
machine. A run is finished when its ``result.json`` exists; it holds the last evaluation's metrics,
the wall time and the exact command, so a report can be regenerated without training again. A
study's ledger (one ``result.json`` per line, next to its report, committed with it) keeps them
when the run directories are gone, so a study longer than one machine's session continues.
"""
from __future__ import annotations

import argparse
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
METRICS = ["eval/R@1", "eval/R@2", "eval/R@4", "eval/R@8", "eval/MAP@R"]


def add_run_arguments(parser: argparse.ArgumentParser, out: str, report: str,
                      root: str = "data/omniglot", data: str = "Omniglot") -> None:
    """The options every study shares: data, run directories, report, sharing of the CPUs."""
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--root", default=root, help=f"extracted {data} folder")
    parser.add_argument("--out", default=out, help="run directories")
    parser.add_argument("--report", default=os.path.join(ROOT, "benchmarks", report))
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads per run (default: the CPUs divided by --jobs)")
    parser.add_argument("--smoke", action="store_true", help="tiny runs that check the script")


def parse_run_arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    args.out, args.root = os.path.abspath(args.out), os.path.abspath(args.root)
    if args.smoke and args.report == parser.get_default("report"):
        # Smoke runs check the script: they never enter the committed report and ledger.
        args.report = os.path.join(args.out, os.path.basename(args.report))
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    return args


def train_command(recipe: str, overrides: list[str], seed: int, folder: str, root: str) -> list[str]:
    return [sys.executable, TRAIN, recipe, *overrides, f"train.seed={seed}", f"output_dir={folder}",
            f"data.root={root}", "train.progress=false"]


def read_result(folder: str) -> dict | None:
    """The ``result.json`` of a finished run, or None."""
    done = os.path.join(folder, "result.json")
    if not os.path.exists(done):
        return None
    with open(done) as f:
        return json.load(f)


def train_once(cmd: list[str], folder: str, threads: int, jobs: int, info: dict) -> dict:
    """Run ``cmd`` (a training writing into ``folder``) unless it already finished; the result is
    ``info`` plus the last evaluation's metrics, the wall time and the command."""
    cached = read_result(folder)
    # The run's name and seed; a recipe recorded in ``info`` is in the command already.
    label = {k: v for k, v in info.items() if not isinstance(v, dict)}
    if cached is not None:
        print(f"{label}: reusing {folder}", flush=True)
        return cached
    print(f"{label}: {shlex.join(cmd)}", flush=True)
    os.makedirs(folder, exist_ok=True)
    start = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    with open(os.path.join(folder, "train.log"), "w") as log:
        code = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"{info} failed (exit {code}); see {folder}/train.log")
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    last = rows[-1]
    result = {**info, "wall_s": wall, "threads": threads, "jobs": jobs, "command": shlex.join(cmd),
              "epochs": last["epoch"], **{m: last[m] for m in METRICS if m in last},
              **selected_metrics(folder, rows)}
    tmp = os.path.join(folder, "result.json.tmp")
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, os.path.join(folder, "result.json"))
    return result


def selected_metrics(folder: str, rows: list[dict]) -> dict:
    """``start/`` metrics: the evaluation before training (``eval.at_start``), and, for a run
    selected on validation classes (``data.val_classes``), ``selected/`` metrics: the test
    metrics at the epoch ``summary.json`` names (chosen on ``val/``), with ``selected_epoch``."""
    out = {}
    start = next((r for r in rows if r.get("epoch") == 0 and METRICS[0] in r), None)
    if start is not None:
        out.update({f"start/{m}": start[m] for m in METRICS if m in start})
    path = os.path.join(folder, "summary.json")
    if os.path.exists(path):
        with open(path) as f:
            summary = json.load(f)
        if summary["selected_on"].startswith("val/") and summary["selected"]["eval"]:
            chosen = summary["selected"]
            out["selected_epoch"] = chosen["epoch"]
            out.update({f"selected/{m}": chosen["eval"][m.split("/", 1)[1]] for m in METRICS
                        if m.split("/", 1)[1] in chosen["eval"]})
    return out


def read_ledger(path: str) -> dict[str, dict]:
    """Finished runs recorded in the ledger at ``path``, by run directory name."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {row["run"]: row for row in map(json.loads, f) if row}


def write_ledger(path: str, results: dict[str, dict]) -> None:
    write_report(path, "".join(json.dumps({"run": name, **row}, sort_keys=True) + "\n"
                               for name, row in sorted(results.items())))


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
    """Percent, ``mean ± std`` over seeds (the sample standard deviation)."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def versus_proxy_anchor(name: str, ours: list[float], pa: list[float]) -> str:
    """A method's mean R@1 minus Proxy-Anchor's, judged against the larger standard deviation."""
    gap = statistics.mean(ours) - statistics.mean(pa)
    sd = max(statistics.stdev(ours), statistics.stdev(pa))
    word = "beats" if gap > sd else "loses to" if gap < -sd else "ties (within one std) with"
    return (f"{name} minus Proxy-Anchor R@1 {100 * gap:+.2f} points, larger std {100 * sd:.2f}: "
            f"it {word} Proxy-Anchor.")


def write_report(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
