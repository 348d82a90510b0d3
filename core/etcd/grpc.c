/*
 * grpc.c: see grpc.h.
 *
 * nghttp2 is driven in "memory" mode: received bytes go in through
 * nghttp2_session_mem_recv, bytes to send come out of nghttp2_session_mem_send into an
 * output buffer that libuv writes. nghttp2's send side is never called from inside its own
 * callbacks (user callbacks may start or feed calls from there): starting, sending and
 * finishing only schedule a flush, which an idle handle runs on the next loop turn.
 *
 * A call's request messages queue in its own buffer; the stream's data provider hands
 * them to nghttp2 and answers "deferred" while the buffer is empty and the request stream
 * still open. Response DATA accumulates per stream until whole gRPC messages are there.
 */
#include "etcd/grpc.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
    uint8_t *p;
    size_t n, off, cap;
} buf;

static int buf_put(buf *b, const void *p, size_t n)
{
    if (b->off && b->off == b->n)
        b->off = b->n = 0;
    if (b->n + n > b->cap) {
        if (b->off) {
            memmove(b->p, b->p + b->off, b->n - b->off);
            b->n -= b->off;
            b->off = 0;
        }
        if (b->n + n > b->cap) {
            size_t cap = b->cap ? b->cap : 4096;
            while (cap < b->n + n)
                cap *= 2;
            uint8_t *q = realloc(b->p, cap);
            if (!q)
                return -1;
            b->p = q;
            b->cap = cap;
        }
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    return 0;
}

struct sl_grpc_call {
    uv_timer_t deadline;        /* first: the call is freed in this handle's close callback */
    sl_grpc *g;
    sl_grpc_call *prev, *next;
    int32_t stream;
    sl_grpc_handlers h;
    void *ud;
    buf out, in;                /* request bytes to send; response bytes not yet a message */
    bool out_last, deferred, closed;
    int http_status, grpc_status;
    char grpc_message[256];
};

struct sl_grpc {
    uv_tcp_t tcp;
    uv_connect_t conn_req;
    uv_idle_t flusher;
    uv_timer_t ping_timer, conn_timer;
    uv_write_t wr;
    uv_loop_t *loop;
    sl_grpc_config cfg;
    char authority[128];
    sl_grpc_state_fn state;
    void *ud;
    nghttp2_session *h2;
    buf out, wbuf;
    bool connected, writing, dead, freed, ping_outstanding;
    bool in_recv;               /* inside nghttp2_session_mem_recv: the session must live */
    double ping_sent_ms;
    sl_grpc_call *calls;
    size_t ncalls;
    int handles;                /* libuv handles still to close before the struct can go */
};

static double now_ms(uv_loop_t *loop)
{
    return (double)uv_now(loop);
}

static void schedule_flush(sl_grpc *g);
static void fail(sl_grpc *g, const char *why);

/* ---- calls -------------------------------------------------------------------------------- */

static void call_freed(uv_handle_t *h)
{
    sl_grpc_call *c = (sl_grpc_call *)h;
    sl_grpc *g = c->g;
    free(c->out.p);
    free(c->in.p);
    free(c);
    if (--g->handles == 0 && g->freed)
        free(g);
}

/* Ends a call: unlinks it, tells its owner, closes its timer (which frees it). */
static void call_finish(sl_grpc_call *c, int code, const char *msg)
{
    if (c->closed)
        return;
    c->closed = true;
    sl_grpc *g = c->g;
    if (c->prev)
        c->prev->next = c->next;
    else
        g->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    g->ncalls--;
    if (c->stream > 0 && g->h2)
        nghttp2_session_set_stream_user_data(g->h2, c->stream, NULL);
    sl_grpc_status st = {.code = code};
    snprintf(st.message, sizeof st.message, "%s", msg ? msg : "");
    if (c->h.on_close)
        c->h.on_close(c->ud, c, &st);
    uv_timer_stop(&c->deadline);
    uv_close((uv_handle_t *)&c->deadline, call_freed);
}

static void on_deadline(uv_timer_t *t)
{
    sl_grpc_call *c = (sl_grpc_call *)t;
    if (c->stream > 0 && c->g->h2) {
        nghttp2_submit_rst_stream(c->g->h2, NGHTTP2_FLAG_NONE, c->stream, NGHTTP2_CANCEL);
        schedule_flush(c->g);
    }
    call_finish(c, SL_GRPC_DEADLINE, "deadline exceeded");
}

static ssize_t read_request(nghttp2_session *s, int32_t stream, uint8_t *dst, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)stream;
    (void)ud;
    sl_grpc_call *c = src->ptr;
    if (!c || c->closed) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    size_t have = c->out.n - c->out.off;
    if (have == 0) {
        if (c->out_last) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        c->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = have < len ? have : len;
    memcpy(dst, c->out.p + c->out.off, n);
    c->out.off += n;
    if (c->out_last && c->out.off == c->out.n)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

sl_grpc_call *sl_grpc_start(sl_grpc *g, const char *path, double timeout_ms,
                            const sl_grpc_handlers *h, void *ud, const char *const *headers)
{
    if (g->dead || g->freed)
        return NULL;
    sl_grpc_call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->g = g;
    c->h = *h;
    c->ud = ud;
    char timeout[32];
    snprintf(timeout, sizeof timeout, "%lldm", (long long)(timeout_ms > 0 ? timeout_ms : 0));
    nghttp2_nv nv[16];
    size_t n = 0;
#define NV(name, value) nv[n++] = (nghttp2_nv){(uint8_t *)(name), (uint8_t *)(value), \
                                               strlen(name), strlen(value), NGHTTP2_NV_FLAG_NONE}
    NV(":method", "POST");
    NV(":scheme", "http");
    NV(":path", path);
    NV(":authority", g->authority);
    NV("content-type", "application/grpc");
    NV("te", "trailers");
    if (timeout_ms > 0)
        NV("grpc-timeout", timeout);
    for (size_t i = 0; headers && headers[i] && headers[i + 1] && n < 14; i += 2)
        NV(headers[i], headers[i + 1]);
#undef NV
    nghttp2_data_provider dp = {.source.ptr = c, .read_callback = read_request};
    int32_t id = nghttp2_submit_request(g->h2, NULL, nv, n, &dp, c);
    if (id < 0) {
        free(c);
        return NULL;
    }
    c->stream = id;
    uv_timer_init(g->loop, &c->deadline);
    g->handles++;
    if (timeout_ms > 0)
        uv_timer_start(&c->deadline, on_deadline, (uint64_t)timeout_ms, 0);
    c->next = g->calls;
    if (g->calls)
        g->calls->prev = c;
    g->calls = c;
    g->ncalls++;
    schedule_flush(g);
    return c;
}

int sl_grpc_send(sl_grpc_call *c, const uint8_t *msg, size_t len, bool last)
{
    if (c->closed || c->out_last)
        return -1;
    uint8_t hdr[5] = {0, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                      (uint8_t)len};
    if (buf_put(&c->out, hdr, 5) || (len && buf_put(&c->out, msg, len)))
        return -1;
    c->out_last = last;
    if (c->deferred && c->g->h2) {
        c->deferred = false;
        nghttp2_session_resume_data(c->g->h2, c->stream);
    }
    schedule_flush(c->g);
    return 0;
}

void sl_grpc_cancel(sl_grpc_call *c)
{
    if (c->closed)
        return;
    if (c->g->h2) {
        nghttp2_submit_rst_stream(c->g->h2, NGHTTP2_FLAG_NONE, c->stream, NGHTTP2_CANCEL);
        schedule_flush(c->g);
    }
    call_finish(c, SL_GRPC_CANCELLED, "cancelled");
}

/* ---- nghttp2 callbacks -------------------------------------------------------------------- */

static sl_grpc_call *call_of(nghttp2_session *s, int32_t stream)
{
    return nghttp2_session_get_stream_user_data(s, stream);
}

/* grpc-message is percent-encoded. */
static void percent_decode(char *dst, size_t cap, const uint8_t *src, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < cap; i++) {
        if (src[i] == '%' && i + 2 < n) {
            char hex[3] = {(char)src[i + 1], (char)src[i + 2], 0};
            dst[j++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            dst[j++] = (char)src[i];
        }
    }
    dst[j] = '\0';
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud)
{
    (void)flags;
    (void)ud;
    sl_grpc_call *c = call_of(s, f->hd.stream_id);
    if (!c)
        return 0;
    char v[32];
    size_t vn = valuelen < sizeof v - 1 ? valuelen : sizeof v - 1;
    memcpy(v, value, vn);
    v[vn] = '\0';
    if (namelen == 7 && !memcmp(name, ":status", 7))
        c->http_status = atoi(v);
    else if (namelen == 11 && !memcmp(name, "grpc-status", 11))
        c->grpc_status = atoi(v) + 1000;    /* +1000: "seen" */
    else if (namelen == 12 && !memcmp(name, "grpc-message", 12))
        percent_decode(c->grpc_message, sizeof c->grpc_message, value, valuelen);
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t stream, const uint8_t *data,
                   size_t len, void *ud)
{
    (void)flags;
    sl_grpc *g = ud;
    sl_grpc_call *c = call_of(s, stream);
    if (!c || c->closed)
        return 0;
    if (buf_put(&c->in, data, len)) {
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, stream, NGHTTP2_INTERNAL_ERROR);
        call_finish(c, SL_GRPC_RESOURCE_EXHAUSTED, "out of memory receiving a message");
        return 0;
    }
    /* Hand over every whole message. */
    while (!c->closed) {
        size_t have = c->in.n - c->in.off;
        if (have < 5)
            break;
        const uint8_t *p = c->in.p + c->in.off;
        size_t mlen = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
        if (p[0] != 0 || mlen > g->cfg.max_message) {
            nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, stream, NGHTTP2_CANCEL);
            char why[128];
            if (p[0])
                snprintf(why, sizeof why, "compressed messages are not supported");
            else
                snprintf(why, sizeof why, "message of %zu bytes is over the limit of %zu", mlen,
                         g->cfg.max_message);
            call_finish(c, p[0] ? SL_GRPC_INTERNAL : SL_GRPC_RESOURCE_EXHAUSTED, why);
            return 0;
        }
        if (have < 5 + mlen)
            break;
        c->in.off += 5 + mlen;
        if (c->h.on_message)
            c->h.on_message(c->ud, c, p + 5, mlen);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream, uint32_t error, void *ud)
{
    (void)ud;
    sl_grpc_call *c = call_of(s, stream);
    if (!c || c->closed)
        return 0;
    if (c->grpc_status >= 1000) {
        call_finish(c, c->grpc_status - 1000, c->grpc_message);
    } else {
        char why[96];
        if (error)
            snprintf(why, sizeof why, "stream reset by the server (HTTP/2 error %u)", error);
        else
            snprintf(why, sizeof why, "stream ended without grpc-status (HTTP %d)", c->http_status);
        call_finish(c, error == NGHTTP2_REFUSED_STREAM ? SL_GRPC_UNAVAILABLE : SL_GRPC_UNKNOWN, why);
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    sl_grpc *g = ud;
    if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK))
        g->ping_outstanding = false;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        /* etcd says goodbye (e.g. too_many_pings, or shutting down): treat it like a loss. */
        char why[96];
        snprintf(why, sizeof why, "GOAWAY from the server (error %u)", f->goaway.error_code);
        fail(g, why);
    }
    return 0;
}

