/* trace.c: parse and execute replay trace lines (format in trace.h). */
#include "trace.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The longest line: a polygon region (region ID poly N, its vertices, a mask). */
#define MAX_TOKENS (5 + 2 * SL_REGION_VERTICES)

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static bool parse_u32(const char *s, int base, uint32_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || *end || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

static bool parse_i32(const char *s, int32_t *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < INT32_MIN || v > INT32_MAX)
        return false;
    *out = (int32_t)v;
    return true;
}

/* Accepts anything strtof does (nan and inf included: the space judges the value). */
static bool parse_float(const char *s, float *out)
{
    if (!s || !*s)
        return false;
    char *end;
    *out = strtof(s, &end);
    return *end == '\0';
}

void sl_trace_init(sl_trace *t)
{
    memset(t, 0, sizeof *t);
}

void sl_trace_free(sl_trace *t)
{
    sl_space_free(t->space);
    t->space = NULL;
}

static int exec_space(sl_trace *t, char **tok, int n, char *err, size_t len)
{
    if (t->space)
        return sl_fail(err, len, SL_EINVAL, "the space is already defined");
    sl_space_config cfg = {.index = SL_INDEX_AUTO, .alloc = t->alloc, .stay = t->stay,
                           .reasons = t->reasons};
    if (n < 3 || !parse_float(tok[1], &cfg.width) || !parse_float(tok[2], &cfg.height))
        return sl_fail(err, len, SL_EINVAL, "usage: space W H [cell=C] [index=KIND] "
                       "[hysteresis=H] [depth=D]");
    for (int i = 3; i < n; i++) {
        char *eq = strchr(tok[i], '=');
        if (!eq)
            return sl_fail(err, len, SL_EINVAL, "option '%s' is not key=value", tok[i]);
        *eq = '\0';
        const char *key = tok[i], *val = eq + 1;
        bool ok;
        if (strcmp(key, "cell") == 0)
            ok = parse_float(val, &cfg.cell);
        else if (strcmp(key, "hysteresis") == 0)
            ok = parse_float(val, &cfg.hysteresis);
        else if (strcmp(key, "index") == 0)
            ok = sl_index_kind_parse(val, &cfg.index) == 0;
        else if (strcmp(key, "depth") == 0)
            ok = parse_float(val, &cfg.depth);
        else
            return sl_fail(err, len, SL_EINVAL, "unknown space option '%s'", key);
        if (!ok)
            return sl_fail(err, len, SL_EINVAL, "bad value '%s' for %s", val, key);
    }
    if (t->force_index)
        cfg.index = t->index;
    char why[128] = "";
    int rc = sl_space_new(&t->space, &cfg, why, sizeof why);
    if (rc)
        return sl_fail(err, len, rc, "space: %s", rc == SL_EINVAL ? why : sl_strerror(rc));
    return 0;
}

bool sl_trace_lod(char *const *tok, int n, sl_lod_band *out)
{
    if (n < 0 || n > SL_LOD_BANDS)
        return false;
    for (int i = 0; i < n; i++) {
        char *colon = strchr(tok[i], ':');
        if (!colon)
            return false;
        *colon = '\0';
        if (!parse_float(tok[i], &out[i].distance) || !parse_u32(colon + 1, 10, &out[i].period))
            return false;
    }
    return true;
}

