/*
 * schema.c: the documents in etcd, checked (see schema.h).
 *
 * A definition's data fields are checked against the schema string of its own minor: the
 * string lists every field with its JSON type, so the type check and the unknown-field
 * check read the same table that the hash is computed from, and a new minor is one new
 * row (plus the code that uses its new fields).
 */
#include "server/schema.h"

#include "base/common.h"
#include "base/hash.h"
#include "engine/index.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One row a minor of major 1: the schema string its documents' data follows. */
static const char *const schema_rows[SL_SCHEMA_MINOR + 1] = {
    /* 1.0 */ "cell:number,height:number,hysteresis:number,index:string,scripts:string,"
              "stay:boolean,tick_ms:number,width:number",
    /* 1.1 */ "cell:number,height:number,hysteresis:number,index:string,reasons:boolean,"
              "scripts:string,stay:boolean,tick_ms:number,width:number",
    /* 1.2 */ "cell:number,height:number,hysteresis:number,index:string,reasons:boolean,"
              "regions:array,scripts:string,stay:boolean,tick_ms:number,width:number",
};

/* Documents of 1.0 written before the hash's offset basis was corrected carry the hash
 * from 1469598103934665603 (a digit short of FNV-1a's): still accepted for 1.0 (deprecated),
 * and counted, so that stored documents keep working while they are rewritten. */
#define LEGACY_BASIS 1469598103934665603ULL

static void hex64(char out[17], uint64_t h)
{
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

const char *sl_schema_string(unsigned minor)
{
    return minor <= SL_SCHEMA_MINOR ? schema_rows[minor] : NULL;
}

const char *sl_schema_hash(unsigned minor)
{
    static char hex[SL_SCHEMA_MINOR + 1][17];
    if (minor > SL_SCHEMA_MINOR)
        return NULL;
    if (!hex[minor][0])
        hex64(hex[minor], sl_fnv1a64(SL_FNV1A64_BASIS, schema_rows[minor],
                                     strlen(schema_rows[minor])));
    return hex[minor];
}

static const char *legacy_hash_1_0(void)
{
    static char hex[17];
    if (!hex[0])
        hex64(hex, sl_fnv1a64(LEGACY_BASIS, schema_rows[0], strlen(schema_rows[0])));
    return hex;
}

/* ---- keys ---------------------------------------------------------------------------------- */

bool sl_doc_space_name_ok(const char *name, size_t n)
{
    if (n == 0 || n > SL_SCHEMA_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == ':' || ch == '-'))
            return false;
    }
    return true;
}

/* Canonical decimal: "0", or a non-zero digit then digits, at most 2^64 - 1. */
static bool canonical_id(const char *s, size_t n, uint64_t *id)
{
    if (n == 0 || n > 20 || (s[0] == '0' && n > 1))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *id = v;
    return true;
}

sl_doc_key sl_doc_parse_key(const char *key, size_t n, char space[SL_SCHEMA_NAME_MAX + 1],
                            uint64_t *id, char *why, size_t len)
{
    const char *slash = memchr(key, '/', n);
    size_t sn = slash ? (size_t)(slash - key) : n;
    if (!sl_doc_space_name_ok(key, sn)) {
        snprintf(why, len, "a space name is 1 to %u bytes of letters, digits and _ . : -",
                 SL_SCHEMA_NAME_MAX);
        return SL_DOC_BAD;
    }
    memcpy(space, key, sn);
    space[sn] = '\0';
    if (!slash)
        return SL_DOC_SPACE;
    const char *rest = slash + 1;
    size_t rn = n - sn - 1;
    if (rn < 9 || memcmp(rest, "entities/", 9)) {
        snprintf(why, len, "below a space only entities/ID keys are read");
        return SL_DOC_BAD;
    }
    if (!canonical_id(rest + 9, rn - 9, id)) {
        snprintf(why, len, "an entity id is canonical decimal: 0 to 18446744073709551615, "
                 "no sign, blank or leading zero");
        return SL_DOC_BAD;
    }
    return SL_DOC_ENTITY;
}

