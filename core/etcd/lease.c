/*
 * lease.c: the etcd client's leases kept alive (see etcd.h), granted and revoked with the
 * unary calls (calls.c) and kept alive on one LeaseKeepAlive stream of the client's
 * connection (etcd.c).
 *
 * Each lease has a timer that ticks every TTL/3 and, on each tick, sends one keepalive on
 * the LeaseKeepAlive stream that all leases share (opening it when needed; a lost stream
 * is opened again by the next tick). etcd answers each with the remaining TTL.
 *
 * A keepalive left unanswered for a whole tick on a live connection means the member cannot
 * renew leases (cut off from its leader): an endpoint failure, so that the client moves to
 * another member while the lease still has two thirds of its TTL (etcd.c).
 *
 * A lease is lost when etcd answers with a TTL <= 0 (it has expired or been forgotten), or
 * when no good answer came for a whole TTL (a pause, a partition: either etcd has let it go
 * or we cannot tell, which must be treated the same). The owner is told (alive false, so
 * that it stops trusting the keys it put under it), and a new lease is granted at once; the
 * owner is told again with the new id and puts its keys again. A grant that fails is tried
 * again on the next tick.
 *
 * A lease's memory is held by its timer handle and by a grant in flight (refs): release
 * closes the timer, and a grant that answers after the release revokes what it got, so no
 * lease is left to expire on its own.
 */
#include "etcd/etcd_impl.h"

#include "base/log.h"

#include "base/clock.h"

#include <stdio.h>
#include <stdlib.h>

struct sl_etcd_lease {
    uv_timer_t timer;           /* first: ticks every TTL/3; freed in its close callback */
    sl_etcd *e;
    struct sl_etcd_lease *next;
    int64_t ttl, id;            /* id 0: none granted (yet, or since a loss) */
    uint64_t last_ok;           /* loop time of the last good keepalive (or the grant) */
    int64_t last_ttl;           /* the TTL etcd gave then, in seconds */
    uint64_t sent;              /* loop time of a keepalive not answered yet (0: none) */
    double sent_ms;             /* sl_now_ms of the oldest keepalive not answered (0: none) */
    double grant_sent_ms;       /* sl_now_ms when the grant in flight was asked for */
    double valid_until_ms;      /* the lease surely lives until then (sl_now_ms; 0: none) */
    bool granting, released;
    bool grant_failing;         /* the last grant failed (logged once until one succeeds) */
    uint64_t losses;
    int refs;                   /* the timer handle, and a grant in flight */
    sl_etcd_lease_fn fn;
    void *ud;
};

static void lease_grant(sl_etcd_lease *l);

/* Drops one of the lease's references (its timer, a grant in flight); the last frees it. */
static void lease_unref(sl_etcd_lease *l)
{
    if (--l->refs == 0)
        free(l);
}

/* The lease is gone: the owner hears of it, and (unless released) a new one is asked for. */
static void lease_lost(sl_etcd_lease *l, const char *why)
{
    if (!l->id)
        return;
    sl_log("etcd lease %lld lost: %s", (long long)l->id, why);
    int64_t id = l->id;
    l->id = 0;
    l->valid_until_ms = 0;
    l->losses++;
    if (l->fn)
        l->fn(l->ud, l, id, false);
    if (!l->released)
        lease_grant(l);
}

static sl_etcd_lease *lease_by_id(sl_etcd *e, int64_t id)
{
    for (sl_etcd_lease *l = e->leases; l; l = l->next)
        if (l->id == id)
            return l;
    return NULL;
}

