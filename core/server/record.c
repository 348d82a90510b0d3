/*
 * record.c: `record start FILE [SPACE]` writes one space as it is now (its entities and
 * props), then every change and tick as it happens, as a trace that
 * `sightline-replay --scripts DIR` replays to the same events; `record stop` closes it.
 *
 * One space is recorded at a time. Every change of a space passes through sl__rec, which
 * writes only when the change is in the recorded space; a dropped space stops its
 * recording. The trace format is core/engine/trace.h's: one operation a line.
 */
#include "server/server_impl.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void sl__rec(sl_server *srv, const hosted_space *sp, const char *fmt, ...)
{
    if (!srv->rec || sp->serial != srv->rec_serial)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(srv->rec, fmt, ap);
    va_end(ap);
}

void sl__rec_lod(sl_server *srv, const hosted_space *sp, uint64_t id, const sl_lod_band *b,
                 uint32_t n)
{
    char line[64 + SL_LOD_BANDS * 32];
    int at = snprintf(line, sizeof line, "lod %llu", (unsigned long long)id);
    for (uint32_t i = 0; i < n; i++)
        at += snprintf(line + at, sizeof line - (size_t)at, " %.9g:%u", (double)b[i].distance,
                       b[i].period);
    sl__rec(srv, sp, "%s\n", line);
}

void sl__rec_owner(sl_server *srv, const hosted_space *sp, uint64_t id)
{
    uint64_t o = sl__owner_serial(srv, sp, id);
    if (o)
        sl__rec(srv, sp, "owner %llu %llu\n", (unsigned long long)id, (unsigned long long)o);
}

void sl__rec_add(sl_server *srv, const hosted_space *sp, uint64_t id, float x, float y, float z,
                 float r, uint32_t layer, uint32_t mask)
{
    if (!srv->rec || sp->serial != srv->rec_serial)
        return;
    unsigned long long e = id;
    if (sl_space_config_of(sp->s)->depth > 0)
        sl__rec(srv, sp, "add %llu %.9g %.9g %.9g %.9g %u 0x%x\n", e, (double)x, (double)y,
                (double)z, (double)r, layer, mask);
    else
        sl__rec(srv, sp, "add %llu %.9g %.9g %.9g %u 0x%x\n", e, (double)x, (double)y,
                (double)r, layer, mask);
}

void sl__rec_move(sl_server *srv, const hosted_space *sp, uint64_t id, float x, float y,
                  float z)
{
    if (!srv->rec || sp->serial != srv->rec_serial)
        return;
    unsigned long long e = id;
    if (sl_space_config_of(sp->s)->depth > 0 && !isnan(z))
        sl__rec(srv, sp, "move %llu %.9g %.9g %.9g\n", e, (double)x, (double)y, (double)z);
    else
        sl__rec(srv, sp, "move %llu %.9g %.9g\n", e, (double)x, (double)y);
}

/* Whether the trace format can carry string s (len bytes, not NUL-terminated) as a prop
 * value: no whitespace or `#`, and nothing that would read back as a number, boolean or nil.
 * Whether strtod reads a number at all depends only on the first characters. */
/* The length of the first run of s[0..len) without any of the bytes in reject. */
static size_t strcspn_n(const char *s, size_t len, const char *reject)
{
    size_t i = 0;
    while (i < len && !strchr(reject, s[i]))
        i++;
    return i;
}

static bool plain_string(const char *s, size_t len)
{
    if (len == 0 || len != strnlen(s, len) || strcspn_n(s, len, " \t\r\n#") < len)
        return false;
    static const char *const words[] = {"true", "false", "nil"};
    for (int i = 0; i < 3; i++)
        if (len == strlen(words[i]) && !memcmp(s, words[i], len))
            return false;
    char head[64];
    size_t n = len < sizeof head - 1 ? len : sizeof head - 1;
    memcpy(head, s, n);
    head[n] = '\0';
    char *end;
    (void)strtod(head, &end);
    return end == head;
}