/* ---- I/O ---------------------------------------------------------------------------------- */

static void on_written(uv_write_t *req, int status)
{
    sl_grpc *g = req->data;
    g->writing = false;
    g->wbuf.n = g->wbuf.off = 0;
    if (g->freed || g->dead)
        return;
    if (status < 0) {
        fail(g, uv_strerror(status));
        return;
    }
    schedule_flush(g);
}

/* Moves what nghttp2 wants to send into the output buffer and writes it. */
static void flush_now(sl_grpc *g)
{
    if (g->dead || g->freed)
        return;
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(g->h2, &data);
        if (n < 0) {
            fail(g, nghttp2_strerror((int)n));
            return;
        }
        if (n == 0)
            break;
        if (buf_put(&g->out, data, (size_t)n)) {
            fail(g, "out of memory");
            return;
        }
    }
    if (!g->connected || g->writing || g->out.n == g->out.off)
        return;
    buf t = g->wbuf;
    g->wbuf = g->out;
    g->out = t;
    g->out.n = g->out.off = 0;
    uv_buf_t b = uv_buf_init((char *)g->wbuf.p + g->wbuf.off, (unsigned)(g->wbuf.n - g->wbuf.off));
    g->wr.data = g;
    int rc = uv_write(&g->wr, (uv_stream_t *)&g->tcp, &b, 1, on_written);
    if (rc < 0) {
        fail(g, uv_strerror(rc));
        return;
    }
    g->writing = true;
}

