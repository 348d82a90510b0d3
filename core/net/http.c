/*
 * http.c: the HTTP endpoint of net/http.h.
 *
 * A minimal HTTP/1.0 server for the server's own pages (today /metrics): each connection
 * reads one request up to the end of its headers (at most 8 KiB, else 431), gets one answer
 * rendered into one buffer, and is closed once the answer is written. A connection lives at
 * most REQUEST_MS, headers and answer included (a sweep timer closes older ones), and
 * sl_http_close closes every connection at once: no client can hold the endpoint, or the
 * server's shutdown, open. The endpoint is freed when its last handle is closed.
 */
#include "net/http.h"

#include "base/common.h"
#include "net/net.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUEST_MS 5000
#define SWEEP_MS 500

typedef struct request request;

struct sl_http {
    uv_tcp_t tcp;
    uv_timer_t sweep;
    sl_http_render render;
    void *ud;
    int port;
    request *reqs;          /* open connections */
    int handles;            /* handles not yet closed: listener, timer, connections */
    bool closing;
};

struct request {
    uv_tcp_t tcp;           /* first: the handle's address is the request's */
    sl_http *h;
    request *prev, *next;
    double since_ms;        /* accepted at (loop time) */
    char in[8192];
    size_t n;
    uv_write_t wr;
    char *out;
    bool answered, closing;
};

static void handle_closed(uv_handle_t *hd)
{
    sl_http *h = hd->data;
    if (--h->handles == 0)
        free(h);
}

static void request_closed(uv_handle_t *hd)
{
    request *r = (request *)hd;
    sl_http *h = r->h;
    free(r->out);
    free(r);
    if (--h->handles == 0)
        free(h);
}

/* Unlinks the connection and closes it (a write in flight is cancelled). */
static void request_close(request *r)
{
    if (r->closing)
        return;
    r->closing = true;
    if (r->prev)
        r->prev->next = r->next;
    else
        r->h->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    uv_close((uv_handle_t *)&r->tcp, request_closed);
}

static void written(uv_write_t *req, int status)
{
    (void)status;
    request_close(req->data);
}

/* Writes the status line, the headers and the body, then closes (or closes at once when
 * there is no memory for the answer). */
static void answer(request *r, const char *status, const char *type, const char *body,
                   size_t blen)
{
    size_t cap = blen + 256;
    r->out = malloc(cap);
    if (!r->out) {
        request_close(r);
        return;
    }
    int h = snprintf(r->out, cap, "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n", status, type, blen);
    memcpy(r->out + h, body, blen);
    uv_buf_t b = uv_buf_init(r->out, (unsigned)(h + blen));
    r->wr.data = r;
    r->answered = true;
    uv_read_stop((uv_stream_t *)&r->tcp);
    if (uv_write(&r->wr, (uv_stream_t *)&r->tcp, &b, 1, written) < 0)
        request_close(r);
}

/* Answers a request whose headers have all arrived. */
static void route(request *r)
{
    if (strncmp(r->in, "GET /metrics", 12) == 0 && (r->in[12] == ' ' || r->in[12] == '?')) {
        static char body[1 << 16];
        size_t n = r->h->render(r->h->ud, body, sizeof body);
        answer(r, "200 OK", "text/plain; version=0.0.4", body, n);
    } else {
        answer(r, "404 Not Found", "text/plain", "try /metrics\n", 13);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    request *r = (request *)h;
    *buf = uv_buf_init(r->in + r->n, (unsigned)(sizeof r->in - 1 - r->n));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    request *r = (request *)s;
    if (nread < 0 || r->answered) {
        if (!r->answered)
            request_close(r);
        return;
    }
    r->n += (size_t)nread;
    r->in[r->n] = '\0';
    if (strstr(r->in, "\r\n\r\n") || strstr(r->in, "\n\n"))
        route(r);
    else if (r->n == sizeof r->in - 1)
        answer(r, "431 Request Header Fields Too Large", "text/plain", "too large\n", 10);
}

static void on_connection(uv_stream_t *server, int status)
{
    sl_http *h = server->data;
    if (status < 0 || h->closing)
        return;
    request *r = calloc(1, sizeof *r);
    if (!r)
        return;
    r->h = h;
    r->since_ms = (double)uv_now(server->loop);
    uv_tcp_init(server->loop, &r->tcp);
    h->handles++;
    r->next = h->reqs;
    if (h->reqs)
        h->reqs->prev = r;
    h->reqs = r;
    if (uv_accept(server, (uv_stream_t *)&r->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&r->tcp, on_alloc, on_read) < 0)
        request_close(r);
}

/* Closes the connections older than REQUEST_MS (headers never finished, or an answer the
 * client does not take). */
static void on_sweep(uv_timer_t *t)
{
    sl_http *h = t->data;
    double now = (double)uv_now(t->loop);
    for (request *r = h->reqs, *next; r; r = next) {
        next = r->next;
        if (now - r->since_ms >= REQUEST_MS)
            request_close(r);
    }
}

int sl_http_listen(sl_http **out, uv_loop_t *loop, const char *host, int port,
                   sl_http_render render, void *ud, char *err, size_t errlen)
{
    sl_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return SL_ENOMEM;
    }
    h->render = render;
    h->ud = ud;
    struct sockaddr_storage sa;
    int rc = sl_net_addr(host, port, &sa), code = rc ? SL_EINVAL : SL_EIO;
    uv_tcp_init(loop, &h->tcp);
    uv_timer_init(loop, &h->sweep);
    h->tcp.data = h->sweep.data = h;
    h->handles = 2;
    if (rc || (rc = uv_tcp_bind(&h->tcp, (struct sockaddr *)&sa, 0)) ||
        (rc = uv_listen((uv_stream_t *)&h->tcp, 64, on_connection))) {
        snprintf(err, errlen, "metrics on %s:%d: %s", host, port, uv_strerror(rc));
        sl_http_close(h);
        return code;
    }
    h->port = sl_net_local_port(&h->tcp);
    uv_timer_start(&h->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    *out = h;
    return 0;
}

int sl_http_port(const sl_http *h)
{
    return h->port;
}

void sl_http_close(sl_http *h)
{
    if (!h || h->closing)
        return;
    h->closing = true;
    while (h->reqs)
        request_close(h->reqs);
    uv_close((uv_handle_t *)&h->tcp, handle_closed);
    uv_close((uv_handle_t *)&h->sweep, handle_closed);
}
