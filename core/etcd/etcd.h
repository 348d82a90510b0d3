/*
 * etcd.h: an etcd v3 client in C on a libuv loop: native gRPC (grpc.h) with messages from
 * a trimmed copy of etcd's rpc.proto / kv.proto (proto/etcd/, compiled by protoc-c at
 * build time).
 *
 * It has three parts. Unary calls: Range (prefix, at a revision, paginated), Put (with
 * lease, prev_kv), DeleteRange, Txn (with compare-and-swap on mod_revision as a shortcut),
 * LeaseGrant and LeaseRevoke; every call has a deadline and ends with exactly one callback
 * carrying a status (gRPC code and message): never a hang. Watches: many watches on one
 * Watch stream, resumed by themselves after a lost connection. Leases kept alive on one
 * LeaseKeepAlive stream, granted again by themselves when lost. (mirror.h builds a synced
 * copy of a prefix on the first two.)
 *
 * The client keeps one connection to one of its endpoints; when it is lost, it reconnects
 * to the next endpoint with capped exponential backoff and jitter, and calls made meanwhile
 * fail (from the loop, not inside the call) with UNAVAILABLE. Everything runs on the loop's
 * thread.
 *
 * An endpoint that answers but cannot serve counts as lost too: a member without a leader
 * (it refuses streams with "no leader": every stream carries the `hasleader` metadata), a
 * health probe that fails (a linearizable Range every probe_interval_ms: a member cut off
 * from its quorum times out), a Watch stream that leaves a progress request unanswered, a
 * lease keepalive unanswered for a third of its TTL. The client then drops the connection
 * and moves to the next endpoint, with the same backoff; the backoff resets only once a
 * connection has proved useful (a call or the probe succeeded), not on a TCP connect. The
 * log gets one line per change of state, never one per attempt.
 */
#pragma once

#include "etcd/grpc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct sl_etcd sl_etcd;

typedef struct sl_etcd_config {
    const char *endpoints;      /* "127.0.0.1:2379[,host:port...]", at most 16: IP literals
                                   ("[::1]:2379" too) or host names (resolved on each connect
                                   with getaddrinfo, every address tried in turn) */
    double timeout_ms;          /* deadline of every unary call; 0: 5000 */
    size_t max_message;         /* largest response message; 0: 64 MiB */
    double backoff_min_ms;      /* reconnect backoff; 0: 50 */
    double backoff_max_ms;      /* 0: 2000 */
    double ping_interval_ms;    /* keepalive PING while calls are open; 0: 10000 (etcd
                                   refuses PINGs closer than 5 s apart) */
    double ping_timeout_ms;     /* no answer by then: the peer is dead; 0: 3000 */
    double probe_interval_ms;   /* the health probe while connected; 0: 5000 */
    /*
     * TLS: with tls (or any file below) every endpoint is spoken to over TLS 1.2+ with
     * ALPN h2. The server's certificate must chain to tls_ca_file (PEM; NULL: the system's
     * roots) and carry the name tls_server_name (NULL: the endpoint's host; an IP literal
     * is checked against the certificate's IP addresses). tls_cert_file and tls_key_file
     * (PEM) give a client certificate, for etcd's --client-cert-auth. A file that cannot be
     * read fails sl_etcd_new (SL_EINVAL, the reason in err).
     */
    bool tls;
    const char *tls_ca_file, *tls_cert_file, *tls_key_file, *tls_server_name;
    /*
     * etcd's authentication (`etcdctl auth enable`): with user, each new connection first
     * calls Auth/Authenticate with user and password (calls made meanwhile wait for it), and
     * every call and stream then carries the token etcd gave. A call refused because the
     * token is invalid or has expired (etcd forgets tokens after --auth-token-ttl unused,
     * and on restart) authenticates again and is made once more. A refused password is
     * an endpoint failure (logged, retried with the backoff). NULL: no authentication.
     */
    const char *user, *password;
} sl_etcd_config;

typedef struct sl_etcd_kv {
    const uint8_t *key, *value;
    size_t key_len, value_len;
    int64_t create_revision, mod_revision, version, lease;
} sl_etcd_kv;

