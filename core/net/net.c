/*
 * net.c: the protocol's TCP connections on a libuv loop (see net.h).
 *
 * Input: each connection reads into one buffer that grows to hold its largest frame (up to
 * max_frame; a larger frame's header gets the client an error frame and a close). Every
 * whole frame is handed to on_frame in place, then the remainder moves to the front.
 *
 * Output: two buffers, one being written by libuv and one the owner appends to; when a write
 * completes they swap, so frames queue without a copy and without an allocation per frame.
 * A slow consumer's frames pile up in the appended-to buffer; the flush that finds it over
 * out_cap drops those unsent frames, queues one `too_slow` error in their place (a client
 * that reads again learns why) and closes. The cap is checked at flushes only, so a buffer
 * may pass it by the frames of one flush.
 *
 * Closing: sl_conn_close and sl_net_close stop reading and wait for the queued frames to be
 * written before they close the handle, but never longer than close_ms: a client that does
 * not read cannot hold a connection (or a shutdown) open. A connection dropped for an error
 * (a read or write error, no memory) closes its handle at once: libuv cancels a write still
 * in flight (its callback sees UV_ECANCELED), so those frames are lost. A connection is
 * freed only in its close callback (libuv's rule for handles), and the net once its
 * listener, its sweep timer and every connection handle are closed.
 *
 * Rates: each connection has two token buckets, frames and bytes, holding a second's worth
 * and refilled as time passes. A frame that finds either short is not handed over: it is
 * refused with a `limit` error naming the flag (at most one such error every 100 ms, so a
 * flood cannot turn into an output flood; the rest are refused silently and counted).
 *
 * Deadlines: one timer per net sweeps the connections every SWEEP_MS: a connection that its
 * owner has not accepted (a good hello) within hello_ms, an accepted one silent for idle_ms,
 * and a closing one past close_ms are closed. Deadlines are therefore met to SWEEP_MS.
 */
#include "net/net.h"

#include "base/common.h"
#include "base/vec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_CHUNK (64u << 10)
#define SWEEP_MS 100

struct sl_conn {
    uv_tcp_t tcp;           /* first: the handle's address is the connection's */
    sl_net *net;
    sl_conn *prev, *next;
    sl_vec in;              /* bytes received and not yet handed over (items of one byte) */
    sl_obuf out, wbuf;      /* appended to / being written */
    uv_write_t wr;
    bool writing, closing, closed;
    bool accepted;          /* the owner accepted it (sl_conn_accept) */
    bool connecting;        /* dialled (sl_net_dial), not connected yet: output waits */
    uv_connect_t connect;
    double frame_tokens, byte_tokens, refill_ms, limit_said_ms;   /* the rate buckets */
    double since_ms;        /* connected, last frame received, or closing since (loop time) */
    void *data;
    char peer[64];
};

struct sl_net {
    uv_tcp_t listener;
    uv_loop_t *loop;
    sl_net_config cfg;
    sl_net_callbacks cb;
    void *ud;
    sl_conn *conns;
    int port;
    bool closing;
    bool listener_done;     /* the listener's handle is closed (or was never opened) */
    bool sweep_on, sweep_done;
    uv_timer_t sweep;       /* the deadlines (see above) */
    size_t handles;         /* connection handles not yet closed */
    sl_net_stats st;
};

/* Frees the net once it is closing, its listener and timer are closed and no connection is
 * left. */
static void net_maybe_free(sl_net *n)
{
    if (n->closing && n->listener_done && n->sweep_done && n->handles == 0)
        free(n);
}

static void sweep_closed(uv_handle_t *h)
{
    sl_net *n = h->data;
    n->sweep_done = true;
    net_maybe_free(n);
}

/* Once closing with no connection left, the sweep timer goes too. */
static void sweep_maybe_stop(sl_net *n)
{
    if (n->closing && !n->conns && n->sweep_on) {
        n->sweep_on = false;
        uv_close((uv_handle_t *)&n->sweep, sweep_closed);
    }
}

static void conn_closed(uv_handle_t *h)
{
    sl_conn *c = (sl_conn *)h;
    sl_net *n = c->net;
    sl_vec_free(&c->in);
    sl_obuf_free(&c->out);
    sl_obuf_free(&c->wbuf);
    free(c);
    if (--n->handles == 0)
        net_maybe_free(n);
}

/* Closes now: tells the owner, unlinks, and closes the handle (cancelling a write). */
static void conn_drop(sl_conn *c, const char *reason)
{
    if (c->closed)
        return;
    c->closed = true;
    sl_net *n = c->net;
    if (n->cb.on_close)
        n->cb.on_close(n->ud, c, reason);
    if (c->prev)
        c->prev->next = c->next;
    else
        n->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
    sweep_maybe_stop(n);
}

