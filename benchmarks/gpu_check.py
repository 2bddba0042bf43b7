"""The GPU check: what only a GPU can show, as one command that ends within 8 minutes on the lent
machine (one H200, Python 3.12 with torch, timm, scikit-learn; no DeepSpeed, pytorch-metric-
learning, faiss or DALI; no network).

    OUT=/tmp/out bash benchmarks/gpu_check.sh            # on the GPU machine
    OUT=/tmp/out bash benchmarks/gpu_check.sh --dry-run  # the same steps, tiny, on the CPU

Before: ``bash benchmarks/gpu_wheels.sh`` here fetches the missing packages as wheels into
``benchmarks/wheels/`` (ignored by git; carry it: ``run(carry=["benchmarks/wheels"])``). The
first step installs them with ``pip --no-index`` into a temporary target. Every step runs under
its own ``timeout`` within the whole budget; data and runs live under /tmp; ``$OUT`` receives
``summary.txt`` and one ``logs.tar.gz`` (step logs, metrics.jsonl and config.yaml of each run).
A failing step is recorded and the next one runs; the exit status says whether all passed.

Steps, in this order (what only a GPU can tell first; budgets in seconds on the H200, the table
STEPS below, which sums to at most TOTAL_S; measured times go to summary.txt):
  install            carried wheels -> /tmp target, on PYTHONPATH for every later step
  environment        GPU, versions, imports; which loader data.loader=auto picks, DALI's status
  throughput_resnet50  training images/s per GPU of ResNet-50 at 224 px, bf16, channels_last,
                     128 images per step, through the trainer's step on batches already on the
                     GPU: eager (and its host syncs per step under set_sync_debug_mode), then
                     train.compile (inductor)
  loop_overhead      benchmarks/loop.py on the GPU: rcdml's step against a bare loop
  gloo_two_ranks     two ranks on one GPU over gloo: CUDA tensors through the gather with
                     gradient (values, gradients, RCDML loss against one process), the watchdog
  make_jpegs         synthetic JPEG folder (classes enough for batch / 4 per class on any NPROC)
  train_bninception  BN-Inception bf16: a warm-up epoch, an epoch with mid-epoch checkpoints
  resume             the same run resumed from its last mid-epoch checkpoint
  train_vit_compiled timm ViT-S/16 cut to 4 blocks (random weights, avg+cls pooling) bf16 under
                     train.compile (inductor), one epoch; then
  export_vit         rcdml-export of its last.pt to TorchScript with the parity check
  deepspeed_zero2    ZeRO-2 bf16 with data.loader=torch, one epoch (needs the deepspeed wheels)
  bench_loss         benchmarks/loss.py on the GPU
  bench_eval         benchmarks/eval.py on the GPU (faiss from the wheels)
The dry run gives each step its budget times DRY_TOTAL_S / TOTAL_S, and at least DRY_MIN_S (a
loaded 2-core CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from typing import Callable, NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL_S = 470  # under the 8 minutes, leaving time to pack the logs
DRY_TOTAL_S = 1200  # the dry run's budget: a loaded 2-core CPU, not the device
DRY_MIN_S = 180  # a loaded 2-core CPU may take minutes just to import torch, DeepSpeed and faiss
SAMPLES_PER_CLASS = 4


class Check:
    def __init__(self, args) -> None:
        self.dry = args.dry_run
        self.out = os.path.abspath(args.out)
        self.work = os.path.abspath(args.work)
        self.wheels = os.path.abspath(args.wheels)
        self.start = time.monotonic()
        self.total_s = DRY_TOTAL_S if self.dry else TOTAL_S
        self.device = "cpu" if self.dry else "cuda"
        self.lines: list[str] = []
        self.failed = 0
        shutil.rmtree(self.work, ignore_errors=True)
        os.makedirs(os.path.join(self.work, "logs"))
        os.makedirs(self.out, exist_ok=True)
        self.env = dict(os.environ, PYTHONUNBUFFERED="1",
                        PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
        if self.dry:
            self.env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
            self.size, self.resize, self.backbone, self.amp, self.batch = 32, 32, "resnet18", "none", 16
            self.min_classes, self.per_class, self.bench = 6, 8, ["--smoke"]
        else:
            self.size, self.resize, self.backbone, self.amp, self.batch = 224, 256, "bn_inception", "bf16", 128
            self.min_classes, self.per_class, self.bench = 32, 16, []

    def note(self, text: str) -> None:
        print(text, flush=True)
        self.lines.append(text)

    def left(self) -> float:
        return self.total_s - (time.monotonic() - self.start)

    def step(self, name: str, budget_s: int, cmd: list[str]) -> str:
        """Run ``cmd`` under ``timeout``; its output goes to logs/<name>.log, returned as text."""
        budget = budget_s if not self.dry else max(budget_s * DRY_TOTAL_S / TOTAL_S, DRY_MIN_S)
        limit = int(min(budget, self.left() - 5))
        log = os.path.join(self.work, "logs", f"{name}.log")
        if limit < 10:
            self.note(f"{name}: skipped, {self.left():.0f} s of the {self.total_s} s budget left")
            self.failed += 1
            return ""
        begin = time.monotonic()
        with open(log, "w") as f:
            rc = subprocess.call(["timeout", "-k", "5", str(limit), *cmd], stdout=f,
                                 stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        took = time.monotonic() - begin
        verdict = "ok" if rc == 0 else ("timed out" if rc in (124, 137) else f"exit {rc}")
        self.note(f"{name}: {verdict} after {took:.0f} s (budget {budget_s} s)")
        self.failed += rc != 0
        with open(log) as f:
            text = f.read()
        for line in text.splitlines():
            if line.startswith("RESULT "):
                self.note("  " + line[len("RESULT "):])
        return text

    # -- steps: each returns its command (None: nothing to run), or takes a step's log after --

    def install(self) -> list[str] | None:
        wheels = sorted(os.path.join(self.wheels, w) for w in os.listdir(self.wheels)
                        if w.endswith(".whl")) if os.path.isdir(self.wheels) else []
        if not wheels:
            self.note(f"install: no wheels in {self.wheels} (run benchmarks/gpu_wheels.sh here "
                      "first); the steps that need them will fail")
            return None
        self.note(f"  {len(wheels)} wheels: " + " ".join(os.path.basename(w).split("-")[0]
                                                        for w in wheels))
        target = os.path.join(self.work, "site")
        # The dry run installs for the GPU machine's interpreter (CPython 3.12, x86-64), which
        # checks that the carried set is complete there, and keeps its own packages first.
        tags = [] if not self.dry else [
            "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
            *[a for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64") for a in ("--platform", p)]]
        paths = [self.env["PYTHONPATH"], target] if self.dry else [target, self.env["PYTHONPATH"]]
        self.env["PYTHONPATH"] = os.pathsep.join(paths)
        return [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links",
                self.wheels, "--no-deps", "--no-compile", "--no-cache-dir", *tags, "--target",
                target, *wheels]

    def environment(self) -> list[str]:
        code = r"""
