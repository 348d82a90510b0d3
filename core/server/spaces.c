/*
 * spaces.c: the spaces the server hosts. A hosted space is the engine's space, the script
 * host running on it (or none), and the owner of each of its entities.
 *
 * Spaces are found by name (a linear scan: a server holds at most MAX_SPACES, and lookups
 * happen per request, not per entity). Anything that outlives a request and names a space
 * (a session's list of entities, a pending static delete, the recording) keeps its serial
 * number, never a pointer or a name, because a space can be dropped and its name reused.
 */
#include "server/server_impl.h"

#include <stdlib.h>
#include <string.h>

hosted_space *sl__space_find(const sl_server *srv, const char *name, size_t n)
{
    for (uint32_t i = 0; i < srv->nspaces; i++)
        if (strlen(srv->spaces[i]->name) == n && !memcmp(srv->spaces[i]->name, name, n))
            return srv->spaces[i];
    return NULL;
}

hosted_space *sl__space_by_serial(const sl_server *srv, uint64_t serial)
{
    for (uint32_t i = 0; i < srv->nspaces; i++)
        if (srv->spaces[i]->serial == serial)
            return srv->spaces[i];
    return NULL;
}

/* Script errors and prints, named by their space (unless --quiet). */
static void script_log(void *ud, const char *msg)
{
    const hosted_space *sp = ud;
    sl__log(sp->srv, "space %s: scripts: %s", sp->name, msg);
}

static uint64_t script_owner(void *ud, uint64_t id)
{
    const hosted_space *sp = ud;
    return sl__owner_serial(sp->srv, sp, id);
}

/* Makes the engine space and the script host of sp (the scripts starting from state, when
 * given); 0 or SL_E* with err. */
static int make_space(sl_server *srv, hosted_space *sp, const sl_space_config *cfg,
                      const char *scripts, const char *state, size_t state_len, char *err,
                      size_t errlen)
{
    char why[4096];
    if (sl_space_new(&sp->s, cfg, why, sizeof why))
        return sl_fail(err, errlen, SL_EINVAL, "%.400s", why);
    sl_lua_config lc = {.dir = scripts, .budget_ms = srv->cfg.budget_ms,
                        .mem_limit = srv->cfg.mem_limit, .unsafe = srv->cfg.unsafe_scripts,
                        .max_overruns = srv->cfg.max_overruns,
                        .max_entity_props = srv->cfg.max_entity_props,
                        .max_entity_prop_bytes = srv->cfg.max_entity_prop_bytes,
                        .max_prop_keys = srv->cfg.max_prop_keys,
                        .log = script_log, .log_ud = sp, .state = state,
                        .state_len = state_len, .owner = script_owner, .owner_ud = sp};
    int rc = scripts ? sl_lua_new(&sp->h, sp->s, &lc, why, sizeof why) : 0;
    if (rc) {
        sl_space_free(sp->s);
        sp->s = NULL;
        return sl_fail(err, errlen, rc == SL_ENOMEM ? SL_ENOMEM : SL_ENOEXEC,
                       "scripts %.100s: %.380s", scripts, why);
    }
    return 0;
}

