/*
 * etcd.c: the etcd v3 client's connection (see etcd.h): one gRPC connection (grpc.c) to one
 * endpoint at a time, made in sl_etcd_new, remade after a loss, closed in sl_etcd_free; the
 * long-lived streams opened on it; and what the client knows of the connection's health.
 * The calls, watches and leases that use the connection have their own files (listed in
 * etcd_impl.h).
 *
 * The connection comes and goes. When it is lost, every call in flight ends with
 * UNAVAILABLE and the client connects to the next endpoint after a capped, jittered
 * backoff. The two long-lived streams come back by themselves: on reconnection the Watch
 * stream is opened again and every watch is created again from its resume point (see
 * watch.c); the LeaseKeepAlive stream is opened again by the next keepalive (see lease.c).
 *
 * A TCP connection proves nothing about etcd: a paused member accepts connections, a
 * member cut off from its quorum answers with "no leader" or not at all, and a peer may
 * accept and close at once. So a connection counts as useful only once etcd has answered
 * on it (sl__etcd_ok: a call succeeded, the probe watch was created, a keepalive was
 * answered), and only then does the backoff start again from its minimum. Every new
 * connection is probed at once (a watch created on a Watch stream with `hasleader`, which a
 * member without a leader refuses in one round trip) and then every probe_interval_ms (a
 * linearizable Range, which needs the quorum; and a progress request on the Watch stream,
 * whose answer proves the stream alive). What fails those is an endpoint failure
 * (sl__etcd_endpoint_failed): the connection is dropped and the next endpoint tried.
 *
 * Response headers feed the head revision (the highest seen) and the cluster id; a
 * linearizable answer below the head revision, or another cluster id, means that etcd's
 * history is not the one followed so far (a restored or recreated cluster): every watch
 * is told, and a mirror lists everything again (sl__etcd_header).
 *
 * The struct's memory is held by its two timers, a host name being resolved and a probe
 * in flight (refs); sl_etcd_free closes the timers, and the last of those to end frees it.
 */
#include "etcd/etcd_impl.h"

#include "base/log.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- memory and logging -------------------------------------------------------------------- */

static void unref(sl_etcd *e)
{
    if (--e->refs == 0) {
        SSL_CTX_free(e->tls);
        free(e->tls_name);
        free(e->user);
        free(e->password);
        free(e->token);
        free(e);
    }
}

static void handle_closed(uv_handle_t *h)
{
    unref(h->data);
}

void sl__etcd_log(sl_etcd *e, const char *fmt, ...)
{
    char line[sizeof e->last_log];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (strcmp(line, e->last_log) == 0) {
        e->log_repeats++;
        return;
    }
    if (e->log_repeats)
        sl_log("etcd (the line before came %llu more times)",
               (unsigned long long)e->log_repeats);
    e->log_repeats = 0;
    snprintf(e->last_log, sizeof e->last_log, "%s", line);
    sl_log("etcd %s", line);
}

/* ---- connection ---------------------------------------------------------------------------- */

static void connect_next(sl_etcd *e);
static void probe_now(sl_etcd *e);
void sl__etcd_became_ready(sl_etcd *e);

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

/* Moves to the next endpoint (or the next address of this one) and connects after the
 * backoff. */
static void retry_later(sl_etcd *e)
{
    if (e->freed)
        return;
    if (e->addr_at + 1 < e->naddrs) {
        e->addr_at++;       /* the same endpoint's next address, at once */
        uv_timer_start(&e->retry, on_retry, 0, 0);
        return;
    }
    uint64_t delay = next_backoff(e);
    if (e->nendpoints > 1) {
        e->current = (e->current + 1) % e->nendpoints;
        e->switches++;
    }
    e->naddrs = e->addr_at = 0;
    uv_timer_start(&e->retry, on_retry, delay, 0);
}

/* The connection came up (probe it at once), or was lost (free it, and try the next
 * endpoint after the backoff). */
