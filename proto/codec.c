/*
 * codec.c: the wire protocol's messages to and from msgpack (see codec.h).
 *
 * Decoding is strict: every field has one type (numbers may come as any msgpack integer or
 * float), unknown keys are ignored (so that newer clients can add optional fields), and a
 * message without its required fields is refused with the name of the field. The known
 * keys, where each one lands in sl_msg and which types require it are one table (fields[],
 * required[]). Before msgpack-c unpacks a frame, sl_msgpack_check bounds every container by the
 * bytes left, so that decoding a frame allocates O(its length) whatever it claims.
 *
 * Encoding writes through msgpack-c's packer into an sl_obuf; an allocation failure marks
 * the buffer failed rather than leaving a frame with a hole, and its owner drops it.
 */
#include "proto/codec.h"

#include "base/mpcheck.h"

#include "base/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

struct sl_decoder {
    msgpack_zone zone;
    msgpack_object root;        /* the last frame decoded (in zone) */
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
    "mask", "props", "remove", "where", "adds", "claim", "hysteresis", "lod", "relate", "always",
    "cap", "priority", "group", "subscribe", "unsubscribe", "query", "region", "unregion",
};

const char *sl_msg_name(sl_msg_type t)
{
    return t < SL_MSG_COUNT ? names[t] : "?";
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

static bool as_i64(const msgpack_object *o, int64_t *v)
{
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *v = o->via.i64;
    else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        *v = (int64_t)o->via.u64;
    else
        return false;
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

/*
 * The keys a message may carry, in the order of their presence bits: when several required
 * fields are missing, the error names the first of them in this order. "e" is an entity id,
 * or in a `moves` message the array of ids. Keys not in the table (and t, rid) are skipped.
 */
typedef enum field_kind {
    K_STR, K_F32, K_U32, K_I32, K_U64, K_BOOL, K_ENTITY, K_ARRAY, K_MAP
} field_kind;

typedef struct field {
    const char *key;
    field_kind kind;
    size_t off;             /* where the value goes in sl_msg */
} field;

#define FIELD(k, kind, member) {k, kind, offsetof(sl_msg, member)}
static const field fields[] = {
    /* Required by some type: bit i of required[] is fields[i]. */
    FIELD("space", K_STR, space), FIELD("e", K_ENTITY, e), FIELD("x", K_F32, x),
    FIELD("y", K_F32, y), FIELD("r", K_F32, r), FIELD("layer", K_U32, layer),
    FIELD("mask", K_U32, mask), FIELD("w", K_F32, w), FIELD("h", K_F32, h),
    FIELD("v", K_U32, version), FIELD("xy", K_ARRAY, xy), FIELD("props", K_MAP, props),
    FIELD("radii", K_ARRAY, radii), FIELD("hyst", K_F32, hyst), FIELD("bands", K_ARRAY, bands),
    FIELD("target", K_U64, target), FIELD("rel", K_STR, rel), FIELD("on", K_BOOL, on),
    FIELD("cap", K_U32, cap), FIELD("priority", K_I32, priority),
    FIELD("group", K_U32, group), FIELD("region", K_U64, region),
    FIELD("shape", K_STR, shape),
    /* Optional: read by the types whose optional[] names them (below). */
    FIELD("token", K_STR, token), FIELD("session", K_STR, session), FIELD("cell", K_F32, cell),
    FIELD("index", K_STR, index), FIELD("stay", K_BOOL, stay),
    FIELD("layers", K_ARRAY, layers), FIELD("masks", K_ARRAY, masks),
    FIELD("node", K_STR, node), FIELD("secret", K_STR, secret), FIELD("order", K_STR, order),
    FIELD("reasons", K_BOOL, reasons), FIELD("margin", K_F32, margin),
    FIELD("x1", K_F32, x1), FIELD("y1", K_F32, y1), FIELD("limit", K_U32, limit),
    FIELD("z", K_F32, z), FIELD("z1", K_F32, z1), FIELD("depth", K_F32, depth),
    FIELD("zs", K_ARRAY, zs),
};
#undef FIELD
#define NFIELDS (sizeof fields / sizeof fields[0])

/* Which fields each message type needs (bit i: fields[i]). */
#define F_SPACE (1ULL << 0)
#define F_E (1ULL << 1)
#define F_X (1ULL << 2)
#define F_Y (1ULL << 3)
#define F_R (1ULL << 4)
#define F_LAYER (1ULL << 5)
#define F_MASK (1ULL << 6)
#define F_W (1ULL << 7)
#define F_H (1ULL << 8)
#define F_V (1ULL << 9)
#define F_XY (1ULL << 10)
#define F_PROPS (1ULL << 11)
#define F_RADII (1ULL << 12)
#define F_HYST (1ULL << 13)
#define F_BANDS (1ULL << 14)
#define F_TARGET (1ULL << 15)
#define F_REL (1ULL << 16)
#define F_ON (1ULL << 17)
#define F_CAP (1ULL << 18)
#define F_PRIORITY (1ULL << 19)
#define F_GROUP (1ULL << 20)
#define F_REGION (1ULL << 21)
#define F_SHAPE (1ULL << 22)
#define F_REQUIRABLE ((1ULL << 23) - 1)
static const uint64_t required[SL_MSG_COUNT] = {
    [SL_MSG_HELLO] = F_V,
    [SL_MSG_PING] = 0,
    [SL_MSG_SPACE_CREATE] = F_SPACE | F_W | F_H,
    [SL_MSG_SPACE_DROP] = F_SPACE,
    [SL_MSG_ADD] = F_SPACE | F_E | F_X | F_Y | F_R,
    [SL_MSG_MOVE] = F_SPACE | F_E | F_X | F_Y,
    [SL_MSG_MOVES] = F_SPACE | F_E | F_XY,
    [SL_MSG_ADDS] = F_SPACE | F_E | F_XY | F_RADII,
    [SL_MSG_CLAIM] = F_SPACE,
    [SL_MSG_RADIUS] = F_SPACE | F_E | F_R,
    [SL_MSG_LAYER] = F_SPACE | F_E | F_LAYER,
    [SL_MSG_MASK] = F_SPACE | F_E | F_MASK,
    [SL_MSG_HYSTERESIS] = F_SPACE | F_E | F_HYST,
    [SL_MSG_LOD] = F_SPACE | F_E | F_BANDS,
    [SL_MSG_RELATE] = F_SPACE | F_E | F_TARGET | F_REL,
    [SL_MSG_ALWAYS] = F_SPACE | F_E | F_ON,
    [SL_MSG_CAP] = F_SPACE | F_E | F_CAP,
    [SL_MSG_PRIORITY] = F_SPACE | F_E | F_PRIORITY,
    [SL_MSG_GROUP] = F_SPACE | F_E | F_GROUP,
    [SL_MSG_SUBSCRIBE] = F_SPACE | F_GROUP,
    [SL_MSG_UNSUBSCRIBE] = F_SPACE | F_GROUP,
    [SL_MSG_QUERY] = F_SPACE | F_X | F_Y,
    [SL_MSG_REGION] = F_SPACE | F_REGION | F_SHAPE,
    [SL_MSG_UNREGION] = F_SPACE | F_REGION,
    [SL_MSG_PROPS] = F_SPACE | F_E | F_PROPS,
    [SL_MSG_REMOVE] = F_SPACE | F_E,
    [SL_MSG_WHERE] = F_SPACE,
};

/* The optional fields each type reads (bit i: fields[i]); a field a type neither requires
 * nor reads is skipped like an unknown key, whatever its value (PROTOCOL.md: keys a server
 * does not use are ignored). */
#define F_TOKEN (1ULL << 23)
#define F_SESSION (1ULL << 24)
#define F_CELL (1ULL << 25)
#define F_INDEX (1ULL << 26)
#define F_STAY (1ULL << 27)
#define F_LAYERS (1ULL << 28)
#define F_MASKS (1ULL << 29)
#define F_NODE (1ULL << 30)
#define F_SECRET (1ULL << 31)
#define F_ORDER (1ULL << 32)
#define F_REASONS (1ULL << 33)
#define F_MARGIN (1ULL << 34)
#define F_X1 (1ULL << 35)
#define F_Y1 (1ULL << 36)
#define F_LIMIT (1ULL << 37)
#define F_Z (1ULL << 38)
#define F_Z1 (1ULL << 39)
#define F_DEPTH (1ULL << 40)
#define F_ZS (1ULL << 41)
static const uint64_t optional[SL_MSG_COUNT] = {
    [SL_MSG_HELLO] = F_TOKEN | F_SESSION | F_NODE | F_SECRET,
    [SL_MSG_SPACE_CREATE] = F_CELL | F_HYST | F_INDEX | F_STAY | F_ORDER | F_REASONS |
                            F_DEPTH,
    [SL_MSG_ADD] = F_LAYER | F_MASK | F_PROPS | F_Z,
    [SL_MSG_MOVE] = F_Z,
    [SL_MSG_MOVES] = F_ZS,
    [SL_MSG_ADDS] = F_LAYERS | F_MASKS | F_ZS,
    [SL_MSG_CLAIM] = F_SESSION,
    [SL_MSG_CAP] = F_MARGIN,
    [SL_MSG_QUERY] = F_R | F_X1 | F_Y1 | F_MASK | F_LIMIT | F_Z | F_Z1,
    [SL_MSG_REGION] = F_X | F_Y | F_R | F_X1 | F_Y1 | F_XY | F_MASK,
};

/* Frames are checked before msgpack-c unpacks them (base/mpcheck.h): a container's claimed
 * count bounded by the bytes left, and nesting within what msgpack-c's unpacker holds
 * (MAX_DEPTH, the frame's map included). */
#define MAX_DEPTH SL_MSGPACK_MAX_DEPTH

/* Unpacks one msgpack value that must fill the frame body exactly, into the decoder's zone. */
static sl_decode_rc unpack(sl_decoder *d, const char *body, size_t len, msgpack_object *root,
                           char *err, size_t errlen)
{
    bool too_deep = false;
    if (!sl_msgpack_check(body, len, MAX_DEPTH, &too_deep))
        return (sl_decode_rc)sl_fail(err, errlen, SL_DECODE_BAD_FRAME, "%s", too_deep
                                     ? "containers nested more than 32 deep"
                                     : "malformed msgpack");
    msgpack_zone_clear(&d->zone);
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack(body, len, &off, &d->zone, root);
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len)
        return (sl_decode_rc)sl_fail(err, errlen, SL_DECODE_BAD_FRAME, "%s",
                                     ur == MSGPACK_UNPACK_NOMEM_ERROR
                                         ? "out of memory decoding the frame"
                                     : ur == MSGPACK_UNPACK_SUCCESS
                                         ? "trailing bytes after the message"
                                         : "malformed msgpack");
    if (root->type != MSGPACK_OBJECT_MAP)
        return (sl_decode_rc)sl_fail(err, errlen, SL_DECODE_BAD_MESSAGE,
                                     "a message must be a msgpack map");
    return SL_DECODE_OK;
}

/* Reads the request id (rid), then the type (t), before any other field, so that every
 * later error can name the request, whatever order the map's keys come in. */
static sl_decode_rc read_type(const msgpack_object_map *map, sl_msg *m, char *err,
                              size_t errlen)
{
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object_kv *kv = &map->ptr[i];
        if (!is_key(&kv->key, "rid"))
            continue;
        if (!as_u64(&kv->val, &m->rid))
            return (sl_decode_rc)sl_fail(err, errlen, SL_DECODE_BAD_MESSAGE,
                                         "field rid must be an unsigned integer");
        m->has_rid = true;
    }
    sl_str type = {0};
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object_kv *kv = &map->ptr[i];
        if (is_key(&kv->key, "t") && !as_str(&kv->val, &type))
            return (sl_decode_rc)sl_fail(err, errlen, SL_DECODE_BAD_MESSAGE,
                                         "field t must be a string");
    }
    if (!type.p)
        return (sl_decode_rc)sl_fail(err, errlen, SL_DECODE_BAD_MESSAGE,
                                     "missing field t (the message type)");
    for (int i = 0; i < SL_MSG_COUNT; i++) {
        if (strlen(names[i]) == type.n && memcmp(names[i], type.p, type.n) == 0) {
            m->type = (sl_msg_type)i;
            m->typed = true;
            return SL_DECODE_OK;
        }
    }
    return (sl_decode_rc)sl_fail(err, errlen, SL_DECODE_UNKNOWN, "unknown message type '%.*s'",
                                 (int)(type.n > 40 ? 40 : type.n), type.p);
}

