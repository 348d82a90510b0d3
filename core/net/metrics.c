/*
 * metrics.c: see metrics.h. Requests are read up to the end of their headers (at most
 * 8 KiB); the answer is rendered into one buffer, written, and the connection closed.
 */
#include "net/metrics.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sl_metrics {
    uv_tcp_t tcp;
    sl_metrics_render render;
    void *ud;
    int port;
};

typedef struct mconn {
    uv_tcp_t tcp;
    sl_metrics *m;
    char in[8192];
    size_t n;
    uv_write_t wr;
    char *out;
    bool answered;
} mconn;

static void mconn_closed(uv_handle_t *h)
{
    mconn *c = (mconn *)h;
    free(c->out);
    free(c);
}

static void written(uv_write_t *req, int status)
{
    (void)status;
    mconn *c = req->data;
    uv_close((uv_handle_t *)&c->tcp, mconn_closed);
}

static void answer(mconn *c, const char *status, const char *type, const char *body, size_t blen)
{
    size_t cap = blen + 256;
    c->out = malloc(cap);
    if (!c->out) {
        uv_close((uv_handle_t *)&c->tcp, mconn_closed);
        return;
    }
    int h = snprintf(c->out, cap, "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n", status, type, blen);
    memcpy(c->out + h, body, blen);
    uv_buf_t b = uv_buf_init(c->out, (unsigned)(h + blen));
    c->wr.data = c;
    c->answered = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, written) < 0)
        uv_close((uv_handle_t *)&c->tcp, mconn_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    mconn *c = (mconn *)h;
    *buf = uv_buf_init(c->in + c->n, (unsigned)(sizeof c->in - 1 - c->n));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    mconn *c = (mconn *)s;
    if (nread < 0 || c->answered) {
        if (!c->answered)
            uv_close((uv_handle_t *)&c->tcp, mconn_closed);
        return;
    }
    c->n += (size_t)nread;
    c->in[c->n] = '\0';
    if (!strstr(c->in, "\r\n\r\n") && !strstr(c->in, "\n\n")) {
        if (c->n == sizeof c->in - 1)
            answer(c, "431 Request Header Fields Too Large", "text/plain", "too large\n", 10);
        return;
    }
    if (strncmp(c->in, "GET /metrics", 12) == 0 && (c->in[12] == ' ' || c->in[12] == '?')) {
        static char body[1 << 16];
        size_t n = c->m->render(c->m->ud, body, sizeof body);
        answer(c, "200 OK", "text/plain; version=0.0.4", body, n);
    } else {
        answer(c, "404 Not Found", "text/plain", "try /metrics\n", 13);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    sl_metrics *m = server->data;
    if (status < 0)
        return;
    mconn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->m = m;
    uv_tcp_init(server->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        uv_close((uv_handle_t *)&c->tcp, mconn_closed);
}

int sl_metrics_listen(sl_metrics **out, uv_loop_t *loop, const char *host, int port,
                      sl_metrics_render render, void *ud, char *err, size_t errlen)
{
    sl_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return UV_ENOMEM;
    m->render = render;
    m->ud = ud;
    struct sockaddr_storage sa;
    int rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&sa);
    if (rc)
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa);
    uv_tcp_init(loop, &m->tcp);
    m->tcp.data = m;
    if (rc || (rc = uv_tcp_bind(&m->tcp, (struct sockaddr *)&sa, 0)) ||
        (rc = uv_listen((uv_stream_t *)&m->tcp, 64, on_connection))) {
        snprintf(err, errlen, "metrics on %s:%d: %s", host, port, uv_strerror(rc));
        sl_metrics_close(m);
        return rc;
    }
    int len = sizeof sa;
    uv_tcp_getsockname(&m->tcp, (struct sockaddr *)&sa, &len);
    m->port = sa.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&sa)->sin_port)
                                      : ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    *out = m;
    return 0;
}

int sl_metrics_port(const sl_metrics *m)
{
    return m->port;
}

static void listener_closed(uv_handle_t *h)
{
    free(h->data);
}

void sl_metrics_close(sl_metrics *m)
{
    if (m)
        uv_close((uv_handle_t *)&m->tcp, listener_closed);
}