static void on_state(void *ud, sl_grpc *g, bool up, const char *why)
{
    sl_etcd *e = ud;
    if (up) {
        e->connects++;
        e->useful = false;
        e->last_ok = 0;
        if (e->user)
            sl__etcd_auth_start(e);     /* sl__etcd_became_ready once the token is there */
        else
            sl__etcd_became_ready(e);
        return;
    }
    /* One line per change of state: a connection that had worked is lost, or the reason
     * differs from the last failure's (the endpoint aside: cycling through members that
     * all lack a leader logs "no leader" once). */
    const char *core = strstr(why, " lost: ");
    core = core ? core + 7 : why;
    if (!e->freed && (e->useful || strcmp(core, e->reason) != 0))
        sl__etcd_log(e, "%s: %s", e->endpoint, why);
    snprintf(e->reason, sizeof e->reason, "%s", core);
    e->useful = false;
    sl__etcd_watch_conn_lost(e);
    sl__etcd_auth_conn_lost(e);
    if (e->g == g) {
        sl_grpc_free(g);
        e->g = NULL;
    }
    retry_later(e);
}

/* A new connection (with its token, if any): probe it at once, open the Watch stream. */
void sl__etcd_became_ready(sl_etcd *e)
{
    sl__etcd_watch_probe(e);
    probe_now(e);
}

/* Connects to addr (an IP literal) of the current endpoint. */
static void connect_addr(sl_etcd *e, const char *addr)
{
    char authority[96];
    snprintf(authority, sizeof authority, "%s:%d", e->hosts[e->current], e->ports[e->current]);
    sl_grpc_config gc = {.host = addr, .port = e->ports[e->current], .authority = authority,
                         .max_message = e->cfg.max_message,
                         .ping_interval_ms = e->cfg.ping_interval_ms,
                         .ping_timeout_ms = e->cfg.ping_timeout_ms, .tls = e->tls,
                         .tls_name = e->tls_name ? e->tls_name : e->hosts[e->current]};
    if (sl_grpc_connect(&e->g, e->loop, &gc, on_state, e)) {
        e->g = NULL;
        snprintf(e->reason, sizeof e->reason, "cannot connect to %s", addr);
        retry_later(e);
    }
}

/* A host name resolved (or not): its addresses are tried in turn. */
static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    sl_etcd *e = req->data;
    e->resolving = false;
    if (e->freed) {
        uv_freeaddrinfo(res);
        unref(e);
        return;
    }
    e->naddrs = e->addr_at = 0;
    for (struct addrinfo *a = res; status == 0 && a && e->naddrs < MAX_ADDRS; a = a->ai_next) {
        char *out = e->addrs[e->naddrs];
        if (a->ai_family == AF_INET &&
            uv_ip4_name((struct sockaddr_in *)a->ai_addr, out, sizeof e->addrs[0]) == 0)
            e->naddrs++;
        else if (a->ai_family == AF_INET6 &&
                 uv_ip6_name((struct sockaddr_in6 *)a->ai_addr, out, sizeof e->addrs[0]) == 0)
            e->naddrs++;
    }
    uv_freeaddrinfo(res);
    unref(e);
    if (!e->naddrs) {
        snprintf(e->reason, sizeof e->reason, "cannot resolve %s: %s", e->hosts[e->current],
                 status ? uv_strerror(status) : "no address");
        sl__etcd_log(e, "%s", e->reason);
        retry_later(e);
        return;
    }
    connect_addr(e, e->addrs[0]);
}

/* Whether s is an IPv4 or IPv6 literal. */
static bool is_ip(const char *s)
{
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    return uv_ip4_addr(s, 0, &a4) == 0 || uv_ip6_addr(s, 0, &a6) == 0;
}

/* Connects to the current endpoint: its next resolved address, or resolves its host name
 * first (an IP literal is its own address). */
