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