/* Stops reading and closes once the queued frames are written (at once if none are). */
static void conn_close_after_writes(sl_conn *c, const char *reason)
{
    c->closing = true;
    c->since_ms = (double)uv_now(c->net->loop);
    uv_read_stop((uv_stream_t *)&c->tcp);
    sl_conn_flush(c);
    if (!c->closed && !c->writing)
        conn_drop(c, reason);
}

static void on_written(uv_write_t *req, int status)
{
    sl_conn *c = req->data;
    c->writing = false;
    c->wbuf.bytes.n = 0;
    if (c->closed)
        return;
    if (status < 0) {
        conn_drop(c, uv_strerror(status));
        return;
    }
    if (c->out.bytes.n)
        sl_conn_flush(c);
    else if (c->closing)
        conn_drop(c, "closed after its error");
}

void sl_conn_flush(sl_conn *c)
{
    if (c->closed)
        return;
    if (c->out.failed) {
        conn_drop(c, "out of memory queueing output");
        return;
    }
    if (c->out.bytes.n > c->net->cfg.out_cap) {
        /* A client that does not read: cut off rather than queue without bound. Its unsent
         * frames go; one error says why, if it ever reads again (within close_ms). */
        c->net->st.cut_slow++;
        c->out.bytes.n = 0;
        if (c->closing) {
            conn_drop(c, "output cap exceeded while closing");
            return;
        }
        sl_enc_error(&c->out, false, 0, "too_slow", "the output cap was exceeded: the client "
                     "does not read fast enough");
        conn_close_after_writes(c, "output cap exceeded: the client does not read fast enough");
        return;
    }
    if (c->writing || c->connecting || c->out.bytes.n == 0)
        return;
    sl_obuf t = c->wbuf;
    c->wbuf = c->out;
    c->out = t;
    c->out.bytes.n = 0;
    uv_buf_t b = uv_buf_init(c->wbuf.bytes.p, (unsigned)c->wbuf.bytes.n);
    c->wr.data = c;
    int rc = uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc < 0) {
        conn_drop(c, uv_strerror(rc));
        return;
    }
    c->writing = true;
}

void sl_conn_close_reply(sl_conn *c, const sl_msg *m, const char *code, const char *msg)
{
    if (c->closed || c->closing)
        return;
    sl_enc_error(&c->out, m && m->has_rid, m ? m->rid : 0, code, msg);
    conn_close_after_writes(c, msg);
}

void sl_conn_close(sl_conn *c, const char *code, const char *msg)
{
    sl_conn_close_reply(c, NULL, code, msg);
}

/* Offers libuv the free end of the input buffer, grown first when less than a quarter of a
 * read chunk is left. A failed growth offers nothing: libuv then reports UV_ENOBUFS. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    sl_conn *c = (sl_conn *)h;
    sl_vec *in = &c->in;
    if (in->cap - in->n < READ_CHUNK / 4 &&
        sl_grow(NULL, &in->p, &in->cap, in->n + READ_CHUNK, 1)) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init((char *)in->p + in->n, (unsigned)(in->cap - in->n));
}

/* Whether the connection's rates let one more frame of len bytes through (taking it from
 * the buckets); a refused frame may be answered with a limit error. */
static bool rate_ok(sl_conn *c, size_t len)
{
    sl_net *n = c->net;
    double now = (double)uv_now(n->loop), dt = (now - c->refill_ms) / 1e3;
    double fmax = n->cfg.max_frames_per_s, bmax = n->cfg.max_bytes_per_s;
    c->refill_ms = now;
    if (fmax > 0)
        c->frame_tokens = c->frame_tokens + dt * fmax < fmax ? c->frame_tokens + dt * fmax : fmax;
    if (bmax > 0)
        c->byte_tokens = c->byte_tokens + dt * bmax < bmax ? c->byte_tokens + dt * bmax : bmax;
    bool frames_ok = fmax <= 0 || c->frame_tokens >= 1;
    /* (a frame larger than a second's bytes passes on a full bucket and leaves it in debt) */
    bool bytes_ok = bmax <= 0 || c->byte_tokens >= ((double)len < bmax ? (double)len : bmax);
    if (frames_ok && bytes_ok) {
        c->frame_tokens -= 1;
        c->byte_tokens -= (double)len;
        return true;
    }
    n->st.rate_refused++;
    if (now - c->limit_said_ms >= 100) {
        c->limit_said_ms = now;
        char msg[160];
        snprintf(msg, sizeof msg, "frame refused: over %.0f %s a second "
                 "(--max-%s-per-s); frames are refused until the rate falls back",
                 frames_ok ? bmax : fmax, frames_ok ? "bytes" : "frames",
                 frames_ok ? "bytes" : "frames");
        sl_enc_error(&c->out, false, 0, "limit", msg);
    }
    return false;
}