/* What a call returns; pointers are valid only during the callback. */
typedef struct sl_etcd_result {
    sl_grpc_status status;      /* code 0: the call succeeded */
    int64_t revision;           /* the store's revision when the call was applied */
    const sl_etcd_kv *kvs;      /* Range: the keys; Put: the previous one (prev_kv);
                                   DeleteRange: the deleted ones (prev_kv); CAS: the current
                                   value when the compare failed */
    size_t nkvs;
    bool more;                  /* Range: more keys past limit */
    int64_t count;              /* Range: keys in the range */
    int64_t deleted;            /* DeleteRange */
    bool succeeded;             /* CAS: the compare held and the put happened */
    int64_t lease_id, ttl;      /* LeaseGrant, LeaseTimeToLive */
    uint32_t alarms;            /* Alarms: bit 1 << SL_ETCD_ALARM_* for each raised */
} sl_etcd_result;

enum { SL_ETCD_ALARM_NOSPACE = 1, SL_ETCD_ALARM_CORRUPT = 2 };

typedef void (*sl_etcd_cb)(void *ud, const sl_etcd_result *r);

/* Creates the client (*out) and starts connecting. Returns 0, SL_EINVAL (a malformed or
 * empty endpoint list) or SL_ENOMEM, with the reason in err. */
int sl_etcd_new(sl_etcd **out, uv_loop_t *loop, const sl_etcd_config *cfg, char *err,
                size_t errlen);
/* Stops every watch and lease (without revoking), ends every call in flight with
 * CANCELLED, and frees the client (memory goes as handles close). NULL is a no-op. */
void sl_etcd_free(sl_etcd *e);
/* Whether the connection to the current endpoint is up. */
bool sl_etcd_connected(const sl_etcd *e);
/* The loop the client runs on. */
uv_loop_t *sl_etcd_loop(const sl_etcd *e);
/* The endpoint in use ("host:port"), and how many times the client (re)connected. */
const char *sl_etcd_endpoint(const sl_etcd *e);
uint64_t sl_etcd_connects(const sl_etcd *e);

/*
 * Health, from what works rather than from the socket. The rules:
 *
 * - DISCONNECTED: no connection, or one that has not answered yet (a TCP connect alone
 *   proves nothing: a paused etcd, or a peer that accepts and closes, connects fine);
 *   reason names the endpoint and why the last one failed ("no leader", ...).
 * - DEGRADED: the connection has answered, but not for a while: no good answer (a call,
 *   the probe, a watch response, a keepalive) within two probe intervals plus a call's
 *   deadline, e.g. etcd paused, or a quorum lost on a member that still accepts the TCP
 *   connection. (The failed probe then moves the client on.)
 * - CONNECTED: the current endpoint answered within that time, with a leader.
 *
 * The figures are for metrics: head_revision is the highest revision seen in any response
 * header (compare a mirror's applied revision for its lag). A mirror adds its own rules
 * (sl_etcd_mirror_health in mirror.h).
 */
typedef enum { SL_ETCD_DISCONNECTED, SL_ETCD_DEGRADED, SL_ETCD_CONNECTED } sl_etcd_state;

typedef struct sl_etcd_health {
    sl_etcd_state state;
    char reason[192];           /* one line, e.g. "127.0.0.1:2379: no leader" */
    const char *endpoint;       /* the endpoint in use or being tried ("host:port") */
    int endpoint_index;         /* its place in the configured list, from 0 */
    uint64_t connects;          /* TCP connections made */
    uint64_t switches;          /* moves to another endpoint */
    uint64_t endpoint_failures; /* endpoints given up as unable to serve (no leader, ...) */
    uint64_t history_resets;    /* etcd's revision went backwards, or its cluster id changed */
    uint64_t watch_reopens;     /* the Watch stream opened again on the same connection */
    uint64_t authentications;   /* tokens obtained (with a user: one a connection, and one
                                   each time etcd refused an expired one) */
    int64_t head_revision;      /* highest response header revision seen */
    uint64_t cluster_id, member_id;  /* from the last response header */
    double quiet_ms;            /* since the last good answer on this connection (-1: none) */
} sl_etcd_health;

/* Fills h (reason and endpoint valid until the next call into the client). */
void sl_etcd_health_get(const sl_etcd *e, sl_etcd_health *h);
/* "CONNECTED", "DEGRADED" or "DISCONNECTED". */
const char *sl_etcd_state_name(sl_etcd_state s);

/*
 * The calls. Each returns 0 (cb, which may be NULL, will be called exactly once, from the
 * loop), or SL_ENOMEM (cb never called). `prefix` true: every key starting with key;
 * revision 0: the latest; limit 0: no limit.
 */
int sl_etcd_range(sl_etcd *e, const char *key, bool prefix, int64_t revision, int64_t limit,
                  sl_etcd_cb cb, void *ud);
/* Range over [key, end) of any bytes (end NULL: the key alone; end "\0" of length 1: every
 * key from key on). */
