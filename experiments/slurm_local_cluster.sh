#!/usr/bin/env bash
# A one-node SLURM cluster on this Debian machine (slurmctld and slurmd on localhost), to
# try `lstm-jax -m hydra/launcher=slurm ...` without a real cluster; tests/test_slurm.py
# (pytest -m slurm) runs on it.
#
#   sudo experiments/slurm_local_cluster.sh start    # install if missing, configure, start, wait for the node
#   sudo experiments/slurm_local_cluster.sh status
#   sudo experiments/slurm_local_cluster.sh stop
#
# Needs root (apt-get, the daemons). Installs `slurm-wlm` and `munge` when missing, writes a
# minimal /etc/slurm/slurm.conf (one node with this machine's CPUs and memory, one
# partition `debug`, no accounting database, jobs requeueable) and keeps its state and logs
# under $SLURM_LOCAL_DIR (default /var/lib/lstm-jax-slurm). A slurm.conf it did not write is
# left alone (the script stops instead).
set -euo pipefail

STATE=${SLURM_LOCAL_DIR:-/var/lib/lstm-jax-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by lstm_jax experiments/slurm_local_cluster.sh"
NODE=$(hostname -s)

die() { echo "slurm_local_cluster: $*" >&2; exit 1; }

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || die "slurm-wlm and munge are missing and this is not a Debian/Ubuntu machine (no apt-get)"
    echo "installing slurm-wlm and munge ..."
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge
}

configure() {
    if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script; stop (move it away to use this script)"
    fi
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$STATE/log" /run/munge
    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
    cat > "$CONF" <<EOF
$MARK
ClusterName=lstmjax
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
JobRequeue=1
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
    chmod 0400 /etc/munge/munge.key
}

running() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
    install
    configure
    if ! pgrep -x munged >/dev/null; then
        runuser -u munge -- /usr/sbin/munged
    fi
    running "$STATE/slurmctld.pid" || /usr/sbin/slurmctld
    running "$STATE/slurmd.pid" || /usr/sbin/slurmd
    local deadline=$((SECONDS + ${SLURM_LOCAL_TIMEOUT:-60})) state=""
    while (( SECONDS < deadline )); do
        state=$(sinfo -h -N -n "$NODE" -o %t 2>/dev/null || true)
        if [[ $state == idle* || $state == mix* || $state == alloc* ]]; then
            echo "slurm_local_cluster: node $NODE is $state (partition debug, $(nproc) CPUs)"
            return 0
        fi
        if [[ $state == down* || $state == drain* ]]; then
            scontrol update nodename="$NODE" state=resume 2>/dev/null || true
        fi
        sleep 1
    done
    die "node $NODE not idle after ${SLURM_LOCAL_TIMEOUT:-60} s (state: ${state:-none}); see $STATE/log/"
}

stop() {
    for daemon in slurmd slurmctld; do
        local pidfile=$STATE/$daemon.pid
        if running "$pidfile"; then
            kill "$(cat "$pidfile")"
            for _ in $(seq 50); do running "$pidfile" || break; sleep 0.2; done
        fi
    done
    echo "slurm_local_cluster: stopped slurmd and slurmctld (munged left running)"
}

status() {
    running "$STATE/slurmctld.pid" || die "slurmctld is not running"
    running "$STATE/slurmd.pid" || die "slurmd is not running"
    sinfo -N
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
