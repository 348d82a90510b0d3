/*
 * net.c: see net.h.
 *
 * Each connection has an input buffer that grows to hold one whole frame, and two output
 * buffers: one being written by libuv and one the owner appends to. When a write completes
 * the buffers swap, so frames queue without a copy and without an allocation per frame.
 * A connection is freed only in its close callback (libuv's rule for handles).
 */
#include "net/net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sl_conn {
    uv_tcp_t tcp;           /* first: the handle's address is the connection's */
    sl_net *net;
    sl_conn *prev, *next;
    char *in;
    size_t in_n, in_cap;
    sl_obuf out, wbuf;      /* appended to / being written */
    uv_write_t wr;
    bool writing, closing, closed;
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
    size_t nconns;
    int port;
    bool closing;
    bool listener_done;     /* the listener's handle is closed (or was never opened) */
    size_t handles;         /* connection handles not yet closed */
};

/* Frees the net once it is closing, its listener is closed and no connection is left. */
static void net_maybe_free(sl_net *n)
{
    if (n->closing && n->listener_done && n->handles == 0)
        free(n);
}

#define READ_CHUNK (64u << 10)

static void listener_closed(uv_handle_t *h);

static void conn_closed(uv_handle_t *h)
{
    sl_conn *c = (sl_conn *)h;
    sl_net *n = c->net;
    free(c->in);
    sl_obuf_free(&c->out);
    sl_obuf_free(&c->wbuf);
    free(c);
    if (--n->handles == 0)
        net_maybe_free(n);
}

/* Closes now: tells the owner, unlinks, and closes the handle. */
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
    n->nconns--;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void on_written(uv_write_t *req, int status)
{
    sl_conn *c = req->data;
    c->writing = false;
    c->wbuf.n = 0;
    if (c->closed)
        return;
    if (status < 0) {
        conn_drop(c, uv_strerror(status));
        return;
    }
    if (c->out.n)
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
    if (c->out.n > c->net->cfg.out_cap) {
        /* A client that does not read: cut it off rather than queue without bound. */
        fprintf(stderr, "sightline: %s: %zu bytes queued, over the output cap; closing\n",
                c->peer, c->out.n + c->wbuf.n);
        conn_drop(c, "output cap exceeded: the client does not read fast enough");
        return;
    }
    if (c->writing || c->out.n == 0)
        return;
    sl_obuf t = c->wbuf;
    c->wbuf = c->out;
    c->out = t;
    c->out.n = 0;
    uv_buf_t b = uv_buf_init(c->wbuf.p, (unsigned)c->wbuf.n);
    c->wr.data = c;
    int rc = uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc < 0) {
        conn_drop(c, uv_strerror(rc));
        return;
    }
    c->writing = true;
}

void sl_conn_close(sl_conn *c, const char *code, const char *msg)
{
    if (c->closed || c->closing)
        return;
    sl_enc_error(&c->out, false, 0, code, msg);
    c->closing = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    sl_conn_flush(c);
    if (!c->closed && !c->writing)
        conn_drop(c, msg);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    sl_conn *c = (sl_conn *)h;
    if (c->in_cap - c->in_n < READ_CHUNK / 4) {
        size_t cap = c->in_cap ? c->in_cap * 2 : READ_CHUNK;
        char *p = realloc(c->in, cap);
        if (!p) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        c->in = p;
        c->in_cap = cap;
    }
    *buf = uv_buf_init(c->in + c->in_n, (unsigned)(c->in_cap - c->in_n));
}

