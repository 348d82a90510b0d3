/*
 * definitions.c: spaces and static entities defined outside the protocol: cluster.c calls
 * these as etcd's documents arrive (README "The server on etcd").
 *
 * A definition of an existing space reconfigures it in place where the engine can (index
 * kind and cell, tick period, scripts), keeping its entities; the map, hysteresis and stay
 * are fixed for a space's life. Static entities are owned by STATIC_OWNER, never by a
 * session, so no client can move or remove them; a deleted one waits out a grace period
 * (a put within it cancels the delete), so that a document rewritten as delete + put does
 * not make every watcher see it leave and enter again.
 */
#include "server/server_impl.h"
#include "server/schema.h"

#include "base/clock.h"

#include <string.h>

/* A space's own tick period: a multiple of the server's tick is exact; 0 or less than the
 * server's tick: every server tick. */
static void set_period(sl_server *srv, hosted_space *sp, double tick_ms)
{
    sp->period_ms = tick_ms > srv->cfg.tick_ms ? tick_ms : 0;
    sp->due_ms = sl_now_ms();
}

/* Reconfigures an existing space in place: the index is rebuilt keeping its entities. */
static int reconfigure(sl_server *srv, hosted_space *sp, const sl_space_config *cfg,
                       const char *scripts, char *err, size_t len)
{
    const sl_space_config *old = sl_space_config_of(sp->s);
    if (old->width != cfg->width || old->height != cfg->height ||
        old->hysteresis != cfg->hysteresis || old->stay != cfg->stay ||
        old->reasons != cfg->reasons)
        return sl_fail(err, len, SL_EINVAL,
                       "width, height, hysteresis, stay and reasons cannot change on a "
                       "running space (drop it and define it again)");
    int rc = sl_space_set_index(sp->s, cfg->index, cfg->cell);
    if (rc)
        return sl_fail(err, len, rc, "%s", sl_space_error(sp->s));
    if (scripts && sp->h) {
        char why[2048];
        sl_lua_stats st;
        sl_lua_get_stats(sp->h, &st);
        if (strcmp(st.dir, scripts) && sl_lua_reload(sp->h, scripts, why, sizeof why))
            return sl_fail(err, len, SL_ENOEXEC, "scripts %.100s: %.300s", scripts, why);
    }
    sl__log(srv, "space %s reconfigured (index %s, cell %g)", sp->name,
            sl_index_kind_name(cfg->index), (double)cfg->cell);
    return 0;
}

int sl_server_define_space(sl_server *srv, const char *name, const sl_space_config *cfg,
                           const char *scripts, double tick_ms, char *err, size_t len)
{
    hosted_space *sp = sl__space_find(srv, name, strlen(name));
    if (sp && sp->creator == SL_CREATOR_CLUSTER && sl__handoff_committed(srv, name, strlen(name))) {
        /* A copy of ours from before (a lapsed lease) and a committed snapshot of the space:
         * the snapshot is what the cluster agreed on. */
        sl__log(srv, "space %s: the copy here gives way to the snapshot handed over", name);
        sl__space_drop(srv, sp);
        sp = NULL;
    }
    if (!sp) {
        int rc = sl_server_create_space(srv, name, strlen(name), cfg,
                                        scripts ? scripts : srv->cfg.scripts,
                                        SL_CREATOR_CLUSTER, err, len);
        if (!rc)
            set_period(srv, sl__space_find(srv, name, strlen(name)), tick_ms);
        return rc;
    }
    if (sp->creator != SL_CREATOR_CLUSTER)
        return sl_fail(err, len, SL_EEXIST, "a space %s exists already, made by %s: etcd's "
                       "definition is not applied to it", name,
                       sp->creator == SL_CREATOR_OPERATOR ? "the operator" : "a client");
    set_period(srv, sp, tick_ms);
    return reconfigure(srv, sp, cfg, scripts, err, len);
}