bool sl_trace_query(char *const *tok, int n, sl_query *q)
{
    static const char *const cmds[] = {"query", "queryrect", "querysphere", "querybox"};
    int k = 0;
    while (k < 4 && strcmp(tok[0], cmds[k]))
        k++;
    *q = (sl_query){.rect = k % 2 == 1, .mask = UINT32_MAX, .d3 = k >= 2};
    /* The numbers, in the order of the line: x, y, [z], then r or x1, y1, [z1]. */
    float *f[6] = {&q->x, &q->y, &q->r};
    int nf = 3;
    if (k == 1)
        f[2] = &q->x1, f[3] = &q->y1, nf = 4;
    else if (k == 2)
        f[2] = &q->z, f[3] = &q->r, nf = 4;
    else if (k == 3)
        f[2] = &q->z, f[3] = &q->x1, f[4] = &q->y1, f[5] = &q->z1, nf = 6;
    if (k == 4 || n < nf + 1 || n > nf + 3)
        return false;
    for (int i = 0; i < nf; i++)
        if (!parse_float(tok[1 + i], f[i]))
            return false;
    return (n <= nf + 1 || parse_u32(tok[nf + 1], 0, &q->mask)) &&
           (n <= nf + 2 || parse_u32(tok[nf + 2], 10, &q->limit));
}

bool sl_trace_region(char *const *tok, int n, uint64_t *id, sl_region *g, float *xy)
{
    *g = (sl_region){.mask = UINT32_MAX, .xy = xy};
    if (n < 3 || strcmp(tok[0], "region") || !parse_u64(tok[1], id))
        return false;
    int nf;         /* fields before the optional mask */
    if (strcmp(tok[2], "circle") == 0) {
        g->kind = SL_REGION_CIRCLE;
        nf = 6;
        if (n < nf || !parse_float(tok[3], &g->x) || !parse_float(tok[4], &g->y) ||
            !parse_float(tok[5], &g->r))
            return false;
    } else if (strcmp(tok[2], "rect") == 0) {
        g->kind = SL_REGION_RECT;
        nf = 7;
        if (n < nf || !parse_float(tok[3], &g->x) || !parse_float(tok[4], &g->y) ||
            !parse_float(tok[5], &g->x1) || !parse_float(tok[6], &g->y1))
            return false;
    } else if (strcmp(tok[2], "poly") == 0) {
        g->kind = SL_REGION_POLYGON;
        if (n < 4 || !parse_u32(tok[3], 10, &g->n) || g->n > SL_REGION_VERTICES)
            return false;
        nf = 4 + 2 * (int)g->n;
        for (int i = 4; i < nf; i++)
            if (i >= n || !parse_float(tok[i], &xy[i - 4]))
                return false;
    } else {
        return false;
    }
    return n <= nf + 1 && (n == nf || parse_u32(tok[nf], 0, &g->mask));
}

