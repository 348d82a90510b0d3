#!/usr/bin/env bash
# W6, planned moves (bench/README "W6: planned moves"): one space of N entities (W1 layout:
# 4096 x 4096, radius 50, 20 % moving each 50 ms tick, driven by sightline-loadgen through
# the cluster client) on 2 nodes of one etcd; the space is moved back and forth MOVES times,
# 2 s apart, under load. Prints each move's freeze (from the source's freeze to the target
# serving, as the target measures it), the source's snapshot bytes and send time, and what
# the load generator saw (moves answered, errors, re-adds: a planned move re-adds nothing).
#   bench/w6_move.sh [BUILD_DIR] [N] [MOVES]
set -euo pipefail
build=${1:-build}
n=${2:-50000}
moves=${3:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/sightline-w6move-XXXXXX)
pids=()
stop() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap stop EXIT INT TERM
ep=127.0.0.1:24479
. "$root/bench/w6_lib.sh"
w6_etcd "$work" 24479
w6_nodes "$root" "$build" "$work" "$ep" w6m 25200 2 w6-0
seconds=$((8 + 2 * moves + 4))
"$root/$build/sightline-loadgen" --node 127.0.0.1:25201 --node 127.0.0.1:25202 --spaces 1 \
    --clients 1 --entities "$n" --seconds "$seconds" --frames-per-s 15000 ${LGFLAGS:-} > "$work/lg.out" 2>&1 &
lg=$!
sleep 8
for k in $(seq "$moves"); do
    owner=$("$root/$build/sightctl" --admin "$work/n1.sock" cluster | awk '$1 == "space" && $2 == "w6-0" {print $4}')
    to=n1; [ "$owner" = n1 ] && to=n2
    "$root/$build/sightctl" --admin "$work/n1.sock" space move w6-0 "$to" > /dev/null
    sleep 2
done
wait "$lg" || true
echo "W6 planned moves: N=$n, $moves moves, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs"
grep -h "built from node" "$work"/n*.log | sed 's/.*snapshot (/  target: (/' || true
grep -h "handed over" "$work"/n*.log | sed 's/.*handed over/  source: handed over/' || true
grep -h "failed\|expired" "$work"/n*.log | sed "s/^/  /" || true
freezes=$(grep -h "built from node" "$work"/n*.log | sed 's/.*frozen \([0-9.]*\) ms.*/\1/' | sort -n | tr '\n' ' ')
echo "  freeze (ms, sorted): $freezes"
sed 's/^/  loadgen: /' "$work/lg.out"