void sl__rec_prop(sl_server *srv, const hosted_space *sp, uint64_t id, const char *key,
                  const sl_value *v)
{
    if (!srv->rec || sp->serial != srv->rec_serial)
        return;     /* (the common case: nothing to check) */
    unsigned long long e = id;
    switch (v->type) {
    case SL_VALUE_NIL: sl__rec(srv, sp, "prop %llu %s nil\n", e, key); return;
    case SL_VALUE_BOOL: sl__rec(srv, sp, "prop %llu %s %s\n", e, key, v->b ? "true" : "false");
                        return;
    case SL_VALUE_NUMBER: sl__rec(srv, sp, "prop %llu %s %.17g\n", e, key, v->n); return;
    case SL_VALUE_STRING: break;
    }
    if (plain_string(v->s, v->len))
        sl__rec(srv, sp, "prop %llu %s %.*s\n", e, key, (int)v->len, v->s);
    else
        sl__rec(srv, sp, "# prop %llu %s: a string value the trace format cannot carry\n", e,
                key);
}

void sl__record_forget(sl_server *srv, const hosted_space *sp)
{
    if (srv->rec && srv->rec_serial == sp->serial) {
        fclose(srv->rec);
        srv->rec = NULL;
        sl__log(srv, "recording %s stopped: its space was dropped", srv->rec_path);
    }
}

typedef struct rec_ctx {
    sl_server *srv;
    hosted_space *sp;
    uint64_t id;
} rec_ctx;

static void rec_one_prop(void *ud, const char *key, const sl_value *v)
{
    rec_ctx *r = ud;
    sl__rec_prop(r->srv, r->sp, r->id, key, v);
}

static void rec_entity(void *ud, const sl_entity_info *e)
{
    rec_ctx *r = ud;
    sl__rec_add(r->srv, r->sp, e->id, e->x, e->y, e->z, e->radius, e->layer, e->mask);
    sl__rec_owner(r->srv, r->sp, e->id);
    if (e->own_hysteresis)
        sl__rec(r->srv, r->sp, "hysteresis %llu %.9g\n", (unsigned long long)e->id,
                (double)e->hysteresis);
    if (e->nlod)
        sl__rec_lod(r->srv, r->sp, e->id, e->lod, e->nlod);
    if (e->always)
        sl__rec(r->srv, r->sp, "always %llu on\n", (unsigned long long)e->id);
    if (e->priority)
        sl__rec(r->srv, r->sp, "priority %llu %d\n", (unsigned long long)e->id, e->priority);
    if (e->cap)
        sl__rec(r->srv, r->sp, "cap %llu %u %.9g\n", (unsigned long long)e->id, e->cap,
                (double)e->cap_margin);
    if (e->group)
        sl__rec(r->srv, r->sp, "group %llu %u\n", (unsigned long long)e->id, e->group);
    if (r->sp->h) {
        r->id = e->id;
        sl_lua_props_each(r->sp->h, e->id, rec_one_prop, r);
    }
}

static void rec_relation(void *ud, uint64_t w, uint64_t t, sl_relation k)
{
    rec_ctx *r = ud;
    sl__rec(r->srv, r->sp, "relate %llu %llu %s\n", (unsigned long long)w,
            (unsigned long long)t, sl_relation_name(k));
}

/* A `region` line for region id of shape g: region ID circle X Y R MASK, rect X Y X1 Y1
 * MASK, or poly N X1 Y1 ... MASK. */
