"""When does RCDML help? Omniglot regimes x methods x seeds, written to benchmarks/REGIMES.md.

    python benchmarks/regimes.py --jobs 2                 # the whole study (many CPU hours)
    python benchmarks/regimes.py --regimes c --seeds 0 1 2
    python benchmarks/regimes.py --report-only            # regenerate REGIMES.md from finished runs
    python benchmarks/regimes.py --smoke --out /tmp/g     # tiny runs that check the script

Regimes (all retrieve among the 659 unseen characters of images_evaluation):
  a  964 training characters from scratch, the Omniglot recipe (global batch 128 = 32 x 4)
  b  100 characters (every 9th: 1, 10, ..., 892) from scratch, 60 epochs
  c  the same 100, fine-tuned from a Conv-4 pretrained with Proxy-Anchor on the other 864
     background characters (the pretraining is a cached step of this script)
  d  regime a with a global batch of 1,024 (256 x 4), the same 12 epochs (so the same images
     seen, 8x fewer steps)
Each cell is a regime, a sampler and a method; each run is ``launch/train.py`` in a subprocess,
reported at its last epoch (never the best test epoch). Finished runs are reused, from their run
directories or from the ledger next to the report (benchmarks/REGIMES.jsonl), so the study can be
run piecewise, on several machines, and continued; the report lists every cell of the plan with
its number of finished seeds.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import os
import shlex
import statistics
import sys

from study import (METRICS, ROOT, add_run_arguments, hardware, mean_std, parse_run_arguments,
                   read_ledger, read_result, train_command, train_once, versus_proxy_anchor,
                   write_ledger, write_report)

EVERY_NINTH = list(range(1, 965, 9))[:100]
OTHERS = [c for c in range(1, 965) if c not in EVERY_NINTH]


def ranges(classes: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"1-3,5"`` (data.train_classes syntax)."""
    parts, start = [], classes[0]
    for prev, cur in zip(classes, classes[1:] + [None]):
        if cur != prev + 1:
            parts.append(f"{start}-{prev}" if prev > start else str(start))
            start = cur
    return ",".join(parts)


# name -> (label, recipe, overrides)
METHODS = {
    "pa": ("Proxy-Anchor", "configs/ablations/pa.yaml", []),
    "pa_pc": ("PA + PC (zero absent proxies)", "configs/ablations/pa_pc.yaml", []),
    "full": ("RCDML (reference)", "configs/ablations/full.yaml", []),
    "full_present": ("RCDML, negatives over present classes", "configs/ablations/full_present.yaml", []),
    "ms": ("PML Multi-Similarity", "configs/omniglot.yaml", ["loss.name=multi_similarity"]),
    # The backbone instead of the loss: the small ViT recipe (Multi-Similarity, as "ms") from scratch.
    "ms_vit": ("PML Multi-Similarity, tiny ViT", "configs/omniglot_vit.yaml", []),
}
PRETRAIN = ("configs/ablations/pa.yaml", [f"data.train_classes={ranges(OTHERS)}"])
# name -> (label, overrides, fine-tuned from the pretraining)
REGIMES = {
    "a": ("964 characters, from scratch", [], False),
    "b": ("100 characters, from scratch, 60 epochs",
          [f"data.train_classes={ranges(EVERY_NINTH)}", "train.epochs=60", "optim.step_size=25",
           "eval.every=30"], False),
    "c": ("100 characters, fine-tuned from 864",
          [f"data.train_classes={ranges(EVERY_NINTH)}", "model.freeze_bn=true",
           "train.warmup_epochs=1", "optim.lr=0.0001", "optim.loss_lr_mult=1000", "train.epochs=30",
           "optim.step_size=10", "eval.every=15"], True),
    "d": ("964 characters, global batch 1,024", ["train.batch_size=1024"], False),
}
# The default plan, regime -> sampler -> methods: what each regime needs to answer "when does
# RCDML help". Random batches of 128 among 964 characters hold about 120 of them, nearly all
# with one image: proxy losses still learn, Multi-Similarity (pairs) has almost no positives, so
# (a) compares the samplers on the proxy losses only.
PLAN = {"a": {"balanced": ["pa", "full", "full_present", "ms", "ms_vit"], "random": ["pa", "full"]},
        "b": {"balanced": ["pa", "full", "full_present"], "random": ["pa", "full", "full_present"]},
        "c": {"random": ["pa", "full", "full_present"]},
        "d": {"balanced": ["pa", "full", "full_present"]}}