/* ---- values -------------------------------------------------------------------------------- */

/* A JSON number that fits a float32 (finite both ways). */
static bool float_of(const json_t *v, float *out)
{
    if (!json_is_number(v))
        return false;
    double d = json_number_value(v);
    if (!isfinite(d) || fabs(d) > FLT_MAX)
        return false;
    *out = (float)d;
    return true;
}

/* Parses an object; NULL with why filled when the text is no JSON object. */
static json_t *load_object(const char *json, size_t n, char *why, size_t len)
{
    json_error_t jerr;
    json_t *d = json_loadb(json, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!d || !json_is_object(d)) {
        snprintf(why, len, "%s", d ? "not a JSON object" : jerr.text);
        json_decref(d);
        return NULL;
    }
    return d;
}

/* ---- space definitions --------------------------------------------------------------------- */

/* Strict semantic version MAJOR.MINOR.PATCH: numbers without leading zeros, nothing after. */
static bool parse_semver(const char *s, unsigned v[3])
{
    for (int i = 0; i < 3; i++) {
        if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
            return false;
        unsigned long x = 0;
        while (*s >= '0' && *s <= '9') {
            x = x * 10 + (unsigned long)(*s++ - '0');
            if (x > 1000000)
                return false;
        }
        v[i] = (unsigned)x;
        if (*s++ != (i < 2 ? '.' : '\0'))
            return false;
    }
    return true;
}

/* The JSON type name a schema string uses for v. */
static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_INTEGER:
    case JSON_REAL: return "number";
    case JSON_STRING: return "string";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    default: return "null";
    }
}

/* Checks every field of data against the schema string of the minor: known, and of its
 * type. */
static int check_fields(const json_t *data, const char *schema, unsigned minor, char *why,
                        size_t len)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)data, k, v) {
        size_t kl = strlen(k);
        const char *p = schema, *want = NULL;
        while (p && *p) {
            const char *colon = strchr(p, ':'), *comma = strchr(p, ',');
            if ((size_t)(colon - p) == kl && !memcmp(p, k, kl)) {
                want = colon + 1;
                break;
            }
            p = comma ? comma + 1 : NULL;
        }
        if (!want)
            return sl_fail(why, len, SL_EINVAL, "data.%.60s: no such field in schema 1.%u",
                           k, minor);
        const char *got = type_name(v);
        size_t wl = strcspn(want, ",");
        if (strlen(got) != wl || memcmp(got, want, wl))
            return sl_fail(why, len, SL_EINVAL, "data.%s must be a %.*s, not a %s", k,
                           (int)wl, want, got);
    }
    return 0;
}

/* A folder of scripts is named relative to the server's script root: no absolute path, no
 * `..`, no control character. */
static bool scripts_ok(const char *s)
{
    if (!s[0] || s[0] == '/' || strlen(s) > SL_SCHEMA_SCRIPTS_MAX)
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return false;
    for (const char *p = s; p; p = strchr(p, '/')) {
        p += *p == '/';
        if (p[0] == '.' && p[1] == '.' && (p[2] == '/' || !p[2]))
            return false;
    }
    return true;
}

/* data.regions (1.2): an array of {"id": uint, one of "circle": [x, y, r], "rect":
 * [x, y, x1, y1], "poly": [x1, y1, ...] (3 to 64 vertices), optional "mask": uint32}, ids
 * unique; each shape checked as the engine checks it. */