static void connect_next(sl_etcd *e)
{
    if (e->g || e->freed || e->resolving)
        return;
    const char *host = e->hosts[e->current];
    snprintf(e->endpoint, sizeof e->endpoint, "%s:%d", host, e->ports[e->current]);
    if (e->addr_at < e->naddrs) {
        connect_addr(e, e->addrs[e->addr_at]);
        return;
    }
    if (is_ip(host)) {
        snprintf(e->addrs[0], sizeof e->addrs[0], "%s", host);
        e->naddrs = 1;
        e->addr_at = 0;
        connect_addr(e, host);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char port[16];
    snprintf(port, sizeof port, "%d", e->ports[e->current]);
    e->resolver.data = e;
    if (uv_getaddrinfo(e->loop, &e->resolver, on_resolved, host, port, &hints) == 0) {
        e->resolving = true;
        e->refs++;
        return;
    }
    snprintf(e->reason, sizeof e->reason, "cannot resolve %s", host);
    retry_later(e);
}

/* Parses "host:port[,host:port...]" (at most MAX_ENDPOINTS; "[v6]:port" for an IPv6
 * literal) into e; 0, or SL_EINVAL with the reason in err. */
static int parse_endpoints(sl_etcd *e, const char *p, char *err, size_t errlen)
{
    while (*p && e->nendpoints < MAX_ENDPOINTS) {
        size_t n = strcspn(p, ",");
        char one[80];
        snprintf(one, sizeof one, "%.*s", (int)(n < 79 ? n : 79), p);
        char *colon = strrchr(one, ':');
        if (!colon || colon == one || !colon[1]) {
            snprintf(err, errlen, "endpoint '%s' is not host:port", one);
            return SL_EINVAL;
        }
        *colon = '\0';
        char *host = one;
        if (host[0] == '[' && colon[-1] == ']') {
            host++;
            colon[-1] = '\0';
        }
        snprintf(e->hosts[e->nendpoints], sizeof e->hosts[0], "%s", host);
        e->ports[e->nendpoints++] = atoi(colon + 1);
        p += n + (p[n] == ',');
    }
    if (!e->nendpoints) {
        snprintf(err, errlen, "no etcd endpoint given");
        return SL_EINVAL;
    }
    return 0;
}

/* ---- health -------------------------------------------------------------------------------- */

void sl__etcd_ok(sl_etcd *e)
{
    e->last_ok = uv_now(e->loop);
    if (!e->useful) {
        e->useful = true;
        e->backoff = 0;
        e->reason[0] = '\0';
        sl__etcd_log(e, "%s: connected", e->endpoint);
    }
}

bool sl__etcd_no_leader(const sl_grpc_status *st)
{
    return st->code != 0 && strstr(st->message, "no leader") != NULL;
}

void sl__etcd_endpoint_failed(sl_etcd *e, const char *why)
{
    if (!e->g || e->freed || !sl_grpc_is_up(e->g))
        return;
    e->failures++;
    char msg[160];
    snprintf(msg, sizeof msg, "%.120s; trying the next endpoint", why);
    sl_grpc_drop(e->g, msg);    /* on_state: logs, frees, backs off, moves on */
}

sl__etcd_seen sl__etcd_seen_now(const sl_etcd *e)
{
    return (sl__etcd_seen){e->head_rev, e->raft_term};
}

void sl__etcd_header(sl_etcd *e, const Etcdserverpb__ResponseHeader *h,
                     const sl__etcd_seen *sent)
{
    bool linearizable = sent != NULL;
    if (!h)
        return;
    e->member_id = h->member_id;
    bool other = e->cluster_id && h->cluster_id && h->cluster_id != e->cluster_id;
    if (h->cluster_id)
        e->cluster_id = h->cluster_id;
    /* A linearizable answer comes from a member in the quorum, whose term is the leader's:
     * a lower term, like a lower revision, is another history (a fresh cluster restarts
     * both; a restart on the same data keeps both). */
    bool back = linearizable && h->revision > 0 && h->revision < sent->rev;
    bool term_back = linearizable && h->raft_term > 0 && h->raft_term < sent->term;
    if (linearizable && h->raft_term > e->raft_term)
        e->raft_term = h->raft_term;
    if (other || back || term_back) {
        if (term_back)
            e->raft_term = h->raft_term;
        e->resets++;
        sl__etcd_log(e, "%s: %s (revision %lld, had seen %lld): reading everything again",
                     e->endpoint, other ? "another cluster"
                                  : back ? "the revision went backwards"
                                         : "the raft term went backwards",
                     (long long)h->revision, (long long)(back ? sent->rev : e->head_rev));
        e->head_rev = h->revision;
        sl__etcd_watch_reset_all(e, h->revision);
        return;
    }
    if (h->revision > e->head_rev)
        e->head_rev = h->revision;
}

/* The periodic probe's Range came back. */
static void on_probe(void *ud, const sl_etcd_result *r)
{
    sl_etcd *e = ud;
    e->probing = false;
    /* A user without read permission on the probe's key is refused after the read went
     * through the quorum: that proves the endpoint as well. */
    bool denied = strstr(r->status.message, "permission denied") != NULL;
    if (denied && !e->freed)
        sl__etcd_ok(e);
    if (!e->freed && r->status.code != 0 && r->status.code != SL_GRPC_CANCELLED && !denied &&
        !sl__etcd_auth_error(&r->status) && e->g && sl_grpc_is_up(e->g)) {
        char why[160];
        snprintf(why, sizeof why, "the health probe failed (%d %.100s)", r->status.code,
                 r->status.message);
        sl__etcd_endpoint_failed(e, why);
    }
    unref(e);
}

/* A linearizable Range of one key (it needs the leader and a quorum), at most one at a
 * time, while connected. */
static void probe_now(sl_etcd *e)
{
    if (e->probing || e->freed || !sl__etcd_ready(e))
        return;
    static const char key[] = "\0sightline-probe";
    if (sl_etcd_range_ex(e, key, sizeof key - 1, NULL, 0, 0, 1, on_probe, e) == 0) {
        e->probing = true;
        e->refs++;
    }
}

/* Every probe_interval: the Range, and a progress request on the Watch stream (a request
 * still unanswered from the last round: the stream cannot make progress). */
static void on_probe_timer(uv_timer_t *t)
{
    sl_etcd *e = t->data;
    if (e->freed || !e->g || !sl_grpc_is_up(e->g))
        return;
    if (e->wprogress_sent && e->wstream) {
        sl__etcd_endpoint_failed(e, "the watch stream left a progress request unanswered");
        return;
    }
    probe_now(e);
    if (sl__etcd_watch_ask_progress(e))
        e->wprogress_sent = uv_now(e->loop);
}

const char *sl_etcd_state_name(sl_etcd_state s)
{
    return s == SL_ETCD_CONNECTED ? "CONNECTED" : s == SL_ETCD_DEGRADED ? "DEGRADED"
                                                                        : "DISCONNECTED";
}

void sl_etcd_health_get(const sl_etcd *e, sl_etcd_health *h)
{
    *h = (sl_etcd_health){
        .endpoint = e->endpoint, .endpoint_index = e->current, .connects = e->connects,
        .switches = e->switches, .endpoint_failures = e->failures,
        .history_resets = e->resets, .watch_reopens = e->watch_reopens,
        .authentications = e->auths,
        .head_revision = e->head_rev, .cluster_id = e->cluster_id, .member_id = e->member_id,
        .quiet_ms = -1,
    };
    bool up = e->g && sl_grpc_is_up(e->g);
    if (up && e->useful)
        h->quiet_ms = (double)(uv_now(e->loop) - e->last_ok);
    double stale = 2 * e->cfg.probe_interval_ms + e->cfg.timeout_ms;
    if (!up) {
        h->state = SL_ETCD_DISCONNECTED;
        snprintf(h->reason, sizeof h->reason, "%.80s: %.100s", e->endpoint,
                 e->reason[0] ? e->reason : "connecting");
    } else if (!e->useful) {
        h->state = SL_ETCD_DISCONNECTED;
        snprintf(h->reason, sizeof h->reason, "%.80s: connected, no answer yet%s%.70s", e->endpoint,
                 e->reason[0] ? "; before: " : "", e->reason);
    } else if (h->quiet_ms > stale) {
        h->state = SL_ETCD_DEGRADED;
        snprintf(h->reason, sizeof h->reason, "%s: no answer for %.0f ms", e->endpoint,
                 h->quiet_ms);
    } else {
        h->state = SL_ETCD_CONNECTED;
        snprintf(h->reason, sizeof h->reason, "%s: answering, revision %lld", e->endpoint,
                 (long long)e->head_rev);
    }
}

/* ---- life ---------------------------------------------------------------------------------- */

/* The TLS context the config asks for (e->tls stays NULL without TLS); 0, or SL_EINVAL /
 * SL_ENOMEM with the reason in err. */
static int tls_setup(sl_etcd *e, const sl_etcd_config *cfg, char *err, size_t errlen)
{
    if (!cfg->tls && !cfg->tls_ca_file && !cfg->tls_cert_file && !cfg->tls_key_file)
        return 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "out of memory");
        return SL_ENOMEM;
    }
    e->tls = ctx;       /* freed with the client, or by the caller's unref on failure */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    static const unsigned char alpn[] = {2, 'h', '2'};
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
    const char *what = NULL, *file = NULL;
    if (cfg->tls_ca_file ? SSL_CTX_load_verify_locations(ctx, cfg->tls_ca_file, NULL) != 1
                         : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        what = "CA file";
        file = cfg->tls_ca_file ? cfg->tls_ca_file : "(system)";
    } else if (cfg->tls_cert_file &&
               SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert_file) != 1) {
        what = "client certificate";
        file = cfg->tls_cert_file;
    } else if ((cfg->tls_key_file || cfg->tls_cert_file) &&
               (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key_file ? cfg->tls_key_file
                                                                   : cfg->tls_cert_file,
                                            SSL_FILETYPE_PEM) != 1 ||
                SSL_CTX_check_private_key(ctx) != 1)) {
        what = "client key";
        file = cfg->tls_key_file ? cfg->tls_key_file : cfg->tls_cert_file;
    }
    if (what) {
        unsigned long code = ERR_get_error();
        snprintf(err, errlen, "TLS %s %s: %s", what, file,
                 code ? ERR_reason_error_string(code) : "unusable");
        ERR_clear_error();
        return SL_EINVAL;
    }
    if (cfg->tls_server_name && !(e->tls_name = strdup(cfg->tls_server_name))) {
        snprintf(err, errlen, "out of memory");
        return SL_ENOMEM;
    }
    return 0;
}