/* Reads one field's value into its member of m; false when the value has the wrong type. */
static bool read_field(const field *f, const msgpack_object *v, sl_msg *m)
{
    void *dst = (char *)m + f->off;
    uint64_t u = 0;
    switch (f->kind) {
    case K_STR:
        return as_str(v, dst);
    case K_F32:
        return as_float(v, dst);
    case K_U32:
        if (!as_u64(v, &u) || u > UINT32_MAX)
            return false;
        *(uint32_t *)dst = (uint32_t)u;
        return true;
    case K_I32: {
        int64_t i;
        if (!as_i64(v, &i) || i < INT32_MIN || i > INT32_MAX)
            return false;
        *(int32_t *)dst = (int32_t)i;
        return true;
    }
    case K_U64:
        return as_u64(v, dst);
    case K_BOOL:
        *(bool *)dst = v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean;
        return v->type == MSGPACK_OBJECT_BOOLEAN;
    case K_ENTITY:
        if (m->type != SL_MSG_MOVES && m->type != SL_MSG_ADDS)
            return as_u64(v, &m->e);
        m->ids = v;
        return v->type == MSGPACK_OBJECT_ARRAY;
    case K_ARRAY:
        *(const void **)dst = v;
        return v->type == MSGPACK_OBJECT_ARRAY;
    case K_MAP:
        *(const void **)dst = v;
        m->n = v->type == MSGPACK_OBJECT_MAP ? v->via.map.size : 0;
        return v->type == MSGPACK_OBJECT_MAP;
    }
    return false;
}

