/*
 * grpc.c: a gRPC client transport, HTTP/2 (nghttp2) over one libuv TCP connection, on
 * which any number of unary and streaming calls are multiplexed (see grpc.h).
 *
 * Two things a reader must know first.
 *
 * nghttp2 runs in "memory" mode and is never asked to send from inside its own callbacks.
 * Bytes read from the socket go in through nghttp2_session_mem_recv, and the bytes nghttp2
 * wants to send come out of nghttp2_session_mem_send into g->out, which libuv writes. The
 * user's callbacks (on_message, on_close, the state callback) run inside mem_recv and may
 * start, feed or cancel calls from there, and nghttp2 forbids re-entering its send side at
 * that point. So starting, sending and finishing a call only schedule a flush: an idle
 * handle runs flush_now on the next loop turn, outside every nghttp2 callback.
 *
 * The gRPC framing. Every message, in both directions, is a 5-byte prefix (a 1-byte
 * "compressed" flag, always 0 here since we announce no compression, then the length as 4
 * bytes big-endian) followed by that many bytes of protobuf. HTTP/2 DATA frames ignore
 * message boundaries: one message (a watch response can be many megabytes) may span many
 * frames, and one frame may hold several messages. So each call gathers response bytes in
 * c->in and hands over only whole messages (on_data). Request messages queue in c->out; the
 * stream's data provider (read_request) hands them to nghttp2, and while the queue is empty
 * but the request stream is still open it answers "deferred" until sl_grpc_send resumes it.
 *
 * A call's status comes in the trailers (grpc-status, grpc-message), or alone in the first
 * HEADERS frame when that frame also ends the stream ("trailers-only", which is how etcd
 * reports most errors). A stream that ends without grpc-status is an error: UNAVAILABLE if
 * the server refused the stream before doing anything, else UNKNOWN.
 *
 * TLS (when the config has an SSL_CTX) sits between the socket and nghttp2 on memory BIOs,
 * in the same memory style: socket bytes go into the read BIO and come out of SSL_read
 * into nghttp2; nghttp2's bytes go through SSL_write, and the write BIO's bytes to the
 * socket. What nghttp2 produces before the handshake is done waits in g->plain. The
 * connection is announced up only once the handshake succeeded (certificate verified,
 * the name checked, ALPN "h2" agreed).
 *
 * A connection that is lost (read error, EOF, GOAWAY, a keepalive PING unanswered) is dead
 * for good: every open call ends with UNAVAILABLE and the owner is told, and it connects
 * anew (etcd.c does that with backoff). The struct and its calls are freed only from libuv's
 * close callbacks, once every handle they own has closed: g->handles counts them.
 */
#include "etcd/grpc.h"

#include "base/vec.h"

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * A byte queue: appended at the end, consumed from the front (off). Consumed bytes are
 * dropped lazily, when the queue becomes empty or before it would have to grow, so a queue
 * that is drained as fast as it fills never moves its bytes.
 */
typedef struct bytes {
    sl_vec v;                   /* items of one byte */
    size_t off;                 /* the bytes before off have been consumed */
} bytes;

static size_t bytes_len(const bytes *b)
{
    return b->v.n - b->off;
}

/* The first unconsumed byte; only when bytes_len(b) > 0. */
static const uint8_t *bytes_data(const bytes *b)
{
    return (const uint8_t *)b->v.p + b->off;
}

static void bytes_clear(bytes *b)
{
    b->v.n = b->off = 0;
}

/* Appends n bytes; 0, or SL_ENOMEM with the queue's content unchanged. */
static int bytes_put(bytes *b, const void *p, size_t n)
{
    if (b->off && b->off == b->v.n)
        bytes_clear(b);
    if (b->off && b->v.n + n > b->v.cap) {
        memmove(b->v.p, bytes_data(b), bytes_len(b));
        b->v.n -= b->off;
        b->off = 0;
    }
    if (n && sl_vec_append(&b->v, p, 1, n) == SIZE_MAX)
        return SL_ENOMEM;
    return 0;
}

