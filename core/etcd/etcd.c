/*
 * etcd.c: the etcd v3 client's connection (see etcd.h): one gRPC connection (grpc.c) to one
 * endpoint at a time, made in sl_etcd_new, remade after a loss, closed in sl_etcd_free; and
 * the long-lived streams opened on it. The calls, watches and leases that use the connection
 * have their own files (listed in etcd_impl.h).
 *
 * The connection comes and goes. When it is lost, every call in flight ends with
 * UNAVAILABLE and the client connects to the next endpoint after a capped, jittered
 * backoff. The two long-lived streams come back by themselves: on reconnection the Watch
 * stream is opened again and every watch is created again from its resume point (see
 * watch.c); the LeaseKeepAlive stream is opened again by the next keepalive (see lease.c).
 */
#include "etcd/etcd_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- connection ---------------------------------------------------------------------------- */

static void connect_next(sl_etcd *e);

static void on_retry(uv_timer_t *t)
{
    connect_next(t->data);
}

/*
 * The next reconnect delay: doubles from backoff_min up to backoff_max, times a jitter of
 * +-20 % (so that many servers that lost etcd together do not come back in step).
 */
static uint64_t next_backoff(sl_etcd *e)
{
    e->backoff = e->backoff ? e->backoff * 2 : e->cfg.backoff_min_ms;
    if (e->backoff > e->cfg.backoff_max_ms)
        e->backoff = e->cfg.backoff_max_ms;
    e->rng = e->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    double jitter = 0.8 + 0.4 * (double)(e->rng >> 11) / (double)(1ULL << 53);
    return (uint64_t)(e->backoff * jitter);
}

/* The connection came up (the watches are created again on it), or was lost (free it, and
 * try the next endpoint after the backoff). */
static void on_state(void *ud, sl_grpc *g, bool up, const char *why)
{
    sl_etcd *e = ud;
    if (up) {
        e->backoff = 0;
        e->connects++;
        if (e->watches)
            sl__etcd_watch_stream_open(e);
        return;
    }
    fprintf(stderr, "sightline: etcd %s: %s\n", e->endpoint, why);
    if (e->g == g) {
        sl_grpc_free(g);
        e->g = NULL;
    }
    if (e->freed)
        return;
    uint64_t delay = next_backoff(e);
    e->current = (e->current + 1) % e->nendpoints;
    uv_timer_start(&e->retry, on_retry, delay, 0);
}

/* Connects to the current endpoint. A host that is not an IP literal fails here, and
 * nothing retries it: the client then stays unconnected. */
static void connect_next(sl_etcd *e)
{
    if (e->g || e->freed)
        return;
    sl_grpc_config gc = {.host = e->hosts[e->current], .port = e->ports[e->current],
                         .max_message = e->cfg.max_message,
                         .ping_interval_ms = e->cfg.ping_interval_ms,
                         .ping_timeout_ms = e->cfg.ping_timeout_ms};
    snprintf(e->endpoint, sizeof e->endpoint, "%s:%d", gc.host, gc.port);
    if (sl_grpc_connect(&e->g, e->loop, &gc, on_state, e))
        e->g = NULL;
}

/* Parses "host:port[,host:port...]" (at most MAX_ENDPOINTS) into e; 0, or SL_EINVAL with
 * the reason in err. */
static int parse_endpoints(sl_etcd *e, const char *p, char *err, size_t errlen)
{
    while (*p && e->nendpoints < MAX_ENDPOINTS) {
        size_t n = strcspn(p, ",");
        char one[80];
        snprintf(one, sizeof one, "%.*s", (int)(n < 79 ? n : 79), p);
        char *colon = strrchr(one, ':');
        if (!colon || colon == one) {
            snprintf(err, errlen, "endpoint '%s' is not host:port", one);
            return SL_EINVAL;
        }
        *colon = '\0';
        snprintf(e->hosts[e->nendpoints], sizeof e->hosts[0], "%s", one);
        e->ports[e->nendpoints++] = atoi(colon + 1);
        p += n + (p[n] == ',');
    }
    if (!e->nendpoints) {
        snprintf(err, errlen, "no etcd endpoint given");
        return SL_EINVAL;
    }
    return 0;
}

int sl_etcd_new(sl_etcd **out, uv_loop_t *loop, const sl_etcd_config *cfg, char *err,
                size_t errlen)
{
    sl_etcd *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return SL_ENOMEM;
    }
    e->loop = loop;
    e->cfg = *cfg;
    e->cfg.timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 5000;
    e->cfg.backoff_min_ms = cfg->backoff_min_ms > 0 ? cfg->backoff_min_ms : 50;
    e->cfg.backoff_max_ms = cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms : 2000;
    e->rng = (uint64_t)(uintptr_t)e ^ uv_hrtime();
    int rc = parse_endpoints(e, cfg->endpoints ? cfg->endpoints : "", err, errlen);
    if (rc) {
        free(e);
        return rc;
    }
    uv_timer_init(loop, &e->retry);
    e->retry.data = e;
    connect_next(e);
    *out = e;
    return 0;
}

static void etcd_closed(uv_handle_t *h)
{
    free(h->data);
}

/*
 * Stops the watches and leases (without revoking), then frees the connection, which ends
 * every call in flight with CANCELLED from inside this call. The struct itself goes when
 * the retry timer has closed.
 */
void sl_etcd_free(sl_etcd *e)
{
    if (!e)
        return;
    e->freed = true;
    while (e->watches)
        sl_etcd_watch_stop(e->watches);
    while (e->leases)
        sl_etcd_lease_release(e->leases, false);
    sl_grpc *g = e->g;
    e->g = NULL;
    sl_grpc_free(g);
    uv_close((uv_handle_t *)&e->retry, etcd_closed);
}

uv_loop_t *sl_etcd_loop(const sl_etcd *e)
{
    return e->loop;
}

bool sl_etcd_connected(const sl_etcd *e)
{
    return e->g && sl_grpc_is_up(e->g);
}

const char *sl_etcd_endpoint(const sl_etcd *e)
{
    return e->endpoint;
}

uint64_t sl_etcd_connects(const sl_etcd *e)
{
    return e->connects;
}

/* ---- streams ------------------------------------------------------------------------------- */

/*
 * Starts a long-lived stream (no deadline) with the "hasleader" metadata: on a cluster, a
 * member that has lost its leader then refuses the stream rather than leaving it silent.
 * NULL when the connection is gone or out of memory.
 */
sl_grpc_call *sl__etcd_stream_open(sl_etcd *e, const char *path, const sl_grpc_handlers *h)
{
    static const char *const hdr[] = {"hasleader", "true", NULL};
    sl_grpc_call *c;
    return sl_grpc_start(&c, e->g, path, 0, h, e, hdr) ? NULL : c;
}

/* Cancels the stream *s, if open; *s is NULL before its on_close runs. */
void sl__etcd_stream_cancel(sl_grpc_call **s)
{
    sl_grpc_call *c = *s;
    *s = NULL;
    if (c)
        sl_grpc_cancel(c);
}
