#!/usr/bin/env bash
# What only a GPU can show, as one command under 8 minutes on the lent GPU machine; see
# benchmarks/gpu_check.py for the steps, and run benchmarks/gpu_wheels.sh here first (the
# machine has no network: the packages it lacks travel as wheels in benchmarks/wheels/).
#
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh            # on the GPU machine
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh --dry-run  # the same steps, tiny, on the CPU
set -uo pipefail
cd "$(dirname "$0")/.."
exec python3 benchmarks/gpu_check.py "$@"
