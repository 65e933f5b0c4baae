#!/usr/bin/env bash
# A three-member etcd cluster on 127.0.0.1, the peer `ekv-bench kv --target
# etcd` measures ekv against (`--etcd-start` runs this script itself).
#
# Usage:
#   bench/etcd-cluster.sh start DIR [BASE_PORT]   # default BASE_PORT 22379
#   bench/etcd-cluster.sh stop DIR
#
# start installs Debian's etcd-server (etcd 3.4.23 on bookworm) when there
# is no `etcd`, then starts members m0, m1, m2 with their data in DIR/m0..2
# and logs in DIR/m0..2.log: client ports BASE_PORT..BASE_PORT+2, peer
# ports BASE_PORT+10..BASE_PORT+12. fsync is on, as in production (no
# --unsafe-no-fsync), so put DIR on a real disk, not tmpfs. It waits until
# every member reports healthy and prints the client endpoints, comma
# separated, as its only line on stdout; everything else goes to stderr.
# On failure it stops the members it started.
#
# stop kills only the processes whose PIDs start recorded in DIR/*.pid,
# and waits for them to exit.
set -euo pipefail

MEMBERS=3
HEALTH_TIMEOUT_S=60
STOP_TIMEOUT_S=15

say() { printf 'etcd-cluster: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}
usage() { die "usage: $0 start DIR [BASE_PORT] | stop DIR"; }

# The directory of a start under way: its members are stopped if the
# script exits before they are all healthy.
starting=""
trap 'if [[ -n "$starting" ]]; then stop "$starting"; fi' EXIT

# Whether PID is alive and is an etcd (a recorded PID may have been reused).
is_etcd() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == etcd ]]
}

install_etcd() {
    command -v etcd >/dev/null 2>&1 && return 0
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || die "no etcd, not root and no sudo: run 'apt-get install -y etcd-server' as root"
        sudo=(sudo)
    fi
    command -v apt-get >/dev/null 2>&1 || die "no etcd and no apt-get: install etcd 3.4 (Debian's etcd-server)"
    say "installing etcd-server"
    # apt's chatter goes to stderr: stdout carries only the endpoints.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends etcd-server >&2
    command -v etcd >/dev/null 2>&1 || die "etcd-server installed but no etcd on PATH"
}

stop() {
    local dir=$1 pidfile pid deadline
    local pids=()
    shopt -s nullglob
    for pidfile in "$dir"/m*.pid; do
        pid=$(cat "$pidfile")
        if [[ "$pid" =~ ^[0-9]+$ ]] && is_etcd "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    deadline=$((SECONDS + STOP_TIMEOUT_S))
    for pid in "${pids[@]}"; do
        while is_etcd "$pid"; do
            if ((SECONDS >= deadline)); then
                say "member $pid ignored TERM for ${STOP_TIMEOUT_S}s; killing it"
                kill -KILL "$pid" 2>/dev/null || true
                deadline=$((SECONDS + STOP_TIMEOUT_S))
            fi
            sleep 0.1
        done
    done
    rm -f "$dir"/m*.pid
    ((${#pids[@]} == 0)) || say "stopped ${#pids[@]} members in $dir"
}

healthy() {
    curl -fsS --max-time 2 "http://$1/health" 2>/dev/null | grep -q '"health":"true"'
}

start() {
    local dir=$1 base=$2
    [[ "$base" =~ ^[0-9]+$ ]] && ((base > 0 && base + 12 < 65536)) || die "bad BASE_PORT $base"
    install_etcd
    command -v curl >/dev/null 2>&1 || die "curl is needed to check the members' health"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local pidfile
    for pidfile in "$dir"/m*.pid; do
        [[ -e "$pidfile" ]] || continue
        if is_etcd "$(cat "$pidfile")"; then
            die "a member recorded in $pidfile is still running: '$0 stop $dir' first"
        fi
    done

    local i cluster="" endpoints=""
    for ((i = 0; i < MEMBERS; i++)); do
        cluster+="${cluster:+,}m$i=http://127.0.0.1:$((base + 10 + i))"
        endpoints+="${endpoints:+,}127.0.0.1:$((base + i))"
    done
    starting=$dir
    for ((i = 0; i < MEMBERS; i++)); do
        local client="http://127.0.0.1:$((base + i))" peer="http://127.0.0.1:$((base + 10 + i))"
        etcd --name "m$i" --data-dir "$dir/m$i" \
            --listen-client-urls "$client" --advertise-client-urls "$client" \
            --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
            --initial-cluster "$cluster" --initial-cluster-token "ekv-bench-$base" \
            --initial-cluster-state new --logger zap --log-outputs stderr \
            </dev/null >"$dir/m$i.log" 2>&1 &
        echo $! >"$dir/m$i.pid"
    done

    local deadline=$((SECONDS + HEALTH_TIMEOUT_S)) ep all pid
    while :; do
        all=1
        for ((i = 0; i < MEMBERS; i++)); do
            pid=$(cat "$dir/m$i.pid")
            if ! is_etcd "$pid"; then
                say "member m$i (pid $pid) exited; the end of $dir/m$i.log:"
                tail -n 20 "$dir/m$i.log" >&2 || true
                exit 1
            fi
            ep="127.0.0.1:$((base + i))"
            healthy "$ep" || all=0
        done
        ((all)) && break
        if ((SECONDS >= deadline)); then
            say "the cluster was not healthy after ${HEALTH_TIMEOUT_S}s; logs in $dir"
            exit 1
        fi
        sleep 0.2
    done
    starting=""
    say "$(etcd --version | head -n 1), $MEMBERS members healthy, data in $dir"
    echo "$endpoints"
}

case "${1:-}" in
    start)
        (($# >= 2 && $# <= 3)) || usage
        start "$2" "${3:-22379}"
        ;;
    stop)
        (($# == 2)) || usage
        [[ -d "$2" ]] || die "no directory $2"
        stop "$2"
        ;;
    *) usage ;;
esac
