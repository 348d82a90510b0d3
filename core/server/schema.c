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
};

/* Documents of 1.0 written before the hash's offset basis was corrected carry the hash
 * from 1469598103934665603 (a digit short of FNV-1a's): accepted for 1.0 until schema 1.2,
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

static bool int_in(const json_t *v, json_int_t lo, json_int_t hi, uint32_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return false;
    *out = (uint32_t)json_integer_value(v);
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
    return 0;
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
    return rc;
}

bool sl_space_doc_same(const sl_space_doc *a, const sl_space_doc *b)
{
    return a->cfg.width == b->cfg.width && a->cfg.height == b->cfg.height &&
           a->cfg.cell == b->cfg.cell && a->cfg.hysteresis == b->cfg.hysteresis &&
           a->cfg.stay == b->cfg.stay && a->cfg.index == b->cfg.index &&
           a->tick_ms == b->tick_ms && !strcmp(a->scripts, b->scripts);
}

/* ---- static entities ----------------------------------------------------------------------- */

/* The props object: booleans, numbers (finite) and strings only. */
static int read_props(json_t *props, sl_entity_doc *d, char *why, size_t len)
{
    size_t n = json_object_size(props);
    if (!n)
        return 0;
    d->keys = calloc(n, sizeof *d->keys);
    d->values = calloc(n, sizeof *d->values);
    if (!d->keys || !d->values)
        return sl_fail(why, len, SL_ENOMEM, "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach(props, k, v) {
        sl_value *pv = &d->values[d->nprops];
        if (json_is_boolean(v))
            *pv = (sl_value){.type = SL_VALUE_BOOL, .b = json_is_true(v)};
        else if (json_is_number(v) && isfinite(json_number_value(v)))
            *pv = (sl_value){.type = SL_VALUE_NUMBER, .n = json_number_value(v)};
        else if (json_is_string(v))
            *pv = (sl_value){.type = SL_VALUE_STRING, .s = json_string_value(v),
                             .len = json_string_length(v)};
        else
            return sl_fail(why, len, SL_EINVAL, "props.%.60s must be a boolean, a number or "
                           "a string", k);
        d->keys[d->nprops++] = k;
    }
    return 0;
}

static int read_entity(json_t *doc, sl_entity_doc *d, char *why, size_t len)
{
    const char *k;
    json_t *v;
    json_object_foreach(doc, k, v)
        if (strcmp(k, "x") && strcmp(k, "y") && strcmp(k, "radius") && strcmp(k, "layer") &&
            strcmp(k, "mask") && strcmp(k, "props"))
            return sl_fail(why, len, SL_EINVAL, "%.60s: no such field in a static entity", k);
    json_t *r = json_object_get(doc, "radius"), *l = json_object_get(doc, "layer");
    json_t *m = json_object_get(doc, "mask"), *props = json_object_get(doc, "props");
    d->mask = UINT32_MAX;
    if (!float_of(json_object_get(doc, "x"), &d->x) || !float_of(json_object_get(doc, "y"), &d->y))
        return sl_fail(why, len, SL_EINVAL, "x and y are required finite numbers");
    if (r && (!float_of(r, &d->radius) || d->radius < 0))
        return sl_fail(why, len, SL_EINVAL, "radius must be >= 0 and finite in float32");
    if (l && !int_in(l, 0, 31, &d->layer))
        return sl_fail(why, len, SL_EINVAL, "layer must be an integer 0 to 31");
    if (m && !int_in(m, 0, UINT32_MAX, &d->mask))
        return sl_fail(why, len, SL_EINVAL, "mask must be an integer 0 to 4294967295");
    if (props && !json_is_object(props))
        return sl_fail(why, len, SL_EINVAL, "props must be an object");
    return props ? read_props(props, d, why, len) : 0;
}

int sl_entity_doc_parse(const char *json, size_t n, sl_entity_doc *d, char *why, size_t len)
{
    memset(d, 0, sizeof *d);
    json_t *doc = load_object(json, n, why, len);
    if (!doc)
        return SL_EINVAL;
    d->json_ = doc;
    int rc = read_entity(doc, d, why, len);
    if (rc)
        sl_entity_doc_free(d);
    return rc;
}

void sl_entity_doc_free(sl_entity_doc *d)
{
    free(d->keys);
    free(d->values);
    json_decref(d->json_);
    memset(d, 0, sizeof *d);
}
