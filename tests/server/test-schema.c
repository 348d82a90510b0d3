/*
 * test-schema.c: etcd's documents as core/server/schema.c reads them, without a server.
 * Static entities have a parser of their own shape: it is checked on hand-picked cases and
 * against a reference built on jansson (the general parser it replaced) over random
 * documents, valid and broken, which must get the same verdict and the same values.
 */
#include "test.h"

#include "base/rng.h"
#include "server/schema.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* The reference: jansson, then the same checks. 0 ok, else refused. */
static int reference(const char *text, size_t n, sl_entity_doc *d)
{
    memset(d, 0, sizeof *d);
    json_t *j = json_loadb(text, n, JSON_REJECT_DUPLICATES, NULL);
    int rc = -1;
    if (!json_is_object(j))
        goto out;
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
        if (strcmp(k, "x") && strcmp(k, "y") && strcmp(k, "radius") && strcmp(k, "layer") &&
            strcmp(k, "mask") && strcmp(k, "props"))
            goto out;
    json_t *x = json_object_get(j, "x"), *y = json_object_get(j, "y");
    json_t *r = json_object_get(j, "radius"), *l = json_object_get(j, "layer");
    json_t *m = json_object_get(j, "mask"), *p = json_object_get(j, "props");
    if (!json_is_number(x) || !json_is_number(y) || fabs(json_number_value(x)) > FLT_MAX ||
        fabs(json_number_value(y)) > FLT_MAX)
        goto out;
    d->x = (float)json_number_value(x);
    d->y = (float)json_number_value(y);
    d->mask = UINT32_MAX;
    if (r && (!json_is_number(r) || json_number_value(r) < 0 ||
              json_number_value(r) > FLT_MAX))
        goto out;
    d->radius = r ? (float)json_number_value(r) : 0;
    if (l && (!json_is_integer(l) || json_integer_value(l) < 0 || json_integer_value(l) > 31))
        goto out;
    d->layer = l ? (uint32_t)json_integer_value(l) : 0;
    if (m && (!json_is_integer(m) || json_integer_value(m) < 0 ||
              json_integer_value(m) > 4294967295LL))
        goto out;
    d->mask = m ? (uint32_t)json_integer_value(m) : UINT32_MAX;
    if (p && !json_is_object(p))
        goto out;
    json_object_foreach(p, k, v)
        if (!json_is_boolean(v) && !json_is_number(v) && !json_is_string(v))
            goto out;
    d->nprops = p ? json_object_size(p) : 0;
    rc = 0;
out:
    json_decref(j);
    return rc;
}

static bool same_doc(const sl_entity_doc *a, const sl_entity_doc *b)
{
    return a->x == b->x && a->y == b->y && a->radius == b->radius && a->layer == b->layer &&
           a->mask == b->mask && a->nprops == b->nprops;
}

