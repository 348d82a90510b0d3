/*
 * admin.c: the admin socket and its commands (see admin.h). Each command is a line of the
 * `commands` table: its name, its usage, and a function that parses the rest of the line
 * and writes the answer. To add a command, write the function and add its line.
 *
 * Transport. Every connection buffers input until a newline, runs the command and writes
 * the answer followed by `.ok` or `.fail`. `space get` and `space put` are answered when
 * etcd answers: the connection counts the answers it still awaits, and one closed in the
 * meantime is freed by the last of them (never under the etcd client's callback). After
 * a `shutdown` the owner's stop function closes everything, this socket included: uv_write
 * tries to write at once, so the short answer normally leaves first, but an answer still
 * queued when the handle closes is cancelled by libuv.
 */
#include "server/admin.h"
#include "server/server_impl.h"

#include "base/clock.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- the commands ------------------------------------------------------------------------- */

/* What a command runs with: conn and admin are NULL outside the socket (--config). */
typedef struct cmd_ctx {
    sl_server *srv;
    sl_admin *admin;
    struct admin_conn *conn;
    out_text *o;
    bool later;                 /* the answer will come later (etcd), through conn */
    uint32_t count;             /* a listing's items so far (region's members) */
} cmd_ctx;

typedef struct command {
    const char *name;
    const char *usage;
    int (*run)(cmd_ctx *x, const char *args);   /* 0, or SL_E* when it failed */
} command;

static void put_usage(out_text *o);

void sl__put(out_text *o, const char *fmt, ...)
{
    if (o->n >= o->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->p + o->n, o->cap - o->n, fmt, ap);
    va_end(ap);
    if (k > 0)
        o->n = o->n + (size_t)k < o->cap ? o->n + (size_t)k : o->cap - 1;
}

static int cmd_help(cmd_ctx *x, const char *args)
{
    (void)args;
    put_usage(x->o);
    return 0;
}

/* `stats` (stats.c has the figures), or `stats reset` to empty the tick-time window. */
static int cmd_stats(cmd_ctx *x, const char *args)
{
    char word[16] = "";
    if (sscanf(args, "%15s", word) == 1 && !strcmp(word, "reset")) {
        x->srv->hist_n = 0;     /* tick times from now on (e.g. after a bulk load) */
        sl__put(x->o, "tick times reset\n");
        return 0;
    }
    sl__stats_text(x->srv, x->o);
    return 0;
}

/* `spaces`: one line a space, with its scripts' version and whether they are faulted, and
 * the memory it holds (the engine's space, its owner map, its script VM). */
static int cmd_spaces(cmd_ctx *x, const char *args)
{
    (void)args;
    const sl_server *srv = x->srv;
    for (uint32_t k = 0; k < srv->nspaces; k++) {
        const hosted_space *sp = srv->spaces[k];
        sl_space_stats st;
        sl_space_get_stats(sp->s, &st);
        sl__put(x->o, "%s entities %u pairs %llu index %s cell %g ticks %llu tick_ms %g",
                sp->name, st.entities, (unsigned long long)st.pairs,
                sl_index_kind_name(st.index), (double)st.cell, (unsigned long long)sp->ticks,
                sp->period_ms > 0 ? sp->period_ms : srv->cfg.tick_ms);
        size_t mem = st.bytes_total + sl_idmap_bytes(&sp->owners);
        if (sp->h) {
            sl_lua_stats ls;
            sl_lua_get_stats(sp->h, &ls);
            sl__put(x->o, " scripts %s v%llu%s overruns %llu", ls.dir,
                    (unsigned long long)ls.version, ls.faulted ? " FAULTED" : "",
                    (unsigned long long)ls.overruns);
            mem += ls.mem_bytes;
        }
        const sl_space_config *cfg = sl_space_config_of(sp->s);
        sl__put(x->o, " map %gx%g", (double)cfg->width, (double)cfg->height);
        if (cfg->depth > 0)
            sl__put(x->o, "x%g", (double)cfg->depth);
        sl__put(x->o, " memory %zu", mem);
        if (cfg->reasons)
            sl__put(x->o, " reasons");
        if (cfg->order == SL_ORDER_TICK)
            sl__put(x->o, " order tick");
        if (sp->creator == SL_CREATOR_CLUSTER && srv->clustered)
            sl__put(x->o, " epoch %llu%s", (unsigned long long)sp->epoch,
                    sl__serving(x->srv, srv->spaces[k], sl_now_ms()) ? ""
                                                                     : " NOT_SERVING");
        sl__put(x->o, "\n");
    }
    if (!srv->nspaces)
        sl__put(x->o, "no spaces\n");
    return 0;
}