/* Reads the fields the type uses, then checks that its required ones were there. */
static sl_decode_rc read_fields(const msgpack_object_map *map, sl_msg *m, char *err,
                                size_t errlen)
{
    const char *name = names[m->type];
    uint64_t have = 0;
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *k = &map->ptr[i].key;
        for (size_t f = 0; f < NFIELDS; f++) {
            if (!is_key(k, fields[f].key))
                continue;
            if (!((required[m->type] | optional[m->type]) & (1ULL << f)))
                break;          /* not this type's: ignored */
            if (!read_field(&fields[f], &map->ptr[i].val, m))
                return (sl_decode_rc)sl_fail(err, errlen, SL_DECODE_BAD_MESSAGE,
                           "%s: field %.*s has the wrong type", name, (int)k->via.str.size,
                           k->via.str.ptr);
            have |= (1ULL << f) & F_REQUIRABLE;
            break;
        }
    }
    uint64_t missing = required[m->type] & ~have;
    if (missing) {
        unsigned f = 0;
        while (!(missing & (1ULL << f)))
            f++;
        return (sl_decode_rc)sl_fail(err, errlen, SL_DECODE_BAD_MESSAGE,
                                     "%s: missing field %s", name,
                   fields[f].key);
    }
    return SL_DECODE_OK;
}

