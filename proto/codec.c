/*
 * codec.c: see codec.h. Decoding is strict: every field has one type (numbers may come as
 * any msgpack integer or float), unknown keys are ignored (so that newer clients can add
 * optional fields), and a message without its required fields is refused with the name
 * of the field.
 */
#include "proto/codec.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sl_decoder {
    msgpack_zone zone;
};

#define ZONE_CHUNK (64u << 10)

sl_decoder *sl_decoder_new(void)
{
    sl_decoder *d = malloc(sizeof *d);
    if (d && !msgpack_zone_init(&d->zone, ZONE_CHUNK)) {
        free(d);
        return NULL;
    }
    return d;
}

void sl_decoder_free(sl_decoder *d)
{
    if (!d)
        return;
    msgpack_zone_destroy(&d->zone);
    free(d);
}

static const char *const names[SL_MSG_COUNT] = {
    "hello", "ping", "space.create", "space.drop", "add", "move", "moves", "radius", "layer",
    "mask", "props", "remove",
};

const char *sl_msg_name(sl_msg_type t)
{
    return t < SL_MSG_COUNT ? names[t] : "?";
}

static sl_decode_rc bad(char *err, size_t len, sl_decode_rc rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
    return rc;
}

static bool is_key(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, s, n) == 0;
}

static bool as_double(const msgpack_object *o, double *v)
{
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *v = (double)o->via.u64; return true;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *v = (double)o->via.i64; return true;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: *v = o->via.f64; return true;
    default: return false;
    }
}

static bool as_u64(const msgpack_object *o, uint64_t *v)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *v = o->via.u64;
    return true;
}

/* Coordinates and radii are float32 on the wire and in the core; NaN and inf pass through
 * here and are refused by the space, with its message. */
static bool as_float(const msgpack_object *o, float *v)
{
    double d;
    if (!as_double(o, &d))
        return false;
    *v = (float)d;
    return true;
}

static bool as_str(const msgpack_object *o, sl_str *s)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return false;
    *s = (sl_str){o->via.str.ptr, o->via.str.size};
    return true;
}

/* Which fields a message type needs (bit per field). */
enum {
    F_SPACE = 1, F_E = 2, F_X = 4, F_Y = 8, F_R = 16, F_LAYER = 32, F_MASK = 64, F_W = 128,
    F_H = 256, F_V = 512, F_IDS = 1024, F_XY = 2048, F_PROPS = 4096,
};
static const unsigned required[SL_MSG_COUNT] = {
    [SL_MSG_HELLO] = F_V,
    [SL_MSG_PING] = 0,
    [SL_MSG_SPACE_CREATE] = F_SPACE | F_W | F_H,
    [SL_MSG_SPACE_DROP] = F_SPACE,
    [SL_MSG_ADD] = F_SPACE | F_E | F_X | F_Y | F_R,
    [SL_MSG_MOVE] = F_SPACE | F_E | F_X | F_Y,
    [SL_MSG_MOVES] = F_SPACE | F_IDS | F_XY,
    [SL_MSG_RADIUS] = F_SPACE | F_E | F_R,
    [SL_MSG_LAYER] = F_SPACE | F_E | F_LAYER,
    [SL_MSG_MASK] = F_SPACE | F_E | F_MASK,
    [SL_MSG_PROPS] = F_SPACE | F_E | F_PROPS,
    [SL_MSG_REMOVE] = F_SPACE | F_E,
};
static const char *const field_names[] = {
    "space", "e", "x", "y", "r", "layer", "mask", "w", "h", "v", "e", "xy", "props",
};

/*
 * Walks the msgpack bytes without building anything, and checks that every array and map
 * claims no more elements than bytes remain (each element takes at least one). msgpack-c
 * allocates a container's storage from its claimed count before reading the elements, so
 * without this check a 20-byte frame claiming 2^32 elements would ask for 100 GB (found by
 * the fuzz target). With it, decoding a frame allocates O(its length).
 */