struct sl_grpc_call {
    uv_timer_t deadline;        /* first: the call is freed in this handle's close callback */
    sl_grpc *g;
    sl_grpc_call *prev, *next;  /* the connection's open calls */
    int32_t stream;             /* the HTTP/2 stream id */
    sl_grpc_handlers h;
    void *ud;
    bytes out, in;              /* request bytes to send; response bytes not yet a message */
    bool out_last;              /* the last request message is queued: then END_STREAM */
    bool deferred;              /* read_request answered "deferred": resume on the next send */
    bool closed;                /* on_close has been called; the struct waits for its timer */
    int http_status;
    int grpc_status;            /* +1000 once seen, so that 0 (OK) differs from "none yet" */
    char grpc_message[256];
};

struct sl_grpc {
    uv_tcp_t tcp;
    uv_connect_t conn_req;
    uv_idle_t flusher;          /* runs flush_now on the next loop turn */
    uv_timer_t ping_timer, conn_timer;
    uv_write_t wr;
    uv_loop_t *loop;
    sl_grpc_config cfg;
    char authority[128];
    sl_grpc_state_fn state;
    void *ud;
    nghttp2_session *h2;
    bytes out, wbuf;            /* bytes nghttp2 produced; bytes libuv is writing */
    bool tcp_up;                /* the socket is connected: bytes may be written */
    bool connected, writing;    /* connected: usable (TLS handshake done, if TLS) */
    SSL *ssl;                   /* TLS, or NULL */
    BIO *rbio, *wbio;           /* its memory BIOs (owned by ssl) */
    bytes plain;                /* nghttp2's bytes waiting for the TLS handshake */
    bool dead;                  /* lost: no more calls, no more I/O */
    bool freed;                 /* sl_grpc_free was called: the handles are closing */
    bool ping_outstanding;
    bool in_recv;               /* inside nghttp2_session_mem_recv: the session must live */
    double ping_sent_ms;
    sl_grpc_call *calls;
    size_t ncalls;
    int handles;                /* libuv handles still to close before the struct can go */
};

/* The loop's cached time (ms), not sl_now_ms: the keepalive compares it with the times
 * its libuv timers fire at, which are on the same clock. */
static double loop_ms(uv_loop_t *loop)
{
    return (double)uv_now(loop);
}

static void schedule_flush(sl_grpc *g);
static void fail(sl_grpc *g, const char *why);

/* ---- calls -------------------------------------------------------------------------------- */

/* The connection's last handle has closed after sl_grpc_free: the struct can go. */
static void handle_closed(uv_handle_t *h)
{
    sl_grpc *g = h->data;
    if (--g->handles == 0 && g->freed)
        free(g);
}

static void call_freed(uv_handle_t *h)
{
    sl_grpc_call *c = (sl_grpc_call *)h;
    sl_grpc *g = c->g;
    sl_vec_free(&c->out.v);
    sl_vec_free(&c->in.v);
    free(c);
    if (--g->handles == 0 && g->freed)
        free(g);
}

static void call_link(sl_grpc *g, sl_grpc_call *c)
{
    c->next = g->calls;
    if (g->calls)
        g->calls->prev = c;
    g->calls = c;
    g->ncalls++;
}

static void call_unlink(sl_grpc *g, sl_grpc_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        g->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    g->ncalls--;
}

/*
 * Ends a call, once: unlinks it, detaches it from its stream (frames that still arrive for
 * the stream are ignored), tells its owner, and closes its timer, whose close callback frees
 * it. The owner may start other calls from on_close.
 */
static void call_finish(sl_grpc_call *c, int code, const char *msg)
{
    if (c->closed)
        return;
    c->closed = true;
    sl_grpc *g = c->g;
    call_unlink(g, c);
    if (c->stream > 0 && g->h2)
        nghttp2_session_set_stream_user_data(g->h2, c->stream, NULL);
    sl_grpc_status st = {.code = code};
    snprintf(st.message, sizeof st.message, "%s", msg ? msg : "");
    if (c->h.on_close)
        c->h.on_close(c->ud, c, &st);
    uv_timer_stop(&c->deadline);
    uv_close((uv_handle_t *)&c->deadline, call_freed);
}

/* Resets the call's stream (sent on the next flush) and ends the call with code. */
static void call_reset(sl_grpc_call *c, int code, const char *msg)
{
    if (c->stream > 0 && c->g->h2) {
        nghttp2_submit_rst_stream(c->g->h2, NGHTTP2_FLAG_NONE, c->stream, NGHTTP2_CANCEL);
        schedule_flush(c->g);
    }
    call_finish(c, code, msg);
}