TEST_IMPL(schema_entity_cases)
{
    static const struct { const char *doc; bool ok; } cases[] = {
        {"{\"x\": 1, \"y\": 2}", true},
        {" {\"y\":2.5e1,\"x\":-0.0, \"radius\": 3, \"layer\": 31, \"mask\": 4294967295} ", true},
        {"{\"x\": 1, \"y\": 2, \"props\": {\"a\": \"\\u00e9\\ud83d\\ude00\\n\", \"b\": true, "
         "\"c\": false, \"d\": -1.5}}", true},
        {"{\"x\": 1, \"y\": 2, \"props\": {}}", true},
        {"{\"x\": 1}", false},
        {"{\"x\": 1, \"y\": 2, \"x\": 3}", false},                  /* duplicate */
        {"{\"x\": 1, \"y\": 2, \"props\": {\"a\": 1, \"a\": 2}}", false},
        {"{\"x\": 1, \"y\": 2, \"layer\": 1.0}", false},           /* not an integer */
        {"{\"x\": 1, \"y\": 2, \"layer\": 32}", false},
        {"{\"x\": 1, \"y\": 2, \"mask\": 4294967296}", false},
        {"{\"x\": 1, \"y\": 2, \"radius\": 1e39}", false},         /* infinite in float32 */
        {"{\"x\": 1, \"y\": 2, \"radius\": -1}", false},
        {"{\"x\": 1e400, \"y\": 2}", false},
        {"{\"x\": 01, \"y\": 2}", false},
        {"{\"x\": 1., \"y\": 2}", false},
        {"{\"x\": .5, \"y\": 2}", false},
        {"{\"x\": 1, \"y\": 2,}", false},
        {"{\"x\": 1, \"y\": 2} x", false},
        {"{\"x\": 1, \"y\": 2, \"z\": 3}", false},
        {"{\"x\": 1, \"y\": 2, \"props\": {\"a\": null}}", false},
        {"{\"x\": 1, \"y\": 2, \"props\": {\"a\": [1]}}", false},
        {"{\"x\": 1, \"y\": 2, \"props\": {\"a\": \"\\ud800\"}}", false},    /* lone surrogate */
        {"{\"x\": 1, \"y\": 2, \"props\": {\"a\": \"\\u0000\"}}", false},
        {"{\"x\": 1, \"y\": 2, \"props\": {\"a\": \"\xff\"}}", false},       /* bad UTF-8 */
        {"{\"x\": 1, \"y\": 2, \"props\": {\"a\": \"\xed\xa0\x80\"}}", false}, /* surrogate */
        {"{\"x\": 1, \"y\": 2, \"props\": {\"a\": \"tab\there\"}}", false},
        {"{\"x\": \"1\", \"y\": 2}", false},
        {"[1, 2]", false},
        {"", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sl_entity_doc d, ref;
        char why[256];
        int rc = sl_entity_doc_parse(cases[i].doc, strlen(cases[i].doc), &d, why, sizeof why);
        if ((rc == 0) != cases[i].ok)
            fprintf(stderr, "case %zu: %s -> %d %s\n", i, cases[i].doc, rc, why);
        ASSERT_EQ(rc == 0, cases[i].ok);
        ASSERT_EQ(reference(cases[i].doc, strlen(cases[i].doc), &ref) == 0, cases[i].ok);
        if (rc == 0) {
            ASSERT(same_doc(&d, &ref));
            ASSERT(why[0] == '\0' || true);
        } else {
            ASSERT(why[0] != '\0');
        }
        sl_entity_doc_free(&d);
    }
    sl_entity_doc d;
    char why[256];
    const char *doc = "{\"x\": 1, \"y\": 2, \"props\": {\"k\\\"ey\": \"v\\u00e9\", \"n\": 7}}";
    ASSERT_EQ(sl_entity_doc_parse(doc, strlen(doc), &d, why, sizeof why), 0);
    ASSERT_EQ(d.nprops, 2);
    ASSERT(!strcmp(d.keys[0], "k\"ey") && d.values[0].type == SL_VALUE_STRING);
    ASSERT(d.values[0].len == 3 && !memcmp(d.values[0].s, "v\xc3\xa9", 3));
    ASSERT(d.values[1].type == SL_VALUE_NUMBER && d.values[1].n == 7);
    sl_entity_doc_free(&d);
    return 0;
}

/* Random pieces a document is built from: most valid, some broken. */
static const char *const pieces_num[] = {"0", "-1", "12.5", "1e3", "-2E-2", "31", "32",
                                         "4294967295", "4294967296", "1e39", "01", "1.",
                                         "\"7\"", "true", "null", "-0", "3.4e38"};
static const char *const pieces_prop[] = {"true", "false", "1", "-2.5", "\"s\"",
                                          "\"\\u00e9\"", "null", "[]", "{}", "\"\\ud800\"",
                                          "\"a\\nb\"", "\"\\q\""};
static const char *const fields[] = {"x", "y", "radius", "layer", "mask", "props", "other"};

static size_t random_doc(sl_rng *g, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "{");
    uint32_t k = sl_rng_below(g, 7);
    for (uint32_t i = 0; i < k; i++) {
        const char *f = fields[sl_rng_below(g, i < 2 ? 2 : 7)];
        if (i < 2)
            f = fields[i];
        n += (size_t)snprintf(out + n, cap - n, "%s\"%s\": ", i ? ", " : "", f);
        if (!strcmp(f, "props")) {
            n += (size_t)snprintf(out + n, cap - n, "{");
            uint32_t np = sl_rng_below(g, 4);
            for (uint32_t j = 0; j < np; j++)
                n += (size_t)snprintf(out + n, cap - n, "%s\"p%u\": %s", j ? ", " : "",
                                      sl_rng_below(g, 3), pieces_prop[sl_rng_below(g, 12)]);
            n += (size_t)snprintf(out + n, cap - n, "}");
        } else {
            n += (size_t)snprintf(out + n, cap - n, "%s", pieces_num[sl_rng_below(g, 17)]);
        }
    }
    n += (size_t)snprintf(out + n, cap - n, "}");
    if (sl_rng_below(g, 10) == 0 && n > 2)      /* now and then a byte cut or changed */
        out[sl_rng_below(g, (uint32_t)n)] = "{}:,\" x"[sl_rng_below(g, 7)];
    return n;
}

