/*
 * http.c: the HTTP endpoint of net/http.h.
 *
 * A minimal HTTP/1.0 server for the server's own pages (today /metrics): each connection
 * reads one request up to the end of its headers (at most 8 KiB, else 431), gets one answer
 * rendered into one buffer, and is closed once the answer is written. Connections are not
 * tracked: sl_http_close closes only the listener, and a request being answered finishes
 * on its own.
 */
#include "net/http.h"

#include "base/common.h"
#include "net/net.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sl_http {
    uv_tcp_t tcp;
    sl_http_render render;
    void *ud;
    int port;
};

typedef struct request {
    uv_tcp_t tcp;           /* first: the handle's address is the request's */
    sl_http *h;
    char in[8192];
    size_t n;
    uv_write_t wr;
    char *out;
    bool answered;
} request;

static void request_closed(uv_handle_t *h)
{
    request *r = (request *)h;
    free(r->out);
    free(r);
}

static void written(uv_write_t *req, int status)
{
    (void)status;
    request *r = req->data;
    uv_close((uv_handle_t *)&r->tcp, request_closed);
}

/* Writes the status line, the headers and the body, then closes (or closes at once when
 * there is no memory for the answer). */
static void answer(request *r, const char *status, const char *type, const char *body,
                   size_t blen)
{
    size_t cap = blen + 256;
    r->out = malloc(cap);
    if (!r->out) {
        uv_close((uv_handle_t *)&r->tcp, request_closed);
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
        uv_close((uv_handle_t *)&r->tcp, request_closed);
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
            uv_close((uv_handle_t *)&r->tcp, request_closed);
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
    if (status < 0)
        return;
    request *r = calloc(1, sizeof *r);
    if (!r)
        return;
    r->h = h;
    uv_tcp_init(server->loop, &r->tcp);
    if (uv_accept(server, (uv_stream_t *)&r->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&r->tcp, on_alloc, on_read) < 0)
        uv_close((uv_handle_t *)&r->tcp, request_closed);
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
    h->tcp.data = h;
    if (rc || (rc = uv_tcp_bind(&h->tcp, (struct sockaddr *)&sa, 0)) ||
        (rc = uv_listen((uv_stream_t *)&h->tcp, 64, on_connection))) {
        snprintf(err, errlen, "metrics on %s:%d: %s", host, port, uv_strerror(rc));
        sl_http_close(h);
        return code;
    }
    h->port = sl_net_local_port(&h->tcp);
    *out = h;
    return 0;
}

int sl_http_port(const sl_http *h)
{
    return h->port;
}

static void listener_closed(uv_handle_t *h)
{
    free(h->data);
}

void sl_http_close(sl_http *h)
{
    if (h)
        uv_close((uv_handle_t *)&h->tcp, listener_closed);
}