sl_decode_rc sl_decode(sl_decoder *d, const char *body, size_t len, sl_msg *m, char *err,
                       size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->mask = UINT32_MAX;       /* sees every layer unless the message says otherwise */
    /* (absent: a query tells a circle from a rectangle, a region finds what is missing) */
    m->x = m->y = m->r = m->x1 = m->y1 = m->z = m->z1 = NAN;
    msgpack_object root;
    d->root.type = MSGPACK_OBJECT_NIL;
    sl_decode_rc rc = unpack(d, body, len, &root, err, errlen);
    if (rc == SL_DECODE_OK)
        d->root = root;
    if (rc == SL_DECODE_OK)
        rc = read_type(&root.via.map, m, err, errlen);
    if (rc == SL_DECODE_OK)
        rc = read_fields(&root.via.map, m, err, errlen);
    if (rc != SL_DECODE_OK || (m->type != SL_MSG_MOVES && m->type != SL_MSG_ADDS))
        return rc;
    const msgpack_object *ids = m->ids, *xy = m->xy;
    const char *name = names[m->type];
    uint32_t n = ids->via.array.size;
    if (xy->via.array.size != 2 * (uint64_t)n)
        return (sl_decode_rc)sl_fail(err, errlen, SL_DECODE_BAD_MESSAGE,
                   "%s: xy must hold two numbers for each of the %u ids in e", name, n);
    const msgpack_object *per[4] = {m->radii, m->layers, m->masks, m->zs};
    static const char *const per_name[4] = {"radii", "layers", "masks", "zs"};
    for (int k = 0; k < 4; k++)
        if (per[k] && ((const msgpack_object *)per[k])->via.array.size != n)
            return (sl_decode_rc)sl_fail(err, errlen, SL_DECODE_BAD_MESSAGE,
                       "%s: %s must hold one value for each of the %u ids in e", name,
                       per_name[k], n);
    m->n = n;
    return SL_DECODE_OK;
}