/* `reload`: every space's scripts; one that refuses its new scripts keeps the old. */
static int cmd_reload(cmd_ctx *x, const char *args)
{
    (void)args;
    int rc = sl_server_reload(x->srv, x->o->p + x->o->n, x->o->cap - x->o->n);
    x->o->n += strlen(x->o->p + x->o->n);
    return rc;
}

static int cmd_record(cmd_ctx *x, const char *args)
{
    return sl__record_command(x->srv, args, x->o);
}

/* `create` options after the size: key=value words, and `stay`. */
static int parse_create_options(const char *p, sl_space_config *cfg, out_text *o)
{
    char opt[64];
    int used = 0;
    for (; sscanf(p, " %63s%n", opt, &used) == 1; p += used) {
        char *eq = strchr(opt, '=');
        bool ok = true;
        if (!strcmp(opt, "stay"))
            cfg->stay = true;
        else if (!strcmp(opt, "reasons"))
            cfg->reasons = true;
        else if (eq && !strncmp(opt, "cell=", 5))
            cfg->cell = strtof(eq + 1, NULL);
        else if (eq && !strncmp(opt, "hysteresis=", 11))
            cfg->hysteresis = strtof(eq + 1, NULL);
        else if (eq && !strncmp(opt, "depth=", 6))
            cfg->depth = strtof(eq + 1, NULL);      /* (checked by sl_space_new) */
        else if (eq && !strncmp(opt, "index=", 6))
            ok = sl_index_kind_parse(eq + 1, &cfg->index) == 0;
        else if (eq && !strncmp(opt, "order=", 6))
            ok = sl_event_order_parse(eq + 1, &cfg->order) == 0;
        else
            ok = false;
        if (!ok) {
            sl__put(o, "error: create: unknown option %s\n", opt);
            return SL_EINVAL;
        }
    }
    return 0;
}

/* `create SPACE W H [OPTIONS]` (also --space and --config lines): a space running the
 * server's scripts. */
static int cmd_create(cmd_ctx *x, const char *args)
{
    char name[128] = "";
    float w = 0, h = 0;
    int used = 0;
    if (sscanf(args, "%127s %f %f%n", name, &w, &h, &used) != 3) {
        sl__put(x->o, "error: usage: create SPACE WIDTH HEIGHT [cell=C] "
                      "[index=grid|quadtree|auto] [hysteresis=H] [stay] [order=id|tick] "
                      "[depth=D]\n");
        return SL_EINVAL;
    }
    sl_space_config cfg = {.width = w, .height = h, .index = SL_INDEX_AUTO};
    int rc = parse_create_options(args + used, &cfg, x->o);
    if (rc)
        return rc;
    char msg[512];
    rc = sl_server_create_space(x->srv, name, strlen(name), &cfg, x->srv->cfg.scripts,
                                SL_CREATOR_OPERATOR, msg, sizeof msg);
    if (rc) {
        sl__put(x->o, "error: %s: %s\n", sl__create_code(rc), msg);
        return rc;
    }
    sl__put(x->o, "space %s created\n", name);
    return 0;
}

/* `shutdown`: the server stops; the socket's owner closes the rest (see run_line). */
/* `drop SPACE`: the operator may drop any space but those etcd defines (etcd is their one
 * source of truth); the clients with entities there are told. */
static int cmd_drop(cmd_ctx *x, const char *args)
{
    char name[128] = "";
    hosted_space *sp = sscanf(args, "%127s", name) == 1
                     ? sl__space_find(x->srv, name, strlen(name)) : NULL;
    if (!sp) {
        sl__put(x->o, "error: %s\n", name[0] ? "no such space" : "usage: drop SPACE");
        return SL_ENOENT;
    }
    if (sp->creator == SL_CREATOR_CLUSTER) {
        sl__put(x->o, "error: space %s is defined in etcd: delete its definition instead\n",
                name);
        return SL_EPERM;
    }
    sl__space_drop(x->srv, sp);
    sl__put(x->o, "space %s dropped\n", name);
    return 0;
}