/* A keepalive's answer: TTL > 0 renews the lease's last_ok, TTL <= 0 means it is gone. */
static void kstream_message(void *ud, sl_grpc_call *c, const uint8_t *msg, size_t len)
{
    (void)c;
    sl_etcd *e = ud;
    Etcdserverpb__LeaseKeepAliveResponse *m =
        etcdserverpb__lease_keep_alive_response__unpack(NULL, len, msg);
    if (!m)
        return;
    sl__etcd_ok(e);
    sl__etcd_header(e, m->header, NULL);
    sl_etcd_lease *l = lease_by_id(e, m->id);
    if (l) {
        l->sent = 0;
        if (m->ttl <= 0) {
            lease_lost(l, "etcd says it has expired");
        } else {
            l->last_ok = uv_now(e->loop);
            l->last_ttl = m->ttl;
            /* etcd renewed it no earlier than the keepalive was sent: it lives at least the
             * TTL from then. An answer whose keepalive's time was forgotten (one given up
             * on before a pause, read on waking) proves nothing about how long. */
            if (l->sent_ms > 0)
                l->valid_until_ms = l->sent_ms + m->ttl * 1e3;
        }
        l->sent_ms = 0;
    }
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* The stream ended: reopened by the next keepalive, unless the member has no leader (then
 * the client moves to another endpoint). */
static void kstream_close(void *ud, sl_grpc_call *c, const sl_grpc_status *st)
{
    sl_etcd *e = ud;
    if (c != e->kstream)
        return;
    e->kstream = NULL;
    for (sl_etcd_lease *l = e->leases; l; l = l->next) {
        l->sent = 0;
        l->sent_ms = 0;
    }
    if (!e->freed && sl__etcd_no_leader(st))
        sl__etcd_endpoint_failed(e, "no leader");
    else if (!e->freed && e->user && sl__etcd_auth_error(st))
        sl__etcd_auth_refused(e);
}

/* Sends one keepalive for l, when connected (a keepalive missed while not connected
 * counts toward the loss, which is the point). */
static void lease_send(sl_etcd_lease *l)
{
    sl_etcd *e = l->e;
    if (!e->kstream && sl_etcd_connected(e)) {
        sl_grpc_handlers h = {kstream_message, kstream_close};
        e->kstream = sl__etcd_stream_open(e, "/etcdserverpb.Lease/LeaseKeepAlive", &h);
    }
    if (!e->kstream)
        return;
    Etcdserverpb__LeaseKeepAliveRequest req = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
    req.id = l->id;
    uint8_t b[32];
    size_t len = protobuf_c_message_pack(&req.base, b);
    if (sl_grpc_send(e->kstream, b, len, false) == 0 && !l->sent) {
        l->sent = uv_now(e->loop);
        l->sent_ms = sl_now_ms();
    }
}

/* Every TTL/3: grant if there is no lease, declare it lost if it went a whole TTL without
 * a good answer, else send a keepalive. At three a TTL, one unanswered keepalive is not
 * yet a loss. */
static void on_lease_timer(uv_timer_t *t)
{
    sl_etcd_lease *l = (sl_etcd_lease *)t;
    if (l->released || l->granting)
        return;
    if (!l->id) {
        lease_grant(l);     /* a grant failed earlier: try again */
        return;
    }
    if (uv_now(l->e->loop) - l->last_ok >= (uint64_t)l->ttl * 1000) {
        lease_lost(l, "no keepalive answer within its TTL");
        return;
    }
    if (l->sent && sl_etcd_connected(l->e)) {
        /* The last keepalive went a whole tick unanswered on a live connection: the member
         * cannot renew leases (cut off from its leader). Another endpoint still can, with
         * two thirds of the TTL left. */
        l->sent = 0;
        l->sent_ms = 0;
        sl__etcd_endpoint_failed(l->e, "a lease keepalive went unanswered");
        return;
    }
    lease_send(l);
}

/* A grant's answer: the lease's new id, unless it was released meanwhile. */
static void on_granted(void *ud, const sl_etcd_result *r)
{
    sl_etcd_lease *l = ud;
    l->granting = false;
    if (l->released) {
        /* Released while the grant was in flight: give it back (unless the client is
         * going away too: its calls are being canceled). */
        if (r->status.code == 0 && r->lease_id && !l->e->freed)
            sl_etcd_lease_revoke(l->e, r->lease_id, NULL, NULL);
    } else if (r->status.code != 0) {
        if (!l->grant_failing)
            sl_log("etcd lease grant failed: %d %s (retrying)",
                   r->status.code, r->status.message);      /* the timer retries */
        l->grant_failing = true;
    } else {
        l->grant_failing = false;
        l->id = r->lease_id;
        l->last_ok = uv_now(l->e->loop);
        l->last_ttl = r->ttl;
        l->sent = 0;
        l->sent_ms = 0;
        l->valid_until_ms = l->grant_sent_ms + r->ttl * 1e3;
        if (l->fn)
            l->fn(l->ud, l, l->id, true);
    }
    lease_unref(l);
}

/* Asks for a new lease; the grant in flight holds a reference to l (dropped in
 * on_granted), so a release meanwhile cannot free l under it. */
static void lease_grant(sl_etcd_lease *l)
{
    l->granting = true;
    l->grant_sent_ms = sl_now_ms();
    l->refs++;
    if (sl_etcd_lease_grant(l->e, l->ttl, on_granted, l)) {
        l->granting = false;
        l->refs--;
    }
}

sl_etcd_lease *sl_etcd_lease_keep(sl_etcd *e, int64_t ttl_s, sl_etcd_lease_fn fn, void *ud)
{
    sl_etcd_lease *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->e = e;
    l->ttl = ttl_s > 0 ? ttl_s : 1;
    l->fn = fn;
    l->ud = ud;
    uv_timer_init(e->loop, &l->timer);
    l->refs = 1;
    uint64_t every = (uint64_t)l->ttl * 1000 / 3;
    uv_timer_start(&l->timer, on_lease_timer, every ? every : 1, every ? every : 1);
    l->next = e->leases;
    e->leases = l;
    lease_grant(l);
    return l;
}

static void lease_closed(uv_handle_t *h)
{
    lease_unref((sl_etcd_lease *)h);
}

/* The revoke is sent without a callback: to wait for it (a clean shutdown must, since
 * freeing the client cancels it), revoke with sl_etcd_lease_revoke instead. */
void sl_etcd_lease_release(sl_etcd_lease *l, bool revoke)
{
    sl_etcd *e = l->e;
    l->released = true;
    if (revoke && l->id)
        sl_etcd_lease_revoke(e, l->id, NULL, NULL);
    sl_etcd_lease **p = &e->leases;
    while (*p && *p != l)
        p = &(*p)->next;
    if (*p)
        *p = l->next;
    if (!e->leases)
        sl__etcd_stream_cancel(&e->kstream);
    uv_close((uv_handle_t *)&l->timer, lease_closed);
}

int64_t sl_etcd_lease_id(const sl_etcd_lease *l)
{
    return l->id;
}

uint64_t sl_etcd_lease_losses(const sl_etcd_lease *l)
{
    return l->losses;
}

double sl_etcd_lease_valid_until_ms(const sl_etcd_lease *l)
{
    return l->id ? l->valid_until_ms : 0;
}

int64_t sl_etcd_lease_ttl_left_ms(const sl_etcd_lease *l)
{
    if (!l->id)
        return 0;
    int64_t left = l->last_ttl * 1000 - (int64_t)(uv_now(l->e->loop) - l->last_ok);
    return left > 0 ? left : 0;
}
