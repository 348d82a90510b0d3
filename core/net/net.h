/*
 * net.h: the TCP side of the server, on a libuv loop. Accepts connections, splits their
 * byte streams into frames (4-byte big-endian length, then the body), and writes whole
 * frames back, bounded: a client that sends a frame over the size limit gets an error
 * frame and is closed; a client that does not read what it is sent is cut off at the output
 * cap (its owner hears why through on_close). Neither can make the server hold unbounded
 * memory.
 *
 * Everything runs on the loop thread. The owner sees connections through callbacks and
 * writes to them by appending frames to sl_conn_out() and calling sl_conn_flush().
 */
#pragma once

#include "proto/codec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct sl_net sl_net;
typedef struct sl_conn sl_conn;

typedef struct sl_net_config {
    const char *host;       /* address to listen on (IPv4 or IPv6 literal) */
    int port;               /* 0: any free port (see sl_net_port) */
    size_t max_frame;       /* largest frame body accepted; 0: 1 MiB */
    size_t out_cap;         /* bytes queued to one client before it is cut off; 0: 32 MiB */
    double hello_ms;        /* a connection not accepted (sl_conn_accept) by then is closed
                             * with `timeout`; 0: 10 s */
    double idle_ms;         /* an accepted connection that sends nothing this long is closed
                             * with `idle`; 0: 60 s; < 0: never */
    double close_ms;        /* a closing connection waits this long for its queued frames to
                             * be written, then is dropped; 0: 2 s */
    double max_frames_per_s;    /* frames one connection may send a second (a second's worth
                                 * may come at once); 0: 2000; < 0: any */
    double max_bytes_per_s;     /* bytes likewise; 0: 64 MiB; < 0: any */
} sl_net_config;

/* What happened to connections so far. */
typedef struct sl_net_stats {
    uint64_t accepted;      /* connections accepted */
    uint64_t cut_slow;      /* cut off for not reading (the output cap) */
    uint64_t timed_out;     /* closed for no hello, or idle */
    uint64_t close_expired; /* dropped with frames unwritten after close_ms */
    uint64_t rate_refused;  /* frames refused for a connection's frame or byte rate */
} sl_net_stats;

typedef struct sl_net_callbacks {
    /* One frame body; valid only during the call. */
    void (*on_frame)(void *ud, sl_conn *c, const char *body, size_t len);
    /* The connection is going away (reason says why); no callback names it afterwards. */
    void (*on_close)(void *ud, sl_conn *c, const char *reason);
} sl_net_callbacks;

/* Listens; returns 0, or SL_EINVAL (a bad address), SL_EIO (bind or listen failed) or
 * SL_ENOMEM, with the reason in err. */
int sl_net_listen(sl_net **out, uv_loop_t *loop, const sl_net_config *cfg,
                  const sl_net_callbacks *cb, void *ud, char *err, size_t errlen);
/* The port actually bound. */
int sl_net_port(const sl_net *n);
/* Stops listening and closes every connection once what is queued to it is written; frees
 * everything once the handles are closed (run the loop). */
void sl_net_close(sl_net *n);

void sl_net_get_stats(const sl_net *n, sl_net_stats *st);

/*
 * Opens a connection to host:port (an IPv4 or IPv6 literal) that works like an accepted one:
 * its frames come to on_frame, its end to on_close (a failed connect too, with the reason),
 * data is its sl_conn_data; frames appended before it connects are sent once it has. The
 * idle deadline applies, not the hello one. 0 and *out, or SL_EINVAL (a bad address, or the
 * net is closing), SL_EIO, SL_ENOMEM.
 */
int sl_net_dial(sl_net *n, const char *host, int port, void *data, sl_conn **out);
/* The owner accepts the connection (its hello was good): the hello deadline no longer
 * applies, the idle one does. */
void sl_conn_accept(sl_conn *c);
/* The buffer to append frames to; then call sl_conn_flush. */
sl_obuf *sl_conn_out(sl_conn *c);
/* Starts writing what is queued; cuts the client off when over the output cap. */
void sl_conn_flush(sl_conn *c);
/* Sends an error frame (code, msg) after what is queued, then closes the connection. */
void sl_conn_close(sl_conn *c, const char *code, const char *msg);
/* The same, naming the request the error answers (m: the decoded request, or NULL). */
void sl_conn_close_reply(sl_conn *c, const sl_msg *m, const char *code, const char *msg);
void sl_conn_set_data(sl_conn *c, void *data);
void *sl_conn_data(const sl_conn *c);
/* "1.2.3.4:5678" */
const char *sl_conn_peer(const sl_conn *c);
/* Bytes queued and not yet written. */
size_t sl_conn_queued(const sl_conn *c);

/* ---- helpers for this layer's listeners (net.c, http.c) ----------------------------------- */

/* Fills *sa from an IPv4, or else an IPv6, literal and a port; 0 or a libuv error. */
int sl_net_addr(const char *host, int port, struct sockaddr_storage *sa);
/* The port a bound TCP handle listens on. */
int sl_net_local_port(const uv_tcp_t *tcp);