static int read_zones(const json_t *arr, sl_space_doc *d, char *why, size_t len)
{
    size_t n = json_array_size(arr);
    if (n > SL_SCHEMA_ZONES_MAX)
        return sl_fail(why, len, SL_EINVAL, "data.regions: at most %u", SL_SCHEMA_ZONES_MAX);
    d->zones = n ? calloc(n, sizeof *d->zones) : NULL;
    if (n && !d->zones)
        return sl_fail(why, len, SL_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *z = json_array_get(arr, i), *idv = json_object_get(z, "id");
        sl_doc_zone *o = &d->zones[i];
        d->nzones = i + 1;
        static const char *const kinds[3] = {"circle", "rect", "poly"};
        const json_t *shape = NULL;
        int kind = -1, fields = 0;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)z, k, v) {
            fields++;
            for (int j = 0; j < 3; j++)
                if (!strcmp(k, kinds[j]))
                    kind = shape ? -2 : j, shape = v;
        }
        json_t *mask = json_object_get(z, "mask");
        double id = json_is_integer(idv) ? (double)json_integer_value(idv) : -1;
        if (!json_is_object(z) || id < 0 || kind < 0 || !json_is_array(shape) ||
            fields != 2 + (mask != NULL))
            return sl_fail(why, len, SL_EINVAL, "data.regions[%zu]: an object of an id (an "
                           "integer >= 0), one of circle [x, y, r], rect [x, y, x1, y1], "
                           "poly [x1, y1, ...], and an optional mask", i);
        o->id = (uint64_t)json_integer_value(idv);
        for (size_t j = 0; j < i; j++)
            if (d->zones[j].id == o->id)
                return sl_fail(why, len, SL_EINVAL, "data.regions[%zu]: id %llu twice", i,
                               (unsigned long long)o->id);
        o->g.kind = (sl_region_kind)kind;
        o->g.mask = UINT32_MAX;
        if (mask && (!json_is_integer(mask) || json_integer_value(mask) < 0 ||
                     json_integer_value(mask) > UINT32_MAX))
            return sl_fail(why, len, SL_EINVAL, "data.regions[%zu].mask: 0 to 2^32-1", i);
        if (mask)
            o->g.mask = (uint32_t)json_integer_value(mask);
        size_t nv = json_array_size(shape);
        if (nv != (kind == 0 ? 3u : kind == 1 ? 4u : nv) ||
            (kind == 2 && (nv % 2 || nv < 6 || nv > 2 * SL_REGION_VERTICES)))
            return sl_fail(why, len, SL_EINVAL, "data.regions[%zu].%s: %s", i, kinds[kind],
                           kind == 0 ? "[x, y, r]" : kind == 1 ? "[x, y, x1, y1]"
                                     : "[x1, y1, ...]: 3 to 64 vertices");
        for (size_t j = 0; j < nv; j++)
            if (!float_of(json_array_get(shape, j), &o->v[j]))
                return sl_fail(why, len, SL_EINVAL, "data.regions[%zu].%s[%zu]: a finite "
                               "number", i, kinds[kind], j);
        o->g.x = o->v[0], o->g.y = o->v[1], o->g.r = o->v[2];
        o->g.x1 = o->v[2], o->g.y1 = o->v[3];
        o->g.n = (uint32_t)nv / 2;
        if ((kind == 0 && o->g.r < 0) || (kind == 1 && (o->g.x1 < o->g.x || o->g.y1 < o->g.y)))
            return sl_fail(why, len, SL_EINVAL, "data.regions[%zu].%s: %s", i, kinds[kind],
                           kind == 0 ? "r must be >= 0" : "x1 >= x and y1 >= y");
    }
    return 0;
}