static void on_deadline(uv_timer_t *t)
{
    call_reset((sl_grpc_call *)t, SL_GRPC_DEADLINE, "deadline exceeded");
}

/*
 * nghttp2's data provider for a request stream: copies queued request bytes into a DATA
 * frame. With nothing queued it ends the stream if the last message was sent, else defers
 * (nghttp2 then stops asking until nghttp2_session_resume_data).
 */
static ssize_t read_request(nghttp2_session *s, int32_t stream, uint8_t *dst, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)stream;
    (void)ud;
    sl_grpc_call *c = src->ptr;
    if (!c || c->closed) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    size_t have = bytes_len(&c->out);
    if (have == 0) {
        if (c->out_last) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        c->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = have < len ? have : len;
    memcpy(dst, bytes_data(&c->out), n);
    c->out.off += n;
    if (c->out_last && bytes_len(&c->out) == 0)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* Room for the request headers: 6 fixed, grpc-timeout, and the caller's extra pairs. */
#define NV_MAX 16

static nghttp2_nv nv_of(const char *name, const char *value)
{
    return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                        NGHTTP2_NV_FLAG_NONE};
}

/* Fills nv (NV_MAX entries) with a call's request headers; returns how many. timeout may
 * be NULL (no deadline); extra pairs past the room are dropped. */
static size_t request_headers(nghttp2_nv *nv, const sl_grpc *g, const char *path,
                              const char *timeout, const char *const *extra)
{
    size_t n = 0;
    nv[n++] = nv_of(":method", "POST");
    nv[n++] = nv_of(":scheme", g->ssl ? "https" : "http");
    nv[n++] = nv_of(":path", path);
    nv[n++] = nv_of(":authority", g->authority);
    nv[n++] = nv_of("content-type", "application/grpc");
    nv[n++] = nv_of("te", "trailers");
    if (timeout)
        nv[n++] = nv_of("grpc-timeout", timeout);
    for (size_t i = 0; extra && extra[i] && extra[i + 1] && n < NV_MAX - 2; i += 2)
        nv[n++] = nv_of(extra[i], extra[i + 1]);
    return n;
}

int sl_grpc_start(sl_grpc_call **out, sl_grpc *g, const char *path, double timeout_ms,
                  const sl_grpc_handlers *h, void *ud, const char *const *headers)
{
    if (g->dead || g->freed)
        return SL_EIO;
    sl_grpc_call *c = calloc(1, sizeof *c);
    if (!c)
        return SL_ENOMEM;
    c->g = g;
    c->h = *h;
    c->ud = ud;
    /* The deadline travels too ("<n>m": milliseconds), so etcd gives up when we do. */
    char timeout[32];
    snprintf(timeout, sizeof timeout, "%lldm", (long long)(timeout_ms > 0 ? timeout_ms : 0));
    nghttp2_nv nv[NV_MAX];
    size_t n = request_headers(nv, g, path, timeout_ms > 0 ? timeout : NULL, headers);
    nghttp2_data_provider dp = {.source.ptr = c, .read_callback = read_request};
    int32_t id = nghttp2_submit_request(g->h2, NULL, nv, n, &dp, c);
    if (id < 0) {
        free(c);
        return id == NGHTTP2_ERR_NOMEM ? SL_ENOMEM : SL_EIO;
    }
    c->stream = id;
    uv_timer_init(g->loop, &c->deadline);
    g->handles++;
    if (timeout_ms > 0)
        uv_timer_start(&c->deadline, on_deadline, (uint64_t)timeout_ms, 0);
    call_link(g, c);
    schedule_flush(g);
    *out = c;
    return 0;
}

int sl_grpc_send(sl_grpc_call *c, const uint8_t *msg, size_t len, bool last)
{
    if (c->closed || c->out_last)
        return SL_EINVAL;
    /* The 5-byte prefix: not compressed, then the length big-endian. */
    uint8_t hdr[5] = {0, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                      (uint8_t)len};
    if (bytes_put(&c->out, hdr, 5) || bytes_put(&c->out, msg, len))
        return SL_ENOMEM;
    c->out_last = last;
    if (c->deferred && c->g->h2) {
        c->deferred = false;
        nghttp2_session_resume_data(c->g->h2, c->stream);
    }
    schedule_flush(c->g);
    return 0;
}