/* Splits what has arrived into frames and hands them over. */
static void parse(sl_conn *c)
{
    sl_net *n = c->net;
    size_t off = 0;
    while (!c->closing && !c->closed && c->in_n - off >= SL_PROTO_HEADER) {
        const unsigned char *h = (const unsigned char *)c->in + off;
        size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
        if (len > n->cfg.max_frame) {
            char msg[128];
            snprintf(msg, sizeof msg, "frame of %zu bytes is over the limit of %zu", len,
                     n->cfg.max_frame);
            sl_conn_close(c, "frame_too_large", msg);
            return;
        }
        if (c->in_n - off - SL_PROTO_HEADER < len) {
            /* Make room for the whole frame. */
            size_t need = len + SL_PROTO_HEADER;
            if (need > c->in_cap) {
                char *p = realloc(c->in, need);
                if (!p) {
                    sl_conn_close(c, "internal", "out of memory reading a frame");
                    return;
                }
                c->in = p;
                c->in_cap = need;
            }
            break;
        }
        n->cb.on_frame(n->ud, c, c->in + off + SL_PROTO_HEADER, len);
        off += SL_PROTO_HEADER + len;
    }
    if (off && !c->closed) {
        memmove(c->in, c->in + off, c->in_n - off);
        c->in_n -= off;
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
    if (nread == 0 && !buf->base) {
        conn_drop(c, "out of memory reading");
        return;
    }
    c->in_n += (size_t)nread;
    parse(c);
    if (!c->closed)
        sl_conn_flush(c);
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
    struct sockaddr_storage sa;
    int len = sizeof sa;
    snprintf(c->peer, sizeof c->peer, "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) == 0) {
        char ip[48] = "";
        int port = 0;
        if (sa.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        } else {
            uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
        }
        snprintf(c->peer, sizeof c->peer, "%s:%d", ip, port);
    }
    c->next = n->conns;
    if (n->conns)
        n->conns->prev = c;
    n->conns = c;
    n->nconns++;
    if (n->cb.on_open)
        n->cb.on_open(n->ud, c);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        conn_drop(c, "cannot read");
}

int sl_net_listen(sl_net **out, uv_loop_t *loop, const sl_net_config *cfg,
                  const sl_net_callbacks *cb, void *ud, char *err, size_t errlen)
{
    sl_net *n = calloc(1, sizeof *n);
    if (!n)
        return UV_ENOMEM;
    n->loop = loop;
    n->cfg = *cfg;
    if (!n->cfg.max_frame)
        n->cfg.max_frame = 1u << 20;
    if (!n->cfg.out_cap)
        n->cfg.out_cap = 32u << 20;
    n->cb = *cb;
    n->ud = ud;
    struct sockaddr_storage sa;
    int rc = uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&sa);
    if (rc)
        rc = uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&sa);
    if (rc) {
        snprintf(err, errlen, "bad listen address %s", cfg->host);
        free(n);
        return rc;
    }
    uv_tcp_init(loop, &n->listener);
    n->listener.data = n;
    if ((rc = uv_tcp_bind(&n->listener, (struct sockaddr *)&sa, 0)) ||
        (rc = uv_listen((uv_stream_t *)&n->listener, 512, on_connection))) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", cfg->host, cfg->port,
                 uv_strerror(rc));
        n->closing = true;
        uv_close((uv_handle_t *)&n->listener, listener_closed);
        *out = NULL;
        return rc;
    }
    int len = sizeof sa;
    uv_tcp_getsockname(&n->listener, (struct sockaddr *)&sa, &len);
    n->port = sa.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&sa)->sin_port)
                                      : ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    *out = n;
    return 0;
}

int sl_net_port(const sl_net *n)
{
    return n->port;
}

size_t sl_net_count(const sl_net *n)
{
    return n->nconns;
}

static void listener_closed(uv_handle_t *h)
{
    sl_net *n = h->data;
    n->listener_done = true;
    net_maybe_free(n);
}

void sl_net_close(sl_net *n)
{
    if (!n || n->closing)
        return;
    n->closing = true;
    uv_close((uv_handle_t *)&n->listener, listener_closed);
    /* Each connection writes what is queued, then closes. */
    for (sl_conn *c = n->conns, *next; c; c = next) {
        next = c->next;
        c->closing = true;
        uv_read_stop((uv_stream_t *)&c->tcp);
        sl_conn_flush(c);
        if (!c->closed && !c->writing)
            conn_drop(c, "the server is shutting down");
    }
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
    return c->out.n + c->wbuf.n;
}