void sl__rec_region(sl_server *srv, const hosted_space *sp, uint64_t id, const sl_region *g)
{
    if (!srv->rec)
        return;
    char line[64 + 2 * SL_REGION_VERTICES * 18];
    int n = snprintf(line, sizeof line, "region %llu ", (unsigned long long)id);
    if (g->kind == SL_REGION_CIRCLE)
        n += snprintf(line + n, sizeof line - (size_t)n, "circle %.9g %.9g %.9g", (double)g->x,
                      (double)g->y, (double)g->r);
    else if (g->kind == SL_REGION_RECT)
        n += snprintf(line + n, sizeof line - (size_t)n, "rect %.9g %.9g %.9g %.9g",
                      (double)g->x, (double)g->y, (double)g->x1, (double)g->y1);
    else
        n += snprintf(line + n, sizeof line - (size_t)n, "poly %u", g->n);
    for (uint32_t i = 0; g->kind == SL_REGION_POLYGON && i < 2 * g->n; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, " %.9g", (double)g->xy[i]);
    sl__rec(srv, sp, "%s 0x%x\n", line, g->mask);
}

static void rec_region(void *ud, uint64_t id)
{
    rec_ctx *r = ud;
    sl_region g;
    if (sl_space_get_region(r->sp->s, id, &g, NULL) == 0)
        sl__rec_region(r->srv, r->sp, id, &g);
}

/* The trace's head: where it comes from, the space line, then the space as it is now. */
static void record_snapshot(sl_server *srv, hosted_space *sp)
{
    const sl_space_config *cfg = sl_space_config_of(sp->s);
    char cell[32] = "";
    if (cfg->cell > 0)
        snprintf(cell, sizeof cell, " cell=%.9g", (double)cfg->cell);
    sl__rec(srv, sp, "# recorded by sightline from space %s (tick %llu); replay with the same "
                     "scripts: sightline-replay --scripts DIR%s FILE\n", sp->name,
            (unsigned long long)sp->ticks, cfg->stay ? " --stay" : "");
    char depth[32] = "";
    if (cfg->depth > 0)
        snprintf(depth, sizeof depth, " depth=%.9g", (double)cfg->depth);
    sl__rec(srv, sp, "space %.9g %.9g%s index=%s hysteresis=%.9g%s\n", (double)cfg->width,
            (double)cfg->height, cell, sl_index_kind_name(cfg->index),
            (double)cfg->hysteresis, depth);
    rec_ctx r = {srv, sp, 0};
    sl_space_each(sp->s, rec_entity, &r);
    sl_space_relations_each(sp->s, rec_relation, &r);
    sl_space_regions_each(sp->s, rec_region, &r);
    /* The entities above are present at the last tick: a tick makes the replay agree. */
    sl__rec(srv, sp, "tick\n# ---- live from here\n");
}

int sl__record_command(sl_server *srv, const char *args, out_text *o)
{
    char verb[16] = "", path[256] = "", name[MAX_NAME + 1] = "";
    int n = sscanf(args, "%15s %255s %64s", verb, path, name);
    if (n >= 1 && !strcmp(verb, "stop")) {
        if (!srv->rec) {
            sl__put(o, "error: not recording\n");
            return SL_EINVAL;
        }
        fclose(srv->rec);
        srv->rec = NULL;
        sl__put(o, "recording %s stopped\n", srv->rec_path);
        return 0;
    }
    if (n < 2 || strcmp(verb, "start")) {
        sl__put(o, "error: usage: record start FILE [SPACE] | record stop\n");
        return SL_EINVAL;
    }
    if (srv->rec) {
        sl__put(o, "error: already recording %s\n", srv->rec_path);
        return SL_EINVAL;
    }
    hosted_space *sp = n == 3 ? sl__space_find(srv, name, strlen(name))
                     : srv->nspaces == 1 ? srv->spaces[0] : NULL;
    if (!sp) {
        sl__put(o, "error: %s\n", n == 3 ? "no such space" : "name the space to record");
        return SL_ENOENT;
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        sl__put(o, "error: %s: %s\n", path, strerror(errno));
        return SL_EIO;
    }
    srv->rec = f;
    srv->rec_serial = sp->serial;
    snprintf(srv->rec_path, sizeof srv->rec_path, "%s", path);
    record_snapshot(srv, sp);
    sl__put(o, "recording space %s to %s\n", sp->name, path);
    return 0;
}
