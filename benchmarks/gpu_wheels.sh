#!/usr/bin/env bash
# Fetch the Python packages that benchmarks/gpu_check.sh needs and the GPU machine lacks, as
# wheels in benchmarks/wheels/ (ignored by git, carried to the machine with the working tree:
# about 40 MiB of its 64). The machine: Python 3.12, x86-64 Linux, no network; it already has
# torch, numpy, scikit-learn, tqdm, einops, msgpack, ninja, psutil, py-cpuinfo and packaging.
# gpu_check.sh installs them there with pip --no-index into a temporary target.
#
#   bash benchmarks/gpu_wheels.sh        # here, with network access to PyPI
set -euo pipefail
cd "$(dirname "$0")"
DEST=wheels
PY=${PYTHON:-python3}
mkdir -p "$DEST"
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$DEST" \
    pytorch-metric-learning==2.9.0 faiss-cpu==1.15.1 \
    hjson==3.1.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
    typing-inspection==0.4.5
# DeepSpeed publishes a source archive only: its wheel is built here, pure Python (its CUDA
# operators are compiled on first use, and rcdml's torch optimizers need none of them).
DS_BUILD_OPS=0 "$PY" -m pip wheel --no-deps --no-build-isolation -w "$DEST" deepspeed==0.19.8
du -sh "$DEST"