int sl_server_space_zones(sl_server *srv, const char *name, const sl_doc_zone *zones,
                          size_t n, char *err, size_t len)
{
    hosted_space *sp = sl__space_find(srv, name, strlen(name));
    if (!sp)
        return sl_fail(err, len, SL_ENOENT, "no space %s", name);
    /* Zones of the last definition that this one lacks go. */
    uint64_t *old = sp->zones.p;
    for (size_t i = 0; i < sp->zones.n; i++) {
        bool kept = false;
        for (size_t k = 0; k < n && !kept; k++)
            kept = zones[k].id == old[i];
        if (!kept && sl_idmap_get(&sp->region_owners, old[i]) == UINT32_MAX)
            sl__space_remove_region(srv, sp, old[i]);
    }
    sp->zones.n = 0;
    int rc = 0;
    for (size_t k = 0; k < n; k++) {
        sl_region g = zones[k].g;
        g.xy = zones[k].v;
        sl_region had;
        uint32_t members;
        bool same = sl_space_get_region(sp->s, zones[k].id, &had, &members) == 0 &&
                    sl_idmap_get(&sp->region_owners, zones[k].id) == UINT32_MAX &&
                    had.kind == g.kind && had.mask == g.mask && had.x == g.x &&
                    had.y == g.y && (g.kind == SL_REGION_CIRCLE ? had.r == g.r
                                     : g.kind == SL_REGION_RECT ? had.x1 == g.x1 && had.y1 == g.y1
                                     : had.n == g.n &&
                                       !memcmp(had.xy, g.xy, 2 * g.n * sizeof(float)));
        int r = same ? 0 : sl__space_set_region(srv, sp, zones[k].id, &g, 0);
        if (r && !rc)
            rc = sl_fail(err, len, r, "region %llu: %s", (unsigned long long)zones[k].id,
                         sl_space_error(sp->s));
        if (!r)
            sl_vec_append(&sp->zones, &zones[k].id, sizeof zones[k].id, 1);
    }
    return rc;
}

int sl_server_undefine_space(sl_server *srv, const char *name)
{
    hosted_space *sp = sl__space_find(srv, name, strlen(name));
    if (!sp)
        return SL_ENOENT;
    sl__space_drop(srv, sp);
    return 0;
}

/* Forgets a pending delete of (serial, id): a put came within the grace period. */
static void cancel_delete(sl_server *srv, uint64_t serial, uint64_t id)
{
    pending_delete *d = srv->pending_deletes.p;
    for (size_t i = 0; i < srv->pending_deletes.n; i++)
        if (d[i].serial == serial && d[i].id == id)
            d[i--] = d[--srv->pending_deletes.n];
}

/* An update of a static entity: everything is checked first, so a bad document changes
 * nothing. */
static int static_update(sl_server *srv, hosted_space *sp, uint64_t id, float x, float y,
                         float r, uint32_t layer, uint32_t mask, char *err, size_t len)
{
    const sl_space_config *cfg = sl_space_config_of(sp->s);
    if (!(x >= 0 && x < cfg->width && y >= 0 && y < cfg->height) || !(r >= 0) || layer > 31)
        return sl_fail(err, len, SL_EINVAL, "position outside the map, bad radius or layer");
    /* What did not change is not touched: no stay, no re-judging (a space built from a
     * handoff's snapshot gets every document again, mostly unchanged). */
    sl_entity_info now;
    sl_space_get(sp->s, id, &now);
    if (now.x == x && now.y == y && now.radius == r && now.layer == layer && now.mask == mask)
        return 0;
    if (now.x != x || now.y != y)
        sl_space_move(sp->s, id, x, y);
    if (now.radius != r)
        sl_space_set_radius(sp->s, id, r);
    if (now.layer != layer)
        sl_space_set_layer(sp->s, id, layer);
    if (now.mask != mask)
        sl_space_set_mask(sp->s, id, mask);
    unsigned long long e = id;
    sl__rec(srv, sp, "move %llu %.9g %.9g\nradius %llu %.9g\nlayer %llu %u\nmask %llu 0x%x\n",
            e, (double)x, (double)y, e, (double)r, e, layer, e, mask);
    return 0;
}

