/*
 * codec.h: the wire protocol's messages (proto/PROTOCOL.md) to and from msgpack, with
 * msgpack-c. Frames are a 4-byte big-endian body length and one msgpack map.
 *
 * Decoding unpacks a frame body into a zone the decoder keeps and clears between frames,
 * and fills an sl_msg whose strings and arrays point into the frame or the zone: valid
 * until the next decode. Encoding appends whole frames to a growable buffer the caller
 * owns and reuses; neither allocates per message once the buffers have grown.
 */
#pragma once

#include "base/value.h"
#include "base/vec.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SL_PROTO_VERSION 1u
#define SL_PROTO_HEADER 4u              /* the length prefix */

/* The body length a frame's 4-byte big-endian prefix announces. */
static inline size_t sl_proto_body_len(const void *header)
{
    const unsigned char *h = header;
    return (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
}

typedef enum sl_msg_type {
    SL_MSG_HELLO, SL_MSG_PING, SL_MSG_SPACE_CREATE, SL_MSG_SPACE_DROP, SL_MSG_ADD, SL_MSG_MOVE,
    SL_MSG_MOVES, SL_MSG_RADIUS, SL_MSG_LAYER, SL_MSG_MASK, SL_MSG_PROPS, SL_MSG_REMOVE,
    SL_MSG_WHERE, SL_MSG_ADDS, SL_MSG_CLAIM, SL_MSG_HYSTERESIS, SL_MSG_LOD,
    SL_MSG_RELATE, SL_MSG_ALWAYS, SL_MSG_CAP, SL_MSG_PRIORITY, SL_MSG_GROUP,
    SL_MSG_SUBSCRIBE, SL_MSG_UNSUBSCRIBE, SL_MSG_QUERY, SL_MSG_REGION, SL_MSG_UNREGION,
    SL_MSG_COUNT
} sl_msg_type;

/* A string that points into the frame (not NUL-terminated). */
typedef struct sl_str {
    const char *p;
    size_t n;
} sl_str;

/* Whether s is the word w. */
static inline bool sl_str_is(sl_str s, const char *w)
{
    return s.n == strlen(w) && (s.n == 0 || memcmp(s.p, w, s.n) == 0);
}

/* One decoded client message; which fields are set depends on the type. */
typedef struct sl_msg {
    sl_msg_type type;       /* valid when typed */
    bool typed;             /* t was read (also set when a later field failed to decode) */
    bool has_rid;
    uint64_t rid;           /* request id, echoed in the reply */
    sl_str space;
    uint64_t e;             /* entity id */
    float x, y, r;
    uint32_t layer, mask;
    /* hello (node, secret: another node of the cluster, PROTOCOL.md "Node to node"); claim:
     * session */
    uint32_t version;
    sl_str token, session, node, secret;
    /* space.create */
    float w, h, cell, hyst;
    sl_str index, order;
    bool stay, reasons;
    /* moves and adds: n entities (ids and xy); add and props: n key / value pairs (props).
     * Read them through sl_msg_move_at, sl_msg_add_at and sl_msg_prop_at. */
    uint32_t n;
    const void *ids, *xy;   /* moves, adds: the `e` and `xy` arrays (msgpack objects) */
    const void *radii, *layers, *masks;     /* adds (layers, masks: NULL when absent) */
    const void *props;      /* add, props: the `props` map (a msgpack object); NULL: none */
    const void *bands;      /* lod: the flat [distance, period, ...] array (msgpack) */
    uint64_t target;        /* relate: the pair's target (e watches it) */
    sl_str rel;             /* relate: "force", "never" or "none" */
    bool on;                /* always */
    uint32_t cap;           /* cap (with margin, 0 when absent) */
    float margin;
    int32_t priority;       /* priority */
    uint32_t group;         /* group, subscribe, unsubscribe */
    float x1, y1;           /* query, region: a rectangle's high corner (NaN when absent; so
                               are r, x and y) */
    uint32_t limit;         /* query */
    uint64_t region;        /* region, unregion: the region's id */
    sl_str shape;           /* region: "circle", "rect" or "poly" (its vertices in xy) */
    /* 3D spaces. add, move: the height (NaN when absent: add at 0, move keeps it); query:
     * a sphere's or box's low z, z1 the box's high z (NaN when absent); space.create: depth
     * (0 when absent: a flat space); moves, adds: the `zs` array (NULL when absent). */
    float z, z1, depth;
    const void *zs;
} sl_msg;

typedef struct sl_decoder sl_decoder;

/* Creates a decoder; NULL on OOM. */
sl_decoder *sl_decoder_new(void);
void sl_decoder_free(sl_decoder *d);

typedef enum sl_decode_rc {
    SL_DECODE_OK = 0,
    SL_DECODE_BAD_FRAME,    /* not one well-formed msgpack value: the stream is unusable */
    SL_DECODE_BAD_MESSAGE,  /* well-formed, but not a message: wrong or missing fields */
    SL_DECODE_UNKNOWN,      /* a map with a type this server does not know */
} sl_decode_rc;

/*
 * Decodes one frame body into *m. On failure err receives the reason (and m->rid, when the
 * message had one, so that the error can name the request).
 */
sl_decode_rc sl_decode(sl_decoder *d, const char *body, size_t len, sl_msg *m, char *err,
                       size_t errlen);

/* The i-th entity of a `moves` message: false when its fields have the wrong types. */
bool sl_msg_move_at(const sl_msg *m, uint32_t i, uint64_t *e, float *x, float *y);
/* The i-th height of a `moves` or `adds` message: NaN when `zs` is absent or the item is nil;
 * false when it is another type than a number or nil. */
bool sl_msg_z_at(const sl_msg *m, uint32_t i, float *z);
/* The i-th entity of an `adds` message (layer 0 and mask all when the arrays are absent):
 * false when its fields have the wrong types or a layer or mask is past 32 bits. */
bool sl_msg_add_at(const sl_msg *m, uint32_t i, uint64_t *e, float *x, float *y, float *r,
                   uint32_t *layer, uint32_t *mask);
/* The i-th prop of an `add` or `props` message: false when the key is not a string or the
 * value is not nil, a boolean, a number or a string. */
bool sl_msg_prop_at(const sl_msg *m, uint32_t i, sl_str *key, sl_value *v);

/* For messages read field by field (handoff.c): the msgpack root of the frame sl_decode
 * read last (valid until the next call; nil when it did not unpack), a map's value by key
 * (NULL: absent, or not a map), and typed reads (false: absent or another type). */
const msgpack_object *sl_decoder_root(const sl_decoder *d);
const msgpack_object *sl_obj_get(const msgpack_object *map, const char *key);
bool sl_obj_u64(const msgpack_object *o, uint64_t *v);
bool sl_obj_i64(const msgpack_object *o, int64_t *v);
bool sl_obj_f32(const msgpack_object *o, float *v);
bool sl_obj_str(const msgpack_object *o, sl_str *s);
/* A prop value: nil, boolean, number or string (a string points into the frame). */
bool sl_obj_value(const msgpack_object *o, sl_value *v);

/* "hello", "ping", ... */
const char *sl_msg_name(sl_msg_type t);

/* ---- encoding ----------------------------------------------------------------------------- */

/* A growable byte buffer holding whole frames; zero-initialised is empty. */
typedef struct sl_obuf {
    sl_vec bytes;           /* the frames, bytes.n of them (items of one byte) */
    bool failed;            /* an append ran out of memory: the buffer's content is unusable */
} sl_obuf;

/* Frees the bytes; the buffer is empty (and not failed) again. */
void sl_obuf_free(sl_obuf *o);

/*
 * The frame encoder: begin a frame, append its body through the sl_enc_* calls, end it
 * (which writes the length prefix). Frames are appended to `out`. The calls cannot fail:
 * when an append runs out of memory, out->failed is set and the rest are no-ops.
 */
typedef struct sl_enc {
    sl_obuf *out;
    size_t start;
    msgpack_packer pk;
} sl_enc;

/* Starts a frame at the end of out (a zero length prefix for now). */
void sl_enc_begin(sl_enc *e, sl_obuf *out);
/* Begins writing bare msgpack values into out (no frame, nothing to end). */
void sl_enc_values(sl_enc *e, sl_obuf *out);
/* Ends the frame: writes its body's length into the prefix. */
void sl_enc_end(sl_enc *e);
/* msgpack values: a map of n pairs (then 2n values), an array of n values, scalars. */
void sl_enc_map(sl_enc *e, uint32_t n);
void sl_enc_array(sl_enc *e, uint32_t n);
void sl_enc_str(sl_enc *e, const char *s);
void sl_enc_strn(sl_enc *e, const char *s, size_t n);
void sl_enc_u64(sl_enc *e, uint64_t v);
void sl_enc_i64(sl_enc *e, int64_t v);
void sl_enc_f32(sl_enc *e, float v);
void sl_enc_f64(sl_enc *e, double v);
void sl_enc_bool(sl_enc *e, bool v);
void sl_enc_nil(sl_enc *e);
void sl_enc_bin(sl_enc *e, const void *p, size_t n);
/* Bytes already in msgpack form (whole values), appended as they are. */
void sl_enc_raw(sl_enc *e, const void *p, size_t n);
/* A key and a value, for the common map entries. */
void sl_enc_kv_str(sl_enc *e, const char *k, const char *v);
void sl_enc_kv_u64(sl_enc *e, const char *k, uint64_t v);
void sl_enc_kv_f32(sl_enc *e, const char *k, float v);

/* Whole frames of the server's replies (fields as PROTOCOL.md describes). */
void sl_enc_error(sl_obuf *out, bool has_rid, uint64_t rid, const char *code, const char *msg);
