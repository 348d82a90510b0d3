/*
 * client.c: see client.h. Blocking sockets and poll(); frames are encoded with the same
 * codec as the server's replies.
 */
#include "proto/client.h"

#include "proto/codec.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct sl_client {
    int fd;
    char session[64];
    sl_obuf out;
    char *in;
    size_t in_n, in_cap, consumed;
    msgpack_zone zone;
};

static int send_all(sl_client *c, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t k = send(c->fd, b, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Sends what the encoder queued in c->out. */
static int flush(sl_client *c)
{
    int rc = c->out.failed ? -1 : send_all(c, c->out.p, c->out.n);
    c->out.n = 0;
    c->out.failed = false;
    return rc;
}

static void begin(sl_client *c, sl_enc *e, const char *t, uint32_t fields, uint64_t rid)
{
    sl_enc_begin(e, &c->out);
    sl_enc_map(e, fields + 1 + (rid != 0));
    sl_enc_kv_str(e, "t", t);
    if (rid)
        sl_enc_kv_u64(e, "rid", rid);
}

int sl_client_connect(sl_client **out, const char *host, int port, const char *token,
                      const char *session, char *err, size_t errlen)
{
    sl_client *c = calloc(1, sizeof *c);
    if (!c || !msgpack_zone_init(&c->zone, 1u << 16)) {
        free(c);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->fd = -1;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(host, portstr, &hints, &ai);
    if (g) {
        snprintf(err, errlen, "%s: %s", host, gai_strerror(g));
        sl_client_close(c);
        return -1;
    }
    for (struct addrinfo *p = ai; p && c->fd < 0; p = p->ai_next) {
        c->fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
        if (c->fd >= 0 && connect(c->fd, p->ai_addr, p->ai_addrlen) < 0) {
            close(c->fd);
            c->fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (c->fd < 0) {
        snprintf(err, errlen, "cannot connect to %s:%d: %s", host, port, strerror(errno));
        sl_client_close(c);
        return -1;
    }
    sl_enc e;
    begin(c, &e, "hello", 1 + (token != NULL) + (session != NULL), 0);
    sl_enc_kv_u64(&e, "v", SL_PROTO_VERSION);
    if (token)
        sl_enc_kv_str(&e, "token", token);
    if (session)
        sl_enc_kv_str(&e, "session", session);
    sl_enc_end(&e);
    sl_client_frame f;
    if (flush(c) || sl_client_next(c, &f, 5000) != 1) {
        snprintf(err, errlen, "no welcome from the server");
        sl_client_close(c);
        return -1;
    }
    if (!sl_frame_is(&f, "welcome")) {
        char code[64], msg[256];
        snprintf(err, errlen, "%s: %s", sl_frame_str(&f, "code", code, sizeof code),
                 sl_frame_str(&f, "msg", msg, sizeof msg));
        sl_client_close(c);
        return -1;
    }
    sl_frame_str(&f, "session", c->session, sizeof c->session);
    *out = c;
    return 0;
}

void sl_client_close(sl_client *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    sl_obuf_free(&c->out);
    free(c->in);
    msgpack_zone_destroy(&c->zone);
    free(c);
}

const char *sl_client_session(const sl_client *c)
{
    return c->session;
}

int sl_client_create_space(sl_client *c, const char *space, float w, float h, uint64_t rid)
{
    sl_enc e;
    begin(c, &e, "space.create", 3, rid);
    sl_enc_kv_str(&e, "space", space);
    sl_enc_str(&e, "w");
    sl_enc_f32(&e, w);
    sl_enc_str(&e, "h");
    sl_enc_f32(&e, h);
    sl_enc_end(&e);
    return flush(c);
}

int sl_client_add(sl_client *c, const char *space, uint64_t id, float x, float y, float r,
                  uint64_t rid)
{
    sl_enc e;
    begin(c, &e, "add", 5, rid);
    sl_enc_kv_str(&e, "space", space);
    sl_enc_kv_u64(&e, "e", id);
    sl_enc_str(&e, "x");
    sl_enc_f32(&e, x);
    sl_enc_str(&e, "y");
    sl_enc_f32(&e, y);
    sl_enc_str(&e, "r");
    sl_enc_f32(&e, r);
    sl_enc_end(&e);
    return flush(c);
}

int sl_client_move(sl_client *c, const char *space, uint64_t id, float x, float y, uint64_t rid)
{
    sl_enc e;
    begin(c, &e, "move", 4, rid);
    sl_enc_kv_str(&e, "space", space);
    sl_enc_kv_u64(&e, "e", id);
    sl_enc_str(&e, "x");
    sl_enc_f32(&e, x);
    sl_enc_str(&e, "y");
    sl_enc_f32(&e, y);
    sl_enc_end(&e);
    return flush(c);
}

int sl_client_moves(sl_client *c, const char *space, const uint64_t *ids, const float *xy,
                    uint32_t n, uint64_t rid)
{
    sl_enc e;
    begin(c, &e, "moves", 3, rid);
    sl_enc_kv_str(&e, "space", space);
    sl_enc_str(&e, "e");
    sl_enc_array(&e, n);
    for (uint32_t i = 0; i < n; i++)
        sl_enc_u64(&e, ids[i]);
    sl_enc_str(&e, "xy");
    sl_enc_array(&e, 2 * n);
    for (uint32_t i = 0; i < 2 * n; i++)
        sl_enc_f32(&e, xy[i]);
    sl_enc_end(&e);
    return flush(c);
}

int sl_client_remove(sl_client *c, const char *space, uint64_t id, uint64_t rid)
{
    sl_enc e;
    begin(c, &e, "remove", 2, rid);
    sl_enc_kv_str(&e, "space", space);
    sl_enc_kv_u64(&e, "e", id);
    sl_enc_end(&e);
    return flush(c);
}

int sl_client_prop(sl_client *c, const char *space, uint64_t id, const char *key, double num,
                   const char *str, uint64_t rid)
{
    sl_enc e;
    begin(c, &e, "props", 3, rid);
    sl_enc_kv_str(&e, "space", space);
    sl_enc_kv_u64(&e, "e", id);
    sl_enc_str(&e, "props");
    sl_enc_map(&e, 1);
    sl_enc_str(&e, key);
    if (str)
        sl_enc_str(&e, str);
    else
        sl_enc_f64(&e, num);
    sl_enc_end(&e);
    return flush(c);
}

int sl_client_ping(sl_client *c, uint64_t rid)
{
    sl_enc e;
    begin(c, &e, "ping", 0, rid);
    sl_enc_end(&e);
    return flush(c);
}

int sl_client_send_raw(sl_client *c, const void *bytes, size_t len)
{
    return send_all(c, bytes, len);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int sl_client_next(sl_client *c, sl_client_frame *f, int timeout_ms)
{
    /* Drop the frame handed out last time. */
    if (c->consumed) {
        memmove(c->in, c->in + c->consumed, c->in_n - c->consumed);
        c->in_n -= c->consumed;
        c->consumed = 0;
    }
    double deadline = now_ms() + timeout_ms;
    for (;;) {
        if (c->in_n >= SL_PROTO_HEADER) {
            const unsigned char *h = (const unsigned char *)c->in;
            size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
            if (c->in_n >= SL_PROTO_HEADER + len) {
                msgpack_zone_clear(&c->zone);
                size_t off = 0;
                if (msgpack_unpack(c->in + SL_PROTO_HEADER, len, &off, &c->zone, &f->root) !=
                        MSGPACK_UNPACK_SUCCESS || f->root.type != MSGPACK_OBJECT_MAP)
                    return -1;
                c->consumed = SL_PROTO_HEADER + len;
                return 1;
            }
            if (SL_PROTO_HEADER + len > c->in_cap) {
                char *p = realloc(c->in, SL_PROTO_HEADER + len);
                if (!p)
                    return -1;
                c->in = p;
                c->in_cap = SL_PROTO_HEADER + len;
            }
        }
        if (c->in_cap - c->in_n < 4096) {
            size_t cap = c->in_cap ? c->in_cap * 2 : 65536;
            char *p = realloc(c->in, cap);
            if (!p)
                return -1;
            c->in = p;
            c->in_cap = cap;
        }
        int left = (int)(deadline - now_ms());
        if (left < 0)
            return 0;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, left);
        if (pr == 0)
            return 0;
        if (pr < 0 && errno != EINTR)
            return -1;
        if (pr < 0)
            continue;
        ssize_t k = recv(c->fd, c->in + c->in_n, c->in_cap - c->in_n, 0);
        if (k <= 0)
            return -1;
        c->in_n += (size_t)k;
    }
}

int sl_client_wait(sl_client *c, const char *t, uint64_t rid, sl_client_frame *f, int timeout_ms)
{
    double deadline = now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(deadline - now_ms());
        int rc = sl_client_next(c, f, left > 0 ? left : 0);
        if (rc != 1)
            return rc;
        if (sl_frame_is(f, t) && (!rid || sl_frame_u64(f, "rid") == rid))
            return 1;
    }
}

const msgpack_object *sl_frame_get(const sl_client_frame *f, const char *key)
{
    size_t n = strlen(key);
    for (uint32_t i = 0; i < f->root.via.map.size; i++) {
        const msgpack_object *k = &f->root.via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            !memcmp(k->via.str.ptr, key, n))
            return &f->root.via.map.ptr[i].val;
    }
    return NULL;
}

const char *sl_frame_str(const sl_client_frame *f, const char *key, char *buf, size_t len)
{
    const msgpack_object *o = sl_frame_get(f, key);
    if (!o || o->type != MSGPACK_OBJECT_STR)
        snprintf(buf, len, "%s", "");
    else
        snprintf(buf, len, "%.*s", (int)o->via.str.size, o->via.str.ptr);
    return buf;
}

bool sl_frame_is(const sl_client_frame *f, const char *t)
{
    char buf[32];
    return strcmp(sl_frame_str(f, "t", buf, sizeof buf), t) == 0;
}

uint64_t sl_frame_u64(const sl_client_frame *f, const char *key)
{
    const msgpack_object *o = sl_frame_get(f, key);
    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? o->via.u64 : 0;
}