static bool precheck(const unsigned char *p, size_t len)
{
    size_t i = 0, pending = 1;
    while (pending) {
        if (i >= len)
            return false;
        pending--;
        unsigned b = p[i++];
        size_t skip = 0, items = 0, lenbytes = 0;
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            /* fixints, nil, booleans: the byte itself */
        } else if (b >= 0x80 && b <= 0x8f) {
            items = 2 * (b & 0x0f);
        } else if (b >= 0x90 && b <= 0x9f) {
            items = b & 0x0f;
        } else if (b >= 0xa0 && b <= 0xbf) {
            skip = b & 0x1f;
        } else {
            switch (b) {
            case 0xc4: case 0xd9: lenbytes = 1; break;          /* bin8, str8 */
            case 0xc5: case 0xda: lenbytes = 2; break;          /* bin16, str16 */
            case 0xc6: case 0xdb: lenbytes = 4; break;          /* bin32, str32 */
            case 0xc7: lenbytes = 1; skip = 1; break;           /* ext8: len, type */
            case 0xc8: lenbytes = 2; skip = 1; break;
            case 0xc9: lenbytes = 4; skip = 1; break;
            case 0xca: skip = 4; break;
            case 0xcb: skip = 8; break;
            case 0xcc: case 0xd0: skip = 1; break;
            case 0xcd: case 0xd1: skip = 2; break;
            case 0xce: case 0xd2: skip = 4; break;
            case 0xcf: case 0xd3: skip = 8; break;
            case 0xd4: skip = 2; break;                         /* fixext1..16 */
            case 0xd5: skip = 3; break;
            case 0xd6: skip = 5; break;
            case 0xd7: skip = 9; break;
            case 0xd8: skip = 17; break;
            case 0xdc: case 0xde: lenbytes = 2; items = 1; break;   /* counts below */
            case 0xdd: case 0xdf: lenbytes = 4; items = 1; break;
            default: return false;                              /* 0xc1: never used */
            }
        }
        if (lenbytes) {
            if (len - i < lenbytes)
                return false;
            size_t n = 0;
            for (size_t k = 0; k < lenbytes; k++)
                n = n << 8 | p[i + k];
            i += lenbytes;
            if (items)      /* array16/32 or map16/32 */
                items = (b == 0xde || b == 0xdf) ? 2 * n : n;
            else
                skip += n;
        }
        if (len - i < skip)
            return false;
        i += skip;
        if (items > len - i || pending + items > len - i)
            return false;
        pending += items;
    }
    return i == len;
}

