/*
 * etcd_impl.h: the etcd client's state, shared by its files and by nothing else (the
 * sl__etcd_* names here never leave core/etcd). One file a concept:
 *
 *   etcd.c   the connection: new and free, endpoints, reconnect with backoff, streams
 *   calls.c  unary calls: KV, Txn, LeaseGrant and LeaseRevoke requests and their results
 *   watch.c  watches, and the Watch stream they share
 *   lease.c  leases kept alive, and the LeaseKeepAlive stream they share
 *
 * Requests and responses are protobuf-c messages generated from proto/etcd/ (kv.pb-c.h and
 * rpc.pb-c.h, in the build tree: only this library has them on its include path).
 */
#pragma once

#include "etcd/etcd.h"

#include "kv.pb-c.h"
#include "rpc.pb-c.h"

#define MAX_ENDPOINTS 16

struct sl_etcd {
    uv_loop_t *loop;
    sl_etcd_config cfg;
    char hosts[MAX_ENDPOINTS][80];
    int ports[MAX_ENDPOINTS];
    int nendpoints, current;
    char endpoint[96];          /* "host:port" of the current endpoint */
    sl_grpc *g;                 /* NULL between a loss and the next connect */
    uv_timer_t retry;           /* the reconnect backoff; its close frees the struct */
    double backoff;             /* the last backoff in ms; 0 after a success */
    uint64_t connects, rng;
    bool freed;
    /* Watches: one Watch stream for all of them. */
    struct sl_etcd_watch *watches;
    sl_grpc_call *wstream;
    int64_t next_watch_id;
    /* Leases kept alive: one LeaseKeepAlive stream for all of them. */
    struct sl_etcd_lease *leases;
    sl_grpc_call *kstream;
};

/* ---- messages ------------------------------------------------------------------------------ */

/* A bytes field over n bytes at p, not copied: p must live until the message is packed. */
static inline ProtobufCBinaryData sl__etcd_bytes(const void *p, size_t n)
{
    return (ProtobufCBinaryData){n, (uint8_t *)p};
}

/* Fills out from k; key and value point into k (valid as long as the unpacked message). */
static inline void sl__etcd_kv_of(const Mvccpb__KeyValue *k, sl_etcd_kv *out)
{
    *out = (sl_etcd_kv){
        .key = k->key.data, .key_len = k->key.len, .value = k->value.data,
        .value_len = k->value.len, .create_revision = k->create_revision,
        .mod_revision = k->mod_revision, .version = k->version, .lease = k->lease,
    };
}

/* The store's revision a response was read or written at (0 if it has no header). */
static inline int64_t sl__etcd_header_rev(const Etcdserverpb__ResponseHeader *h)
{
    return h ? h->revision : 0;
}

/* ---- streams (etcd.c) ---------------------------------------------------------------------- */

/* Starts a long-lived stream on the current connection, with e as the handlers' ud; NULL
 * when the connection is gone or out of memory. */
sl_grpc_call *sl__etcd_stream_open(sl_etcd *e, const char *path, const sl_grpc_handlers *h);
/* Cancels the stream *s, if open, and sets *s to NULL (before its on_close runs). */
void sl__etcd_stream_cancel(sl_grpc_call **s);

/* ---- watches (watch.c) --------------------------------------------------------------------- */

/* Opens the Watch stream (if there is none) and creates every active watch on it; the
 * connection calls it each time it comes up. */
void sl__etcd_watch_stream_open(sl_etcd *e);