int sl_trace_exec(sl_trace *t, char *line, char *err, size_t len)
{
    char *tok[MAX_TOKENS + 1];
    int n = 0;
    char *save = NULL;
    char *hash = strchr(line, '#');
    if (hash)
        *hash = '\0';
    for (char *p = strtok_r(line, " \t\r\n", &save); p; p = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == MAX_TOKENS)
            return sl_fail(err, len, SL_EINVAL, "too many fields");
        tok[n++] = p;
    }
    if (n == 0)
        return 0;
    const char *cmd = tok[0];
    if (strcmp(cmd, "space") == 0)
        return exec_space(t, tok, n, err, len);
    if (!t->space)
        return sl_fail(err, len, SL_EINVAL, "'%s' before the space line", cmd);
    sl_space *s = t->space;
    uint64_t id = 0;
    int rc;
    if (strcmp(cmd, "tick") == 0) {
        if (n != 1)
            return sl_fail(err, len, SL_EINVAL, "usage: tick");
        t->ticks++;
        rc = t->tick ? t->tick(t->hook_ud) : sl_space_tick(s, t->sink, t->sink_ud);
        return rc ? sl_fail(err, len, rc, "tick: %s", sl_strerror(rc)) : 0;
    }
    if (strncmp(cmd, "query", 5) == 0) {
        sl_query q;
        if (!sl_trace_query(tok, n, &q))
            return sl_fail(err, len, SL_EINVAL, "usage: query X Y R, queryrect X Y X1 Y1, "
                           "querysphere X Y Z R or querybox X Y Z X1 Y1 Z1 [LAYERS [LIMIT]]");
        const sl_query_hit *h;
        size_t nh;
        if ((rc = sl_space_query(s, &q, &h, &nh)))
            return sl_fail(err, len, rc, "%s", sl_space_error(s));
        if (t->query)
            t->query(t->hook_ud, h, nh);
        return 0;
    }
    if (strcmp(cmd, "region") == 0) {
        sl_region g;
        float xy[2 * SL_REGION_VERTICES];
        if (!sl_trace_region(tok, n, &id, &g, xy))
            return sl_fail(err, len, SL_EINVAL, "usage: region ID circle X Y R [MASK], region "
                           "ID rect X Y X1 Y1 [MASK], region ID poly N X1 Y1 ... XN YN [MASK]");
        rc = sl_space_set_region(s, id, &g);
        return rc ? sl_fail(err, len, rc, "%s", sl_space_error(s)) : 0;
    }
    if (n < 2 || !parse_u64(tok[1], &id))
        return sl_fail(err, len, SL_EINVAL, "%s: missing or bad entity id", cmd);
    if (strcmp(cmd, "unregion") == 0) {
        if (n != 2)
            return sl_fail(err, len, SL_EINVAL, "usage: unregion ID");
        rc = sl_space_remove_region(s, id);
        return rc ? sl_fail(err, len, rc, "%s", sl_space_error(s)) : 0;
    }
    const bool d3 = sl_space_config_of(s)->depth > 0;
    if (strcmp(cmd, "add") == 0) {
        float x, y, z = 0, r;
        uint32_t layer = 0, mask = UINT32_MAX;
        int o = d3;     /* (a 3D space's line has Z before R) */
        if (n < 5 + o || n > 7 + o || !parse_float(tok[2], &x) || !parse_float(tok[3], &y) ||
            (d3 && !parse_float(tok[4], &z)) || !parse_float(tok[4 + o], &r) ||
            (n > 5 + o && !parse_u32(tok[5 + o], 10, &layer)) ||
            (n > 6 + o && !parse_u32(tok[6 + o], 0, &mask)))
            return sl_fail(err, len, SL_EINVAL, d3 ? "usage: add ID X Y Z R [LAYER [SEESMASK]]"
                                                   : "usage: add ID X Y R [LAYER [SEESMASK]]");
        rc = sl_space_add3(s, id, x, y, z, r, layer, mask);
    } else if (strcmp(cmd, "move") == 0) {
        float x, y, z = NAN;
        if (n < 4 || n > 4 + d3 || !parse_float(tok[2], &x) || !parse_float(tok[3], &y) ||
            (n == 5 && !parse_float(tok[4], &z)))
            return sl_fail(err, len, SL_EINVAL, d3 ? "usage: move ID X Y [Z]"
                                                   : "usage: move ID X Y");
        if (n == 5 && isnan(z))
            return sl_fail(err, len, SL_EINVAL, "move %llu: z is not a number",
                           (unsigned long long)id);
        rc = sl_space_move3(s, id, x, y, z);
    } else if (strcmp(cmd, "radius") == 0) {
        float r;
        if (n != 3 || !parse_float(tok[2], &r))
            return sl_fail(err, len, SL_EINVAL, "usage: radius ID R");
        rc = sl_space_set_radius(s, id, r);
    } else if (strcmp(cmd, "layer") == 0) {
        uint32_t layer;
        if (n != 3 || !parse_u32(tok[2], 10, &layer))
            return sl_fail(err, len, SL_EINVAL, "usage: layer ID LAYER");
        rc = sl_space_set_layer(s, id, layer);
    } else if (strcmp(cmd, "mask") == 0) {
        uint32_t mask;
        if (n != 3 || !parse_u32(tok[2], 0, &mask))
            return sl_fail(err, len, SL_EINVAL, "usage: mask ID SEESMASK");
        rc = sl_space_set_mask(s, id, mask);
    } else if (strcmp(cmd, "prop") == 0) {
        if (n != 4)
            return sl_fail(err, len, SL_EINVAL, "usage: prop ID KEY VALUE");
        if (t->prop)
            return t->prop(t->hook_ud, id, tok[2], tok[3], err, len);
        rc = sl_space_touch(s, id);
    } else if (strcmp(cmd, "hysteresis") == 0) {
        float h;
        if (n != 3 || !parse_float(tok[2], &h))
            return sl_fail(err, len, SL_EINVAL, "usage: hysteresis ID H");
        rc = sl_space_set_hysteresis(s, id, h);
    } else if (strcmp(cmd, "always") == 0) {
        if (n != 3 || (strcmp(tok[2], "on") && strcmp(tok[2], "off")))
            return sl_fail(err, len, SL_EINVAL, "usage: always ID on|off");
        rc = sl_space_set_always(s, id, tok[2][1] == 'n');
    } else if (strcmp(cmd, "relate") == 0) {
        uint64_t t2;
        sl_relation k;
        if (n != 4 || !parse_u64(tok[2], &t2) || !sl_relation_parse(tok[3], &k))
            return sl_fail(err, len, SL_EINVAL, "usage: relate W T force|never|none");
        rc = sl_space_relate(s, id, t2, k);
    } else if (strcmp(cmd, "lod") == 0) {
        sl_lod_band b[SL_LOD_BANDS];
        if (!sl_trace_lod(tok + 2, n - 2, b))
            return sl_fail(err, len, SL_EINVAL, "usage: lod ID [DISTANCE:PERIOD ...] (at most "
                           "%d bands)", SL_LOD_BANDS);
        rc = sl_space_set_lod(s, id, b, (uint32_t)(n - 2));
    } else if (strcmp(cmd, "cap") == 0) {
        uint32_t cap;
        float m = 0;
        if ((n != 3 && n != 4) || !parse_u32(tok[2], 10, &cap) ||
            (n == 4 && !parse_float(tok[3], &m)))
            return sl_fail(err, len, SL_EINVAL, "usage: cap ID N [MARGIN]");
        rc = sl_space_set_cap(s, id, cap, m);
    } else if (strcmp(cmd, "group") == 0) {
        uint32_t g;
        if (n != 3 || !parse_u32(tok[2], 10, &g))
            return sl_fail(err, len, SL_EINVAL, "usage: group ID G");
        rc = sl_space_set_group(s, id, g);
    } else if (strcmp(cmd, "priority") == 0) {
        int32_t p;
        if (n != 3 || !parse_i32(tok[2], &p))
            return sl_fail(err, len, SL_EINVAL, "usage: priority ID P");
        rc = sl_space_set_priority(s, id, p);
    } else if (strcmp(cmd, "owner") == 0) {
        uint64_t owner;
        sl_entity_info e;
        if (n != 3 || !parse_u64(tok[2], &owner))
            return sl_fail(err, len, SL_EINVAL, "usage: owner ID OWNER");
        if ((rc = sl_space_get(s, id, &e)) == 0 && t->owner &&
            (rc = t->owner(t->hook_ud, id, owner)) != 0)
            return sl_fail(err, len, rc, "owner %llu: %s", (unsigned long long)id,
                           sl_strerror(rc));
        if (rc == 0)
            rc = sl_space_touch(s, id);     /* (the rule may read the owner) */
    } else if (strcmp(cmd, "touch") == 0) {
        if (n != 2)
            return sl_fail(err, len, SL_EINVAL, "usage: touch ID");
        rc = sl_space_touch(s, id);
    } else if (strcmp(cmd, "remove") == 0) {
        if (n != 2)
            return sl_fail(err, len, SL_EINVAL, "usage: remove ID");
        rc = sl_space_remove(s, id);
    } else {
        return sl_fail(err, len, SL_EINVAL, "unknown command '%s'", cmd);
    }
    return rc ? sl_fail(err, len, rc, "%s", sl_space_error(s)) : 0;
}