int sl_etcd_range_ex(sl_etcd *e, const void *key, size_t klen, const void *end, size_t elen,
                     int64_t revision, int64_t limit, sl_etcd_cb cb, void *ud);
/* Puts key = value (under lease, unless 0); with prev_kv the result holds the old value. */
int sl_etcd_put(sl_etcd *e, const char *key, const void *value, size_t len, int64_t lease,
                bool prev_kv, sl_etcd_cb cb, void *ud);
/* Deletes the key (or every key under it); with prev_kv the result holds what went. */
int sl_etcd_delete(sl_etcd *e, const char *key, bool prefix, bool prev_kv, sl_etcd_cb cb,
                   void *ud);
/* A transaction: if every compare holds, the success ops run, else the failure ops, all
 * atomically at one revision. result.succeeded says which; kvs holds what the Range ops
 * returned (in op order) and `deleted` what the deletes removed. */
typedef enum { SL_CMP_VERSION, SL_CMP_CREATE, SL_CMP_MOD, SL_CMP_VALUE } sl_etcd_cmp_target;
typedef enum { SL_CMP_EQUAL, SL_CMP_GREATER, SL_CMP_LESS, SL_CMP_NOT_EQUAL } sl_etcd_cmp_op;

typedef struct sl_etcd_cmp {
    const char *key;
    sl_etcd_cmp_target target;
    sl_etcd_cmp_op op;
    int64_t number;             /* VERSION, CREATE, MOD: the revision or version */
    const void *value;          /* VALUE */
    size_t value_len;
} sl_etcd_cmp;

typedef enum { SL_TXN_RANGE, SL_TXN_PUT, SL_TXN_DELETE } sl_etcd_txn_kind;

typedef struct sl_etcd_txn_op {
    sl_etcd_txn_kind kind;
    const char *key;
    bool prefix;                /* RANGE, DELETE: every key under key */
    const void *value;          /* PUT */
    size_t value_len;
    int64_t lease;              /* PUT */
} sl_etcd_txn_op;

#define SL_ETCD_TXN_MAX 32      /* compares, and ops per branch */

/* Also SL_ELIMIT (cb never called) when a count is over SL_ETCD_TXN_MAX. */
int sl_etcd_txn(sl_etcd *e, const sl_etcd_cmp *cmps, size_t ncmp, const sl_etcd_txn_op *ok,
                size_t nok, const sl_etcd_txn_op *fail, size_t nfail, sl_etcd_cb cb, void *ud);

/* Puts key = value only if its mod_revision is `expect` (0: the key must not exist);
 * otherwise result.succeeded is false and kvs holds the key as it is now (a txn whose
 * failure branch reads the key). */
int sl_etcd_cas(sl_etcd *e, const char *key, const void *value, size_t len, int64_t expect,
                sl_etcd_cb cb, void *ud);
/* Grants a lease of ttl_s seconds (result.lease_id, result.ttl); nothing keeps it alive. */
int sl_etcd_lease_grant(sl_etcd *e, int64_t ttl_s, sl_etcd_cb cb, void *ud);
/* What is left of any lease's TTL (result.ttl, seconds; -1 once it expired), e.g. another
 * node's. */
int sl_etcd_lease_ttl(sl_etcd *e, int64_t id, sl_etcd_cb cb, void *ud);
/* The alarms raised on any member (result.alarms): NOSPACE when the backend quota is used up
 * (etcd refuses writes until the operator compacts, defragments and disarms). */
int sl_etcd_alarms(sl_etcd *e, sl_etcd_cb cb, void *ud);
/* Revokes a lease: every key under it goes at once. */
int sl_etcd_lease_revoke(sl_etcd *e, int64_t id, sl_etcd_cb cb, void *ud);

/* ---- watches -------------------------------------------------------------------------------- */

typedef struct sl_etcd_event {
    bool deleted;               /* a delete (else a put) */
    sl_etcd_kv kv;              /* for a delete: the key, and mod_revision = the deletion's */
    bool has_prev;              /* with sl_etcd_watch_prev_kv: the key before the event */
    sl_etcd_kv prev;
} sl_etcd_event;

typedef struct sl_etcd_watch sl_etcd_watch;

typedef struct sl_etcd_watch_handlers {
    /* Events of whole revisions, in order (a fragmented revision comes out whole). */
    void (*on_events)(void *ud, const sl_etcd_event *ev, size_t n);
    /* A periodic progress notification: nothing at or below `revision` will come later. */
    void (*on_progress)(void *ud, int64_t revision);
    /* The start revision was compacted away: the watch has stopped; resync and restart. */
    void (*on_compacted)(void *ud, int64_t compact_revision);
    /* etcd's history is not the one the watch followed (its revision went backwards: a
     * restored or recreated cluster; or another cluster id): the watch has stopped; read
     * everything again and restart it after that read (revision: the new head). NULL:
     * on_compacted is called instead, with compact_revision 0. */
    void (*on_reset)(void *ud, int64_t revision);
} sl_etcd_watch_handlers;