import importlib, sys, torch
from rcdml.data.pipeline import choose_loader
print("RESULT python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "gpus", torch.cuda.device_count(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
for name in ("rcdml", "pytorch_metric_learning", "deepspeed", "faiss", "timm", "nvidia.dali"):
    try:
        module = importlib.import_module(name)
        print("RESULT import", name, getattr(module, "__version__", ""), "from", module.__file__)
    except Exception as e:
        print("RESULT import", name, "FAILED:", type(e).__name__, str(e).splitlines()[0][:120])
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
loader = choose_loader("auto", device)
print("RESULT data.loader=auto ->", loader, "" if loader == "dali" else
      "(DALI not installed: the torchvision DataLoader)")
if importlib.util.find_spec("nvidia.dali") is None:
    print("RESULT DALI device=mixed: not testable on this machine kind (nvidia-dali is not "
          "installed there and cannot travel: hundreds of MB against 64 MiB)")
"""
        return ["bash", "-c", "nvidia-smi -L || true; \"$0\" -c \"$1\"", sys.executable, code]

    def throughput(self) -> list[str]:
        return [sys.executable, "benchmarks/gpu_check.py", "--worker", "throughput", "--work",
                self.work, *(["--dry-run"] if self.dry else [])]

    def loop_overhead(self) -> list[str]:
        # Two rounds of 10 steps: the table's ratios, within the step's budget.
        sizes = ["--smoke"] if self.dry else ["--device", "cuda", "--rounds", "2", "--steps", "10"]
        return [sys.executable, "benchmarks/loop.py", "--procs", "1", *sizes]

    def gloo(self) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "benchmarks/gpu_check.py", "--worker", "gloo"]

    def make_jpegs(self) -> list[str]:
        gpus = 1
        if not self.dry:
            import torch

            gpus = max(1, torch.cuda.device_count())
        self.nproc = gpus
        self.batch *= gpus
        # Half the classes train: they must fill a batch of batch / 4 classes on every NPROC.
        self.classes = 2 * max(self.min_classes, self.batch // SAMPLES_PER_CLASS)
        images = self.classes * self.per_class
        self.data = os.path.join(self.work, "jpegs")
        self.note(f"  {images} images, {self.classes} classes, global batch {self.batch} on "
                  f"{self.nproc} process(es)")
        return [sys.executable, "-c", "import sys; sys.path.insert(0, 'benchmarks'); "
                "from data import write_jpeg_folder; "
                f"write_jpeg_folder({self.data!r}, {images}, {self.classes}, (320, 240))"]

    def train(self, name: str, *overrides: str) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={self.nproc}", "launch/train.py", "configs/digits8x8.yaml",
                f"output_dir={os.path.join(self.work, name)}", "data.name=folder",
                f"data.root={self.data}", f"model.backbone={self.backbone}",
                "model.embedding_size=512", "model.freeze_bn=true", f"data.image_size={self.size}",
                f"data.resize_size={self.resize}", "data.crop_scale=[0.16,1.0]", "data.flip=true",
                f"data.samples_per_class={SAMPLES_PER_CLASS}", "data.num_workers=4",
                f"train.batch_size={self.batch}", f"train.amp={self.amp}", "train.progress=false",
                "monitor.sample_size=64", *overrides]

    def trained(self, name: str, text: str) -> None:
        """The run's loader and resume lines, and its metrics.jsonl rows."""
        for line in text.splitlines():
            if line.startswith(("data: ", "resumed from")):
                self.note("  " + line)
        path = os.path.join(self.work, name, "metrics.jsonl")
        if os.path.exists(path):
            with open(path) as f:
                rows = [json.loads(line) for line in f if line.strip()]
            for row in rows:
                # The epoch-0 row holds the untrained network's evaluation only.
                self.note(f"  epoch {row['epoch']}: {row.get('perf/images_per_s', 0.0):.0f} images/s, "
                          f"R@1 {row.get('eval/R@1', float('nan')):.4f}, loss "
                          f"{row.get('train/loss', float('nan')):.4f}, GPU memory "
                          f"{row.get('perf/gpu_mem_gib', 0.0):.2f} GiB")

    def _checkpointed(self) -> list[str]:
        every = max(1, (self.classes // 2 * self.per_class) // self.batch // 3)
        return ["train.epochs=2", "train.warmup_epochs=1", f"train.checkpoint_every_steps={every}",
                "data.loader=auto"]

    def train_bninception(self) -> list[str]:
        return self.train("train_bninception", *self._checkpointed())

    def resume(self) -> list[str]:
        # prev.pt is the last mid-epoch checkpoint of epoch 2 (last.pt its end).
        run, mid = os.path.join(self.work, "train_bninception"), os.path.join(self.work, "mid_epoch.pt")
        if os.path.exists(os.path.join(run, "prev.pt")):
            shutil.copy(os.path.join(run, "prev.pt"), mid)
        return self.train("resume", *self._checkpointed(), f"train.resume={mid}")

    def train_vit(self) -> list[str]:
        # Four of ViT-S/16's twelve blocks: the same kernels for inductor to build, in a third
        # of the compilation time.
        vit = ["model.backbone=timm:vit_small_patch16_224", "model.pooling=avg+cls",
               "model.freeze_bn=false", "optim.layer_decay=0.75", "train.compile=true"]
        if self.dry:
            # The CPU would spend minutes in inductor's C++ builds: graph capture only.
            vit += ["model.timm_kwargs={img_size: 32, patch_size: 8, depth: 2}",
                    "train.compile_backend=aot_eager"]
        else:
            vit += ["model.timm_kwargs={depth: 4}"]
        return self.train("train_vit_compiled", "train.epochs=1", "train.warmup_epochs=0",
                          "data.loader=torch", *vit)

    def export_vit(self) -> list[str]:
        run = os.path.join(self.work, "train_vit_compiled")
        return [sys.executable, "-c", "import sys; from rcdml.cli.export import main; "
                "sys.exit(main(sys.argv[1:]))", os.path.join(run, "config.yaml"),
                f"checkpoint={os.path.join(run, 'last.pt')}", "format=torchscript"]

    def deepspeed(self) -> list[str]:
        return self.train("deepspeed_zero2", "train.epochs=1", "train.warmup_epochs=0",
                          "data.loader=torch", "train.backend=deepspeed",
                          "train.deepspeed_config=configs/deepspeed/zero2.yaml")

    def bench_loss(self) -> list[str]:
        return [sys.executable, "benchmarks/loss.py", "--device", self.device, "--budget-s", "3",
                *self.bench]

    def bench_eval(self) -> list[str]:
        sizes = [] if self.dry else ["--sizes", "10000", "30000"]
        return [sys.executable, "benchmarks/eval.py", "--device", self.device,
                "--max-matrix-gib", "16", *sizes, *self.bench]

    def tables(self, name: str, text: str) -> None:
        self.lines += [line for line in text.splitlines() if line.startswith(("|", "overhead:"))]

    def run_all(self) -> None:
        """Every step of STEPS in order; a failing one is recorded and the next one runs."""
        for step in STEPS:
            cmd = step.command(self)
            if cmd is None:
                continue
            text = self.step(step.name, step.budget_s, cmd)
            if step.after is not None:
                step.after(self, step.name, text)

    def finish(self) -> int:
        self.note(f"total: {time.monotonic() - self.start:.0f} s, {self.failed} step(s) failed")
        with open(os.path.join(self.out, "summary.txt"), "w") as f:
            f.write("\n".join(self.lines) + "\n")
        with tarfile.open(os.path.join(self.out, "logs.tar.gz"), "w:gz") as tar:
            tar.add(os.path.join(self.work, "logs"), arcname="logs")
            for run in sorted(os.listdir(self.work)):
                for kept in ("metrics.jsonl", "config.yaml"):
                    path = os.path.join(self.work, run, kept)
                    if os.path.isfile(path):
                        tar.add(path, arcname=f"runs/{run}/{kept}")
        return 1 if self.failed else 0


class Step(NamedTuple):
    name: str
    budget_s: int  # on the H200; the whole table sums to at most TOTAL_S
    command: Callable[[Check], list[str] | None]
    after: Callable[[Check, str, str], None] | None = None  # (check, name, the step's log)


STEPS = [
    Step("install", 20, Check.install),
    Step("environment", 15, Check.environment),
    Step("throughput_resnet50", 110, Check.throughput),
    Step("loop_overhead", 40, Check.loop_overhead, Check.tables),
    Step("gloo_two_ranks", 25, Check.gloo),
    Step("make_jpegs", 15, Check.make_jpegs),
    Step("train_bninception", 50, Check.train_bninception, Check.trained),
    Step("resume", 35, Check.resume, Check.trained),
    Step("train_vit_compiled", 50, Check.train_vit, Check.trained),
    Step("export_vit", 15, Check.export_vit),
    Step("deepspeed_zero2", 35, Check.deepspeed, Check.trained),
    Step("bench_loss", 20, Check.bench_loss, Check.tables),
    Step("bench_eval", 25, Check.bench_eval, Check.tables),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu_check_out"))
    parser.add_argument("--work", default="/tmp/rcdml_gpu_check", help="data and runs (removed first)")
    parser.add_argument("--wheels", default=os.path.join(ROOT, "benchmarks", "wheels"))
    parser.add_argument("--worker", choices=["gloo", "throughput"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        from gpu_check_workers import gloo_worker, throughput_worker

        return (gloo_worker if args.worker == "gloo" else throughput_worker)(args)
    check = Check(args)
    check.run_all()
    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