void sl_grpc_cancel(sl_grpc_call *c)
{
    if (!c->closed)
        call_reset(c, SL_GRPC_CANCELLED, "cancelled");
}

/* ---- nghttp2 callbacks -------------------------------------------------------------------- */

/* The open call of a stream; NULL once the call has finished (see call_finish). */
static sl_grpc_call *call_of(nghttp2_session *s, int32_t stream)
{
    return nghttp2_session_get_stream_user_data(s, stream);
}

/* Decodes grpc-message, which is percent-encoded, into dst (cap bytes, NUL-terminated). */
static void percent_decode(char *dst, size_t cap, const uint8_t *src, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < cap; i++) {
        if (src[i] == '%' && i + 2 < n) {
            char hex[3] = {(char)src[i + 1], (char)src[i + 2], 0};
            dst[j++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            dst[j++] = (char)src[i];
        }
    }
    dst[j] = '\0';
}

/* One header of a response (the first HEADERS or the trailers): keeps the statuses. */
static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud)
{
    (void)flags;
    (void)ud;
    sl_grpc_call *c = call_of(s, f->hd.stream_id);
    if (!c)
        return 0;
    char v[32];
    size_t vn = valuelen < sizeof v - 1 ? valuelen : sizeof v - 1;
    memcpy(v, value, vn);
    v[vn] = '\0';
    if (namelen == 7 && !memcmp(name, ":status", 7))
        c->http_status = atoi(v);
    else if (namelen == 11 && !memcmp(name, "grpc-status", 11))
        c->grpc_status = atoi(v) + 1000;
    else if (namelen == 12 && !memcmp(name, "grpc-message", 12))
        percent_decode(c->grpc_message, sizeof c->grpc_message, value, valuelen);
    return 0;
}

/*
 * Hands every whole message in c->in to the owner. A compressed message, or one over the
 * size limit, resets the stream and ends the call (the limit is checked on the prefix, so a
 * huge message is refused before its bytes are gathered).
 */
static void call_messages(sl_grpc_call *c)
{
    size_t max = c->g->cfg.max_message;
    while (!c->closed && bytes_len(&c->in) >= 5) {
        const uint8_t *p = bytes_data(&c->in);
        size_t mlen = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
        if (p[0] != 0) {
            call_reset(c, SL_GRPC_INTERNAL, "compressed messages are not supported");
            return;
        }
        if (mlen > max) {
            char why[128];
            snprintf(why, sizeof why, "message of %zu bytes is over the limit of %zu", mlen,
                     max);
            call_reset(c, SL_GRPC_RESOURCE_EXHAUSTED, why);
            return;
        }
        if (bytes_len(&c->in) < 5 + mlen)
            return;
        c->in.off += 5 + mlen;
        if (c->h.on_message)
            c->h.on_message(c->ud, c, p + 5, mlen);
    }
}

/*
 * A chunk of a DATA frame. nghttp2's automatic flow control gives the credit back
 * (WINDOW_UPDATE) by itself as DATA is received; the owner's on_message runs here,
 * synchronously, for every whole message the chunk completes.
 */
static int on_data(nghttp2_session *s, uint8_t flags, int32_t stream, const uint8_t *data,
                   size_t len, void *ud)
{
    (void)flags;
    (void)ud;
    sl_grpc_call *c = call_of(s, stream);
    if (!c || c->closed)
        return 0;
    if (bytes_put(&c->in, data, len)) {
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, stream, NGHTTP2_INTERNAL_ERROR);
        call_finish(c, SL_GRPC_RESOURCE_EXHAUSTED, "out of memory receiving a message");
        return 0;
    }
    call_messages(c);
    return 0;
}