static int cmd_shutdown(cmd_ctx *x, const char *args)
{
    (void)args;
    sl__put(x->o, "shutting down\n");
    sl_server_shutdown(x->srv);
    return 0;
}

/* The space named by the first word of args, and the numbers after it (need of them). */
static hosted_space *space_and_ids(cmd_ctx *x, const char *args, int need, uint64_t *ids,
                                   const char *usage)
{
    char name[128] = "";
    unsigned long long a = 0, b = 0;
    int n = sscanf(args, "%127s %llu %llu", name, &a, &b);
    hosted_space *sp = n >= 1 ? sl__space_find(x->srv, name, strlen(name)) : NULL;
    if (!sp || n < 1 + need) {
        sl__put(x->o, "error: %s\n", !sp ? "no such space" : usage);
        return NULL;
    }
    ids[0] = a;
    ids[1] = b;
    return sp;
}

/* Whose entity id is, as an operator can recognise it: etcd's (static), or a client's by its
 * address (or detached) and its session's number. */
static void put_owner(cmd_ctx *x, const hosted_space *sp, uint64_t id)
{
    uint32_t o = sl_idmap_get(&sp->owners, id);
    const session *s = o >= 1 && o <= x->srv->nsessions ? x->srv->sessions[o - 1] : NULL;
    if (o == STATIC_OWNER)
        sl__put(x->o, "etcd (a static entity)\n");
    else if (!s || !s->used)
        sl__put(x->o, "none\n");
    else if (s->conn)
        sl__put(x->o, "client %s (session %llu)\n", sl_conn_peer(s->conn),
                (unsigned long long)s->serial);
    else
        sl__put(x->o, "client, detached (session %llu)\n", (unsigned long long)s->serial);
}

/* One prop of `entity`'s props line. */
static void put_prop(void *ud, const char *key, const sl_value *v)
{
    out_text *o = ud;
    if (v->type == SL_VALUE_BOOL)
        sl__put(o, " %s=%s", key, v->b ? "true" : "false");
    else if (v->type == SL_VALUE_NUMBER)
        sl__put(o, " %s=%.17g", key, v->n);
    else if (v->type == SL_VALUE_STRING)
        sl__put(o, " %s=\"%.*s\"", key, (int)(v->len < 200 ? v->len : 200), v->s);
}

/* `entity SPACE ID`: where it is, its shape, how many it sees, whose it is, its props. */
static int cmd_entity(cmd_ctx *x, const char *args)
{
    uint64_t id[2];
    hosted_space *sp = space_and_ids(x, args, 1, id, "usage: entity SPACE ID");
    if (!sp)
        return SL_EINVAL;
    sl_entity_info info;
    if (sl_space_get(sp->s, id[0], &info)) {
        sl__put(x->o, "error: no entity %llu in %s\n", (unsigned long long)id[0], sp->name);
        return SL_ENOENT;
    }
    char z[40] = "";
    if (sl_space_config_of(sp->s)->depth > 0)
        snprintf(z, sizeof z, " z %g", (double)info.z);
    sl__put(x->o, "entity %llu space %s x %g y %g%s radius %g layer %u mask 0x%08x sees %u%s "
                  "hysteresis %g%s owner ", (unsigned long long)id[0], sp->name, (double)info.x,
            (double)info.y, z, (double)info.radius, info.layer, info.mask, info.sees,
            info.always ? " always-relevant" : "", (double)info.hysteresis,
            info.own_hysteresis ? " (its own)" : "");
    put_owner(x, sp, id[0]);
    if (info.cap || info.priority)
        sl__put(x->o, "cap %u margin %g candidates %u priority %d\n", info.cap,
                (double)info.cap_margin, info.candidates, info.priority);
    if (info.group)
        sl__put(x->o, "group %u\n", info.group);
    if (info.nlod) {
        sl__put(x->o, "lod");
        for (uint32_t i = 0; i < info.nlod; i++)
            sl__put(x->o, " %g:%u", (double)info.lod[i].distance, info.lod[i].period);
        sl__put(x->o, "\n");
    }
    if (sp->h) {
        sl__put(x->o, "props");
        sl_lua_props_each(sp->h, id[0], put_prop, x->o);
        sl__put(x->o, "\n");
    }
    return 0;
}

/* One id of `region`'s member list (at most 100 of them). */
static void put_member(void *ud, uint64_t id)
{
    cmd_ctx *x = ud;
    if (x->count++ < 100)
        sl__put(x->o, " %llu", (unsigned long long)id);
}