SMOKE = ["train.epochs=1", "train.warmup_epochs=0", "data.eval_classes=965-972", "data.image_size=16", "data.resize_size=16",
         "train.batch_size=16", "eval.every=1"]
SMOKE_CLASSES = "data.train_classes=1-8"


def pretrained_path(args) -> str:
    return os.path.join(args.out, "pretrain-pa-864", "last.pt")


def pretrain(args) -> dict:
    recipe, overrides = PRETRAIN
    folder = os.path.dirname(pretrained_path(args))
    extra = [*SMOKE, "data.train_classes=10-17"] if args.smoke else []
    cmd = train_command(recipe, [*overrides, *extra], 0, folder, args.root)
    # It runs alone, before the cells that need it: it gets every thread.
    return train_once(cmd, folder, args.threads * args.jobs, 1, {"cell": "pretrain", "seed": 0})


def cell_overrides(regime: str, sampler: str, method: str, args) -> list[str]:
    _, overrides, fine_tuned = REGIMES[regime]
    out = [*METHODS[method][2], *overrides, f"data.sampler={sampler}"]
    if fine_tuned:
        out.append(f"model.pretrained={pretrained_path(args)}")
    if args.smoke:
        out += [*SMOKE, SMOKE_CLASSES]
    return out


def run_dir(args, regime: str, sampler: str, method: str, seed: int) -> str:
    return os.path.join(args.out, "runs", f"{regime}-{sampler}-{method}-seed{seed}")


def train(regime: str, sampler: str, method: str, seed: int, args) -> dict:
    folder = run_dir(args, regime, sampler, method, seed)
    cmd = train_command(METHODS[method][1], cell_overrides(regime, sampler, method, args), seed,
                        folder, args.root)
    info = {"regime": regime, "sampler": sampler, "method": method, "seed": seed}
    return train_once(cmd, folder, args.threads, args.jobs, info)


def cells(args) -> list[tuple[str, str, str]]:
    """(regime, sampler, method) of :data:`PLAN` that the command line selects."""
    return [(regime, sampler, method) for regime in args.regimes
            for sampler, methods in PLAN[regime].items() if sampler in args.samplers
            for method in methods if method in args.methods]


def plan(args) -> list[tuple[str, str, str, int]]:
    """Seed-major, so a partial study already compares every cell."""
    return [(*cell, seed) for seed in args.seeds for cell in cells(args)]


def table(results: dict, args) -> list[str]:
    header = ("| regime | sampler | method | " + " | ".join(m.split("/")[1] for m in METRICS)
              + " | seeds | wall per run |")
    lines = [header, "|" + " --- |" * (len(METRICS) + 5)]
    for regime, sampler, method in cells(args):
        runs = results.get((regime, sampler, method), [])
        metrics = [mean_std([r[m] for r in runs if m in r]) for m in METRICS]
        wall = f"{statistics.mean(r['wall_s'] for r in runs) / 60:.1f} min" if runs else "-"
        lines.append(f"| {regime}: {REGIMES[regime][0]} | {sampler} | {METHODS[method][0]} | "
                     + " | ".join(metrics) + f" | {len(runs)} | {wall} |")
    return lines


def verdicts(results: dict, args) -> list[str]:
    """Each RCDML variant minus Proxy-Anchor, R@1, against the larger standard deviation."""
    out = []
    for (regime, sampler, method), runs in results.items():
        pa = results.get((regime, sampler, "pa"), [])
        if method not in ("full", "full_present") or len(runs) < 2 or len(pa) < 2:
            continue
        out.append(f"- regime {regime}, {sampler}: " + versus_proxy_anchor(
            METHODS[method][0], [r["eval/R@1"] for r in runs], [r["eval/R@1"] for r in pa]))
    return out