/* The stream is over (both ways, or reset): the call ends with the status it got. */
static int on_stream_close(nghttp2_session *s, int32_t stream, uint32_t error, void *ud)
{
    (void)ud;
    sl_grpc_call *c = call_of(s, stream);
    if (!c || c->closed)
        return 0;
    if (c->grpc_status >= 1000) {
        call_finish(c, c->grpc_status - 1000, c->grpc_message);
        return 0;
    }
    char why[96];
    if (error)
        snprintf(why, sizeof why, "stream reset by the server (HTTP/2 error %u)", error);
    else
        snprintf(why, sizeof why, "stream ended without grpc-status (HTTP %d)", c->http_status);
    call_finish(c, error == NGHTTP2_REFUSED_STREAM ? SL_GRPC_UNAVAILABLE : SL_GRPC_UNKNOWN, why);
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    sl_grpc *g = ud;
    if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK))
        g->ping_outstanding = false;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        /* etcd says goodbye (too_many_pings, or shutting down): treated like a lost
         * connection, so the owner reconnects and resumes its streams. */
        char why[96];
        snprintf(why, sizeof why, "GOAWAY from the server (error %u)", f->goaway.error_code);
        fail(g, why);
    }
    return 0;
}

/* ---- TLS ---------------------------------------------------------------------------------- */

/* Fails g with OpenSSL's reason (the error queue's first entry, or what). */
static void tls_fail(sl_grpc *g, const char *what)
{
    char why[200];
    unsigned long err = ERR_get_error();
    long vr = g->ssl ? SSL_get_verify_result(g->ssl) : X509_V_OK;
    if (vr != X509_V_OK)
        snprintf(why, sizeof why, "TLS: %s: %s", what, X509_verify_cert_error_string(vr));
    else if (err)
        snprintf(why, sizeof why, "TLS: %s: %s", what, ERR_reason_error_string(err));
    else
        snprintf(why, sizeof why, "TLS: %s", what);
    ERR_clear_error();
    fail(g, why);
}

/*
 * Moves plaintext through TLS: once the handshake is done, nghttp2's waiting bytes go in
 * through SSL_write; then everything the write BIO holds (handshake records too) goes to
 * g->out for the socket. false when g failed.
 */
static bool tls_out(sl_grpc *g)
{
    if (g->connected && bytes_len(&g->plain)) {
        int n = SSL_write(g->ssl, bytes_data(&g->plain), (int)bytes_len(&g->plain));
        if (n <= 0) {
            tls_fail(g, "write");
            return false;
        }
        g->plain.off += (size_t)n;      /* a memory BIO takes it all */
    }
    char buf[16384];
    int n;
    while ((n = BIO_read(g->wbio, buf, sizeof buf)) > 0)
        if (bytes_put(&g->out, buf, (size_t)n)) {
            fail(g, "out of memory");
            return false;
        }
    return true;
}

static void connected_now(sl_grpc *g);

/* Drives the handshake; when it is done (and h2 agreed), the connection is up. false when
 * g failed. */
static bool tls_handshake(sl_grpc *g)
{
    int rc = SSL_do_handshake(g->ssl);
    if (rc != 1) {
        int err = SSL_get_error(g->ssl, rc);
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
            tls_fail(g, "handshake");
            return false;
        }
        schedule_flush(g);      /* the records it produced */
        return true;
    }
    const unsigned char *alpn;
    unsigned alen;
    SSL_get0_alpn_selected(g->ssl, &alpn, &alen);
    if (alen != 2 || memcmp(alpn, "h2", 2) != 0) {
        fail(g, "TLS: the server did not agree to HTTP/2 (ALPN h2)");
        return false;
    }
    connected_now(g);
    return !g->dead && !g->freed;
}

/* Creates g's TLS state for host (SNI and the name check). 0 or SL_ENOMEM. */
static int tls_new(sl_grpc *g)
{
    g->ssl = SSL_new(g->cfg.tls);
    g->rbio = BIO_new(BIO_s_mem());
    g->wbio = BIO_new(BIO_s_mem());
    if (!g->ssl || !g->rbio || !g->wbio) {
        SSL_free(g->ssl);
        BIO_free(g->rbio);
        BIO_free(g->wbio);
        g->ssl = NULL;
        return SL_ENOMEM;
    }
    SSL_set_bio(g->ssl, g->rbio, g->wbio);
    SSL_set_connect_state(g->ssl);
    const char *name = g->cfg.tls_name ? g->cfg.tls_name : g->cfg.host;
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    if (uv_ip4_addr(name, 0, &a4) == 0 || uv_ip6_addr(name, 0, &a6) == 0) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(g->ssl), name);
    } else {
        SSL_set_tlsext_host_name(g->ssl, name);
        SSL_set1_host(g->ssl, name);
    }
    return 0;
}

