# Shared by the W6 bench scripts (sourced): one etcd on loopback, and the cluster secret.
# w6_etcd WORK PORT: starts etcd with its data in WORK, client port PORT (peer PORT + 1),
# waits until it answers; its pid is appended to the array `pids`.
w6_etcd() {
    local work=$1 port=$2
    etcd --name m --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$port" \
        --advertise-client-urls "http://127.0.0.1:$port" \
        --listen-peer-urls "http://127.0.0.1:$((port + 1))" \
        --logger zap --log-level error > "$work/etcd.log" 2>&1 &
    pids+=($!)
    export ETCDCTL_API=3
    for _ in $(seq 100); do
        etcdctl --endpoints "127.0.0.1:$port" endpoint health > /dev/null 2>&1 && break
        sleep 0.1
    done
    SIGHTLINE_CLUSTER_SECRET=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    export SIGHTLINE_CLUSTER_SECRET
}

# w6_nodes ROOT BUILD WORK EP CLUSTER PORTBASE COUNT SPACE...: defines the SPACEs (4096 x
# 4096, schema 1.0) in etcd at EP under CLUSTER, then starts COUNT nodes n1.. listening on
# 127.0.0.1:PORTBASE+i, admin sockets WORK/ni.sock, logs WORK/ni.log; their pids are
# appended to `pids` (so: not in a pipeline); waits 2 s for them to register.
w6_nodes() {
    local root=$1 build=$2 work=$3 ep=$4 cluster=$5 base=$6 count=$7 s i
    shift 7
    for s in "$@"; do
        etcdctl --endpoints "$ep" put "/sightline/$cluster/v1/spaces/$s" \
            '{"version": "1.0.0", "schema_hash": "804a650955269821", "data": {"width": 4096, "height": 4096}}' > /dev/null
    done
    for i in $(seq "$count"); do
        "$root/$build/sightline" --scripts "$root/scripts/default" --etcd "$ep" \
            --cluster "$cluster" --node-id "n$i" --listen "127.0.0.1:$((base + i))" \
            --admin "$work/n$i.sock" --max-frames-per-s 20000 > /dev/null 2> "$work/n$i.log" &
        pids+=($!)
    done
    sleep 2
}