/* Splits what has arrived into frames and hands them over. */
static void parse(sl_conn *c)
{
    sl_net *n = c->net;
    char *in = c->in.p;
    size_t off = 0;
    while (!c->closing && !c->closed && c->in.n - off >= SL_PROTO_HEADER) {
        size_t len = sl_proto_body_len(in + off);
        if (len > n->cfg.max_frame) {
            char msg[128];
            snprintf(msg, sizeof msg, "frame of %zu bytes is over the limit of %zu", len,
                     n->cfg.max_frame);
            sl_conn_close(c, "frame_too_large", msg);
            return;
        }
        if (c->in.n - off - SL_PROTO_HEADER < len) {
            /* Make room for the whole frame (it moves to the front below). */
            if (sl_grow(NULL, &c->in.p, &c->in.cap, len + SL_PROTO_HEADER, 1)) {
                sl_conn_close(c, "internal", "out of memory reading a frame");
                return;
            }
            in = c->in.p;
            break;
        }
        if (rate_ok(c, SL_PROTO_HEADER + len))
            n->cb.on_frame(n->ud, c, in + off + SL_PROTO_HEADER, len);
        off += SL_PROTO_HEADER + len;
    }
    if (off && !c->closed) {
        memmove(in, in + off, c->in.n - off);
        c->in.n -= off;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    sl_conn *c = (sl_conn *)s;
    if (nread < 0) {
        conn_drop(c, nread == UV_EOF ? "the client closed the connection" : uv_strerror((int)nread));
        return;
    }
    c->in.n += (size_t)nread;
    c->since_ms = (double)uv_now(c->net->loop);
    parse(c);
    if (!c->closed)
        sl_conn_flush(c);
}

int sl_net_addr(const char *host, int port, struct sockaddr_storage *sa)
{
    int rc = uv_ip4_addr(host, port, (struct sockaddr_in *)sa);
    if (rc)
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)sa);
    return rc;
}

/* The port of an IPv4 or IPv6 address. */
static int addr_port(const struct sockaddr_storage *sa)
{
    return sa->ss_family == AF_INET ? ntohs(((const struct sockaddr_in *)sa)->sin_port)
                                    : ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
}

int sl_net_local_port(const uv_tcp_t *tcp)
{
    struct sockaddr_storage sa;
    int len = sizeof sa;
    uv_tcp_getsockname(tcp, (struct sockaddr *)&sa, &len);
    return addr_port(&sa);
}

/* "ip:port" of the connection's peer, or "?" when it cannot be had. */
static void name_peer(sl_conn *c)
{
    struct sockaddr_storage sa;
    int len = sizeof sa;
    snprintf(c->peer, sizeof c->peer, "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) != 0)
        return;
    char ip[48] = "";
    if (sa.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof ip);
    else
        uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof ip);
    snprintf(c->peer, sizeof c->peer, "%s:%d", ip, addr_port(&sa));
}

static void on_connection(uv_stream_t *server, int status)
{
    sl_net *n = server->data;
    if (status < 0 || n->closing)
        return;
    sl_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->net = n;
    n->handles++;
    uv_tcp_init(n->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    name_peer(c);
    c->since_ms = c->refill_ms = (double)uv_now(n->loop);
    c->frame_tokens = n->cfg.max_frames_per_s;      /* a second's worth to start with */
    c->byte_tokens = n->cfg.max_bytes_per_s;
    n->st.accepted++;
    c->next = n->conns;
    if (n->conns)
        n->conns->prev = c;
    n->conns = c;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        conn_drop(c, "cannot read");
}

static void on_connected(uv_connect_t *req, int status)
{
    sl_conn *c = req->data;
    c->connecting = false;
    if (c->closed)
        return;
    if (status < 0) {
        char why[160];
        snprintf(why, sizeof why, "cannot connect to %s: %s", c->peer, uv_strerror(status));
        conn_drop(c, why);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->since_ms = (double)uv_now(c->net->loop);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        conn_drop(c, "cannot read");
        return;
    }
    sl_conn_flush(c);
}

int sl_net_dial(sl_net *n, const char *host, int port, void *data, sl_conn **out)
{
    struct sockaddr_storage sa;
    if (n->closing || sl_net_addr(host, port, &sa))
        return SL_EINVAL;
    sl_conn *c = calloc(1, sizeof *c);
    if (!c)
        return SL_ENOMEM;
    c->net = n;
    n->handles++;
    uv_tcp_init(n->loop, &c->tcp);
    snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
    c->since_ms = c->refill_ms = (double)uv_now(n->loop);
    c->frame_tokens = n->cfg.max_frames_per_s;
    c->byte_tokens = n->cfg.max_bytes_per_s;
    c->accepted = true;         /* no hello comes from the other side first */
    c->connecting = true;
    c->data = data;
    c->connect.data = c;
    if (uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&sa, on_connected) < 0) {
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
        return SL_EIO;
    }
    c->next = n->conns;
    if (n->conns)
        n->conns->prev = c;
    n->conns = c;
    *out = c;
    return 0;
}

