#!/usr/bin/env bash
# One node of a per-job Ray cluster inside a Slurm allocation. Called by ray-cluster.sbatch
# (through srun, one task per node) and usable by hand for debugging:
#
#   ray-node.sh head     start the Ray head here and stay in the foreground until TERM/INT
#   ray-node.sh worker   start a Ray worker joining $RAY_HEAD_ADDRESS, same lifetime
#   ray-node.sh stop     stop the Ray processes of this job's cluster on this node
#   ray-node.sh pids     list them (pid and command), for checks
#
# "This job's cluster" is every process whose command line names $RAY_TMPDIR (gcs_server,
# raylet, the agents, log monitor, dashboard) plus all their descendants (the `ray::` workers
# rename themselves, so they are found as children of the raylet). Unlike `ray stop`, which
# kills every Ray process on the machine, this leaves other users' and other jobs' Ray alone:
# Slurm nodes are often shared between jobs.
#
# Environment (exported by ray-cluster.sbatch; srun passes it on):
#   RAY_TMPDIR           Ray's --temp-dir on every node, unique per job (required)
#   RAY_PORT             GCS port; RAY_PORT+1..+8 are used for the other head/node services
#   RAY_HEAD_ADDRESS     host:port of the head's GCS (worker only)
#   RAY_CPUS_PER_NODE    logical CPUs for Ray (default: $SLURM_CPUS_ON_NODE, else nproc)
#   GPUS_PER_NODE        GPUs for Ray (default: $SLURM_GPUS_ON_NODE, else the number of
#                        devices in CUDA_VISIBLE_DEVICES, else 0)
#   RAY_NODE_IP          --node-ip-address (default: Ray's own choice)
#   RAY_OBJECT_STORE_MB  object store size (default: 30% of $SLURM_MEM_PER_NODE when set)
#   RAY_RUN              command prefix for Ray (e.g. "apptainer exec --nv image.sif"); empty
#                        to use `ray` from PATH (the activated venv)
#   RAY_STOP_GRACE_S     seconds from SIGTERM to SIGKILL when stopping, all three stages (default 9)
set -uo pipefail

log() { printf '[ray-node %s %s] %s\n' "$(hostname -s)" "$(date +%T)" "$*" >&2; }