/* ---- I/O ---------------------------------------------------------------------------------- */

static void on_written(uv_write_t *req, int status)
{
    sl_grpc *g = req->data;
    g->writing = false;
    bytes_clear(&g->wbuf);
    if (g->freed || g->dead)
        return;
    if (status < 0) {
        fail(g, uv_strerror(status));
        return;
    }
    schedule_flush(g);      /* what nghttp2 produced meanwhile */
}

/*
 * Moves what nghttp2 wants to send into g->out and, when connected and no write is in
 * flight, writes it. One write at a time: g->out and g->wbuf swap, so nghttp2 can fill one
 * while libuv writes the other; on_written schedules the next round.
 */
static void flush_now(sl_grpc *g)
{
    if (g->dead || g->freed)
        return;
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(g->h2, &data);
        if (n < 0) {
            fail(g, nghttp2_strerror((int)n));
            return;
        }
        if (n == 0)
            break;
        if (bytes_put(g->ssl ? &g->plain : &g->out, data, (size_t)n)) {
            fail(g, "out of memory");
            return;
        }
    }
    if (g->ssl && !tls_out(g))
        return;
    if (!g->tcp_up || g->writing || bytes_len(&g->out) == 0)
        return;
    bytes t = g->wbuf;
    g->wbuf = g->out;
    g->out = t;
    bytes_clear(&g->out);
    uv_buf_t b = uv_buf_init((char *)bytes_data(&g->wbuf), (unsigned)bytes_len(&g->wbuf));
    g->wr.data = g;
    int rc = uv_write(&g->wr, (uv_stream_t *)&g->tcp, &b, 1, on_written);
    if (rc < 0) {
        fail(g, uv_strerror(rc));
        return;
    }
    g->writing = true;
}

static void on_idle(uv_idle_t *h)
{
    sl_grpc *g = h->data;
    uv_idle_stop(h);
    flush_now(g);
}

/* Flushes on the next loop turn (safe from anywhere, including nghttp2's callbacks). */
static void schedule_flush(sl_grpc *g)
{
    if (!g->dead && !g->freed)
        uv_idle_start(&g->flusher, on_idle);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(suggested);
    b->len = b->base ? suggested : 0;
}

/*
 * Bytes from the socket (or out of TLS) go to nghttp2, which calls on_header, on_data and
 * the rest from inside mem_recv. Those may free the connection (the owner's callbacks may):
 * the session is then deleted here, after mem_recv has returned, never under its feet.
 * false when g is freed or dead.
 */
static bool h2_in(sl_grpc *g, const char *p, size_t n)
{
    if (!g->h2 || g->dead)
        return false;
    g->in_recv = true;
    ssize_t rc = nghttp2_session_mem_recv(g->h2, (const uint8_t *)p, n);
    g->in_recv = false;
    if (g->freed) {
        nghttp2_session_del(g->h2);
        g->h2 = NULL;
        return false;
    }
    if (rc < 0 && !g->dead)
        fail(g, nghttp2_strerror((int)rc));
    return !g->dead;
}

/* Socket bytes into TLS: the handshake first, then what SSL_read gives to nghttp2. */
static bool tls_in(sl_grpc *g, const char *p, size_t n)
{
    if (BIO_write(g->rbio, p, (int)n) != (int)n) {
        fail(g, "out of memory");
        return false;
    }
    if (!g->connected && !tls_handshake(g))
        return false;
    char buf[16384];
    while (g->connected) {
        int k = SSL_read(g->ssl, buf, sizeof buf);
        if (k > 0) {
            if (!h2_in(g, buf, (size_t)k))
                return false;
            continue;
        }
        int err = SSL_get_error(g->ssl, k);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
            break;
        if (err == SSL_ERROR_ZERO_RETURN)
            fail(g, "the server closed the TLS session");
        else
            tls_fail(g, "read");
        return false;
    }
    return !g->dead && !g->freed;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    sl_grpc *g = (sl_grpc *)st;
    if (n < 0) {
        free(b->base);
        fail(g, n == UV_EOF ? "the server closed the connection" : uv_strerror((int)n));
        return;
    }
    bool alive = n <= 0 || (g->ssl ? tls_in(g, b->base, (size_t)n) : h2_in(g, b->base, (size_t)n));
    free(b->base);
    if (alive)
        schedule_flush(g);
}