sl_decode_rc sl_decode(sl_decoder *d, const char *body, size_t len, sl_msg *m, char *err,
                       size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (!precheck((const unsigned char *)body, len))
        return bad(err, errlen, SL_DECODE_BAD_FRAME, "malformed msgpack");
    msgpack_zone_clear(&d->zone);
    msgpack_object root;
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack(body, len, &off, &d->zone, &root);
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len)
        return bad(err, errlen, SL_DECODE_BAD_FRAME, ur == MSGPACK_UNPACK_NOMEM_ERROR
                   ? "out of memory decoding the frame" : ur == MSGPACK_UNPACK_SUCCESS
                   ? "trailing bytes after the message" : "malformed msgpack");
    if (root.type != MSGPACK_OBJECT_MAP)
        return bad(err, errlen, SL_DECODE_BAD_MESSAGE, "a message must be a msgpack map");
    const msgpack_object_kv *kv = root.via.map.ptr;
    uint32_t nkv = root.via.map.size;
    /* The type and request id first, so that later errors can name the request. */
    sl_str type = {0};
    for (uint32_t i = 0; i < nkv; i++) {
        if (is_key(&kv[i].key, "t") && !as_str(&kv[i].val, &type))
            return bad(err, errlen, SL_DECODE_BAD_MESSAGE, "field t must be a string");
        if (is_key(&kv[i].key, "rid")) {
            if (!as_u64(&kv[i].val, &m->rid))
                return bad(err, errlen, SL_DECODE_BAD_MESSAGE, "field rid must be an unsigned integer");
            m->has_rid = true;
        }
    }
    if (!type.p)
        return bad(err, errlen, SL_DECODE_BAD_MESSAGE, "missing field t (the message type)");
    int t = -1;
    for (int i = 0; i < SL_MSG_COUNT; i++)
        if (strlen(names[i]) == type.n && memcmp(names[i], type.p, type.n) == 0)
            t = i;
    if (t < 0)
        return bad(err, errlen, SL_DECODE_UNKNOWN, "unknown message type '%.*s'",
                   (int)(type.n > 40 ? 40 : type.n), type.p);
    m->type = (sl_msg_type)t;
    m->mask = UINT32_MAX;
    unsigned have = 0;
    for (uint32_t i = 0; i < nkv; i++) {
        const msgpack_object *k = &kv[i].key, *v = &kv[i].val;
        bool ok = true;
        unsigned f = 0;
        double dv = 0;
        if (is_key(k, "space")) {
            f = F_SPACE;
            ok = as_str(v, &m->space);
        } else if (is_key(k, "e")) {
            if (m->type == SL_MSG_MOVES) {
                f = F_IDS;
                ok = v->type == MSGPACK_OBJECT_ARRAY;
                m->ids = v;
            } else {
                f = F_E;
                ok = as_u64(v, &m->e);
            }
        } else if (is_key(k, "x")) {
            f = F_X;
            ok = as_float(v, &m->x);
        } else if (is_key(k, "y")) {
            f = F_Y;
            ok = as_float(v, &m->y);
        } else if (is_key(k, "r")) {
            f = F_R;
            ok = as_float(v, &m->r);
        } else if (is_key(k, "layer")) {
            f = F_LAYER;
            uint64_t u = 0;
            ok = as_u64(v, &u) && u <= UINT32_MAX;
            m->layer = (uint32_t)u;
        } else if (is_key(k, "mask")) {
            f = F_MASK;
            uint64_t u = 0;
            ok = as_u64(v, &u) && u <= UINT32_MAX;
            m->mask = (uint32_t)u;
        } else if (is_key(k, "w")) {
            f = F_W;
            ok = as_float(v, &m->w);
        } else if (is_key(k, "h")) {
            f = F_H;
            ok = as_float(v, &m->h);
        } else if (is_key(k, "v")) {
            f = F_V;
            uint64_t u = 0;
            ok = as_u64(v, &u) && u <= UINT32_MAX;
            m->version = (uint32_t)u;
        } else if (is_key(k, "xy")) {
            f = F_XY;
            ok = v->type == MSGPACK_OBJECT_ARRAY;
            m->xy = v;
        } else if (is_key(k, "props")) {
            f = F_PROPS;
            ok = v->type == MSGPACK_OBJECT_MAP;
            m->props = v;
            m->n = ok ? v->via.map.size : 0;
        } else if (is_key(k, "token")) {
            ok = as_str(v, &m->token);
        } else if (is_key(k, "session")) {
            ok = as_str(v, &m->session);
        } else if (is_key(k, "cell")) {
            ok = as_double(v, &dv);
            m->cell = (float)dv;
        } else if (is_key(k, "hyst")) {
            ok = as_double(v, &dv);
            m->hyst = (float)dv;
        } else if (is_key(k, "index")) {
            ok = as_str(v, &m->index);
        } else if (is_key(k, "stay")) {
            ok = v->type == MSGPACK_OBJECT_BOOLEAN;
            m->stay = ok && v->via.boolean;
        } else {
            continue;   /* t, rid, or a field this version ignores */
        }
        if (!ok)
            return bad(err, errlen, SL_DECODE_BAD_MESSAGE, "%s: field %.*s has the wrong type",
                       names[t], (int)k->via.str.size, k->via.str.ptr);
        have |= f;
    }
    unsigned missing = required[t] & ~have;
    if (missing) {
        unsigned bit = 0;
        while (!(missing & (1u << bit)))
            bit++;
        return bad(err, errlen, SL_DECODE_BAD_MESSAGE, "%s: missing field %s", names[t],
                   field_names[bit]);
    }
    if (m->type == SL_MSG_MOVES) {
        const msgpack_object *ids = m->ids, *xy = m->xy;
        if (xy->via.array.size != 2 * ids->via.array.size)
            return bad(err, errlen, SL_DECODE_BAD_MESSAGE,
                       "moves: xy must hold two numbers for each of the %u ids in e",
                       ids->via.array.size);
        m->n = ids->via.array.size;
    }
    return SL_DECODE_OK;
}

bool sl_msg_move_at(const sl_msg *m, uint32_t i, uint64_t *e, float *x, float *y)
{
    const msgpack_object *ids = m->ids, *xy = m->xy;
    return i < m->n && as_u64(&ids->via.array.ptr[i], e) &&
           as_float(&xy->via.array.ptr[2 * i], x) && as_float(&xy->via.array.ptr[2 * i + 1], y);
}