bool sl_msg_move_at(const sl_msg *m, uint32_t i, uint64_t *e, float *x, float *y)
{
    const msgpack_object *ids = m->ids, *xy = m->xy;
    return i < m->n && as_u64(&ids->via.array.ptr[i], e) &&
           as_float(&xy->via.array.ptr[2 * i], x) && as_float(&xy->via.array.ptr[2 * i + 1], y);
}

bool sl_msg_z_at(const sl_msg *m, uint32_t i, float *z)
{
    const msgpack_object *zs = m->zs;
    *z = NAN;
    if (!zs || zs->via.array.ptr[i].type == MSGPACK_OBJECT_NIL)
        return i < m->n;
    return i < m->n && as_float(&zs->via.array.ptr[i], z);
}

bool sl_msg_add_at(const sl_msg *m, uint32_t i, uint64_t *e, float *x, float *y, float *r,
                   uint32_t *layer, uint32_t *mask)
{
    const msgpack_object *radii = m->radii, *layers = m->layers, *masks = m->masks;
    uint64_t l = 0, k = UINT32_MAX;
    if (!sl_msg_move_at(m, i, e, x, y) || !as_float(&radii->via.array.ptr[i], r) ||
        (layers && !as_u64(&layers->via.array.ptr[i], &l)) ||
        (masks && !as_u64(&masks->via.array.ptr[i], &k)) || l > UINT32_MAX || k > UINT32_MAX)
        return false;
    *layer = (uint32_t)l;
    *mask = (uint32_t)k;
    return true;
}

bool sl_msg_prop_at(const sl_msg *m, uint32_t i, sl_str *key, sl_value *v)
{
    const msgpack_object *map = m->props;
    if (i >= m->n || !as_str(&map->via.map.ptr[i].key, key))
        return false;
    return sl_obj_value(&map->via.map.ptr[i].val, v);
}

/* ---- encoding ----------------------------------------------------------------------------- */

void sl_obuf_free(sl_obuf *o)
{
    sl_vec_free(&o->bytes);
    o->failed = false;
}

/* The first growth takes this much: most replies and tick frames fit, and owners reuse the
 * buffer, so a connection's output stops allocating after its first frames. */
#define OBUF_FIRST 4096u

/* msgpack-c's write callback: appends, or marks the buffer failed (and refuses from then on,
 * so that a frame is never left with a hole in it). */