/* Closes the connections past their deadline (see the top of this file). */
static void on_sweep(uv_timer_t *t)
{
    sl_net *n = t->data;
    double now = (double)uv_now(n->loop);
    char msg[96];
    for (sl_conn *c = n->conns, *next; c; c = next) {
        next = c->next;
        double age = now - c->since_ms;
        if (c->closing && age >= n->cfg.close_ms) {
            n->st.close_expired++;
            conn_drop(c, "the client did not take its last frames in time");
        } else if (!c->closing && !c->accepted && age >= n->cfg.hello_ms) {
            n->st.timed_out++;
            snprintf(msg, sizeof msg, "no hello within %.0f ms", n->cfg.hello_ms);
            sl_conn_close(c, "timeout", msg);
        } else if (!c->closing && c->accepted && n->cfg.idle_ms >= 0 && age >= n->cfg.idle_ms) {
            n->st.timed_out++;
            snprintf(msg, sizeof msg, "nothing received for %.0f ms", n->cfg.idle_ms);
            sl_conn_close(c, "idle", msg);
        }
    }
}

static void listener_closed(uv_handle_t *h)
{
    sl_net *n = h->data;
    n->listener_done = true;
    net_maybe_free(n);
}

int sl_net_listen(sl_net **out, uv_loop_t *loop, const sl_net_config *cfg,
                  const sl_net_callbacks *cb, void *ud, char *err, size_t errlen)
{
    sl_net *n = calloc(1, sizeof *n);
    if (!n) {
        snprintf(err, errlen, "out of memory");
        return SL_ENOMEM;
    }
    n->loop = loop;
    n->cfg = *cfg;
    if (!n->cfg.max_frame)
        n->cfg.max_frame = 1u << 20;
    if (!n->cfg.out_cap)
        n->cfg.out_cap = 32u << 20;
    if (!(n->cfg.hello_ms > 0))
        n->cfg.hello_ms = 10000;
    if (n->cfg.idle_ms == 0)
        n->cfg.idle_ms = 60000;
    if (!(n->cfg.close_ms > 0))
        n->cfg.close_ms = 2000;
    if (n->cfg.max_frames_per_s == 0)
        n->cfg.max_frames_per_s = 2000;
    if (n->cfg.max_bytes_per_s == 0)
        n->cfg.max_bytes_per_s = 64u << 20;
    n->cb = *cb;
    n->ud = ud;
    struct sockaddr_storage sa;
    if (sl_net_addr(cfg->host, cfg->port, &sa)) {
        snprintf(err, errlen, "bad listen address %s", cfg->host);
        free(n);
        return SL_EINVAL;
    }
    uv_timer_init(loop, &n->sweep);
    n->sweep.data = n;
    n->sweep_on = true;
    uv_tcp_init(loop, &n->listener);
    n->listener.data = n;
    int rc;
    if ((rc = uv_tcp_bind(&n->listener, (struct sockaddr *)&sa, 0)) ||
        (rc = uv_listen((uv_stream_t *)&n->listener, 512, on_connection))) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", cfg->host, cfg->port,
                 uv_strerror(rc));
        n->closing = true;
        uv_close((uv_handle_t *)&n->listener, listener_closed);
        sweep_maybe_stop(n);
        *out = NULL;
        return SL_EIO;
    }
    n->port = sl_net_local_port(&n->listener);
    uv_timer_start(&n->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    *out = n;
    return 0;
}

int sl_net_port(const sl_net *n)
{
    return n->port;
}

void sl_net_close(sl_net *n)
{
    if (!n || n->closing)
        return;
    n->closing = true;
    uv_close((uv_handle_t *)&n->listener, listener_closed);
    for (sl_conn *c = n->conns, *next; c; c = next) {
        next = c->next;
        conn_close_after_writes(c, "the server is shutting down");
    }
    sweep_maybe_stop(n);
}

void sl_net_get_stats(const sl_net *n, sl_net_stats *st)
{
    *st = n->st;
}

void sl_conn_accept(sl_conn *c)
{
    c->accepted = true;
    c->since_ms = (double)uv_now(c->net->loop);
}

sl_obuf *sl_conn_out(sl_conn *c)
{
    return &c->out;
}

void sl_conn_set_data(sl_conn *c, void *data)
{
    c->data = data;
}

void *sl_conn_data(const sl_conn *c)
{
    return c->data;
}

const char *sl_conn_peer(const sl_conn *c)
{
    return c->peer;
}

size_t sl_conn_queued(const sl_conn *c)
{
    return c->out.bytes.n + c->wbuf.bytes.n;
}