bool sl_msg_prop_at(const sl_msg *m, uint32_t i, sl_str *key, sl_value *v)
{
    const msgpack_object *map = m->props;
    if (i >= m->n || !as_str(&map->via.map.ptr[i].key, key))
        return false;
    const msgpack_object *o = &map->via.map.ptr[i].val;
    *v = (sl_value){0};
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: v->type = SL_VALUE_NIL; return true;
    case MSGPACK_OBJECT_BOOLEAN: v->type = SL_VALUE_BOOL; v->b = o->via.boolean; return true;
    case MSGPACK_OBJECT_STR: {
        sl_str str;
        if (!as_str(o, &str))
            return false;
        *v = (sl_value){.type = SL_VALUE_STRING, .s = str.p, .len = str.n};
        return true;
    }
    default: v->type = SL_VALUE_NUMBER; return as_double(o, &v->n);
    }
}

/* ---- encoding ----------------------------------------------------------------------------- */

void sl_obuf_free(sl_obuf *o)
{
    free(o->p);
    *o = (sl_obuf){0};
}

static int obuf_write(void *data, const char *buf, size_t len)
{
    sl_obuf *o = data;
    if (o->failed)
        return -1;
    if (o->n + len > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->n + len)
            cap *= 2;
        char *p = realloc(o->p, cap);
        if (!p) {
            o->failed = true;
            return -1;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->n, buf, len);
    o->n += len;
    return 0;
}

void sl_enc_begin(sl_enc *e, sl_obuf *out)
{
    e->out = out;
    e->start = out->n;
    static const char zero[SL_PROTO_HEADER] = {0};
    obuf_write(out, zero, sizeof zero);
    msgpack_packer_init(&e->pk, out, obuf_write);
}

void sl_enc_end(sl_enc *e)
{
    if (e->out->failed)
        return;
    size_t body = e->out->n - e->start - SL_PROTO_HEADER;
    unsigned char *h = (unsigned char *)e->out->p + e->start;
    h[0] = (unsigned char)(body >> 24);
    h[1] = (unsigned char)(body >> 16);
    h[2] = (unsigned char)(body >> 8);
    h[3] = (unsigned char)body;
}

void sl_enc_map(sl_enc *e, uint32_t n) { msgpack_pack_map(&e->pk, n); }
void sl_enc_array(sl_enc *e, uint32_t n) { msgpack_pack_array(&e->pk, n); }
void sl_enc_u64(sl_enc *e, uint64_t v) { msgpack_pack_uint64(&e->pk, v); }
void sl_enc_f32(sl_enc *e, float v) { msgpack_pack_float(&e->pk, v); }
void sl_enc_f64(sl_enc *e, double v) { msgpack_pack_double(&e->pk, v); }
void sl_enc_nil(sl_enc *e) { msgpack_pack_nil(&e->pk); }

void sl_enc_bool(sl_enc *e, bool v)
{
    if (v)
        msgpack_pack_true(&e->pk);
    else
        msgpack_pack_false(&e->pk);
}

void sl_enc_strn(sl_enc *e, const char *s, size_t n)
{
    msgpack_pack_str(&e->pk, n);
    msgpack_pack_str_body(&e->pk, s, n);
}

void sl_enc_str(sl_enc *e, const char *s)
{
    sl_enc_strn(e, s, strlen(s));
}

void sl_enc_kv_str(sl_enc *e, const char *k, const char *v)
{
    sl_enc_str(e, k);
    sl_enc_str(e, v);
}

void sl_enc_kv_u64(sl_enc *e, const char *k, uint64_t v)
{
    sl_enc_str(e, k);
    sl_enc_u64(e, v);
}

void sl_enc_error(sl_obuf *out, bool has_rid, uint64_t rid, const char *code, const char *msg)
{
    sl_enc e;
    sl_enc_begin(&e, out);
    sl_enc_map(&e, has_rid ? 4 : 3);
    sl_enc_kv_str(&e, "t", "error");
    if (has_rid)
        sl_enc_kv_u64(&e, "rid", rid);
    sl_enc_kv_str(&e, "code", code);
    sl_enc_kv_str(&e, "msg", msg);
    sl_enc_end(&e);
}

void sl_enc_ok(sl_obuf *out, uint64_t rid)
{
    sl_enc e;
    sl_enc_begin(&e, out);
    sl_enc_map(&e, 2);
    sl_enc_kv_str(&e, "t", "ok");
    sl_enc_kv_u64(&e, "rid", rid);
    sl_enc_end(&e);
}