/* `region SPACE ID`: its shape, mask, owner and members at the last tick. */
static int cmd_region(cmd_ctx *x, const char *args)
{
    uint64_t id[2];
    hosted_space *sp = space_and_ids(x, args, 1, id, "usage: region SPACE ID");
    if (!sp)
        return SL_EINVAL;
    sl_region g;
    uint32_t n;
    if (sl_space_get_region(sp->s, id[0], &g, &n)) {
        sl__put(x->o, "error: no region %llu in %s\n", (unsigned long long)id[0], sp->name);
        return SL_ENOENT;
    }
    sl__put(x->o, "region %llu space %s ", (unsigned long long)id[0], sp->name);
    if (g.kind == SL_REGION_CIRCLE)
        sl__put(x->o, "circle %g %g %g", (double)g.x, (double)g.y, (double)g.r);
    else if (g.kind == SL_REGION_RECT)
        sl__put(x->o, "rect %g %g %g %g", (double)g.x, (double)g.y, (double)g.x1,
                (double)g.y1);
    else
        sl__put(x->o, "poly %u", g.n);
    for (uint32_t i = 0; g.kind == SL_REGION_POLYGON && i < 2 * g.n; i++)
        sl__put(x->o, " %g", (double)g.xy[i]);
    uint32_t o = sl_idmap_get(&sp->region_owners, id[0]);
    const session *s = o >= 1 && o <= x->srv->nsessions ? x->srv->sessions[o - 1] : NULL;
    sl__put(x->o, " mask 0x%08x owner ", g.mask);
    if (s && s->used)
        sl__put(x->o, "session %llu\n", (unsigned long long)s->serial);
    else
        sl__put(x->o, "none (the scripts' or etcd's)\n");
    sl__put(x->o, "members %u at the last tick:", n);
    x->count = 0;
    sl_space_region_members(sp->s, id[0], put_member, x);
    sl__put(x->o, "%s\n", n > 100 ? " ..." : "");
    return 0;
}

/* `query SPACE X Y R [LIMIT]`: who is within R of (X, Y) now, nearest first (sl_space_query;
 * 20 unless LIMIT says otherwise, 0: all). */
static int cmd_query(cmd_ctx *x, const char *args)
{
    char name[128] = "";
    float qx, qy, qr;
    unsigned limit = 20;
    int n = sscanf(args, "%127s %f %f %f %u", name, &qx, &qy, &qr, &limit);
    hosted_space *sp = n >= 1 ? sl__space_find(x->srv, name, strlen(name)) : NULL;
    if (!sp || n < 4) {
        sl__put(x->o, "error: %s\n", !sp ? "no such space" : "usage: query SPACE X Y R [LIMIT]");
        return SL_EINVAL;
    }
    sl_query q = {.x = qx, .y = qy, .r = qr, .mask = UINT32_MAX, .limit = limit};
    const sl_query_hit *h;
    size_t k;
    if (sl_space_query(sp->s, &q, &h, &k)) {
        sl__put(x->o, "error: %s\n", sl_space_error(sp->s));
        return SL_EINVAL;
    }
    sl__put(x->o, "%zu entities within %g of (%g, %g)%s\n", k, (double)qr, (double)qx,
            (double)qy, limit && k == limit ? " (at most LIMIT: the nearest)" : "");
    bool deep = sl_space_config_of(sp->s)->depth > 0;     /* (a 2D query: every height) */
    for (size_t i = 0; i < k; i++) {
        char z[40] = "";
        if (deep)
            snprintf(z, sizeof z, ", %g", (double)h[i].z);
        sl__put(x->o, "%llu at (%g, %g%s) distance %g\n", (unsigned long long)h[i].id,
                (double)h[i].x, (double)h[i].y, z, sqrt((double)h[i].d2));
    }
    return 0;
}