/*
 * Every 500 ms. A PING goes out only while calls are open and at most once per
 * ping_interval (etcd answers PINGs closer than 5 s apart with GOAWAY too_many_pings); its
 * ACK must come within ping_timeout, else the peer is taken for dead. That finds a peer
 * that stopped answering with the socket still open (a paused or partitioned etcd) in
 * seconds, where only the calls' deadlines would notice otherwise (and streams have none).
 */
static void on_ping_timer(uv_timer_t *t)
{
    sl_grpc *g = t->data;
    if (g->dead)
        return;
    if (g->ping_outstanding) {
        if (loop_ms(g->loop) - g->ping_sent_ms >= g->cfg.ping_timeout_ms)
            fail(g, "no answer to a keepalive PING: the peer is gone");
        return;
    }
    if (g->ncalls && loop_ms(g->loop) - g->ping_sent_ms >= g->cfg.ping_interval_ms) {
        nghttp2_submit_ping(g->h2, NGHTTP2_FLAG_NONE, NULL);
        g->ping_outstanding = true;
        g->ping_sent_ms = loop_ms(g->loop);
        schedule_flush(g);
    }
}

static void on_connect_timeout(uv_timer_t *t)
{
    sl_grpc *g = t->data;
    if (!g->connected)
        fail(g, "connect timed out");
}

static void on_connected(uv_connect_t *req, int status)
{
    sl_grpc *g = req->data;
    if (g->freed || g->dead)
        return;
    uv_timer_stop(&g->conn_timer);
    if (status < 0) {
        fail(g, uv_strerror(status));
        return;
    }
    g->tcp_up = true;
    uv_tcp_nodelay(&g->tcp, 1);
    uv_read_start((uv_stream_t *)&g->tcp, on_alloc, on_read);
    g->ping_sent_ms = loop_ms(g->loop);
    uv_timer_start(&g->ping_timer, on_ping_timer, 500, 500);
    if (g->ssl) {
        /* Up once the handshake is done; the connect timeout covers it too. */
        uv_timer_start(&g->conn_timer, on_connect_timeout, (uint64_t)g->cfg.connect_timeout_ms,
                       0);
        tls_handshake(g);
        return;
    }
    connected_now(g);
}

/* The connection is usable: the owner is told; the preface and the calls started while
 * connecting go out. */
static void connected_now(sl_grpc *g)
{
    uv_timer_stop(&g->conn_timer);
    g->connected = true;
    if (g->state)
        g->state(g->ud, g, true, "connected");
    schedule_flush(g);
}

/* The connection is lost, for good: every call fails with UNAVAILABLE, the owner is told
 * (and may free g from its callback). */
static void fail(sl_grpc *g, const char *why)
{
    if (g->dead)
        return;
    g->dead = true;
    char msg[200];
    snprintf(msg, sizeof msg, "connection to %s lost: %s", g->authority, why);
    while (g->calls)
        call_finish(g->calls, SL_GRPC_UNAVAILABLE, msg);
    uv_read_stop((uv_stream_t *)&g->tcp);
    uv_timer_stop(&g->ping_timer);
    uv_idle_stop(&g->flusher);
    if (g->state)
        g->state(g->ud, g, false, msg);
}

/* ---- the connection ----------------------------------------------------------------------- */

/*
 * Creates the HTTP/2 session and queues our SETTINGS. Windows are raised far above the
 * 64 KiB default (16 MiB a stream, 64 MiB the connection): a watch response can be many
 * megabytes, and with small windows every one of them would wait for round trips of
 * WINDOW_UPDATE. Returns 0 or SL_ENOMEM (nghttp2 fails only for memory here).
 */
