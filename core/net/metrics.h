/*
 * metrics.h: a minimal HTTP/1.0 endpoint for Prometheus on the server's libuv loop: a GET of
 * /metrics answers with what `render` writes (the text exposition format); anything else
 * gets 404. One request per connection, then close.
 */
#pragma once

#include <stddef.h>
#include <uv.h>

typedef struct sl_metrics sl_metrics;
typedef size_t (*sl_metrics_render)(void *ud, char *buf, size_t len);

/* Listens on host:port (0: any free port); 0 or a libuv error with the reason in err. */
int sl_metrics_listen(sl_metrics **out, uv_loop_t *loop, const char *host, int port,
                      sl_metrics_render render, void *ud, char *err, size_t errlen);
int sl_metrics_port(const sl_metrics *m);
/* Closes the listener (open requests finish); frees it when closed. */
void sl_metrics_close(sl_metrics *m);