/* The data fields' values, each checked for its range. */
static int read_data(const json_t *data, sl_space_doc *d, char *why, size_t len)
{
    json_t *w = json_object_get(data, "width"), *h = json_object_get(data, "height");
    json_t *cell = json_object_get(data, "cell"), *hy = json_object_get(data, "hysteresis");
    json_t *tick = json_object_get(data, "tick_ms"), *index = json_object_get(data, "index");
    json_t *scripts = json_object_get(data, "scripts");
    d->cfg.index = SL_INDEX_AUTO;
    if (!w || !h || !float_of(w, &d->cfg.width) || !float_of(h, &d->cfg.height) ||
        !(d->cfg.width > 0) || !(d->cfg.height > 0))
        return sl_fail(why, len, SL_EINVAL, "data.width and data.height are required, "
                       "positive and finite");
    if (cell && (!float_of(cell, &d->cfg.cell) || d->cfg.cell < 0))
        return sl_fail(why, len, SL_EINVAL, "data.cell must be >= 0 and finite");
    if (hy && (!float_of(hy, &d->cfg.hysteresis) || d->cfg.hysteresis < 0))
        return sl_fail(why, len, SL_EINVAL, "data.hysteresis must be >= 0 and finite");
    d->cfg.stay = json_is_true(json_object_get(data, "stay"));
    d->cfg.reasons = json_is_true(json_object_get(data, "reasons"));     /* (1.1) */
    if (tick && (!isfinite(d->tick_ms = json_number_value(tick)) || d->tick_ms < 0 ||
                 d->tick_ms > 3600e3))
        return sl_fail(why, len, SL_EINVAL, "data.tick_ms must be 0 to 3600000");
    if (index && sl_index_kind_parse(json_string_value(index), &d->cfg.index))
        return sl_fail(why, len, SL_EINVAL, "data.index must be grid, quadtree or auto");
    if (scripts && !scripts_ok(json_string_value(scripts)))
        return sl_fail(why, len, SL_EINVAL, "data.scripts names a folder below the server's "
                       "script root: relative, without .., at most %u bytes",
                       SL_SCHEMA_SCRIPTS_MAX);
    if (scripts)
        snprintf(d->scripts, sizeof d->scripts, "%s", json_string_value(scripts));
    json_t *zones = json_object_get(data, "regions");       /* (1.2) */
    return zones ? read_zones(zones, d, why, len) : 0;
}

/* The envelope: version, schema_hash, created_at, data, and nothing else. */
static int read_envelope(const json_t *doc, sl_space_doc *d, const json_t **data, char *why,
                         size_t len)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)doc, k, v)
        if (strcmp(k, "version") && strcmp(k, "schema_hash") && strcmp(k, "created_at") &&
            strcmp(k, "data"))
            return sl_fail(why, len, SL_EINVAL, "%.60s: no such field in a definition", k);
    const char *version = json_string_value(json_object_get(doc, "version"));
    const char *hash = json_string_value(json_object_get(doc, "schema_hash"));
    json_t *created = json_object_get(doc, "created_at");
    unsigned sv[3];
    if (!version)
        return sl_fail(why, len, SL_EINVAL, "version (a string 1.MINOR.PATCH) is required");
    if (!parse_semver(version, sv))
        return sl_fail(why, len, SL_EINVAL, "version %.40s is not MAJOR.MINOR.PATCH", version);
    if (sv[0] != 1)
        return sl_fail(why, len, SL_EINVAL, "version %s: this server knows major version 1",
                       version);
    if (sv[1] > SL_SCHEMA_MINOR)
        return sl_fail(why, len, SL_EINVAL, "version %s: written for 1.%u, this server knows "
                       "up to 1.%u", version, sv[1], SL_SCHEMA_MINOR);
    d->minor = sv[1];
    d->patch = sv[2];
    d->legacy_hash = sv[1] == 0 && hash && !strcmp(hash, legacy_hash_1_0());
    if (!hash || (strcmp(hash, sl_schema_hash(d->minor)) && !d->legacy_hash))
        return sl_fail(why, len, SL_EINVAL, "schema_hash %.20s does not match schema 1.%u's %s",
                       hash ? hash : "(missing)", d->minor, sl_schema_hash(d->minor));
    if (created && !json_is_string(created))
        return sl_fail(why, len, SL_EINVAL, "created_at must be a string");
    *data = json_object_get(doc, "data");
    if (!json_is_object(*data))
        return sl_fail(why, len, SL_EINVAL, "data must be an object");
    return 0;
}

int sl_space_doc_parse(const char *json, size_t n, sl_space_doc *d, char *why, size_t len)
{
    memset(d, 0, sizeof *d);
    json_t *doc = load_object(json, n, why, len);
    if (!doc)
        return SL_EINVAL;
    const json_t *data = NULL;
    int rc = read_envelope(doc, d, &data, why, len);
    if (!rc)
        rc = check_fields(data, schema_rows[d->minor], d->minor, why, len);
    if (!rc)
        rc = read_data(data, d, why, len);
    json_decref(doc);
    if (rc)
        sl_space_doc_free(d);
    return rc;
}