/* The scripts' part of `why`: their version, and what the rule says now. */
static void why_scripts(out_text *o, hosted_space *sp, uint64_t w, uint64_t t)
{
    sl_lua_stats st;
    sl_lua_get_stats(sp->h, &st);
    sl__put(o, "scripts: %s, version %llu%s%s\n", st.dir, (unsigned long long)st.version,
            st.faulted ? ", FAULTED: " : "", st.faulted ? st.fault : "");
    if (st.overruns)
        sl__put(o, "budget: %llu ticks cut so far, %u in a row (%u in a row fault the set); "
                   "the last at tick %llu after %.1f ms, in %s\n",
                (unsigned long long)st.overruns, st.overrun_streak, st.max_overruns,
                (unsigned long long)st.last_overrun_tick, st.last_overrun_ms,
                sl_lua_fn_name(st.last_overrun_fn));
    uint64_t ow = sl__owner_serial(sp->srv, sp, w), ot = sl__owner_serial(sp->srv, sp, t);
    char a[24] = "none", b[24] = "none";
    if (ow)
        snprintf(a, sizeof a, "%llu", (unsigned long long)ow);
    if (ot)
        snprintf(b, sizeof b, "%llu", (unsigned long long)ot);
    sl__put(o, "owners (sightline.owner): watcher %s, target %s%s\n", a, b,
            ow && ow == ot ? " (the same session)" : "");
    bool verdict = false;
    int rc = sl_lua_ask(sp->h, w, t, &verdict);
    if (rc == SL_ELIMIT)
        sl__put(o, "rule: not asked: the scripts are FAULTED (%s); reload them to run them "
                   "again\n", st.fault);
    else
        sl__put(o, "rule: %s\n", rc == 0 ? (verdict ? "visible(w, t) says true"
                                                    : "visible(w, t) says false")
                                 : rc == SL_ENOENT ? "none (distance and layers only)"
                                 : "visible(w, t) raised an error (see the log)");
}

/* `why SPACE W T`: every input of the verdict on the pair (w, t), and the verdict. */
static int cmd_why(cmd_ctx *x, const char *args)
{
    uint64_t id[2];
    hosted_space *sp = space_and_ids(x, args, 2, id, "usage: why SPACE W T");
    if (!sp)
        return SL_EINVAL;
    uint64_t w = id[0], t = id[1];
    out_text *o = x->o;
    sl_entity_info wi, ti;
    bool hw = sl_space_get(sp->s, w, &wi) == 0, ht = sl_space_get(sp->s, t, &ti) == 0;
    if (!hw || !ht) {
        sl__put(o, "error: %s\n", !hw ? "no such watcher" : "no such target");
        return SL_ENOENT;
    }
    /* (the contract's d2: in a 3D space (dx*dx + dy*dy) + dz*dz, in that order) */
    bool deep = sl_space_config_of(sp->s)->depth > 0;
    float dx = ti.x - wi.x, dy = ti.y - wi.y, dz = ti.z - wi.z, d2 = dx * dx + dy * dy;
    if (deep)
        d2 = d2 + dz * dz;
    float r2 = wi.radius * wi.radius;
    bool layer_ok = (wi.mask >> ti.layer) & 1u;
    char wz[40] = "", tz[40] = "";
    if (deep) {
        snprintf(wz, sizeof wz, ", %g", (double)wi.z);
        snprintf(tz, sizeof tz, ", %g", (double)ti.z);
    }
    sl__put(o, "watcher %llu at (%g, %g%s) radius %g layer %u mask 0x%08x hysteresis %g%s\n",
            (unsigned long long)w, (double)wi.x, (double)wi.y, wz, (double)wi.radius, wi.layer,
            wi.mask, (double)wi.hysteresis, wi.own_hysteresis ? " (its own)" : "");
    sl__put(o, "target %llu at (%g, %g%s) layer %u\n", (unsigned long long)t, (double)ti.x,
            (double)ti.y, tz, ti.layer);
    sl__put(o, "distance %g (squared %g), radius squared %g: %s\n", sqrt((double)d2),
            (double)d2, (double)r2,
            d2 <= r2 ? "in range" : "out of range (or in the hysteresis band)");
    sl__put(o, "layer: target layer %u is %s the watcher's mask\n", ti.layer,
            layer_ok ? "in" : "NOT in");
    if (w == t)
        sl__put(o, "an entity never sees itself\n");
    sl_relation k = sl_space_relation(sp->s, w, t);
    if (k != SL_REL_NONE)
        sl__put(o, "relation: %s (%s)\n", sl_relation_name(k), k == SL_REL_FORCE
                ? "seen whatever the distance, hysteresis and rule, if the layer is in the mask"
                : "never seen");
    if (sp->h)
        why_scripts(o, sp, w, t);
    bool seen = sl_space_sees(sp->s, w, t);
    if (wi.cap)
        sl__put(o, "cap: the watcher sees at most %u of its %u candidates (forced and "
                   "always-relevant ones aside), ranked by priority (the target's: %d), then "
                   "distance (margin %g for those it saw), then id; the target %s\n", wi.cap,
                wi.candidates, ti.priority, (double)wi.cap_margin,
                seen ? "made the cut"
                : sl_space_candidate(sp->s, w, t) ? "is a candidate the cap LEFT OUT"
                                                  : "is not a candidate");
    sl__put(o, "at the last tick: %s\n", seen ? "VISIBLE" : "not visible");
    return 0;
}

