#!/usr/bin/env bash
# W6, a drain (bench/README "W6: planned moves"): 3 nodes of one etcd, 12 spaces of N / 12
# entities each (W1 layout), 4 clients through the cluster client; after 8 s node n2 is
# drained (its spaces move to n1 and n3, one at a time). Runs the same load twice, without
# and with the drain, and prints what the load generator saw in each (moves and events a
# second, errors, ok latency) and the moves' freezes.
#   bench/w6_drain.sh [BUILD_DIR] [N] [SECONDS]
set -euo pipefail
build=${1:-build}
n=${2:-24000}
seconds=${3:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/w6_lib.sh"

run() {     # $1: drain or "" -> prints the loadgen's report and the freezes
    local work pids=() ep=127.0.0.1:24579
    work=$(mktemp -d /tmp/sightline-w6drain-XXXXXX)
    w6_etcd "$work" 24579
    w6_nodes "$root" "$build" "$work" "$ep" w6d 25300 3 $(seq -f 'w6-%g' 0 11)
    "$root/$build/sightline-loadgen" --node 127.0.0.1:25301 --node 127.0.0.1:25302 \
        --node 127.0.0.1:25303 --spaces 12 --clients 4 --entities "$n" --seconds "$seconds" \
        --frames-per-s 15000 > "$work/lg.out" 2>&1 &
    local lg=$!
    if [ -n "$1" ]; then
        sleep 8
        "$root/$build/sightctl" --admin "$work/n1.sock" drain n2 > /dev/null
    fi
    wait "$lg" || true
    sed 's/^/    /' "$work/lg.out"
    if [ -n "$1" ]; then
        echo "    spaces of n2 after the drain: $("$root/$build/sightctl" --admin "$work/n1.sock" cluster | awk '$1 == "space" && $4 == "n2"' | wc -l)"
        echo "    freezes (ms): $(grep -h "built from node" "$work"/n*.log | sed 's/.*frozen \([0-9.]*\) ms.*/\1/' | sort -n | tr '\n' ' ')"
    fi
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}

echo "W6 drain: 3 nodes, 12 spaces, N=$n, 4 clients, $seconds s, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs"
echo "  without a drain:"
run ""
echo "  with n2 drained at 8 s:"
run drain
