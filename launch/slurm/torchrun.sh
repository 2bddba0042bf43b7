# Sourced by train.sbatch and evaluate.sbatch: builds the srun + torchrun command of a job.
#
# One Slurm task per node runs torchrun, which starts one worker per GPU; the workers find each
# other through c10d rendezvous on the first node of the allocation.
#   GPUS_PER_NODE  workers per node (default: SLURM_GPUS_ON_NODE, else 8)
#   RDZV_PORT      rendezvous port on the head node (default 29500)
#   MAX_RESTARTS   torchrun restarts of the whole worker group after a failure (train only)
#   STOP_GRACE_S   seconds torchrun gives its workers to stop (one step and a checkpoint) after
#                  it is signalled, before it kills them (default 120)
#   RCDML_DRY_RUN  1: print the command instead of running it
#
# torchrun forwards SIGTERM, SIGINT, SIGHUP and SIGQUIT to its workers (as the death signal of
# its shutdown) and, from torch 2.9, the signals of PET_SIGNALS_TO_HANDLE: SIGUSR1 is added so
# that it is forwarded too instead of killing torchrun. Its own exit status then is 1, and a
# stopped worker exits 0 under torchrun (any other status would make --max-restarts restart
# it), so the outcome of a run is read from the stop record rank 0 writes to RCDML_STOP_FILE.
export PET_SIGNALS_TO_HANDLE="${PET_SIGNALS_TO_HANDLE:-SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1}"
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT="${STOP_GRACE_S:-${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-120}}"
EXIT_PREEMPTED=75

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
# Slurm's signals while the job runs. With RCDML_STOP_FILE set, its status is that of the run
# the workers recorded there: EXIT_PREEMPTED (75) for a run stopped by a signal after its
# checkpoint, 0 for a finished one, whatever torchrun's own status; else torchrun's (srun's).
run_command() {
    if [[ "${RCDML_DRY_RUN:-0}" == 1 ]]; then
        printf '%q ' "${CMD[@]}"
        echo
        return 0
    fi
    if [[ -n "${RCDML_STOP_FILE:-}" ]]; then
        export RCDML_STOP_FILE
        mkdir -p "$(dirname "$RCDML_STOP_FILE")"
        rm -f "$RCDML_STOP_FILE"  # a requeued job keeps its id: forget the last allocation's
    fi
    "${CMD[@]}" &
    RUN_PID=$!
    local code=0
    while true; do
        wait "$RUN_PID" && code=0 && break
        code=$?
        # wait returns >128 when a trapped signal interrupted it; the job itself is still running.
        if kill -0 "$RUN_PID" 2>/dev/null; then continue; fi
        break
    done
    RUN_PID=
    if [[ -n "${RCDML_STOP_FILE:-}" && -f "$RCDML_STOP_FILE" ]]; then
        case "$(cat "$RCDML_STOP_FILE")" in
            *'"state": "stopped"'*) return "$EXIT_PREEMPTED" ;;
            *'"state": "finished"'*) return 0 ;;
        esac
    fi
    return "$code"
}

# stop_command: ask the running job to stop by the contract (once: a second SIGTERM to torchrun
# during its shutdown would cut its wait for the workers short). srun forwards SIGTERM to its
# tasks, torchrun on every node, which forwards it to the workers.
stop_command() {
    if [[ -n "${RUN_PID:-}" && -z "${STOP_SENT:-}" ]]; then
        STOP_SENT=1
        kill -TERM "$RUN_PID" 2>/dev/null || true
    fi
}