TEST_IMPL(schema_entity_differential)
{
    sl_rng g;
    sl_rng_seed(&g, 11);
    unsigned ok = 0, refused = 0;
    for (int i = 0; i < 200000; i++) {
        char doc[512];
        size_t n = random_doc(&g, doc, sizeof doc);
        sl_entity_doc d, ref;
        char why[256];
        int a = sl_entity_doc_parse(doc, n, &d, why, sizeof why), b = reference(doc, n, &ref);
        if ((a == 0) != (b == 0) || (a == 0 && !same_doc(&d, &ref)))
            fprintf(stderr, "differs: %.*s: parser %d (%s), jansson %d\n", (int)n, doc, a,
                    a ? why : "", b);
        ASSERT_EQ(a == 0, b == 0);
        if (a == 0)
            ASSERT(same_doc(&d, &ref));
        ok += a == 0;
        refused += a != 0;
        sl_entity_doc_free(&d);
    }
    ASSERT(ok > 10000 && refused > 10000);      /* both verdicts well exercised */
    return 0;
}

TEST_IMPL(schema_space_cases)
{
    static const struct { const char *version, *hash, *data; const char *why; } cases[] = {
        {"1.0.0", "804a650955269821", "\"width\": 10, \"height\": 10", NULL},
        {"1.0.7", "b8104100491115a7", "\"width\": 10, \"height\": 10", NULL},   /* legacy */
        {"1.0", "804a650955269821", "\"width\": 10, \"height\": 10", "not MAJOR.MINOR.PATCH"},
        {"1.00.0", "804a650955269821", "\"width\": 10, \"height\": 10", "not MAJOR.MINOR"},
        {"1.0.0-rc1", "804a650955269821", "\"width\": 10, \"height\": 10", "not MAJOR.MINOR"},
        {"2.0.0", "804a650955269821", "\"width\": 10, \"height\": 10", "major version 1"},
        {"1.3.0", "804a650955269821", "\"width\": 10, \"height\": 10", "written for 1.3"},
        {"1.2.0", "bfbef4044f3e2194", "\"width\": 10, \"height\": 10, \"regions\": "
         "[{\"id\": 1, \"circle\": [5, 5, 2]}, {\"id\": 2, \"rect\": [0, 0, 3, 4], "
         "\"mask\": 6}, {\"id\": 3, \"poly\": [0, 0, 9, 0, 0, 9]}]", NULL},
        {"1.1.0", "e7a98085d844cee2", "\"width\": 10, \"height\": 10, \"regions\": []",
         "data.regions: no such field"},
        {"1.2.0", "bfbef4044f3e2194", "\"width\": 10, \"height\": 10, \"regions\": "
         "[{\"id\": 1, \"circle\": [5, 5, -2]}]", "r must be >= 0"},
        {"1.2.0", "bfbef4044f3e2194", "\"width\": 10, \"height\": 10, \"regions\": "
         "[{\"id\": 1, \"rect\": [5, 5, 4, 6]}]", "x1 >= x and y1 >= y"},
        {"1.2.0", "bfbef4044f3e2194", "\"width\": 10, \"height\": 10, \"regions\": "
         "[{\"id\": 1, \"poly\": [0, 0, 1, 1]}]", "3 to 64 vertices"},
        {"1.2.0", "bfbef4044f3e2194", "\"width\": 10, \"height\": 10, \"regions\": "
         "[{\"id\": 1, \"circle\": [1, 1, 1]}, {\"id\": 1, \"circle\": [1, 1, 1]}]",
         "id 1 twice"},
        {"1.2.0", "bfbef4044f3e2194", "\"width\": 10, \"height\": 10, \"regions\": "
         "[{\"id\": 1, \"circle\": [1, 1, 1], \"rect\": [0, 0, 1, 1]}]", "one of circle"},
        {"1.2.0", "bfbef4044f3e2194", "\"width\": 10, \"height\": 10, \"regions\": "
         "[{\"id\": 1, \"circle\": [1, 1, 1], \"colour\": 2}]", "one of circle"},
        {"1.2.0", "bfbef4044f3e2194", "\"width\": 10, \"height\": 10, \"regions\": "
         "[{\"id\": 1, \"circle\": [1, \"a\", 1]}]", "a finite number"},
        {"1.1.0", "804a650955269821", "\"width\": 10, \"height\": 10", "does not match "
         "schema 1.1's e7a98085d844cee2"},
        {"1.1.3", "e7a98085d844cee2", "\"width\": 10, \"height\": 10, \"reasons\": true", NULL},
        {"1.1.0", "b8104100491115a7", "\"width\": 10, \"height\": 10", "schema_hash"},
        {"1.0.0", "804a650955269821", "\"width\": 10, \"height\": 10, \"reasons\": true",
         "data.reasons: no such field"},
        {"1.1.0", "e7a98085d844cee2", "\"width\": 10, \"height\": 10, \"reasons\": 1",
         "data.reasons must be a boolean"},
        {"1.0.0", "0000000000000000", "\"width\": 10, \"height\": 10", "schema_hash"},
        {"1.0.0", "804a650955269821", "\"width\": 10", "data.width and data.height"},
        {"1.0.0", "804a650955269821", "\"width\": 10, \"height\": 10, \"stay\": 1",
         "data.stay must be a boolean"},
        {"1.0.0", "804a650955269821", "\"width\": 10, \"height\": 10, \"scripts\": \"../x\"",
         "data.scripts"},
        {"1.0.0", "804a650955269821", "\"width\": 10, \"height\": 10, \"scripts\": \"/etc\"",
         "data.scripts"},
        {"1.0.0", "804a650955269821", "\"width\": 10, \"height\": 10, \"hysteresis\": -1",
         "data.hysteresis"},
        {"1.0.0", "804a650955269821", "\"width\": 1e39, \"height\": 10", "data.width"},
    };
    ASSERT(!strcmp(sl_schema_hash(0), "804a650955269821"));    /* README's test vector */
    ASSERT(!strcmp(sl_schema_hash(1), "e7a98085d844cee2"));
    ASSERT(!strcmp(sl_schema_hash(2), "bfbef4044f3e2194"));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char doc[512], why[256] = "";
        snprintf(doc, sizeof doc, "{\"version\": \"%s\", \"schema_hash\": \"%s\", \"data\": "
                 "{%s}}", cases[i].version, cases[i].hash, cases[i].data);
        sl_space_doc d;
        int rc = sl_space_doc_parse(doc, strlen(doc), &d, why, sizeof why);
        if (cases[i].why ? rc == 0 || !strstr(why, cases[i].why) : rc != 0)
            fprintf(stderr, "case %zu: %s -> %d %s\n", i, doc, rc, why);
        ASSERT_EQ(rc == 0, cases[i].why == NULL);
        if (cases[i].why)
            ASSERT(strstr(why, cases[i].why) != NULL);
        else
            ASSERT_EQ(d.legacy_hash, i == 1);
        if (!rc && d.nzones) {      /* the three zones of the 1.2 case, as written */
            ASSERT_EQ(d.nzones, 3);
            ASSERT(d.zones[0].g.kind == SL_REGION_CIRCLE && d.zones[0].g.r == 2);
            ASSERT(d.zones[1].g.kind == SL_REGION_RECT && d.zones[1].g.y1 == 4 &&
                   d.zones[1].g.mask == 6);
            ASSERT(d.zones[2].g.kind == SL_REGION_POLYGON && d.zones[2].g.n == 3 &&
                   d.zones[2].v[2] == 9 && d.zones[2].g.mask == UINT32_MAX);
        }
        if (!rc)
            sl_space_doc_free(&d);
    }
    const char *extra = "{\"version\": \"1.0.0\", \"schema_hash\": \"804a650955269821\", "
                        "\"owner\": 1, \"data\": {\"width\": 1, \"height\": 1}}";
    sl_space_doc d;
    char why[256];
    ASSERT_EQ(sl_space_doc_parse(extra, strlen(extra), &d, why, sizeof why), SL_EINVAL);
    ASSERT(strstr(why, "owner: no such field") != NULL);
    return 0;
}