static int obuf_write(void *data, const char *buf, size_t len)
{
    sl_obuf *o = data;
    if (o->failed)
        return -1;
    if ((o->bytes.cap < OBUF_FIRST &&
         sl_grow(NULL, &o->bytes.p, &o->bytes.cap, OBUF_FIRST, 1)) ||
        sl_vec_append(&o->bytes, buf, 1, len) == SIZE_MAX) {
        o->failed = true;
        return -1;
    }
    return 0;
}

void sl_enc_begin(sl_enc *e, sl_obuf *out)
{
    e->out = out;
    e->start = out->bytes.n;
    static const char zero[SL_PROTO_HEADER] = {0};
    obuf_write(out, zero, sizeof zero);
    msgpack_packer_init(&e->pk, out, obuf_write);
}

void sl_enc_values(sl_enc *e, sl_obuf *out)
{
    e->out = out;
    e->start = SIZE_MAX;
    msgpack_packer_init(&e->pk, out, obuf_write);
}

void sl_enc_end(sl_enc *e)
{
    if (e->out->failed || e->start == SIZE_MAX)
        return;
    size_t body = e->out->bytes.n - e->start - SL_PROTO_HEADER;
    unsigned char *h = (unsigned char *)e->out->bytes.p + e->start;
    h[0] = (unsigned char)(body >> 24);
    h[1] = (unsigned char)(body >> 16);
    h[2] = (unsigned char)(body >> 8);
    h[3] = (unsigned char)body;
}

void sl_enc_map(sl_enc *e, uint32_t n) { msgpack_pack_map(&e->pk, n); }
void sl_enc_array(sl_enc *e, uint32_t n) { msgpack_pack_array(&e->pk, n); }
void sl_enc_u64(sl_enc *e, uint64_t v) { msgpack_pack_uint64(&e->pk, v); }
void sl_enc_i64(sl_enc *e, int64_t v) { msgpack_pack_int64(&e->pk, v); }
void sl_enc_f32(sl_enc *e, float v) { msgpack_pack_float(&e->pk, v); }
void sl_enc_f64(sl_enc *e, double v) { msgpack_pack_double(&e->pk, v); }

void sl_enc_nil(sl_enc *e)
{
    msgpack_pack_nil(&e->pk);
}

void sl_enc_bin(sl_enc *e, const void *p, size_t n)
{
    msgpack_pack_bin(&e->pk, n);
    msgpack_pack_bin_body(&e->pk, p, n);
}

void sl_enc_raw(sl_enc *e, const void *p, size_t n)
{
    obuf_write(e->out, p, n);
}

const msgpack_object *sl_decoder_root(const sl_decoder *d)
{
    return &d->root;
}

const msgpack_object *sl_obj_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (is_key(&map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i].val;
    return NULL;
}

bool sl_obj_u64(const msgpack_object *o, uint64_t *v)
{
    return o && as_u64(o, v);
}

bool sl_obj_i64(const msgpack_object *o, int64_t *v)
{
    return o && as_i64(o, v);
}

bool sl_obj_f32(const msgpack_object *o, float *v)
{
    return o && as_float(o, v);
}

bool sl_obj_str(const msgpack_object *o, sl_str *s)
{
    return o && as_str(o, s);
}

bool sl_obj_value(const msgpack_object *o, sl_value *v)
{
    if (!o)
        return false;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: *v = (sl_value){.type = SL_VALUE_NIL}; return true;
    case MSGPACK_OBJECT_BOOLEAN: *v = (sl_value){.type = SL_VALUE_BOOL, .b = o->via.boolean}; return true;
    case MSGPACK_OBJECT_STR:
        *v = (sl_value){.type = SL_VALUE_STRING, .s = o->via.str.ptr, .len = o->via.str.size};
        return true;
    default:
        *v = (sl_value){.type = SL_VALUE_NUMBER};
        return as_double(o, &v->n);
    }
}

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

void sl_enc_kv_f32(sl_enc *e, const char *k, float v)
{
    sl_enc_str(e, k);
    sl_enc_f32(e, v);
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