static void on_idle(uv_idle_t *h)
{
    sl_grpc *g = h->data;
    uv_idle_stop(h);
    flush_now(g);
}

static void schedule_flush(sl_grpc *g)
{
    if (!g->dead && !g->freed)
        uv_idle_start(&g->flusher, on_idle);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(suggested);
    b->len = b->base ? suggested : 0;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    sl_grpc *g = (sl_grpc *)st;
    if (n < 0) {
        free(b->base);
        fail(g, n == UV_EOF ? "the server closed the connection" : uv_strerror((int)n));
        return;
    }
    if (n > 0 && g->h2) {
        g->in_recv = true;
        ssize_t rc = nghttp2_session_mem_recv(g->h2, (const uint8_t *)b->base, (size_t)n);
        g->in_recv = false;
        if (g->freed) {
            /* Freed from a callback: the session could only go now. */
            nghttp2_session_del(g->h2);
            g->h2 = NULL;
            free(b->base);
            return;
        }
        if (rc < 0 && !g->dead) {
            free(b->base);
            fail(g, nghttp2_strerror((int)rc));
            return;
        }
    }
    free(b->base);
    schedule_flush(g);
}

static void on_ping_timer(uv_timer_t *t)
{
    sl_grpc *g = t->data;
    if (g->dead)
        return;
    if (g->ping_outstanding) {
        if (now_ms(g->loop) - g->ping_sent_ms >= g->cfg.ping_timeout_ms)
            fail(g, "no answer to a keepalive PING: the peer is gone");
        return;
    }
    /* A PING only while calls are open, and not more often than the interval. */
    if (g->ncalls && now_ms(g->loop) - g->ping_sent_ms >= g->cfg.ping_interval_ms) {
        nghttp2_submit_ping(g->h2, NGHTTP2_FLAG_NONE, NULL);
        g->ping_outstanding = true;
        g->ping_sent_ms = now_ms(g->loop);
        schedule_flush(g);
    }
}