int sl_server_create_space(sl_server *srv, const char *name, size_t name_len,
                           const sl_space_config *cfg, const char *scripts, uint64_t creator,
                           char *err, size_t errlen)
{
    if (name_len == 0 || name_len > MAX_NAME)
        return sl_fail(err, errlen, SL_EINVAL, "space names are 1 to %u bytes", MAX_NAME);
    if (sl__space_find(srv, name, name_len))
        return sl_fail(err, errlen, SL_EEXIST, "space %.*s exists", (int)name_len, name);
    if (srv->nspaces == MAX_SPACES)
        return sl_fail(err, errlen, SL_ELIMIT, "at most %u spaces", MAX_SPACES);
    hosted_space *sp = calloc(1, sizeof *sp);
    if (!sp)
        return sl_fail(err, errlen, SL_ENOMEM, "out of memory");
    memcpy(sp->name, name, name_len);
    sp->srv = srv;
    sp->serial = ++srv->next_serial;
    sp->creator = creator;
    /* A cluster space handed to this node: built from its snapshot (handoff.c). */
    handoff_in *in = creator == SL_CREATOR_CLUSTER ? sl__handoff_committed(srv, name, name_len)
                                                   : NULL;
    size_t state_len = 0;
    const char *state = in ? sl__handoff_state(in, &state_len) : NULL;
    int rc = make_space(srv, sp, cfg, scripts, state, state_len, err, errlen);
    if (rc && in) {
        sl__log(srv, "space %s: its snapshot's scripts state does not load here (%s): "
                "the space starts empty", sp->name, err);
        rc = make_space(srv, sp, cfg, scripts, NULL, 0, err, errlen);
    }
    if (rc) {
        if (in)
            sl__handoff_drop(srv, in);
        free(sp);
        return rc;
    }
    srv->spaces[srv->nspaces++] = sp;
    char depth[32] = "";
    if (cfg->depth > 0)
        snprintf(depth, sizeof depth, "x%g", (double)cfg->depth);
    sl__log(srv, "space %s created (%gx%g%s%s)", sp->name, (double)cfg->width,
            (double)cfg->height, depth,
            cfg->order == SL_ORDER_TICK ? ", events in tick order" : "");
    char why[300];
    if (in && sl__handoff_build(srv, sp, in, why, sizeof why)) {
        /* The snapshot does not fit (e.g. the definition changed meanwhile): empty. */
        sl__log(srv, "space %s: its snapshot could not be built here (%s): the space starts "
                "empty", sp->name, why);
        sl_lua_free(sp->h);
        sl_space_free(sp->s);
        sp->h = NULL;
        sp->s = NULL;
        sl_idmap_free(&sp->owners, NULL);
        sp->owners = (sl_idmap){0};
        if (make_space(srv, sp, cfg, scripts, NULL, 0, why, sizeof why)) {
            srv->nspaces--;
            free(sp);
            return sl_fail(err, errlen, SL_ENOMEM, "%s", why);
        }
    }
    return 0;
}

void sl__space_free(hosted_space *sp)
{
    sl_lua_free(sp->h);         /* (the host goes first: it takes its rule off the space) */
    sl_space_free(sp->s);
    sl_idmap_free(&sp->owners, NULL);
    sl_idmap_free(&sp->region_owners, NULL);
    sl_vec_free(&sp->zones);
    sl_vec_free(&sp->tick_evs);
    sl_vec_free(&sp->tick_emits);
    sl_vec_free(&sp->tick_gevs);
    sl_vec_free(&sp->gsubs);
    free(sp);
}

typedef struct drop_ctx {
    sl_server *srv;
    hosted_space *sp;
    bool *told;                 /* by session index: has entities in the space (or NULL) */
} drop_ctx;

/* An entity of the space being dropped: its owner loses it, and is to be told. Its entry in
 * the owner map goes too, so that the session's list of entities, pruned as they go, drops
 * it (else every later prune would keep the space's remaining entities and walk the whole
 * list again: a session owning 50,000 entities made the drop take 1.8 s). */
static void mark_owner(void *ud, const sl_entity_info *e)
{
    drop_ctx *d = ud;
    uint32_t o = sl_idmap_get(&d->sp->owners, e->id);
    if (o != UINT32_MAX && o != STATIC_OWNER && o >= 1 && o <= d->srv->nsessions && d->told)
        d->told[o - 1] = true;
    sl__session_disown(d->srv, d->sp, e->id);
    sl_idmap_del(&d->sp->owners, e->id);
}

/* The sessions lose the space's entities and, if it was one's, the space it created; every
 * connected session with entities in sp is told it is gone: one `space.dropped` frame each
 * (PROTOCOL.md), so that no client learns it from a no_space on its next move. */