static int cmd_space(cmd_ctx *x, const char *args);
static int cmd_cluster(cmd_ctx *x, const char *args);
static int cmd_drain(cmd_ctx *x, const char *args);
static int cmd_undrain(cmd_ctx *x, const char *args);


static const command commands[] = {
    {"stats", "stats [reset]", cmd_stats},
    {"spaces", "spaces", cmd_spaces},
    {"create", "create SPACE WIDTH HEIGHT [OPTIONS]", cmd_create},
    {"drop", "drop SPACE", cmd_drop},
    {"record", "record start FILE [SPACE] | record stop", cmd_record},
    {"entity", "entity SPACE ID", cmd_entity},
    {"query", "query SPACE X Y R [LIMIT]", cmd_query},
    {"region", "region SPACE ID", cmd_region},
    {"why", "why SPACE WATCHER TARGET", cmd_why},
    {"reload", "reload", cmd_reload},
    {"cluster", "cluster", cmd_cluster},
    {"space", "space get NAME | space put NAME REV JSON | space migrate NAME|--all | "
              "space move NAME [NODE]", cmd_space},
    {"drain", "drain NODE", cmd_drain},
    {"undrain", "undrain NODE", cmd_undrain},
    {"shutdown", "shutdown", cmd_shutdown},
    {"help", "help", cmd_help},
    {NULL, NULL, NULL},
};

static void put_usage(out_text *o)
{
    sl__put(o, "commands:");
    for (const command *c = commands; c->name; c++)
        sl__put(o, "%s %s", c == commands ? "" : " |", c->usage);
    sl__put(o, "\n");
}

/* Runs line's command in x; 0, or SL_E* when it failed (x->later: the answer comes later). */
static int run_command(cmd_ctx *x, const char *line)
{
    char name[32] = "";
    int used = 0;
    if (sscanf(line, "%31s%n", name, &used) != 1) {
        put_usage(x->o);
        return SL_EINVAL;       /* an empty line is answered with the help, as a failure */
    }
    for (const command *c = commands; c->name; c++)
        if (!strcmp(c->name, name))
            return c->run(x, line + used);
    sl__put(x->o, "error: unknown command %s (try help)\n", name);
    return SL_EINVAL;
}

int sl_admin_command(sl_server *srv, const char *line, char *out, size_t outlen)
{
    out_text o = {out, 0, outlen};
    out[0] = '\0';
    cmd_ctx x = {srv, NULL, NULL, &o, false, 0};
    return run_command(&x, line);
}

/* ---- the socket --------------------------------------------------------------------------- */

typedef struct admin_conn {
    uv_pipe_t pipe;             /* first: the handle's address is the connection's */
    char in[8192];
    size_t n;
    sl_admin *admin;
    struct admin_conn *prev, *next;
    int pending;                /* answers still to come from etcd */
    bool dropped;               /* closed meanwhile: the last answer frees it */
} admin_conn;

struct sl_admin {
    uv_pipe_t pipe;             /* the listening socket */
    uv_loop_t *loop;
    sl_server *srv;
    sl_cluster *cluster;
    sl_admin_stop_fn on_stop;
    void *ud;
    char *path;
    dev_t dev;                  /* the socket file this server made (see sl_admin_close) */
    ino_t ino;
    admin_conn *conns;          /* open connections */
    char answer[1 << 16];
};

static void conn_closed(uv_handle_t *h)
{
    admin_conn *c = (admin_conn *)h;
    if (c->pending)
        c->dropped = true;      /* an etcd answer is on its way: it frees c */
    else
        free(c);
}

/* Unlinks a connection and closes it. */
static void conn_drop(admin_conn *c)
{
    sl_admin *a = c->admin;
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->pipe, conn_closed);
}

