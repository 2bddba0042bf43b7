#!/usr/bin/env bash
# What only a GPU can show, in one script (about 6-8 minutes on one H100/H200):
#   1. single-node training steps over NCCL, DALI decoding with device="mixed" (nvJPEG) and bf16,
#      on a synthetic JPEG folder at 224 px, against the torchvision DataLoader in the same run,
#      and the same run under DeepSpeed ZeRO-2;
#   2. the loss, evaluation and data benchmarks on the GPU.
# Results go under $OUT (summary.txt first); a failing step is recorded and the next one runs.
#
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh            # on a GPU machine
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh --dry-run  # the same steps, tiny, on CPU
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
OUT=${OUT:-gpu_check_out}
PY=${PYTHON:-python}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

if [[ $DRY == 1 ]]; then
    NPROC=2; DEVICE=cpu; AMP=none; IMAGES=96; CLASSES=12; SIZE=32; RESIZE=32
    BATCH=16; EPOCHS=1; BENCH=(--smoke); BACKBONE=resnet18
else
    NPROC=$("$PY" -c "import torch; print(max(1, torch.cuda.device_count()))")
    DEVICE=cuda; AMP=bf16; IMAGES=6400; CLASSES=100; SIZE=224; RESIZE=256
    BATCH=$((128 * NPROC)); EPOCHS=2; BENCH=(); BACKBONE=bn_inception
fi
DATA="$OUT/jpegs"

step() {
    local name=$1
    shift
    local start=$SECONDS
    echo "== $name: $*" | tee -a "$SUMMARY"
    "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "   $name: exit $rc after $((SECONDS - start)) s (log: $name.log)" | tee -a "$SUMMARY"
}

images_per_s() {
    "$PY" - "$1" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1] + "/metrics.jsonl")]
last = rows[-1]
print(f"   {sys.argv[1].rsplit('/', 1)[-1]}: {last['perf/images_per_s']:.0f} images/s in epoch "
      f"{last['epoch']}, R@1 {last.get('eval/R@1', float('nan')):.4f}, "
      f"GPU memory {last.get('perf/gpu_mem_gib', 0.0):.2f} GiB")
EOF
}

step environment bash -c "nvidia-smi || true; $PY -c 'import torch, sys; print(sys.version); \
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"gpus\", torch.cuda.device_count()); \
print(\"nccl\", torch.cuda.nccl.version() if torch.cuda.is_available() else None)'; \
$PY -c 'import nvidia.dali as d; print(\"dali\", d.__version__)'; \
$PY -c 'import deepspeed as d; print(\"deepspeed\", d.__version__)'"

step make_jpegs "$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); from data import write_jpeg_folder; \
write_jpeg_folder('$DATA', $IMAGES, $CLASSES, (320, 240))"

train() {
    local name=$1
    shift
    step "$name" "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" \
        launch/train.py configs/digits8x8.yaml output_dir="$OUT/$name" data.name=folder \
        data.root="$DATA" model.backbone=$BACKBONE model.embedding_size=512 model.freeze_bn=true \
        data.image_size=$SIZE data.resize_size=$RESIZE data.crop_scale=[0.16,1.0] data.flip=true \
        data.samples_per_class=4 data.num_workers=4 train.batch_size=$BATCH train.epochs=$EPOCHS \
        train.amp=$AMP train.progress=false "$@"
    images_per_s "$OUT/$name" >> "$SUMMARY" 2>&1
    # Checkpoints are large and say nothing the metrics do not.
    rm -rf "$OUT/$name"/*.pt "$OUT/$name"/*.pt.ds
}
train train_dali data.loader=dali
train train_torch data.loader=torch
train train_deepspeed_zero2 data.loader=dali train.backend=deepspeed \
    train.deepspeed_config=configs/deepspeed/zero2.yaml

step bench_loss "$PY" benchmarks/loss.py --device $DEVICE "${BENCH[@]}"
step bench_eval "$PY" benchmarks/eval.py --device $DEVICE --max-matrix-gib 16 "${BENCH[@]}"
step bench_data "$PY" benchmarks/data.py --device $DEVICE "${BENCH[@]}"

rm -rf "$DATA"
for name in bench_loss bench_eval bench_data; do
    echo "== $name table" >> "$SUMMARY"
    grep '^|' "$OUT/$name.log" >> "$SUMMARY"
done
cat "$SUMMARY"
! grep -q ": exit [1-9]" "$SUMMARY"