static void on_connect_timeout(uv_timer_t *t)
{
    sl_grpc *g = t->data;
    if (!g->connected)
        fail(g, "connect timed out");
}

static void on_connected(uv_connect_t *req, int status)
{
    sl_grpc *g = req->data;
    if (g->freed || g->dead)
        return;
    uv_timer_stop(&g->conn_timer);
    if (status < 0) {
        fail(g, uv_strerror(status));
        return;
    }
    g->connected = true;
    uv_tcp_nodelay(&g->tcp, 1);
    uv_read_start((uv_stream_t *)&g->tcp, on_alloc, on_read);
    g->ping_sent_ms = now_ms(g->loop);
    uv_timer_start(&g->ping_timer, on_ping_timer, 500, 500);
    if (g->state)
        g->state(g->ud, g, true, "connected");
    schedule_flush(g);
}

static void handle_closed(uv_handle_t *h)
{
    sl_grpc *g = h->data;
    if (--g->handles == 0 && g->freed)
        free(g);
}

/* The connection is lost: every call fails, the owner is told. */
static void fail(sl_grpc *g, const char *why)
{
    if (g->dead)
        return;
    g->dead = true;
    char msg[200];
    snprintf(msg, sizeof msg, "connection to %s lost: %s", g->authority, why);
    while (g->calls)
        call_finish(g->calls, SL_GRPC_UNAVAILABLE, msg);
    uv_read_stop((uv_stream_t *)&g->tcp);
    uv_timer_stop(&g->ping_timer);
    uv_idle_stop(&g->flusher);
    if (g->state)
        g->state(g->ud, g, false, msg);
}