void sl_space_doc_free(sl_space_doc *d)
{
    free(d->zones);
    d->zones = NULL;
    d->nzones = 0;
}

bool sl_space_doc_same(const sl_space_doc *a, const sl_space_doc *b)
{
    return a->cfg.width == b->cfg.width && a->cfg.height == b->cfg.height &&
           a->cfg.cell == b->cfg.cell && a->cfg.hysteresis == b->cfg.hysteresis &&
           a->cfg.stay == b->cfg.stay && a->cfg.index == b->cfg.index &&
           a->tick_ms == b->tick_ms && !strcmp(a->scripts, b->scripts) &&
           a->nzones == b->nzones &&
           (!a->nzones || !memcmp(a->zones, b->zones, a->nzones * sizeof *a->zones));
}

/* ---- static entities ----------------------------------------------------------------------- */

/*
 * Entity documents come by the tens of thousands a second, so they are read by a parser of
 * their one shape instead of a general JSON tree: RFC 8259 JSON (UTF-8 checked, escapes
 * and surrogate pairs decoded, duplicate keys refused, \u0000 refused), an object whose
 * members are the five numbers and `props`, an object of booleans, numbers and strings.
 * Its strings are decoded into one block that the document owns.
 */
typedef struct reader {
    const unsigned char *p, *end;
    char *out;                  /* where decoded strings go (the document's block) */
    const char *why;            /* the first error */
} reader;

static void ws(reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static bool fail(reader *r, const char *why)
{
    if (!r->why)
        r->why = why;
    return false;
}

/* Whether the next byte is c (skipping blanks), taking it. */
static bool eat(reader *r, char c)
{
    ws(r);
    if (r->p < r->end && *r->p == (unsigned char)c) {
        r->p++;
        return true;
    }
    return false;
}

static int hex4(const unsigned char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static char *put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xc0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xe0 | cp >> 12);
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *o++ = (char)(0xf0 | cp >> 18);
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    }
    return o;
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
             : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (!n || (size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) ||   /* overlong, surrogate */
        (c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f))     /* overlong, > U+10FFFF */
        return 0;
    return n;
}

/* A string (the opening quote next), decoded into r->out, NUL-terminated; NULL on error. */
static const char *string(reader *r, size_t *len)
{
    if (!eat(r, '"'))
        return fail(r, "a string was expected"), NULL;
    char *start = r->out, *o = r->out;
    while (r->p < r->end && *r->p != '"') {
        if (*r->p < 0x20)
            return fail(r, "a control character in a string"), NULL;
        if (*r->p != '\\') {
            size_t n = utf8_len(r->p, r->end);
            if (!n)
                return fail(r, "invalid UTF-8"), NULL;
            memcpy(o, r->p, n);
            o += n;
            r->p += n;
            continue;
        }
        if (r->end - r->p < 2)
            break;
        unsigned char e = r->p[1];
        r->p += 2;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            *o++ = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
            continue;
        }
        int cp = e == 'u' && r->end - r->p >= 4 ? hex4(r->p) : -1;
        if (cp < 0)
            return fail(r, "a bad escape in a string"), NULL;
        r->p += 4;
        if (cp >= 0xd800 && cp <= 0xdbff) {     /* a high surrogate: its low one must follow */
            int lo = r->end - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u' ? hex4(r->p + 2) : -1;
            if (lo < 0xdc00 || lo > 0xdfff)
                return fail(r, "a lone surrogate in a string"), NULL;
            r->p += 6;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        } else if ((cp >= 0xdc00 && cp <= 0xdfff) || cp == 0) {
            return fail(r, cp ? "a lone surrogate in a string" : "\\u0000 in a string"), NULL;
        }
        o = put_utf8(o, (unsigned)cp);
    }
    if (r->p >= r->end)
        return fail(r, "an unterminated string"), NULL;
    r->p++;
    *o++ = '\0';
    r->out = o;
    *len = (size_t)(o - start - 1);
    return start;
}

