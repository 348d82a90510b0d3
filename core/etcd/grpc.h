/*
 * grpc.h: a gRPC client transport in C: HTTP/2 (libnghttp2) over a libuv TCP connection,
 * with unary and streaming calls multiplexed on one connection. Messages are opaque bytes
 * here (the caller encodes them, e.g. with protobuf-c); this layer adds the gRPC framing
 * (1-byte compressed flag, 4-byte big-endian length), the headers, deadlines, status from
 * trailers, a size limit on received messages, and a PING keepalive that notices a dead
 * peer within seconds.
 *
 * Everything runs on the loop thread. Every call ends with exactly one on_close, with a
 * status: a gRPC code (0 OK, 1 CANCELLED, 4 DEADLINE_EXCEEDED, 8 RESOURCE_EXHAUSTED,
 * 14 UNAVAILABLE, ...) and a message. The call object is valid until on_close returns.
 */
#pragma once

#include "base/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct sl_grpc sl_grpc;
typedef struct sl_grpc_call sl_grpc_call;

enum {
    SL_GRPC_OK = 0, SL_GRPC_CANCELLED = 1, SL_GRPC_UNKNOWN = 2, SL_GRPC_DEADLINE = 4,
    SL_GRPC_RESOURCE_EXHAUSTED = 8, SL_GRPC_INTERNAL = 13, SL_GRPC_UNAVAILABLE = 14,
};

typedef struct sl_grpc_status {
    int code;
    char message[256];
} sl_grpc_status;

typedef struct sl_grpc_handlers {
    /* One whole response message; the bytes are valid only during this callback. */
    void (*on_message)(void *ud, sl_grpc_call *call, const uint8_t *msg, size_t len);
    /* The call is over, with its status; exactly once, and the last callback of the call. */
    void (*on_close)(void *ud, sl_grpc_call *call, const sl_grpc_status *st);
} sl_grpc_handlers;

typedef struct sl_grpc_config {
    const char *host;           /* IPv4 / IPv6 literal */
    int port;
    const char *authority;      /* :authority; NULL: host:port */
    size_t max_message;         /* largest response message accepted; 0: 64 MiB */
    double ping_interval_ms;    /* keepalive while calls are open; 0: 10000 (etcd refuses < 5 s) */
    double ping_timeout_ms;     /* no PING ack by then: the peer is dead; 0: 3000 */
    double connect_timeout_ms;  /* 0: 3000 */
    void *tls;                  /* an SSL_CTX (OpenSSL), kept by the caller: TLS with ALPN
                                   h2 and the CTX's verification; NULL: plaintext */
    const char *tls_name;       /* the name the server's certificate must carry (and SNI);
                                   NULL: host (an IP literal is checked as an address) */
} sl_grpc_config;

/*
 * Called when the connection becomes usable (up true) or is lost (up false, why says how;
 * every open call has then been closed with UNAVAILABLE). After a loss the sl_grpc is
 * dead: free it (it may be freed from inside this callback) and connect anew.
 */
typedef void (*sl_grpc_state_fn)(void *ud, sl_grpc *g, bool up, const char *why);

/*
 * Starts connecting; *out is the connection, usable for calls at once (they wait for the
 * connection). Returns 0, SL_EINVAL (host is not an IPv4 / IPv6 literal) or SL_ENOMEM.
 */
int sl_grpc_connect(sl_grpc **out, uv_loop_t *loop, const sl_grpc_config *cfg,
                    sl_grpc_state_fn state, void *ud);
/* Closes the connection: open calls end with CANCELLED before this returns; the memory
 * goes once libuv has closed the handles. NULL is a no-op. */
void sl_grpc_free(sl_grpc *g);
/* Whether the connection is established and not lost. */
bool sl_grpc_is_up(const sl_grpc *g);
/* Gives the connection up as lost (the owner judged the peer useless, e.g. an etcd member
 * without a leader): every open call ends with UNAVAILABLE and the state callback comes
 * with up false and why, before this returns. A lost connection: no-op. */
void sl_grpc_drop(sl_grpc *g, const char *why);

/*
 * Starts a call to `path` (e.g. "/etcdserverpb.KV/Range") with a deadline (timeout_ms > 0)
 * or none; *out is the call, owned by the connection until on_close returns. Returns 0,
 * SL_EIO (the connection is lost or closed) or SL_ENOMEM; on failure on_close never comes.
 * Extra header pairs (name, value, ..., NULL) may be given, e.g. "hasleader", "true".
 */
int sl_grpc_start(sl_grpc_call **out, sl_grpc *g, const char *path, double timeout_ms,
                  const sl_grpc_handlers *h, void *ud, const char *const *headers);
/* Queues one request message (copied); `last` half-closes the request stream. Returns 0,
 * SL_EINVAL (the call is over or already half-closed) or SL_ENOMEM. */
int sl_grpc_send(sl_grpc_call *c, const uint8_t *msg, size_t len, bool last);
/* Ends the call now: RST_STREAM to the server, on_close with CANCELLED before it returns. */
void sl_grpc_cancel(sl_grpc_call *c);