static void tell_dropped(sl_server *srv, hosted_space *sp)
{
    const remote_space *moved = sl__remote_find(srv, sp->name, strlen(sp->name));
    drop_ctx d = {srv, sp, calloc(srv->nsessions ? srv->nsessions : 1, sizeof(bool))};
    sl_space_each(sp->s, mark_owner, &d);
    for (uint32_t i = 0; i < srv->nsessions; i++) {
        session *s = srv->sessions[i];
        if (s->used && s->serial == sp->creator)
            s->spaces--;
        if (!d.told || !d.told[i] || !s->used || !s->conn)
            continue;       /* (without memory to mark them, clients learn it from no_space) */
        sl_enc e;
        sl_enc_begin(&e, sl_conn_out(s->conn));
        if (moved) {        /* another node serves it now (or will): a notice to follow */
            sl_enc_map(&e, 5 + sp->handed);
            sl_enc_kv_str(&e, "t", "space.moved");
            if (sp->handed) {   /* its entities went with it: claim them there */
                sl_enc_str(&e, "handoff");
                sl_enc_bool(&e, true);
            }
            sl_enc_kv_str(&e, "space", sp->name);
            sl_enc_kv_str(&e, "node", moved->node);
            sl_enc_kv_str(&e, "owner", moved->listen);
            sl_enc_kv_u64(&e, "epoch", moved->epoch);
        } else {
            sl_enc_map(&e, 2);
            sl_enc_kv_str(&e, "t", "space.dropped");
            sl_enc_kv_str(&e, "space", sp->name);
        }
        sl_enc_end(&e);
    }
    free(d.told);
}

void sl__space_drop(sl_server *srv, hosted_space *sp)
{
    sl__serving_end(srv, sp);
    tell_dropped(srv, sp);
    for (uint32_t i = 0; i < srv->nspaces; i++) {
        if (srv->spaces[i] == sp) {
            srv->spaces[i] = srv->spaces[--srv->nspaces];
            break;
        }
    }
    sl__log(srv, "space %s dropped", sp->name);
    sl__record_forget(srv, sp);
    sl__space_free(sp);
}

int sl__space_remove_entity(sl_server *srv, hosted_space *sp, uint64_t id)
{
    sl_entity_info info;
    if (sl_space_get(sp->s, id, &info))
        return sl_space_remove(sp->s, id);      /* (the space's own error for the id) */
    if (sp->h)
        sl_lua_removing(sp->h, id);     /* (its last view, owner included, read first) */
    int rc = sl_space_remove(sp->s, id);
    if (rc)
        return rc;
    sl__session_disown(srv, sp, id);
    sl_idmap_del(&sp->owners, id);
    sl__rec(srv, sp, "remove %llu\n", (unsigned long long)id);
    return 0;
}

int sl__space_set_region(sl_server *srv, hosted_space *sp, uint64_t id, const sl_region *g,
                         uint32_t owner)
{
    sl_region had;
    uint32_t before = sl_idmap_get(&sp->region_owners, id);
    bool fresh = sl_space_get_region(sp->s, id, &had, NULL) != 0 ||
                 before != (owner ? owner : UINT32_MAX);
    int rc = sl_space_set_region(sp->s, id, g);
    if (rc)
        return rc;
    if (fresh)      /* (a new owner, or set after a removal: enters for whoever is in it) */
        sl_space_region_forget(sp->s, id);
    sl_idmap_del(&sp->region_owners, id);
    if (owner && sl_idmap_put(&sp->region_owners, NULL, id, owner)) {
        sl_space_remove_region(sp->s, id);      /* (no owner: as good as not set) */
        return SL_ENOMEM;
    }
    sl__rec_region(srv, sp, id, g);
    return 0;
}

int sl__space_remove_region(sl_server *srv, hosted_space *sp, uint64_t id)
{
    int rc = sl_space_remove_region(sp->s, id);
    if (rc)
        return rc;
    sl_idmap_del(&sp->region_owners, id);
    sl__rec(srv, sp, "unregion %llu\n", (unsigned long long)id);
    return 0;
}

size_t sl_server_space_names(const sl_server *srv, const char **names, size_t max)
{
    size_t n = 0;
    for (uint32_t k = 0; k < srv->nspaces && n < max; k++)
        names[n++] = srv->spaces[k]->name;
    return n;
}