/* A JSON number: its value, and whether it was written as an integer. */
static bool number(reader *r, double *v, bool *integer)
{
    ws(r);
    const unsigned char *s = r->p, *p = s;
    p += p < r->end && *p == '-';
    if (p >= r->end || *p < '0' || *p > '9')
        return fail(r, "a value was expected");
    if (*p == '0')
        p++;
    else
        while (p < r->end && *p >= '0' && *p <= '9')
            p++;
    *integer = true;
    if (p < r->end && *p == '.') {
        *integer = false;
        if (++p >= r->end || *p < '0' || *p > '9')
            return fail(r, "a bad number");
        while (p < r->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < r->end && (*p == 'e' || *p == 'E')) {
        *integer = false;
        p++;
        p += p < r->end && (*p == '+' || *p == '-');
        if (p >= r->end || *p < '0' || *p > '9')
            return fail(r, "a bad number");
        while (p < r->end && *p >= '0' && *p <= '9')
            p++;
    }
    char buf[64];
    if ((size_t)(p - s) >= sizeof buf)
        return fail(r, "a number of more than 63 characters");
    memcpy(buf, s, (size_t)(p - s));
    buf[p - s] = '\0';
    *v = strtod(buf, NULL);
    if (!isfinite(*v) || (*integer && (*v > 9223372036854775807.0 ||
                                      *v < -9223372036854775808.0)))
        return fail(r, "a number out of range");
    r->p = p;
    return true;
}

/* A literal (true, false, null) at the reader. */
static bool literal(reader *r, const char *word)
{
    size_t n = strlen(word);
    ws(r);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n))
        return false;
    r->p += n;
    return true;
}

/* One prop value into v (strings point into the document's block). */
static bool prop_value(reader *r, sl_value *v)
{
    size_t n;
    bool integer;
    ws(r);
    if (r->p < r->end && *r->p == '"') {
        const char *s = string(r, &n);
        *v = (sl_value){.type = SL_VALUE_STRING, .s = s, .len = n};
        return s != NULL;
    }
    if (literal(r, "true") || literal(r, "false")) {
        *v = (sl_value){.type = SL_VALUE_BOOL, .b = r->p[-1] == 'e' && r->p[-2] == 'u'};
        return true;
    }
    if (r->p < r->end && (*r->p == '-' || (*r->p >= '0' && *r->p <= '9'))) {
        *v = (sl_value){.type = SL_VALUE_NUMBER};
        return number(r, &v->n, &integer);
    }
    return false;
}

/* The members of an object (the opening brace next), each handed to fn with its key. */
typedef int (*member_fn)(reader *r, const char *key, void *ud, char *why, size_t len);

static int members(reader *r, member_fn fn, void *ud, char *why, size_t len)
{
    if (!eat(r, '{'))
        return fail(r, "an object was expected"), SL_EINVAL;
    if (eat(r, '}'))
        return 0;
    do {
        size_t kl;
        const char *key = string(r, &kl);
        if (!key || !eat(r, ':'))
            return fail(r, "a member was expected"), SL_EINVAL;
        int rc = fn(r, key, ud, why, len);
        if (rc)
            return rc;
    } while (eat(r, ','));
    return eat(r, '}') ? 0 : (fail(r, "',' or '}' was expected"), SL_EINVAL);
}

static int prop_member(reader *r, const char *key, void *ud, char *why, size_t len)
{
    sl_entity_doc *d = ud;
    for (size_t i = 0; i < d->nprops; i++)
        if (!strcmp(d->keys[i], key))
            return sl_fail(why, len, SL_EINVAL, "props.%.60s: a duplicate key", key);
    if (!prop_value(r, &d->values[d->nprops])) {
        if (r->why)
            return SL_EINVAL;
        return sl_fail(why, len, SL_EINVAL, "props.%.60s must be a boolean, a number or a "
                       "string", key);
    }
    d->keys[d->nprops++] = key;
    return 0;
}