int sl_server_static_put(sl_server *srv, const char *space, uint64_t id, float x, float y,
                         float r, uint32_t layer, uint32_t mask, char *err, size_t len)
{
    hosted_space *sp = sl__space_find(srv, space, strlen(space));
    if (!sp)
        return sl_fail(err, len, SL_ENOENT, "no space %s", space);
    cancel_delete(srv, sp->serial, id);
    uint32_t owner = sl_idmap_get(&sp->owners, id);
    if (owner == STATIC_OWNER)
        return static_update(srv, sp, id, x, y, r, layer, mask, err, len);
    if (owner != UINT32_MAX)
        return sl_fail(err, len, SL_EPERM,
                       "entity %llu belongs to a client", (unsigned long long)id);
    int rc;
    if ((rc = sl_space_add(sp->s, id, x, y, r, layer, mask)) ||
        (rc = sl_idmap_put(&sp->owners, NULL, id, STATIC_OWNER))) {
        if (!rc || rc == SL_ENOMEM)
            sl_space_remove(sp->s, id);
        return sl_fail(err, len, rc, "%s", sl_space_error(sp->s));
    }
    sl__rec_add(srv, sp, id, x, y, 0, r, layer, mask);     /* (etcd's spaces are flat) */
    if (sp->h)
        sl_lua_added(sp->h, id);
    return 0;
}

/* Whether an entity's prop `key` is already `v` (props_each visits each prop). */
typedef struct prop_look {
    const char *key;
    const sl_value *v;
    bool same, found;
} prop_look;

static void same_prop(void *ud, const char *key, const sl_value *v)
{
    prop_look *l = ud;
    if (strcmp(key, l->key))
        return;
    l->found = true;
    const sl_value *w = l->v;
    l->same = v->type == w->type && (v->type != SL_VALUE_BOOL || v->b == w->b) &&
              (v->type != SL_VALUE_NUMBER || v->n == w->n) &&
              (v->type != SL_VALUE_STRING || (v->len == w->len && !memcmp(v->s, w->s, v->len)));
}

int sl_server_static_prop(sl_server *srv, const char *space, uint64_t id, const char *key,
                          const sl_value *v)
{
    hosted_space *sp = sl__space_find(srv, space, strlen(space));
    if (!sp || !sp->h)
        return SL_ENOENT;
    prop_look look = {key, v, false, false};
    sl_lua_props_each(sp->h, id, same_prop, &look);
    if (look.same || (v->type == SL_VALUE_NIL && !look.found))
        return 0;               /* unchanged: not touched */
    return sl_lua_set_prop(sp->h, id, key, v);
}

void sl_server_static_delete(sl_server *srv, const char *space, uint64_t id, double grace_ms)
{
    hosted_space *sp = sl__space_find(srv, space, strlen(space));
    if (!sp || sl_idmap_get(&sp->owners, id) != STATIC_OWNER)
        return;
    pending_delete *d = sl_vec_push(&srv->pending_deletes, sizeof *d);
    if (d)
        *d = (pending_delete){sp->serial, id, sl_now_ms() + grace_ms};
}

void sl__static_delete_due(sl_server *srv, double now_ms)
{
    pending_delete *d = srv->pending_deletes.p;
    for (size_t i = 0; i < srv->pending_deletes.n;) {
        if (now_ms < d[i].at_ms) {
            i++;
            continue;
        }
        hosted_space *sp = sl__space_by_serial(srv, d[i].serial);
        if (sp && sl_idmap_get(&sp->owners, d[i].id) == STATIC_OWNER)
            sl__space_remove_entity(srv, sp, d[i].id);
        d[i] = d[--srv->pending_deletes.n];
    }
}