static int session_new(sl_grpc *g)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb))
        return SL_ENOMEM;
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    int rc = nghttp2_session_client_new(&g->h2, cb, g);
    nghttp2_session_callbacks_del(cb);
    if (rc)
        return SL_ENOMEM;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16u << 20},
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
    };
    nghttp2_submit_settings(g->h2, NGHTTP2_FLAG_NONE, iv, 2);
    nghttp2_session_set_local_window_size(g->h2, NGHTTP2_FLAG_NONE, 0, 64 << 20);
    return 0;
}

/* Starts the connect, bounded by connect_timeout. A connect that cannot even start is
 * reported like a timeout, from the loop, never from inside sl_grpc_connect. */
static void tcp_start(sl_grpc *g, const struct sockaddr *sa)
{
    uv_tcp_init(g->loop, &g->tcp);
    uv_idle_init(g->loop, &g->flusher);
    uv_timer_init(g->loop, &g->ping_timer);
    uv_timer_init(g->loop, &g->conn_timer);
    g->tcp.data = g->flusher.data = g->ping_timer.data = g->conn_timer.data = g;
    g->handles = 4;
    g->conn_req.data = g;
    int rc = uv_tcp_connect(&g->conn_req, &g->tcp, sa, on_connected);
    uv_timer_start(&g->conn_timer, on_connect_timeout,
                   rc ? 0 : (uint64_t)g->cfg.connect_timeout_ms, 0);
}

int sl_grpc_connect(sl_grpc **out, uv_loop_t *loop, const sl_grpc_config *cfg,
                    sl_grpc_state_fn state, void *ud)
{
    struct sockaddr_storage sa;
    if (uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&sa) &&
        uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&sa))
        return SL_EINVAL;
    sl_grpc *g = calloc(1, sizeof *g);
    if (!g)
        return SL_ENOMEM;
    g->loop = loop;
    g->state = state;
    g->ud = ud;
    g->cfg = *cfg;
    g->cfg.max_message = cfg->max_message ? cfg->max_message : 64u << 20;
    g->cfg.ping_interval_ms = cfg->ping_interval_ms > 0 ? cfg->ping_interval_ms : 10000;
    g->cfg.ping_timeout_ms = cfg->ping_timeout_ms > 0 ? cfg->ping_timeout_ms : 3000;
    g->cfg.connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 3000;
    if (cfg->authority)
        snprintf(g->authority, sizeof g->authority, "%s", cfg->authority);
    else
        snprintf(g->authority, sizeof g->authority, "%s:%d", cfg->host, cfg->port);
    if (session_new(g)) {
        free(g);
        return SL_ENOMEM;
    }
    if (cfg->tls && tls_new(g)) {
        nghttp2_session_del(g->h2);
        free(g);
        return SL_ENOMEM;
    }
    tcp_start(g, (const struct sockaddr *)&sa);
    *out = g;
    return 0;
}

bool sl_grpc_is_up(const sl_grpc *g)
{
    return g->connected && !g->dead;
}

void sl_grpc_drop(sl_grpc *g, const char *why)
{
    if (!g->freed)
        fail(g, why);
}

/*
 * Ends every call with CANCELLED, then closes the handles; the struct goes in the last
 * close callback (calls' timers included). Inside mem_recv the session cannot be deleted
 * yet: on_read does it when mem_recv returns.
 */
void sl_grpc_free(sl_grpc *g)
{
    if (!g || g->freed)
        return;
    while (g->calls)
        call_finish(g->calls, SL_GRPC_CANCELLED, "the client was closed");
    g->dead = true;
    g->freed = true;
    if (!g->in_recv) {
        nghttp2_session_del(g->h2);
        g->h2 = NULL;
    }
    sl_vec_free(&g->out.v);
    sl_vec_free(&g->wbuf.v);
    sl_vec_free(&g->plain.v);
    g->out.off = g->wbuf.off = g->plain.off = 0;
    SSL_free(g->ssl);           /* and its BIOs */
    g->ssl = NULL;
    g->rbio = g->wbio = NULL;
    uv_close((uv_handle_t *)&g->tcp, handle_closed);
    uv_close((uv_handle_t *)&g->flusher, handle_closed);
    uv_close((uv_handle_t *)&g->ping_timer, handle_closed);
    uv_close((uv_handle_t *)&g->conn_timer, handle_closed);
}
