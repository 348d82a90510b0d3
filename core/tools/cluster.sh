#!/usr/bin/env bash
# A local Sightline cluster to try (README "Running a cluster"): a 3-member etcd and 3
# sightline nodes on loopback, 6 spaces defined in etcd, until Ctrl-C. `make cluster` runs it.
#   core/tools/cluster.sh [BUILD_DIR]
# Ports: etcd clients 23791-23793 (peers 23801-23803), nodes 7101-7103; admin sockets
# BUILD_DIR/n1.sock .. n3.sock; everything else in a temporary folder, removed at the end.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/sightline-cluster-XXXXXX)
pids=()
stop() {
    trap - EXIT INT TERM
    echo; echo "stopping the nodes and etcd"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap stop EXIT INT TERM

initial="m1=http://127.0.0.1:23801,m2=http://127.0.0.1:23802,m3=http://127.0.0.1:23803"
for i in 1 2 3; do
    etcd --name "m$i" --data-dir "$work/etcd$i" \
        --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
        --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
        --initial-cluster "$initial" --initial-cluster-token "sightline-local-$$" \
        --logger zap --log-level error > "$work/etcd$i.log" 2>&1 &
    pids+=($!)
done
endpoints=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793
export ETCDCTL_API=3
for _ in $(seq 100); do
    etcdctl --endpoints "$endpoints" endpoint health > /dev/null 2>&1 && break
    sleep 0.1
done
hash=804a650955269821      # schema 1.0 (README "The server on etcd")
for s in forest desert tundra swamp canyon harbour; do
    etcdctl --endpoints "$endpoints" put "/sightline/local/v1/spaces/$s" \
        "{\"version\": \"1.0.0\", \"schema_hash\": \"$hash\", \"data\": {\"width\": 4096, \"height\": 4096}}" > /dev/null
done
# The secret nodes show each other to hand spaces over (README "Moving a live space").
SIGHTLINE_CLUSTER_SECRET=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export SIGHTLINE_CLUSTER_SECRET
for i in 1 2 3; do
    "$root/$build/sightline" --scripts "$root/scripts/default" --listen "127.0.0.1:710$i" \
        --admin "$root/$build/n$i.sock" --etcd "$endpoints" --cluster local --node-id "n$i" \
        --ownership-log "$work/n$i.ownership" > /dev/null 2> "$work/n$i.log" &
    pids+=($!)
done
sleep 1.5
"$root/$build/sightctl" --admin "$root/$build/n1.sock" cluster
cat <<TEXT

A 3-node Sightline cluster on a 3-member etcd is running (Ctrl-C stops it all):
  nodes      127.0.0.1:7101, 7102, 7103 (connect a client to any: PROTOCOL.md 2.4)
  look       $build/sightctl --admin $build/n1.sock cluster
  spaces     $build/sightctl --admin $build/n2.sock spaces
  logs       $work/n1.log .. n3.log (ownership: n1.ownership ..)
  move       $build/sightctl --admin $build/n1.sock space move forest n2   (or: drain n1)
  failover   kill -9 one node (pids: ${pids[*]:3}), then ask another node: cluster
  a space    ETCDCTL_API=3 etcdctl --endpoints $endpoints put /sightline/local/v1/spaces/NAME '{"version": "1.0.0", "schema_hash": "$hash", "data": {"width": 100, "height": 100}}'
TEXT
wait
