/*
 * client.c: a blocking client of the sightline protocol (see client.h), for tests, the load
 * generator and examples: blocking sockets and poll(), requests encoded with the server's
 * own codec (proto/codec.c) and sent at once, one frame.
 *
 * Received bytes collect in one buffer that grows to hold the largest frame; the frame
 * handed out by sl_client_next points into that buffer and the client's msgpack zone, so it
 * stays valid only until the next call, which first drops it from the buffer.
 */
#include "proto/client.h"

#include "base/clock.h"
#include "base/vec.h"
#include "proto/codec.h"

#include <math.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The node addresses kept from a cluster node's welcome. */
#define MAX_NODES 32

/* Each receive asks for at least this much room; the first buffer holds 64 KiB. */
#define RECV_ROOM 4096u
#define RECV_FIRST (64u << 10)

struct sl_client {
    int fd;
    char session[64];
    sl_obuf out;
    sl_vec in;              /* bytes received (items of one byte) */
    size_t consumed;        /* the head of `in` that the last frame handed out takes */
    msgpack_zone zone;
    char nodes[MAX_NODES][64];  /* welcome.nodes[i].listen */
    size_t nnodes;
};

static int send_all(sl_client *c, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t k = send(c->fd, b, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return SL_EIO;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Begins a request frame: a map of `fields` entries besides t and (when nonzero) rid. */
static void begin(sl_client *c, sl_enc *e, const char *t, uint32_t fields, uint64_t rid)
{
    sl_enc_begin(e, &c->out);
    sl_enc_map(e, fields + 1 + (rid != 0));
    sl_enc_kv_str(e, "t", t);
    if (rid)
        sl_enc_kv_u64(e, "rid", rid);
}

/* Begins a request about one entity: `fields` entries, the first two the space and the id. */
static void begin_entity(sl_client *c, sl_enc *e, const char *t, uint32_t fields,
                         const char *space, uint64_t id, uint64_t rid)
{
    begin(c, e, t, fields, rid);
    sl_enc_kv_str(e, "space", space);
    sl_enc_kv_u64(e, "e", id);
}

/* Ends the frame and sends it; 0, or -1 when encoding or sending failed. */
static int send_frame(sl_client *c, sl_enc *e)
{
    sl_enc_end(e);
    int rc = c->out.failed ? -1 : send_all(c, c->out.bytes.p, c->out.bytes.n);
    c->out.bytes.n = 0;
    c->out.failed = false;
    return rc;
}

/* Opens a TCP connection to host:port (the first address that answers); 0 or -1 and err. */
static int dial(sl_client *c, const char *host, int port, char *err, size_t errlen)
{
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(host, portstr, &hints, &ai);
    if (g) {
        snprintf(err, errlen, "%s: %s", host, gai_strerror(g));
        return SL_EIO;
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
        return SL_EIO;
    }
    return 0;
}

/* Says hello and waits for the welcome; 0, or -1 with the server's error (or why) in err. */
static int hello(sl_client *c, const char *token, const char *session, char *err,
                 size_t errlen)
{
    sl_enc e;
    begin(c, &e, "hello", 1 + (token != NULL) + (session != NULL), 0);
    sl_enc_kv_u64(&e, "v", SL_PROTO_VERSION);
    if (token)
        sl_enc_kv_str(&e, "token", token);
    if (session)
        sl_enc_kv_str(&e, "session", session);
    sl_client_frame f;
    if (send_frame(c, &e) || sl_client_next(c, &f, 5000) != 1) {
        snprintf(err, errlen, "no welcome from the server");
        return SL_EIO;
    }
    if (!sl_frame_is(&f, "welcome")) {
        char code[64], msg[256];
        snprintf(err, errlen, "%s: %s", sl_frame_str(&f, "code", code, sizeof code),
                 sl_frame_str(&f, "msg", msg, sizeof msg));
        return SL_EIO;
    }
    sl_frame_str(&f, "session", c->session, sizeof c->session);
    const msgpack_object *nodes = sl_frame_get(&f, "nodes");
    for (uint32_t i = 0; nodes && nodes->type == MSGPACK_OBJECT_ARRAY &&
                         i < nodes->via.array.size && c->nnodes < MAX_NODES; i++) {
        const msgpack_object *nd = &nodes->via.array.ptr[i];
        if (nd->type != MSGPACK_OBJECT_MAP)
            continue;
        sl_client_frame one = {.root = *nd};
        if (*sl_frame_str(&one, "listen", c->nodes[c->nnodes], sizeof c->nodes[0]))
            c->nnodes++;
    }
    return 0;
}

int sl_client_dial(sl_client **out, const char *host, int port, char *err, size_t errlen)
{
    sl_client *c = calloc(1, sizeof *c);
    if (!c || !msgpack_zone_init(&c->zone, 1u << 16)) {
        free(c);
        return sl_fail(err, errlen, SL_EIO, "out of memory");
    }
    c->fd = -1;
    if (dial(c, host, port, err, errlen)) {
        sl_client_close(c);
        return SL_EIO;
    }
    *out = c;
    return 0;
}

int sl_client_connect(sl_client **out, const char *host, int port, const char *token,
                      const char *session, char *err, size_t errlen)
{
    sl_client *c;
    if (sl_client_dial(&c, host, port, err, errlen))
        return SL_EIO;
    if (hello(c, token, session, err, errlen)) {
        sl_client_close(c);
        return SL_EIO;
    }
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
    sl_vec_free(&c->in);
    msgpack_zone_destroy(&c->zone);
    free(c);
}

const char *sl_client_session(const sl_client *c)
{
    return c->session;
}

int sl_client_fd(const sl_client *c)
{
    return c->fd;
}

const char *sl_client_node(const sl_client *c, size_t i)
{
    return i < c->nnodes ? c->nodes[i] : NULL;
}

int sl_client_create_space(sl_client *c, const char *space, float w, float h, uint64_t rid)
{
    return sl_client_create_space_with(c, space, w, h, NULL, rid);
}

int sl_client_create_space_with(sl_client *c, const char *space, float w, float h,
                                const sl_client_space_opts *o, uint64_t rid)
{
    static const sl_client_space_opts none;
    if (!o)
        o = &none;
    uint32_t n = 3 + (o->cell != 0) + (o->hyst != 0) + (o->index != NULL) +
                 (o->order != NULL) + o->stay + (o->depth != 0);
    sl_enc e;
    begin(c, &e, "space.create", n, rid);
    sl_enc_kv_str(&e, "space", space);
    sl_enc_kv_f32(&e, "w", w);
    sl_enc_kv_f32(&e, "h", h);
    if (o->cell != 0)
        sl_enc_kv_f32(&e, "cell", o->cell);
    if (o->hyst != 0)
        sl_enc_kv_f32(&e, "hyst", o->hyst);
    if (o->index)
        sl_enc_kv_str(&e, "index", o->index);
    if (o->order)
        sl_enc_kv_str(&e, "order", o->order);
    if (o->stay) {
        sl_enc_str(&e, "stay");
        sl_enc_bool(&e, true);
    }
    if (o->depth != 0)
        sl_enc_kv_f32(&e, "depth", o->depth);
    return send_frame(c, &e);
}

int sl_client_add(sl_client *c, const char *space, uint64_t id, float x, float y, float r,
                  uint64_t rid)
{
    sl_enc e;
    begin_entity(c, &e, "add", 5, space, id, rid);
    sl_enc_kv_f32(&e, "x", x);
    sl_enc_kv_f32(&e, "y", y);
    sl_enc_kv_f32(&e, "r", r);
    return send_frame(c, &e);
}

int sl_client_add_ex(sl_client *c, const char *space, uint64_t id, float x, float y, float r,
                     uint32_t layer, uint32_t mask, uint64_t rid)
{
    sl_enc e;
    begin_entity(c, &e, "add", 7, space, id, rid);
    sl_enc_kv_f32(&e, "x", x);
    sl_enc_kv_f32(&e, "y", y);
    sl_enc_kv_f32(&e, "r", r);
    sl_enc_kv_u64(&e, "layer", layer);
    sl_enc_kv_u64(&e, "mask", mask);
    return send_frame(c, &e);
}

int sl_client_move(sl_client *c, const char *space, uint64_t id, float x, float y, uint64_t rid)
{
    sl_enc e;
    begin_entity(c, &e, "move", 4, space, id, rid);
    sl_enc_kv_f32(&e, "x", x);
    sl_enc_kv_f32(&e, "y", y);
    return send_frame(c, &e);
}

int sl_client_add3(sl_client *c, const char *space, uint64_t id, float x, float y, float z,
                   float r, uint32_t layer, uint32_t mask, uint64_t rid)
{
    sl_enc e;
    begin_entity(c, &e, "add", 8, space, id, rid);
    sl_enc_kv_f32(&e, "x", x);
    sl_enc_kv_f32(&e, "y", y);
    sl_enc_kv_f32(&e, "z", z);
    sl_enc_kv_f32(&e, "r", r);
    sl_enc_kv_u64(&e, "layer", layer);
    sl_enc_kv_u64(&e, "mask", mask);
    return send_frame(c, &e);
}

int sl_client_move3(sl_client *c, const char *space, uint64_t id, float x, float y, float z,
                    uint64_t rid)
{
    sl_enc e;
    begin_entity(c, &e, "move", isnan(z) ? 4 : 5, space, id, rid);
    sl_enc_kv_f32(&e, "x", x);
    sl_enc_kv_f32(&e, "y", y);
    if (!isnan(z))
        sl_enc_kv_f32(&e, "z", z);
    return send_frame(c, &e);
}

int sl_client_moves3(sl_client *c, const char *space, const uint64_t *ids, const float *xyz,
                     uint32_t n, uint64_t rid)
{
    sl_enc e;
    begin(c, &e, "moves", 4, rid);
    sl_enc_kv_str(&e, "space", space);
    sl_enc_str(&e, "e");
    sl_enc_array(&e, n);
    for (uint32_t i = 0; i < n; i++)
        sl_enc_u64(&e, ids[i]);
    sl_enc_str(&e, "xy");
    sl_enc_array(&e, 2 * n);
    for (uint32_t i = 0; i < n; i++) {
        sl_enc_f32(&e, xyz[3 * i]);
        sl_enc_f32(&e, xyz[3 * i + 1]);
    }
    sl_enc_str(&e, "zs");
    sl_enc_array(&e, n);
    for (uint32_t i = 0; i < n; i++) {
        if (isnan(xyz[3 * i + 2]))
            sl_enc_nil(&e);
        else
            sl_enc_f32(&e, xyz[3 * i + 2]);
    }
    return send_frame(c, &e);
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
    return send_frame(c, &e);
}

int sl_client_adds(sl_client *c, const char *space, const sl_client_entity *v, uint32_t n,
                   uint64_t rid)
{
    sl_enc e;
    begin(c, &e, "adds", 6, rid);
    sl_enc_kv_str(&e, "space", space);
    sl_enc_str(&e, "e");
    sl_enc_array(&e, n);
    for (uint32_t i = 0; i < n; i++)
        sl_enc_u64(&e, v[i].id);
    sl_enc_str(&e, "xy");
    sl_enc_array(&e, 2 * n);
    for (uint32_t i = 0; i < n; i++) {
        sl_enc_f32(&e, v[i].x);
        sl_enc_f32(&e, v[i].y);
    }
    sl_enc_str(&e, "radii");
    sl_enc_array(&e, n);
    for (uint32_t i = 0; i < n; i++)
        sl_enc_f32(&e, v[i].r);
    sl_enc_str(&e, "layers");
    sl_enc_array(&e, n);
    for (uint32_t i = 0; i < n; i++)
        sl_enc_u64(&e, v[i].layer);
    sl_enc_str(&e, "masks");
    sl_enc_array(&e, n);
    for (uint32_t i = 0; i < n; i++)
        sl_enc_u64(&e, v[i].mask);
    return send_frame(c, &e);
}

int sl_client_remove(sl_client *c, const char *space, uint64_t id, uint64_t rid)
{
    sl_enc e;
    begin_entity(c, &e, "remove", 2, space, id, rid);
    return send_frame(c, &e);
}

int sl_client_hysteresis(sl_client *c, const char *space, uint64_t id, float h, uint64_t rid)
{
    sl_enc e;
    begin_entity(c, &e, "hysteresis", 3, space, id, rid);
    sl_enc_str(&e, "hyst");
    sl_enc_f32(&e, h);
    return send_frame(c, &e);
}

int sl_client_lod(sl_client *c, const char *space, uint64_t id, const sl_client_band *bands,
                  uint32_t n, uint64_t rid)
{
    sl_enc e;
    begin_entity(c, &e, "lod", 3, space, id, rid);
    sl_enc_str(&e, "bands");
    sl_enc_array(&e, 2 * n);
    for (uint32_t i = 0; i < n; i++) {
        sl_enc_f32(&e, bands[i].distance);
        sl_enc_u64(&e, bands[i].period);
    }
    return send_frame(c, &e);
}

int sl_client_relate(sl_client *c, const char *space, uint64_t w, uint64_t t, const char *rel,
                     uint64_t rid)
{
    sl_enc e;
    begin_entity(c, &e, "relate", 4, space, w, rid);
    sl_enc_kv_u64(&e, "target", t);
    sl_enc_kv_str(&e, "rel", rel);
    return send_frame(c, &e);
}

int sl_client_always(sl_client *c, const char *space, uint64_t id, bool on, uint64_t rid)
{
    sl_enc e;
    begin_entity(c, &e, "always", 3, space, id, rid);
    sl_enc_str(&e, "on");
    sl_enc_bool(&e, on);
    return send_frame(c, &e);
}

int sl_client_cap(sl_client *c, const char *space, uint64_t id, uint32_t n, float margin,
                  uint64_t rid)
{
    sl_enc e;
    begin_entity(c, &e, "cap", 4, space, id, rid);
    sl_enc_kv_u64(&e, "cap", n);
    sl_enc_kv_f32(&e, "margin", margin);
    return send_frame(c, &e);
}

int sl_client_priority(sl_client *c, const char *space, uint64_t id, int32_t p, uint64_t rid)
{
    sl_enc e;
    begin_entity(c, &e, "priority", 3, space, id, rid);
    sl_enc_str(&e, "priority");
    sl_enc_i64(&e, p);
    return send_frame(c, &e);
}

int sl_client_group(sl_client *c, const char *space, uint64_t id, uint32_t group, uint64_t rid)
{
    sl_enc e;
    begin_entity(c, &e, "group", 3, space, id, rid);
    sl_enc_kv_u64(&e, "group", group);
    return send_frame(c, &e);
}

int sl_client_subscribe(sl_client *c, const char *space, uint32_t group, bool on, uint64_t rid)
{
    sl_enc e;
    begin(c, &e, on ? "subscribe" : "unsubscribe", 2, rid);
    sl_enc_kv_str(&e, "space", space);
    sl_enc_kv_u64(&e, "group", group);
    return send_frame(c, &e);
}

int sl_client_query(sl_client *c, const char *space, float x, float y, float r, float x1,
                    float y1, uint32_t mask, uint32_t limit, uint64_t rid)
{
    bool rect = !isnan(x1);
    sl_enc e;
    begin(c, &e, "query", rect ? 7 : 6, rid);
    sl_enc_kv_str(&e, "space", space);
    sl_enc_kv_f32(&e, "x", x);
    sl_enc_kv_f32(&e, "y", y);
    if (rect) {
        sl_enc_kv_f32(&e, "x1", x1);
        sl_enc_kv_f32(&e, "y1", y1);
    } else {
        sl_enc_kv_f32(&e, "r", r);
    }
    sl_enc_kv_u64(&e, "mask", mask);
    sl_enc_kv_u64(&e, "limit", limit);
    return send_frame(c, &e);
}

int sl_client_query3(sl_client *c, const char *space, float x, float y, float z, float r,
                     float x1, float y1, float z1, uint32_t mask, uint32_t limit, uint64_t rid)
{
    bool rect = !isnan(x1);
    sl_enc e;
    begin(c, &e, "query", rect ? 9 : 7, rid);
    sl_enc_kv_str(&e, "space", space);
    sl_enc_kv_f32(&e, "x", x);
    sl_enc_kv_f32(&e, "y", y);
    sl_enc_kv_f32(&e, "z", z);
    if (rect) {
        sl_enc_kv_f32(&e, "x1", x1);
        sl_enc_kv_f32(&e, "y1", y1);
        sl_enc_kv_f32(&e, "z1", z1);
    } else {
        sl_enc_kv_f32(&e, "r", r);
    }
    sl_enc_kv_u64(&e, "mask", mask);
    sl_enc_kv_u64(&e, "limit", limit);
    return send_frame(c, &e);
}

int sl_client_region(sl_client *c, const char *space, uint64_t id, const char *shape,
                     const float *v, uint32_t nv, uint32_t mask, uint64_t rid)
{
    bool poly = strcmp(shape, "poly") == 0;
    static const char *const keys[4] = {"x", "y", "r", "x1"};
    if (nv > (poly ? 128u : strcmp(shape, "circle") == 0 ? 3u : 4u))
        return SL_EINVAL;       /* (fewer is sent as it is: the server names what is missing) */
    sl_enc e;
    begin(c, &e, "region", poly ? 5 : 4 + nv, rid);
    sl_enc_kv_str(&e, "space", space);
    sl_enc_kv_u64(&e, "region", id);
    sl_enc_kv_str(&e, "shape", shape);
    sl_enc_kv_u64(&e, "mask", mask);
    if (poly) {
        sl_enc_str(&e, "xy");
        sl_enc_array(&e, nv);
    }
    for (uint32_t i = 0; i < nv; i++) {
        if (!poly)      /* circle: x y r; rect: x y x1 y1 */
            sl_enc_str(&e, i == 3 ? "y1" : i == 2 && nv == 4 ? "x1" : keys[i]);
        sl_enc_f32(&e, v[i]);
    }
    return send_frame(c, &e);
}

int sl_client_unregion(sl_client *c, const char *space, uint64_t id, uint64_t rid)
{
    sl_enc e;
    begin(c, &e, "unregion", 2, rid);
    sl_enc_kv_str(&e, "space", space);
    sl_enc_kv_u64(&e, "region", id);
    return send_frame(c, &e);
}

int sl_client_claim(sl_client *c, const char *space, const char *session, uint64_t rid)
{
    sl_enc e;
    begin(c, &e, "claim", 2, rid);
    sl_enc_kv_str(&e, "space", space);
    sl_enc_kv_str(&e, "session", session);
    return send_frame(c, &e);
}

int sl_client_where(sl_client *c, const char *space, uint64_t rid)
{
    sl_enc e;
    begin(c, &e, "where", 1, rid);
    sl_enc_kv_str(&e, "space", space);
    return send_frame(c, &e);
}

int sl_client_prop(sl_client *c, const char *space, uint64_t id, const char *key, double num,
                   const char *str, uint64_t rid)
{
    sl_enc e;
    begin_entity(c, &e, "props", 3, space, id, rid);
    sl_enc_str(&e, "props");
    sl_enc_map(&e, 1);
    sl_enc_str(&e, key);
    if (str)
        sl_enc_str(&e, str);
    else
        sl_enc_f64(&e, num);
    return send_frame(c, &e);
}

int sl_client_ping(sl_client *c, uint64_t rid)
{
    sl_enc e;
    begin(c, &e, "ping", 0, rid);
    return send_frame(c, &e);
}

int sl_client_send_raw(sl_client *c, const void *bytes, size_t len)
{
    return send_all(c, bytes, len);
}

/* Hands out the frame at the head of the buffer when all of it has arrived: 1, 0 when it
 * has not, -1 when it is not a msgpack map. */
static int take_frame(sl_client *c, sl_client_frame *f)
{
    if (c->in.n < SL_PROTO_HEADER)
        return 0;
    size_t len = sl_proto_body_len(c->in.p);
    if (c->in.n < SL_PROTO_HEADER + len)
        return 0;
    msgpack_zone_clear(&c->zone);
    size_t off = 0;
    if (msgpack_unpack((const char *)c->in.p + SL_PROTO_HEADER, len, &off, &c->zone,
                       &f->root) != MSGPACK_UNPACK_SUCCESS || f->root.type != MSGPACK_OBJECT_MAP)
        return SL_EIO;
    c->consumed = SL_PROTO_HEADER + len;
    return 1;
}

/* Waits until deadline for bytes and appends them: 1, 0 on timeout, -1 when the connection
 * is closed or broken. Makes room for the whole frame whose header has arrived. */
static int receive(sl_client *c, double deadline)
{
    size_t need = c->in.n + RECV_ROOM;
    if (c->in.n >= SL_PROTO_HEADER && need < SL_PROTO_HEADER + sl_proto_body_len(c->in.p))
        need = SL_PROTO_HEADER + sl_proto_body_len(c->in.p);
    if (sl_grow(NULL, &c->in.p, &c->in.cap, need < RECV_FIRST ? RECV_FIRST : need, 1))
        return SL_EIO;
    for (;;) {
        int left = (int)(deadline - sl_now_ms());
        if (left < 0)
            return 0;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, left);
        if (pr == 0)
            return 0;
        if (pr < 0 && errno != EINTR)
            return SL_EIO;
        if (pr < 0)
            continue;
        ssize_t k = recv(c->fd, (char *)c->in.p + c->in.n, c->in.cap - c->in.n, 0);
        if (k <= 0)
            return SL_EIO;
        c->in.n += (size_t)k;
        return 1;
    }
}

int sl_client_next(sl_client *c, sl_client_frame *f, int timeout_ms)
{
    /* Drop the frame handed out last time. */
    if (c->consumed) {
        memmove(c->in.p, (char *)c->in.p + c->consumed, c->in.n - c->consumed);
        c->in.n -= c->consumed;
        c->consumed = 0;
    }
    double deadline = sl_now_ms() + timeout_ms;
    int rc;
    while ((rc = take_frame(c, f)) == 0 && (rc = receive(c, deadline)) == 1)
        continue;
    return rc;
}

int sl_client_wait(sl_client *c, const char *t, uint64_t rid, sl_client_frame *f, int timeout_ms)
{
    double deadline = sl_now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(deadline - sl_now_ms());
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