def report(results: dict, pretraining: dict | None, args) -> str:
    every = [r for runs in results.values() for r in runs]
    commands = [pretraining["command"]] if pretraining else []
    commands += [r["command"] for r in every]
    commands = [c.replace(ranges(OTHERS), "$OTHERS").replace(ranges(EVERY_NINTH), "$EVERY_NINTH")
                for c in commands]
    total = sum(r["wall_s"] for r in every) + (pretraining["wall_s"] if pretraining else 0.0)
    jobs = sorted({r["jobs"] for r in every}) or [args.jobs]
    threads = sorted({r["threads"] for r in every}) or [args.threads]
    pre = (f"R@1 {100 * pretraining['eval/R@1']:.2f} on the unseen characters, {pretraining['wall_s'] / 60:.1f} min"
           if pretraining else "not run yet")
    return f"""# When does RCDML help? Omniglot regimes

Generated by `{shlex.join(['python', 'benchmarks/regimes.py', *sys.argv[1:]])}` on
{datetime.date.today().isoformat()} from the finished runs under `{args.out}` and those recorded in
the ledger `{os.path.relpath(os.path.splitext(args.report)[0] + ".jsonl", ROOT)}`; do not edit by hand.

Protocol: retrieve among the 13,180 images of the 659 unseen characters of `images_evaluation`
(each query against all other images), the Conv-4 recipe of `configs/omniglot.yaml` (the tiny
ViT: `configs/omniglot_vit.yaml`) with the overrides of each regime (the commands below).
Metrics of the **last epoch** (no selection on the test classes), in percent, mean ± standard
deviation over the seeds finished ("seeds").

Regimes: (a) the 964 background characters from scratch, 12 epochs of 128-image batches;
(b) 100 of them (every 9th: 1, 10, ..., 892) from scratch, 60 epochs, lr halved every 25;
(c) the same 100 fine-tuned for 30 epochs (frozen BatchNorm, one warm-up epoch training the
head and proxies, lr 1e-4, proxies at 1000x, lr halved every 10) from the backbone and head of
`last.pt` of a Proxy-Anchor run on the other 864 background characters (the Omniglot recipe, 12
epochs, seed 0; {pre}); (d) regime (a) with a global batch of 1,024 (256 characters x 4) and the
same 12 epochs, so the same number of images seen in 8x fewer steps. One process with a
1,024-image batch is the computation eight ranks of 128 do (the distributed tests prove it).
Samplers: `balanced` draws P characters x 4 images, `random` draws images uniformly (the
reference recipes' sampling).

Hardware: {hardware()}.
Runs: {'/'.join(map(str, jobs))} at a time with {'/'.join(map(str, threads))} CPU thread(s) each;
summed run time {total / 60:.1f} minutes. "wall per run" is the mean wall time of one run under
that sharing (other work shared the machine during some runs).

{chr(10).join(table(results, args))}

{chr(10).join(verdicts(results, args)) or "No cell has two seeds of both RCDML and Proxy-Anchor yet."}

## Commands

```
EVERY_NINTH={ranges(EVERY_NINTH)}
OTHERS={ranges(OTHERS)}
{chr(10).join(commands)}
```
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--samplers", nargs="+", default=["balanced", "random"],
                        choices=["balanced", "random"])
    parser.add_argument("--report-only", action="store_true",
                        help="write the report from the finished runs, train nothing")
    add_run_arguments(parser, "runs/regimes", "REGIMES.md")
    args = parse_run_arguments(parser)
    ledger_path = os.path.splitext(args.report)[0] + ".jsonl"
    ledger = read_ledger(ledger_path)
    pre_dir = os.path.dirname(pretrained_path(args))

    def finished(folder: str) -> dict | None:
        return read_result(folder) or ledger.get(os.path.basename(folder))

    jobs = plan(args)
    pending = [job for job in jobs if finished(run_dir(args, *job)) is None]
    pretraining = finished(pre_dir)
    print(f"{len(jobs) - len(pending)} of {len(jobs)} runs finished already; "
          f"{0 if args.report_only else len(pending)} to train", flush=True)
    if not args.report_only:
        # The fine-tuned cells need the checkpoint itself, which a ledger entry does not keep.
        if any(REGIMES[regime][2] for regime, *_ in pending) and not os.path.exists(pretrained_path(args)):
            pretraining = pretrain(args)
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda job: train(*job, args), pending))
    results: dict = {}
    for job in jobs:
        done = finished(run_dir(args, *job))
        if done is not None:
            results.setdefault(job[:3], []).append(done)
            ledger[os.path.basename(run_dir(args, *job))] = done
    if pretraining is not None:
        ledger[os.path.basename(pre_dir)] = pretraining
    write_ledger(ledger_path, ledger)
    text = report(results, pretraining, args)
    write_report(args.report, text)
    print(text)


if __name__ == "__main__":
    main()