sl_grpc *sl_grpc_connect(uv_loop_t *loop, const sl_grpc_config *cfg, sl_grpc_state_fn state,
                         void *ud)
{
    struct sockaddr_storage sa;
    if (uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&sa) &&
        uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&sa))
        return NULL;
    sl_grpc *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->loop = loop;
    g->cfg = *cfg;
    if (!g->cfg.max_message)
        g->cfg.max_message = 64u << 20;
    if (!(g->cfg.ping_interval_ms > 0))
        g->cfg.ping_interval_ms = 10000;
    if (!(g->cfg.ping_timeout_ms > 0))
        g->cfg.ping_timeout_ms = 3000;
    if (!(g->cfg.connect_timeout_ms > 0))
        g->cfg.connect_timeout_ms = 3000;
    snprintf(g->authority, sizeof g->authority, "%s",
             cfg->authority ? cfg->authority : cfg->host);
    if (!cfg->authority)
        snprintf(g->authority + strlen(g->authority), sizeof g->authority - strlen(g->authority),
                 ":%d", cfg->port);
    g->state = state;
    g->ud = ud;
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb)) {
        free(g);
        return NULL;
    }
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    int rc = nghttp2_session_client_new(&g->h2, cb, g);
    nghttp2_session_callbacks_del(cb);
    if (rc) {
        free(g);
        return NULL;
    }
    /* Big windows: a watch response can be many megabytes. */
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16u << 20},
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
    };
    nghttp2_submit_settings(g->h2, NGHTTP2_FLAG_NONE, iv, 2);
    nghttp2_session_set_local_window_size(g->h2, NGHTTP2_FLAG_NONE, 0, 64 << 20);
    uv_tcp_init(loop, &g->tcp);
    uv_idle_init(loop, &g->flusher);
    uv_timer_init(loop, &g->ping_timer);
    uv_timer_init(loop, &g->conn_timer);
    g->tcp.data = g->flusher.data = g->ping_timer.data = g->conn_timer.data = g;
    g->handles = 4;
    g->conn_req.data = g;
    /* A connect that cannot even start is reported like a timeout, from the loop. */
    rc = uv_tcp_connect(&g->conn_req, &g->tcp, (struct sockaddr *)&sa, on_connected);
    uv_timer_start(&g->conn_timer, on_connect_timeout,
                   rc ? 0 : (uint64_t)g->cfg.connect_timeout_ms, 0);
    return g;
}

bool sl_grpc_is_up(const sl_grpc *g)
{
    return g->connected && !g->dead;
}

size_t sl_grpc_calls(const sl_grpc *g)
{
    return g->ncalls;
}

void sl_grpc_free(sl_grpc *g)
{
    if (!g || g->freed)
        return;
    while (g->calls)
        call_finish(g->calls, SL_GRPC_CANCELLED, "the client was closed");
    g->dead = true;
    g->freed = true;
    if (!g->in_recv) {
        nghttp2_session_del(g->h2);
        g->h2 = NULL;
    }
    free(g->out.p);
    free(g->wbuf.p);
    g->out = g->wbuf = (buf){0};
    uv_close((uv_handle_t *)&g->tcp, handle_closed);
    uv_close((uv_handle_t *)&g->flusher, handle_closed);
    uv_close((uv_handle_t *)&g->ping_timer, handle_closed);
    uv_close((uv_handle_t *)&g->conn_timer, handle_closed);
}