/* Which top-level fields were seen, to refuse duplicates. */
enum { F_X = 1, F_Y = 2, F_R = 4, F_L = 8, F_M = 16, F_P = 32 };
typedef struct entity_read {
    sl_entity_doc *d;
    unsigned seen;
} entity_read;

static int entity_member(reader *r, const char *key, void *ud, char *why, size_t len)
{
    entity_read *er = ud;
    sl_entity_doc *d = er->d;
    static const char *const names[] = {"x", "y", "radius", "layer", "mask", "props"};
    unsigned f = 0;
    for (unsigned i = 0; i < 6 && !f; i++)
        f = strcmp(key, names[i]) ? 0 : 1u << i;
    if (!f)
        return sl_fail(why, len, SL_EINVAL, "%.60s: no such field in a static entity", key);
    if (er->seen & f)
        return sl_fail(why, len, SL_EINVAL, "%s: a duplicate key", key);
    er->seen |= f;
    if (f == F_P)
        return members(r, prop_member, d, why, len);
    double v;
    bool integer;
    ws(r);
    if (r->p >= r->end || !(*r->p == '-' || (*r->p >= '0' && *r->p <= '9')))
        ;                       /* not a number: refused below */
    else if (!number(r, &v, &integer))
        return SL_EINVAL;
    else if (f == F_X || f == F_Y || f == F_R) {
        float *out = f == F_X ? &d->x : f == F_Y ? &d->y : &d->radius;
        if (isfinite(v) && fabs(v) <= FLT_MAX && (f != F_R || v >= 0)) {
            *out = (float)v;
            return 0;
        }
    } else if (integer && v >= 0 && v <= (f == F_L ? 31.0 : 4294967295.0)) {
        *(f == F_L ? &d->layer : &d->mask) = (uint32_t)v;
        return 0;
    }
    if (f == F_X || f == F_Y)
        return sl_fail(why, len, SL_EINVAL, "x and y are required finite numbers");
    if (f == F_R)
        return sl_fail(why, len, SL_EINVAL, "radius must be >= 0 and finite in float32");
    return sl_fail(why, len, SL_EINVAL, f == F_L ? "layer must be an integer 0 to 31"
                                                 : "mask must be an integer 0 to 4294967295");
}

int sl_entity_doc_parse(const char *json, size_t n, sl_entity_doc *d, char *why, size_t len)
{
    memset(d, 0, sizeof *d);
    /* One block: the prop arrays (at most one entry a 4 bytes of text: `"":0` is the
     * smallest member) and the decoded strings (never longer than their JSON text). */
    size_t maxp = n / 4 + 1;
    size_t arrays = maxp * (sizeof *d->keys + sizeof *d->values);
    char *block = malloc(arrays + n + 1);
    if (!block)
        return sl_fail(why, len, SL_ENOMEM, "out of memory");
    d->values = (sl_value *)(void *)block;
    d->keys = (const char **)(void *)(block + maxp * sizeof *d->values);
    d->json_ = block;
    d->mask = UINT32_MAX;
    reader r = {(const unsigned char *)json, (const unsigned char *)json + n, block + arrays,
                NULL};
    entity_read er = {d, 0};
    why[0] = '\0';
    int rc = members(&r, entity_member, &er, why, len);
    ws(&r);
    if (!rc && r.p != r.end)
        fail(&r, "text after the object");
    if (!rc && !r.why && (er.seen & (F_X | F_Y)) != (F_X | F_Y))
        rc = sl_fail(why, len, SL_EINVAL, "x and y are required finite numbers");
    if (r.why && !why[0])
        snprintf(why, len, "invalid JSON at byte %zu: %s",
                 (size_t)(r.p - (const unsigned char *)json), r.why);
    if (rc || r.why || why[0]) {
        sl_entity_doc_free(d);
        return SL_EINVAL;
    }
    return 0;
}

void sl_entity_doc_free(sl_entity_doc *d)
{
    free(d->json_);
    memset(d, 0, sizeof *d);
}
