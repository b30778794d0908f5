# shellcheck shell=bash
# Helpers for benches/run.sh: logging, process tracking and clean-up, free
# loopback ports, readiness waits, and /proc readings (CPU ticks, RSS).
#
# Every server the harness starts goes through `spawn`, which puts it in a
# process group of its own and records its id; `cleanup` (run from the EXIT
# trap, so also on error or Ctrl-C) stops those groups and nothing else.

SPAWNED_PIDS=()
# The harness's own stderr, kept apart so that messages written while a
# command's stderr is redirected (a trap firing mid-run) still show.
exec {LOG_FD}>&2

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&"$LOG_FD"; }
die() {
    log "error: $*"
    exit 1
}

# spawn NAME LOGFILE CMD...: starts CMD in a new process group (setsid),
# stdout+stderr to LOGFILE; sets SPAWN_PID (also its process group id).
spawn() {
    local name=$1 logfile=$2
    shift 2
    setsid "$@" >"$logfile" 2>&1 </dev/null {LOG_FD}>&- &
    SPAWN_PID=$!
    SPAWNED_PIDS+=("$SPAWN_PID")
    log "started $name (pid $SPAWN_PID): $*"
}

# stop_group PID: TERM to the process group, KILL after 3 s if still alive.
stop_group() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${SPAWNED_PIDS[@]}"; do
        stop_group "$pid"
    done
    SPAWNED_PIDS=()
}

# free_port: an ephemeral loopback port that was free a moment ago.
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# wait_http URL PID [TRIES]: until URL answers anything over HTTP (or fail
# when PID died or TRIES×0.1 s passed).
wait_http() {
    local url=$1 pid=$2 tries=${3:-100} i
    for i in $(seq "$tries"); do
        if ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        if curl -s -o /dev/null --max-time 1 "$url"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# group_pids PGID: the pids in that process group (nginx: master + workers).
group_pids() {
    ps -e -o pid=,pgid= | awk -v g="$1" '$2 == g { print $1 }'
}

# cpu_ticks PGID: utime+stime (clock ticks) summed over the group's processes.
cpu_ticks() {
    local total=0 pid stat rest
    for pid in $(group_pids "$1"); do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        # Fields after the ")" that closes comm: state is field 3, utime 14, stime 15.
        rest=${stat##*) }
        # shellcheck disable=SC2086
        set -- $rest
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

# mem_kb PGID FIELD: VmHWM / VmRSS (kB) summed over the group's processes.
mem_kb() {
    local total=0 pid v
    for pid in $(group_pids "$1"); do
        v=$(awk -v f="$2:" '$1 == f { print $2 }' "/proc/$pid/status" 2>/dev/null) || continue
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# pin CPUS PGID: moves every thread of every process of the group to CPUS.
pin() {
    local cpus=$1 pid
    [ -n "$cpus" ] || return 0
    for pid in $(group_pids "$2"); do
        taskset -a -p -c "$cpus" "$pid" >/dev/null
    done
}