: "${RAY_TMPDIR:?RAY_TMPDIR must name the Ray temp dir of this job}"
case $RAY_TMPDIR in
    /*) ;;
    *) log "RAY_TMPDIR must be an absolute path: $RAY_TMPDIR"; exit 2 ;;
esac
RAY_TMPDIR=${RAY_TMPDIR%/}
RAY_STOP_GRACE_S=${RAY_STOP_GRACE_S:-9}

cluster_pids() {
    # Lines "PID KIND" for this job's Ray processes on this node and their descendants, KIND
    # being raylet, gcs or other; never this script or its ancestors.
    local self_chain
    self_chain=$(
        p=$$
        while [[ -n $p && $p -gt 1 ]]; do
            echo "$p"
            p=$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null)
        done
    )
    # The temp dir reaches awk through its environment: on awk's command line it would match.
    # Zombies (killed, not yet reaped by `ray start --block`) are gone for our purpose.
    ps -eo pid=,ppid=,stat=,args= | SKIP_PIDS=$self_chain awk '
        BEGIN {
            t = ENVIRON["RAY_TMPDIR"]
            n = split(ENVIRON["SKIP_PIDS"], s, "\n"); for (i = 1; i <= n; i++) excluded[s[i]] = 1
        }
        {
            if ($3 ~ /^Z/) next
            pid = $1; parent[pid] = $2; exe[pid] = $4
            args = $0; sub(/^ *[0-9]+ +[0-9]+ +[^ ]+ +/, "", args)
            # the temp dir as a path prefix ("t/...") or as a whole argument ("=t", " t")
            if (index(args, t "/") || index(args " ", "=" t " ") || index(args " ", " " t " "))
                hit[pid] = 1
        }
        END {
            do {
                changed = 0
                for (p in parent) if (!(p in hit) && (parent[p] in hit)) { hit[p] = 1; changed = 1 }
            } while (changed)
            for (p in hit) {
                if (p in excluded) continue
                kind = "other"
                if (exe[p] ~ /(^|\/)raylet$/) kind = "raylet"
                else if (exe[p] ~ /(^|\/)gcs_server$/) kind = "gcs"
                print p, kind
            }
        }'
}

stop_bucket() {
    # SIGTERM to the processes of one kind (raylet, other, gcs), SIGKILL after the grace period.
    local kind=$1 grace_ds=$2 pids alive waited=0
    pids=$(cluster_pids | awk -v k="$kind" '$2 == k {print $1}' | tr '\n' ' ')
    [[ -n ${pids// /} ]] || return 0
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null
    while ((waited < grace_ds)); do
        sleep 0.2
        waited=$((waited + 2))
        alive=$(cluster_pids | awk -v k="$kind" '$2 == k {print $1}' | tr '\n' ' ')
        [[ -z ${alive// /} ]] && return 0
    done
    log "SIGKILL to $kind processes still there after $((grace_ds / 10))s: $alive"
    # shellcheck disable=SC2086
    kill -KILL $alive 2>/dev/null
    return 0
}

stop_cluster() {
    # Same order as `ray stop`: the raylet first (its workers and agents follow it), then the
    # remaining helpers, the GCS last; each bucket gets a third of RAY_STOP_GRACE_S.
    local found grace_ds=$((RAY_STOP_GRACE_S * 10 / 3))
    found=$(cluster_pids | awk '{print $1}' | tr '\n' ' ')
    [[ -n ${found// /} ]] || return 0
    log "stopping the Ray processes of $RAY_TMPDIR: $found"
    stop_bucket raylet "$grace_ds"
    stop_bucket other "$grace_ds"
    stop_bucket gcs "$grace_ds"
    # anything the buckets missed (started while stopping)
    found=$(cluster_pids | awk '{print $1}' | tr '\n' ' ')
    # shellcheck disable=SC2086
    [[ -z ${found// /} ]] || kill -KILL $found 2>/dev/null
    return 0
}

node_resources() {
    # Sets the --num-cpus/--num-gpus/--object-store-memory arguments from the allocation.
    local cpus gpus
    cpus=${RAY_CPUS_PER_NODE:-${SLURM_CPUS_ON_NODE:-$(nproc)}}
    if [[ -n ${GPUS_PER_NODE:-} ]]; then
        gpus=$GPUS_PER_NODE
    elif [[ -n ${SLURM_GPUS_ON_NODE:-} ]]; then
        gpus=$SLURM_GPUS_ON_NODE
    elif [[ -n ${CUDA_VISIBLE_DEVICES:-} && $CUDA_VISIBLE_DEVICES != NoDevFiles ]]; then
        gpus=$(tr ',' '\n' <<<"$CUDA_VISIBLE_DEVICES" | grep -c .)
    else
        gpus=0
    fi
    RESOURCE_ARGS=(--num-cpus="$cpus" --num-gpus="$gpus")
    local store_mb=${RAY_OBJECT_STORE_MB:-}
    if [[ -z $store_mb && -n ${SLURM_MEM_PER_NODE:-} ]]; then
        store_mb=$((SLURM_MEM_PER_NODE * 30 / 100))
    fi
    if [[ -n $store_mb ]]; then
        RESOURCE_ARGS+=(--object-store-memory="$((store_mb * 1024 * 1024))")
    fi
}

run_node() {
    local role=$1 port=${RAY_PORT:?RAY_PORT must be set}
    local -a run=() args
    # shellcheck disable=SC2206
    [[ -n ${RAY_RUN:-} ]] && run=($RAY_RUN)
    node_resources
    args=(
        --temp-dir="$RAY_TMPDIR"
        --node-manager-port="$((port + 3))"
        --object-manager-port="$((port + 4))"
        --dashboard-agent-listen-port="$((port + 5))"
        --dashboard-agent-grpc-port="$((port + 6))"
        --metrics-export-port="$((port + 7))"
        --runtime-env-agent-port="$((port + 8))"
        --disable-usage-stats
        "${RESOURCE_ARGS[@]}"
        --block
    )
    [[ -n ${RAY_NODE_IP:-} ]] && args+=(--node-ip-address="$RAY_NODE_IP")
    if [[ $role == head ]]; then
        args=(--head --port="$port" --dashboard-port="$((port + 2))"
            --include-dashboard="${RAY_DASHBOARD:-false}" "${args[@]}")
        # With Ray Client's dependency (grpc) installed the head also serves Ray Client, on
        # 10001 unless told otherwise: a second cluster on the node would collide. Without it,
        # Ray refuses the option.
        if "${run[@]}" python -c 'import grpc' 2>/dev/null; then
            args+=(--ray-client-server-port="$((port + 1))")
        fi
    else
        args=(--address="${RAY_HEAD_ADDRESS:?RAY_HEAD_ADDRESS must be set for a worker}" "${args[@]}")
    fi

    trap 'log "TERM/INT: stopping"; stop_cluster; exit 143' TERM INT
    mkdir -p "$RAY_TMPDIR"
    log "ray start ${args[*]}"
    "${run[@]}" ray start "${args[@]}" &
    local ray_pid=$!
    # `wait` returns early when a trapped signal arrives, so the trap runs at once.
    wait "$ray_pid"
    local rc=$?
    log "ray start --block exited with $rc"
    stop_cluster
    exit "$rc"
}

case ${1:-} in
    head | worker) run_node "$1" ;;
    stop) stop_cluster ;;
    pids)
        pids=$(cluster_pids | awk '{print $1}' | tr '\n' ',')
        [[ -n $pids ]] && ps -o pid=,args= -p "${pids%,}"
        exit 0 ;;
    *) echo "usage: $0 head|worker|stop|pids" >&2; exit 2 ;;
esac