typedef struct admin_write {
    uv_write_t req;
    char *buf;
} admin_write;

static void written(uv_write_t *req, int status)
{
    (void)status;
    admin_write *w = (admin_write *)req;
    free(w->buf);
    free(w);
}

/* Writes text, a newline if it lacks one, and `.ok` or `.fail`. */
static void send_answer(admin_conn *c, const char *text, bool failed)
{
    size_t n = strlen(text);
    admin_write *w = malloc(sizeof *w);
    char *buf = malloc(n + 16);
    if (!w || !buf) {
        free(w);
        free(buf);
        return;
    }
    memcpy(buf, text, n);
    if (n && buf[n - 1] != '\n')
        buf[n++] = '\n';
    n += (size_t)sprintf(buf + n, "%s\n", failed ? ".fail" : ".ok");
    w->buf = buf;
    uv_buf_t b = uv_buf_init(buf, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, written) < 0) {
        free(buf);
        free(w);
    }
}

/* An etcd-backed command's answer. */
static void later_answer(void *ud, const char *text, bool failed)
{
    admin_conn *c = ud;
    c->pending--;
    if (c->dropped) {
        if (!c->pending)
            free(c);
        return;
    }
    send_answer(c, text, failed);
}

/* `space get NAME` / `space put NAME REV JSON`: answered when etcd answers. */
/* `cluster`: this node, the nodes and the owner of every space (README "Running a
 * cluster"). */
static int cmd_cluster(cmd_ctx *x, const char *args)
{
    (void)args;
    if (!x->admin || !x->admin->cluster) {
        sl__put(x->o, "error: not a cluster node (start it with --etcd)\n");
        return SL_EINVAL;
    }
    sl_cluster_describe(x->admin->cluster, x->o->p + x->o->n, x->o->cap - x->o->n);
    x->o->n += strlen(x->o->p + x->o->n);
    return 0;
}

/* `drain NODE` / `undrain NODE`: the node moves its spaces away (README "Moving a live
 * space"). */
static int drain(cmd_ctx *x, const char *args, bool on)
{
    char node[65] = "";
    if (!x->admin || !x->admin->cluster || sscanf(args, " %64s", node) != 1) {
        sl__put(x->o, "error: usage: drain NODE | undrain NODE (on a cluster node)\n");
        return SL_EINVAL;
    }
    x->conn->pending++;
    sl_cluster_drain(x->admin->cluster, node, on, later_answer, x->conn);
    x->later = true;
    return 0;
}

static int cmd_drain(cmd_ctx *x, const char *args)
{
    return drain(x, args, true);
}

static int cmd_undrain(cmd_ctx *x, const char *args)
{
    return drain(x, args, false);
}

static int cmd_space(cmd_ctx *x, const char *args)
{
    static const char usage[] = "error: usage: space get NAME | space put NAME REV JSON | "
                                "space migrate NAME|--all | space move NAME [NODE]\n";
    if (!x->admin || !x->admin->cluster) {
        sl__put(x->o, "error: space get / put / migrate / move need the server to run with "
                "--etcd\n");
        return SL_EINVAL;
    }
    char verb[8] = "", name[65] = "";
    long long rev = 0;
    int used = 0;
    if (sscanf(args, "%7s %64s%n", verb, name, &used) < 2) {
        sl__put(x->o, usage);
        return SL_EINVAL;
    }
    const char *rest = args + used;
    if (!strcmp(verb, "get")) {
        x->conn->pending++;
        sl_cluster_space_get(x->admin->cluster, name, later_answer, x->conn);
    } else if (!strcmp(verb, "migrate")) {
        x->conn->pending++;
        sl_cluster_space_migrate(x->admin->cluster, strcmp(name, "--all") ? name : NULL,
                                 later_answer, x->conn);
    } else if (!strcmp(verb, "move")) {
        char node[65] = "";
        sscanf(rest, " %64s", node);
        x->conn->pending++;
        sl_cluster_move(x->admin->cluster, name, node, later_answer, x->conn);
    } else if (!strcmp(verb, "put") && sscanf(rest, " %lld%n", &rev, &used) == 1) {
        x->conn->pending++;
        sl_cluster_space_put(x->admin->cluster, name, rev, rest + used, later_answer, x->conn);
    } else {
        sl__put(x->o, usage);
        return SL_EINVAL;
    }
    x->later = true;
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    admin_conn *c = (admin_conn *)h;
    *buf = uv_buf_init(c->in + c->n, (unsigned)(sizeof c->in - c->n - 1));
}

