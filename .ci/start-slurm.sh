#!/usr/bin/env bash
# Start a real single-node Slurm (munged + slurmctld + slurmd) on this machine, for the
# `slurm`-marked tests (tests/cluster/test_slurm.py).
#
# Works in a container or VM without systemd: the daemons are started directly, with
# process tracking that needs no cgroups (proctrack/linuxproc, task/none).
#
# Idempotent: a second run finds the node idle and returns at once; a run after a reboot (or
# after the daemons died) starts only what is missing. If the generated slurm.conf differs from
# the one in place, the daemons are restarted with the new one.
#
# Needs root (apt-get, daemons). Packages: Debian's slurm-wlm (slurmctld, slurmd, slurm-client)
# and munge, installed with --no-install-recommends (9 packages, a few MB).
#
# Environment:
#   SLURM_CI_MEM_MARGIN_MB   memory kept back from the node's RealMemory (default 1024)
#   SLURM_CI_WAIT_S          how long to wait for the node to become idle (default 60)
set -euo pipefail

MEM_MARGIN_MB=${SLURM_CI_MEM_MARGIN_MB:-1024}
WAIT_S=${SLURM_CI_WAIT_S:-60}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
RUN_DIR=/run/slurm

log() { printf '[start-slurm] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
    # Without root we cannot install or start anything, but a Slurm that is already up will do.
    if command -v sinfo >/dev/null && timeout 10 sinfo --noheader --format=%t 2>/dev/null | grep -q '^idle'; then
        log "not root, but Slurm is up; leaving it as it is"
        exit 0
    fi
    die "must run as root (installs packages and starts daemons)"
fi

daemon_pid() {
    # PID from the daemon's pid file when that process is alive, else nothing.
    local pidfile=$1 pid
    [[ -s $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

node_state() {
    # Prints the node's state (idle, mixed, down*, ...) or nothing when slurmctld is unreachable.
    # sinfo retries for ~10 s when slurmctld is not there: ask only when it runs.
    [[ -n $(daemon_pid "$RUN_DIR/slurmctld.pid") ]] || return 0
    timeout 10 sinfo --noheader --node="$NODE" --format='%t' 2>/dev/null | head -n1 || true
}

# ---------------------------------------------------------------- packages
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurm-wlm and munge"
    t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    # Only refresh the package lists when apt has none (a fresh image); a stale list fails the
    # install and is refreshed then.
    if ! apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1; then
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    fi
    log "installed in $((SECONDS - t0)) s"
fi

NODE=$(hostname -s)
getent hosts "$NODE" >/dev/null || die "hostname $NODE does not resolve; add it to /etc/hosts"

# ---------------------------------------------------------------- slurm.conf
# Topology exactly as slurmd sees it (so slurmd does not drain the node for a mismatch), with
# RealMemory lowered by a margin so that jobs asking for --mem never exceed what is free.
hw=$(slurmd -C | head -n1)
cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
boards=$(sed -n 's/.*Boards=\([0-9]*\).*/\1/p' <<<"$hw")
sockets=$(sed -n 's/.*SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$hw")
cores=$(sed -n 's/.*CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$hw")
threads=$(sed -n 's/.*ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$hw")
[[ -n $cpus ]] || cpus=$(nproc)
total_mb=$(free -m | awk '/^Mem:/ {print $2}')
mem_mb=$((total_mb - MEM_MARGIN_MB))
((mem_mb > 512)) || mem_mb=$((total_mb / 2))
topology="CPUs=$cpus"
if [[ -n $boards && -n $sockets && -n $cores && -n $threads ]]; then
    topology="CPUs=$cpus Boards=$boards SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads"
fi

mkdir -p "$CONF_DIR" "$LOG_DIR" "$CTLD_SPOOL" "$SLURMD_SPOOL" "$RUN_DIR"
new_conf=$(mktemp)
trap 'rm -f "$new_conf"' EXIT
cat >"$new_conf" <<EOF
# Written by .ci/start-slurm.sh: a single-node Slurm for tests, no systemd, no cgroups.
ClusterName=sound-captions-ci
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
# No cgroups in this container: track processes through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# scancel sends SIGTERM, then SIGKILL after KillWait seconds: time for ray-cluster.sbatch to
# stop Ray cleanly (Slurm's default).
KillWait=30
MinJobAge=300
SlurmdTimeout=60
InactiveLimit=0
NodeName=$NODE $topology RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF

conf_changed=0
if ! cmp -s "$new_conf" "$CONF"; then
    install -m 0644 "$new_conf" "$CONF"
    conf_changed=1
    log "wrote $CONF ($NODE: $topology RealMemory=${mem_mb}MB)"
fi

state=$(node_state)
if [[ $conf_changed -eq 0 && $state == idle* ]]; then
    log "Slurm already up: node $NODE is $state"
    exit 0
fi

# ---------------------------------------------------------------- munge
if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
chmod 0700 /etc/munge /var/log/munge /var/lib/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# ---------------------------------------------------------------- slurm daemons
stop_daemon() {
    local name=$1 pidfile=$2 pid
    pid=$(daemon_pid "$pidfile")
    [[ -n $pid ]] || return 0
    log "stopping $name (pid $pid) to load the new slurm.conf"
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

if [[ $conf_changed -eq 1 ]]; then
    stop_daemon slurmd "$RUN_DIR/slurmd.pid"
    stop_daemon slurmctld "$RUN_DIR/slurmctld.pid"
fi

if [[ -z $(daemon_pid "$RUN_DIR/slurmctld.pid") ]]; then
    log "starting slurmctld"
    /usr/sbin/slurmctld
fi
if [[ -z $(daemon_pid "$RUN_DIR/slurmd.pid") ]]; then
    log "starting slurmd"
    /usr/sbin/slurmd
fi

# ---------------------------------------------------------------- wait for the node
deadline=$((SECONDS + WAIT_S))
while :; do
    state=$(node_state)
    case $state in
        idle*) break ;;
        down* | drain* | fail*)
            # A node that was down before a restart (or after a config change) needs a nudge.
            scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
    esac
    if ((SECONDS >= deadline)); then
        log "slurmctld log tail:"; tail -n 20 "$LOG_DIR/slurmctld.log" >&2 || true
        log "slurmd log tail:"; tail -n 20 "$LOG_DIR/slurmd.log" >&2 || true
        die "node $NODE not idle after ${WAIT_S}s (state: '${state:-no answer}')"
    fi
    sleep 0.5
done
log "Slurm up: node $NODE is $state (partition debug)"
