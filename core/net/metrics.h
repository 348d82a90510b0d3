/*
 * metrics.h: the old names of the HTTP endpoint (net/http.h), kept only until
 * core/server/main.c uses sl_http_* itself; then this header goes.
 */
#pragma once

#include "net/http.h"

typedef sl_http sl_metrics;
typedef sl_http_render sl_metrics_render;

static inline int sl_metrics_listen(sl_metrics **out, uv_loop_t *loop, const char *host,
                                    int port, sl_metrics_render render, void *ud, char *err,
                                    size_t errlen)
{
    return sl_http_listen(out, loop, host, port, render, ud, err, errlen);
}

static inline int sl_metrics_port(const sl_metrics *m)
{
    return sl_http_port(m);
}

static inline void sl_metrics_close(sl_metrics *m)
{
    sl_http_close(m);
}