/* Copies the user and password (a user without a password has an empty one). */
static int auth_setup(sl_etcd *e, const sl_etcd_config *cfg, char *err, size_t errlen)
{
    if (!cfg->user)
        return 0;
    e->user = strdup(cfg->user);
    e->password = strdup(cfg->password ? cfg->password : "");
    if (!e->user || !e->password) {
        snprintf(err, errlen, "out of memory");
        return SL_ENOMEM;
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
    e->cfg.probe_interval_ms = cfg->probe_interval_ms > 0 ? cfg->probe_interval_ms : 5000;
    e->rng = (uint64_t)(uintptr_t)e ^ uv_hrtime();
    int rc = parse_endpoints(e, cfg->endpoints ? cfg->endpoints : "", err, errlen);
    if (!rc)
        rc = tls_setup(e, cfg, err, errlen);
    if (!rc)
        rc = auth_setup(e, cfg, err, errlen);
    /* The config's strings are the caller's: the client keeps none of them past here. */
    e->cfg.endpoints = NULL;
    e->cfg.tls_ca_file = e->cfg.tls_cert_file = e->cfg.tls_key_file = NULL;
    e->cfg.tls_server_name = e->cfg.user = e->cfg.password = NULL;
    if (rc) {
        e->refs = 1;
        unref(e);
        return rc;
    }
    uv_timer_init(loop, &e->retry);
    uv_timer_init(loop, &e->probe);
    uv_timer_init(loop, &e->wretry);
    e->retry.data = e->probe.data = e->wretry.data = e;
    e->refs = 3;
    uint64_t every = (uint64_t)e->cfg.probe_interval_ms;
    uv_timer_start(&e->probe, on_probe_timer, every, every);
    connect_next(e);
    *out = e;
    return 0;
}

/*
 * Stops the watches and leases (without revoking), then frees the connection, which ends
 * every call in flight with CANCELLED from inside this call. The struct itself goes when
 * the timers have closed (and a resolution has ended).
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
    if (e->resolving)
        uv_cancel((uv_req_t *)&e->resolver);
    uv_close((uv_handle_t *)&e->retry, handle_closed);
    uv_close((uv_handle_t *)&e->probe, handle_closed);
    uv_close((uv_handle_t *)&e->wretry, handle_closed);
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
    bool tok = e->token && e->token[0];
    const char *hdr[] = {"hasleader", "true", tok ? "token" : NULL, e->token, NULL};
    sl_grpc_call *c;
    return sl__etcd_ready(e) && sl_grpc_start(&c, e->g, path, 0, h, e, hdr) == 0 ? c : NULL;
}

/* Cancels the stream *s, if open; *s is NULL before its on_close runs. */
void sl__etcd_stream_cancel(sl_grpc_call **s)
{
    sl_grpc_call *c = *s;
    *s = NULL;
    if (c)
        sl_grpc_cancel(c);
}
