/*
 * http.h: the server's minimal HTTP/1.0 endpoint, on its libuv loop. Today it serves one
 * page: a GET of /metrics answers with what `render` writes (Prometheus' text exposition
 * format); anything else gets 404. One request per connection, then close.
 */
#pragma once

#include <stddef.h>
#include <uv.h>

typedef struct sl_http sl_http;
/* Writes the body of /metrics into buf (len bytes at most); returns the bytes written. */
typedef size_t (*sl_http_render)(void *ud, char *buf, size_t len);

/* Listens on host:port (0: any free port); returns 0, or SL_EINVAL (a bad address), SL_EIO
 * (bind or listen failed) or SL_ENOMEM, with the reason in err. */
int sl_http_listen(sl_http **out, uv_loop_t *loop, const char *host, int port,
                   sl_http_render render, void *ud, char *err, size_t errlen);
/* The port actually bound. */
int sl_http_port(const sl_http *h);
/* Closes the listener and every connection (an answer being written is cut); frees it all
 * once the handles are closed. NULL: no-op. */
void sl_http_close(sl_http *h);