/*
 * Watches key (or every key under it, with prefix) from start_revision (0: from now), with
 * progress notifications. Many watches share one Watch stream. Across a lost connection the
 * watch resumes by itself from the last revision it delivered (or was told of by a
 * progress notification) + 1. NULL on OOM. Stop it with sl_etcd_watch_stop.
 */
sl_etcd_watch *sl_etcd_watch_start(sl_etcd *e, const char *key, bool prefix,
                                   int64_t start_revision, const sl_etcd_watch_handlers *h,
                                   void *ud);
/* Also deliver each event's previous key-value (event.prev, has_prev) from now on. */
void sl_etcd_watch_prev_kv(sl_etcd_watch *w, bool on);
/* Restarts a watch stopped by compaction (on_compacted) from another revision: after what
 * a fresh Range read, that Range's revision + 1. */
void sl_etcd_watch_restart(sl_etcd_watch *w, int64_t start_revision);
/* Stops and frees the watch; no callback after this returns. Also from inside any of the
 * watch's own callbacks (its memory then goes when that callback returns). */
void sl_etcd_watch_stop(sl_etcd_watch *w);
/* The revision it will resume from. */
int64_t sl_etcd_watch_next(const sl_etcd_watch *w);
/* Watch responses that came as fragments of a larger revision (put back together). */
uint64_t sl_etcd_watch_fragments(const sl_etcd_watch *w);
/* Whether etcd has created the watch on the current Watch stream (it is receiving). */
bool sl_etcd_watch_live(const sl_etcd_watch *w);
/* Milliseconds since the watch last heard from etcd (created, events, a progress
 * notification); -1 if never. */
double sl_etcd_watch_quiet_ms(const sl_etcd_watch *w);

/* ---- leases kept alive -------------------------------------------------------------------- */

typedef struct sl_etcd_lease sl_etcd_lease;

/*
 * Told when the lease is granted (alive true, with its id: put your keys under it) and when
 * it is lost (alive false: etcd expired or forgot it, e.g. after a pause past the TTL or a
 * restart without its data); after a loss a new lease is granted by itself and the
 * callback comes again with alive true and the new id: re-register the keys then.
 */
typedef void (*sl_etcd_lease_fn)(void *ud, sl_etcd_lease *l, int64_t id, bool alive);

/* Grants a lease of ttl_s seconds and keeps it alive (a keepalive every TTL/3 on one
 * LeaseKeepAlive stream shared by the client's leases). NULL on OOM. */
sl_etcd_lease *sl_etcd_lease_keep(sl_etcd *e, int64_t ttl_s, sl_etcd_lease_fn fn, void *ud);
/* Stops keeping it and frees it (no callback after this returns); with revoke, also revokes
 * it (its keys go at once), without waiting for the answer: a shutdown that frees the
 * client next would cancel that revoke, so it should call sl_etcd_lease_revoke with a
 * callback instead and free the client from there. */
void sl_etcd_lease_release(sl_etcd_lease *l, bool revoke);
/* The current lease id (0 while none is granted), and how many times it was lost. */
int64_t sl_etcd_lease_id(const sl_etcd_lease *l);
uint64_t sl_etcd_lease_losses(const sl_etcd_lease *l);
/* What is left of its TTL, in ms, by etcd's last answer (the TTL it gave, less the time
 * since): 0 while none is granted, or once the time has run out. */
int64_t sl_etcd_lease_ttl_left_ms(const sl_etcd_lease *l);
/* Until when (sl_now_ms, CLOCK_MONOTONIC) the lease surely lives: the TTL etcd gave, from
 * when the keepalive (or grant) it answered was SENT, so that it never overestimates what
 * etcd counts; 0 while none is granted. A holder that acts only before this moment (less
 * a margin for clock rate differences) never acts after etcd could have expired it. */
double sl_etcd_lease_valid_until_ms(const sl_etcd_lease *l);

/* The end of the range of every key starting with prefix (etcd's "prefix + 1"); writes
 * at most len bytes to out and returns the length (0 for "every key": prefix all 0xff). */
size_t sl_etcd_prefix_end(const char *prefix, size_t plen, char *out, size_t len);
