# Sourced by train.sbatch and evaluate.sbatch: builds the srun + torchrun command of a job.
#
# One Slurm task per node runs torchrun, which starts one worker per GPU; the workers find each
# other through c10d rendezvous on the first node of the allocation.
#   GPUS_PER_NODE  workers per node (default: SLURM_GPUS_ON_NODE, else 8)
#   RDZV_PORT      rendezvous port on the head node (default 29500)
#   MAX_RESTARTS   torchrun restarts of the whole worker group after a failure (train only)
#   RCDML_DRY_RUN  1: print the command instead of running it

head_node() {
    if command -v scontrol >/dev/null 2>&1; then
        scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1
    else
        echo "${SLURM_JOB_NODELIST%%,*}"
    fi
}

# torchrun_command ENTRY_POINT MAX_RESTARTS ARGS... -> sets the array CMD
torchrun_command() {
    local entry=$1 restarts=$2
    shift 2
    : "${SLURM_NNODES:?run this script with sbatch (SLURM_NNODES is not set)}"
    : "${SLURM_JOB_ID:?run this script with sbatch (SLURM_JOB_ID is not set)}"
    CMD=(srun --ntasks-per-node=1 --kill-on-bad-exit=1
         torchrun --nnodes="$SLURM_NNODES" --nproc_per_node="${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}"
         --rdzv_backend=c10d --rdzv_endpoint="$(head_node):${RDZV_PORT:-29500}"
         --rdzv_id="$SLURM_JOB_ID" --max-restarts="$restarts"
         "$entry" "$@")
}

# run_command: print (dry run) or run CMD in the background, so that the batch shell can act on
# Slurm's signals (e.g. requeue before the time limit) while the job runs.
run_command() {
    if [[ "${RCDML_DRY_RUN:-0}" == 1 ]]; then
        printf '%q ' "${CMD[@]}"
        echo
        return 0
    fi
    "${CMD[@]}" &
    local pid=$!
    while true; do
        wait "$pid" && return 0
        local code=$?
        # wait returns >128 when a trapped signal interrupted it; the job itself is still running.
        if kill -0 "$pid" 2>/dev/null; then continue; fi
        return "$code"
    done
}
