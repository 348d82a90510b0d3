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
#define MAX_ADDRS 8             /* addresses kept from resolving one endpoint's host */

struct sl_etcd {
    uv_loop_t *loop;
    sl_etcd_config cfg;         /* its strings point into the client's own copies */
    void *tls;                  /* the SSL_CTX, or NULL */
    char *tls_name;
    char *user, *password;      /* etcd authentication, or NULL */
    char *token;                /* the current connection's token (NULL: none yet) */
    bool authing;               /* an Authenticate call is in flight */
    struct op *waiting;         /* unary calls waiting for the token (calls.c) */
    uint64_t auths;             /* Authenticate calls that succeeded */
    char hosts[MAX_ENDPOINTS][80];
    int ports[MAX_ENDPOINTS];
    int nendpoints, current;
    char endpoint[96];          /* "host:port" of the current endpoint */
    sl_grpc *g;                 /* NULL between a loss and the next connect */
    uv_timer_t retry;           /* the reconnect backoff */
    uv_timer_t probe;           /* the health probe, every probe_interval_ms */
    uv_getaddrinfo_t resolver;  /* resolving the current endpoint's host name */
    bool resolving;
    char addrs[MAX_ADDRS][64];  /* the current endpoint's addresses, as IP literals */
    int naddrs, addr_at;        /* ... and the one being tried */
    int refs;                   /* the timers, a resolution, a probe in flight: the last
                                   one to end frees the struct (after sl_etcd_free) */
    double backoff;             /* the last backoff in ms; 0 after a useful connection */
    uint64_t connects, rng;
    bool freed;
    /* Health (see sl_etcd_health in etcd.h). */
    bool useful;                /* the current connection answered (a call, the probe) */
    bool probing;               /* a probe Range is in flight */
    uint64_t last_ok;           /* loop time of the last good answer on this connection */
    uint64_t switches, failures, resets, watch_reopens;
    int64_t head_rev;           /* highest revision seen in a response header */
    uint64_t cluster_id, member_id, raft_term;
    char reason[160];           /* why the last connection failed (or "") */
    char last_log[200];         /* the last line logged: the same line is not repeated */
    uint64_t log_repeats;
    /* Watches: one Watch stream for all of them. */
    struct sl_etcd_watch *watches;
    sl_grpc_call *wstream;
    int64_t next_watch_id;
    uv_timer_t wretry;          /* reopens a Watch stream that failed on a good connection */
    double wbackoff;
    bool wprobe;                /* the probe watch's create is out, not answered */
    uint64_t wprogress_sent;    /* loop time a progress request went unanswered since (0) */
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

/* ---- the connection's health (etcd.c) ------------------------------------------------------ */

/* The current connection answered usefully: it resets the backoff and proves the endpoint. */
void sl__etcd_ok(sl_etcd *e);
/* What the client had seen of etcd's history when it sent a linearizable call. */
typedef struct sl__etcd_seen {
    int64_t rev;
    uint64_t term;
} sl__etcd_seen;
sl__etcd_seen sl__etcd_seen_now(const sl_etcd *e);
/* A response header: tracks the head revision and the cluster. A linearizable answer
 * (Range, Put, DeleteRange, Txn: sent pass what was seen when the call was sent) below the
 * revision or raft term seen before it was sent, or another cluster id, means etcd's
 * history is not the one followed so far: every watch is told (watch.c). (Compared with
 * what was seen at send time, not with the head now: a watch response on another stream
 * may legitimately carry a newer revision than a call answered a moment later.) */
void sl__etcd_header(sl_etcd *e, const Etcdserverpb__ResponseHeader *h,
                     const sl__etcd_seen *sent);
/* The endpoint cannot serve (no leader, a stream that makes no progress): the connection
 * is dropped and the client moves to the next endpoint after the backoff. */
void sl__etcd_endpoint_failed(sl_etcd *e, const char *why);
/* Whether a status is etcd's "no leader". */
bool sl__etcd_no_leader(const sl_grpc_status *st);
/* Logs "sightline: etcd " + the line on stderr, unless it is the line logged last. */
void sl__etcd_log(sl_etcd *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- authentication (calls.c) -------------------------------------------------------------- */

/* Whether calls and streams can go now: connected and, with a user, holding a token. */
bool sl__etcd_ready(const sl_etcd *e);
/* Starts an Authenticate call, unless one is in flight (with a user configured). */
void sl__etcd_auth_start(sl_etcd *e);
/* Whether a status says the token is missing, invalid or expired. */
bool sl__etcd_auth_error(const sl_grpc_status *st);
/* The token used by a call that etcd refused: it is dropped (if still current) and a new
 * one asked for. */
void sl__etcd_auth_refused(sl_etcd *e);
/* The connection is gone: the token goes, and the calls waiting for one fail. */
void sl__etcd_auth_conn_lost(sl_etcd *e);
/* etcd.c, once a token came: what a new connection does once ready (probes, streams). */
void sl__etcd_became_ready(sl_etcd *e);

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
/* Opens the Watch stream if needed and creates a watch of our own on it, answered at once
 * by a member with a leader (and refused with "no leader" by one without): the check a new
 * connection gets, in a round trip. */
void sl__etcd_watch_probe(sl_etcd *e);
/* Asks for progress on the Watch stream, if open: the answer proves the stream alive (it
 * moves no resume point: etcd 3.4 before 3.4.25 can answer ahead of undelivered events).
 * Returns whether a request went. */
bool sl__etcd_watch_ask_progress(sl_etcd *e);
/* etcd's history changed (revision backwards, another cluster): every watch stops and its
 * owner is told (on_reset). */
void sl__etcd_watch_reset_all(sl_etcd *e, int64_t revision);
/* The connection is gone: the Watch stream's retry timer stops. */
void sl__etcd_watch_conn_lost(sl_etcd *e);