/* Runs the first line buffered in c; false when the server is stopping (c is closed). */
static bool run_line(admin_conn *c, char *nl)
{
    sl_admin *a = c->admin;
    *nl = '\0';
    out_text o = {a->answer, 0, sizeof a->answer};
    a->answer[0] = '\0';
    cmd_ctx x = {a->srv, a, c, &o, false, 0};
    int rc = run_command(&x, c->in);
    if (!x.later)
        send_answer(c, a->answer, rc != 0);
    size_t used = (size_t)(nl - c->in) + 1;
    memmove(c->in, nl + 1, c->n - used);
    c->n -= used;
    if (sl_server_stopping(a->srv)) {
        a->on_stop(a->ud);      /* closes this socket, c included */
        return false;
    }
    return true;
}

/* Bytes from an admin connection: every whole line is a command; a line longer than the
 * buffer is refused and forgotten. EOF or an error closes the connection. */
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    admin_conn *c = (admin_conn *)st;
    if (nread < 0) {
        conn_drop(c);
        return;
    }
    c->n += (size_t)nread;
    char *nl;
    while ((nl = memchr(c->in, '\n', c->n)))
        if (!run_line(c, nl))
            return;
    if (c->n >= sizeof c->in - 1) {
        send_answer(c, "error: line too long", true);
        c->n = 0;
    }
}

/* A new admin connection; a failed accept is dropped (the listener carries on). */
static void on_connection(uv_stream_t *server, int status)
{
    sl_admin *a = server->data;
    if (status < 0)
        return;
    admin_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->admin = a;
    uv_pipe_init(a->loop, &c->pipe, 0);
    c->next = a->conns;
    if (a->conns)
        a->conns->prev = c;
    a->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0 ||
        uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) < 0)
        conn_drop(c);
}

static void admin_closed(uv_handle_t *h)
{
    sl_admin *a = h->data;
    free(a->path);
    free(a);
}

bool sl_admin_in_use(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return false;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    bool alive = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return alive;
}

int sl_admin_listen(sl_admin **out, uv_loop_t *loop, const char *path, sl_server *srv,
                    sl_cluster *cluster, sl_admin_stop_fn on_stop, void *ud, char *err,
                    size_t errlen)
{
    sl_admin *a = calloc(1, sizeof *a);
    char *p = strdup(path);
    if (!a || !p) {
        free(a);
        free(p);
        return sl_fail(err, errlen, SL_ENOMEM, "admin socket %s: out of memory", path);
    }
    *a = (sl_admin){.loop = loop, .srv = srv, .cluster = cluster, .on_stop = on_stop,
                    .ud = ud, .path = p};
    if (sl_admin_in_use(path)) {
        free(a->path);
        free(a);
        return sl_fail(err, errlen, SL_EEXIST, "admin socket %s: another server is running "
                       "there (stop it, or give this one another --admin)", path);
    }
    unlink(path);               /* (a stale socket left by a server that died) */
    uv_pipe_init(loop, &a->pipe, 0);
    a->pipe.data = a;
    /* Created 0600 (no window where another user could connect), and chmod-ed to be sure. */
    mode_t old = umask(0077);
    int rc = uv_pipe_bind(&a->pipe, path);
    if (!rc)
        rc = uv_listen((uv_stream_t *)&a->pipe, 16, on_connection);
    umask(old);
    if (rc) {
        snprintf(err, errlen, "admin socket %s: %s", path, uv_strerror(rc));
        uv_close((uv_handle_t *)&a->pipe, admin_closed);    /* frees a */
        return SL_EIO;
    }
    chmod(path, 0600);
    struct stat st;
    if (stat(path, &st) == 0) {
        a->dev = st.st_dev;
        a->ino = st.st_ino;
    }
    *out = a;
    return 0;
}

void sl_admin_close(sl_admin *a)
{
    if (!a)
        return;
    /* Only this server's own socket file goes (another may have replaced it since). */
    struct stat st;
    if (stat(a->path, &st) == 0 && st.st_dev == a->dev && st.st_ino == a->ino)
        unlink(a->path);
    while (a->conns)
        conn_drop(a->conns);
    uv_close((uv_handle_t *)&a->pipe, admin_closed);
}
