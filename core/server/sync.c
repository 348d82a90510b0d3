/*
 * sync.c: etcd's documents applied to the server (see sync.h).
 *
 * Two tables. The queue: changes since the last tick, one per key (a hash of the key finds
 * a key's change, which a later one overwrites). The store: per space name a group holding
 * the definition applied (if any) and the entity documents of that space (found by id
 * through an id map), kept even while the space is undefined or refused, so that entities
 * put before their space appear when it does.
 */
#define _DEFAULT_SOURCE     /* realpath */
#include "server/sync.h"

#include "server/schema.h"
#include "server/server_impl.h"

#include "base/hash.h"
#include "base/vec.h"
#include "engine/idmap.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct change {         /* a key's last change since the previous tick */
    char *key;
    size_t klen;
    uint8_t *value;             /* NULL: deleted */
    size_t vlen;
    int64_t rev;
    bool recreated;             /* a delete came before the final put */
} change;

typedef struct edoc {           /* a static entity's last good document */
    uint64_t id;
    sl_entity_doc doc;
    int64_t rev;
    bool applied;               /* in the space now, with this document */
} edoc;

typedef struct group {          /* what etcd says about one space name */
    char name[SL_SCHEMA_NAME_MAX + 1];
    bool defined;               /* def is applied: the space exists by it */
    bool valid;                 /* def holds etcd's last good definition */
    bool host;                  /* this node serves it (always, unless cfg.hosting) */
    char dir[PATH_MAX];         /* def's scripts folder, resolved ("" for the server's) */
    sl_space_doc def;
    int64_t def_rev;            /* the revision def came at */
    sl_vec docs;                /* edoc */
    sl_idmap ids;               /* id -> index in docs */
} group;

struct sl_sync {
    sl_server *srv;
    sl_sync_config cfg;
    char root[PATH_MAX];        /* the script root, resolved ("" when it does not exist) */
    sl_vec queue;               /* change */
    uint32_t *qhash;            /* key hash slot -> index + 1 in queue; 0 free */
    size_t qcap;                /* slots, a power of two */
    sl_vec groups;              /* group * */
    sl_idmap gids;              /* hash of a name -> index in groups (collisions: scanned) */
    sl_sync_stats st;
    int64_t refused_rev;        /* the revision of the last refusal counted, with its key */
    uint64_t refused_key;
};

/* ---- refusals ------------------------------------------------------------------------------ */

/* A document (key at rev) was refused: counted once whatever re-applies it, kept as one line
 * for `stats`, and logged once. */
static void refuse(sl_sync *s, const char *key, size_t klen, int64_t rev, const char *why)
{
    uint64_t h = sl_fnv1a64(SL_FNV1A64_BASIS, key, klen);
    if (rev && rev == s->refused_rev && h == s->refused_key)
        return;
    s->refused_rev = rev;
    s->refused_key = h;
    s->st.refused++;
    char line[sizeof s->st.last_refusal];
    snprintf(line, sizeof line, "%.*s: %s", (int)(klen < 70 ? klen : 70), key, why);
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    memcpy(s->st.last_refusal, line, sizeof line);
    sl__log(s->srv, "etcd: refused %s (what was applied stays)", line);
}

/* ---- the store ----------------------------------------------------------------------------- */

static group *group_find(sl_sync *s, const char *name, bool create)
{
    size_t n = strlen(name);
    uint64_t h = sl_fnv1a64(SL_FNV1A64_BASIS, name, n);
    group **g = s->groups.p;
    uint32_t i = sl_idmap_get(&s->gids, h);
    if (i != UINT32_MAX && !strcmp(g[i]->name, name))
        return g[i];
    if (i != UINT32_MAX)        /* another name with the same hash: rare, scanned */
        for (size_t k = 0; k < s->groups.n; k++)
            if (!strcmp(g[k]->name, name))
                return g[k];
    if (!create)
        return NULL;
    group *ng = calloc(1, sizeof *ng);
    group **slot = ng ? sl_vec_push(&s->groups, sizeof *slot) : NULL;
    if (!slot) {
        free(ng);
        return NULL;
    }
    *slot = ng;
    memcpy(ng->name, name, n + 1);
    ng->host = !s->cfg.hosting;
    if (i == UINT32_MAX)
        sl_idmap_put(&s->gids, NULL, h, (uint32_t)(s->groups.n - 1));
    return ng;
}

static edoc *doc_find(group *g, uint64_t id)
{
    uint32_t i = sl_idmap_get(&g->ids, id);
    return i == UINT32_MAX ? NULL : (edoc *)g->docs.p + i;
}

static void doc_forget(sl_sync *s, group *g, uint64_t id)
{
    uint32_t i = sl_idmap_get(&g->ids, id);
    if (i == UINT32_MAX)
        return;
    edoc *d = g->docs.p;
    sl_entity_doc_free(&d[i].doc);
    sl_idmap_del(&g->ids, id);
    if (i != g->docs.n - 1) {     /* the last document takes its place */
        d[i] = d[g->docs.n - 1];
        sl_idmap_del(&g->ids, d[i].id);
        sl_idmap_put(&g->ids, NULL, d[i].id, i);
    }
    g->docs.n--;
    s->st.entities--;
}

/* Whether two entity documents are the same effective content (props in any order). */
static bool entity_same(const sl_entity_doc *a, const sl_entity_doc *b)
{
    if (a->x != b->x || a->y != b->y || a->radius != b->radius || a->layer != b->layer ||
        a->mask != b->mask || a->nprops != b->nprops)
        return false;
    for (size_t i = 0; i < a->nprops; i++) {
        size_t j = 0;
        while (j < b->nprops && strcmp(a->keys[i], b->keys[j]))
            j++;
        if (j == b->nprops)
            return false;
        const sl_value *u = &a->values[i], *v = &b->values[j];
        if (u->type != v->type || (u->type == SL_VALUE_BOOL && u->b != v->b) ||
            (u->type == SL_VALUE_NUMBER && u->n != v->n) ||
            (u->type == SL_VALUE_STRING && (u->len != v->len || memcmp(u->s, v->s, u->len))))
            return false;
    }
    return true;
}

/* Puts an entity document into its space: position and shape, then its props (those of the
 * previous document it lacks are cleared). Returns 0 or an error with err filled. */
static int entity_into_space(sl_sync *s, group *g, edoc *d, const sl_entity_doc *prev,
                             char *err, size_t len)
{
    const sl_entity_doc *n = &d->doc;
    int rc = sl_server_static_put(s->srv, g->name, d->id, n->x, n->y, n->radius, n->layer,
                                  n->mask, err, len);
    if (rc)
        return rc;
    for (size_t i = 0; prev && i < prev->nprops; i++) {
        bool kept = false;
        for (size_t j = 0; j < n->nprops && !kept; j++)
            kept = !strcmp(prev->keys[i], n->keys[j]);
        if (!kept)
            sl_server_static_prop(s->srv, g->name, d->id, prev->keys[i],
                                  &(sl_value){.type = SL_VALUE_NIL});
    }
    for (size_t i = 0; i < n->nprops; i++)
        sl_server_static_prop(s->srv, g->name, d->id, n->keys[i], &n->values[i]);
    d->applied = true;
    return 0;
}

/* The key of an entity document, for refusals. */
static void entity_key(char *out, size_t len, const group *g, uint64_t id)
{
    snprintf(out, len, "%s/entities/%llu", g->name, (unsigned long long)id);
}

/* ---- applying one change ------------------------------------------------------------------- */

static void put_entity(sl_sync *s, group *g, uint64_t id, const change *c)
{
    char why[256];
    sl_entity_doc nd;
    if (sl_entity_doc_parse((const char *)c->value, c->vlen, &nd, why, sizeof why)) {
        refuse(s, c->key, c->klen, c->rev, why);
        return;
    }
    edoc *d = doc_find(g, id);
    if (d && d->applied && entity_same(&d->doc, &nd)) {
        sl_entity_doc_free(&nd);
        d->rev = c->rev;
        s->st.unchanged++;
        return;
    }
    if (!d) {
        d = sl_vec_push(&g->docs, sizeof *d);
        if (!d || sl_idmap_put(&g->ids, NULL, id, (uint32_t)(g->docs.n - 1))) {
            if (d)
                g->docs.n--;
            sl_entity_doc_free(&nd);
            refuse(s, c->key, c->klen, c->rev, "out of memory");
            return;
        }
        *d = (edoc){.id = id};
        s->st.entities++;
    }
    sl_entity_doc prev = d->doc;
    bool had = d->applied;
    d->doc = nd;
    d->rev = c->rev;
    d->applied = false;
    char err[256];
    if (g->defined && entity_into_space(s, g, d, had ? &prev : NULL, err, sizeof err))
        refuse(s, c->key, c->klen, c->rev, err);
    sl_entity_doc_free(&prev);
    s->st.applied++;
}

/* The space's definition is applied (created or reconfigured): entity documents waiting for
 * it come in. */
static void entities_in(sl_sync *s, group *g)
{
    edoc *d = g->docs.p;
    for (size_t i = 0; i < g->docs.n; i++) {
        if (d[i].applied)
            continue;
        char err[256], key[128];
        if (entity_into_space(s, g, &d[i], NULL, err, sizeof err)) {
            entity_key(key, sizeof key, g, d[i].id);
            refuse(s, key, strlen(key), d[i].rev, err);
        }
    }
}

static void undefine(sl_sync *s, group *g)
{
    if (!g->defined)
        return;
    sl_server_undefine_space(s->srv, g->name);
    g->defined = false;
    s->st.spaces--;
    edoc *d = g->docs.p;
    for (size_t i = 0; i < g->docs.n; i++)
        d[i].applied = false;
}

/* The folder a definition's `scripts` names, below the script root; "" for none. */
static int scripts_dir(const sl_sync *s, const sl_space_doc *d, char *out, size_t len,
                       char *why, size_t wl)
{
    out[0] = '\0';
    if (!d->scripts[0])
        return 0;
    char path[PATH_MAX + 256], real[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", s->root, d->scripts);
    size_t rl = strlen(s->root);
    if (!s->root[0] || !realpath(path, real) || strncmp(real, s->root, rl) ||
        (real[rl] != '/' && real[rl] != '\0'))
        return sl_fail(why, wl, SL_ENOENT, "scripts %s: no such folder below the script "
                       "root %s", d->scripts, s->cfg.script_root);
    snprintf(out, len, "%s", real);
    return 0;
}

/* Creates (or reconfigures) the space by g->def; refusals are counted against the key. */
static void define(sl_sync *s, group *g, const char *key, size_t klen, int64_t rev)
{
    char why[600];
    if (sl_server_define_space(s->srv, g->name, &g->def.cfg, g->dir[0] ? g->dir : NULL,
                               g->def.tick_ms, why, sizeof why) ||
        sl_server_space_zones(s->srv, g->name, g->def.zones, g->def.nzones, why, sizeof why)) {
        refuse(s, key, klen, rev, why);
        return;
    }
    s->st.spaces += !g->defined;
    g->defined = true;
    entities_in(s, g);
}

static void put_space(sl_sync *s, group *g, const change *c)
{
    char why[600], dir[PATH_MAX];
    sl_space_doc nd;
    if (c->recreated) {
        undefine(s, g);
        g->valid = false;
    }
    if (sl_space_doc_parse((const char *)c->value, c->vlen, &nd, why, sizeof why)) {
        refuse(s, c->key, c->klen, c->rev, why);
        return;
    }
    if (scripts_dir(s, &nd, dir, sizeof dir, why, sizeof why)) {
        sl_space_doc_free(&nd);
        refuse(s, c->key, c->klen, c->rev, why);
        return;
    }
    if (g->valid && sl_space_doc_same(&g->def, &nd)) {
        sl_space_doc_free(&nd);
        s->st.unchanged++;
        return;
    }
    s->st.legacy_hash += nd.legacy_hash;
    if (g->defined && !sl_space_doc_same(&g->def, &nd)) {
        /* A running space is reconfigured in place, or refused as a whole. */
        if (sl_server_define_space(s->srv, g->name, &nd.cfg, dir[0] ? dir : NULL, nd.tick_ms,
                                   why, sizeof why) ||
            sl_server_space_zones(s->srv, g->name, nd.zones, nd.nzones, why, sizeof why)) {
            sl_space_doc_free(&nd);
            refuse(s, c->key, c->klen, c->rev, why);
            return;
        }
    }
    sl_space_doc_free(&g->def);
    g->def = nd;
    g->def_rev = c->rev;
    memcpy(g->dir, dir, sizeof g->dir);
    g->valid = true;
    s->st.applied++;
    if (g->host && !g->defined)
        define(s, g, c->key, c->klen, c->rev);
}

int sl_sync_host(sl_sync *s, const char *space, bool on)
{
    group *g = group_find(s, space, on);
    if (!g)
        return on ? SL_ENOMEM : 0;
    g->host = on || !s->cfg.hosting;
    if (g->host && g->valid && !g->defined) {
        char key[SL_SCHEMA_NAME_MAX + 1];
        snprintf(key, sizeof key, "%s", g->name);
        define(s, g, key, strlen(key), g->def_rev);
    } else if (!g->host) {
        undefine(s, g);
    }
    return g->defined || !on ? 0 : SL_ENOENT;
}

size_t sl_sync_spaces(const sl_sync *s, const char **names, size_t max)
{
    group *const *g = s->groups.p;
    size_t n = 0;
    for (size_t k = 0; k < s->groups.n; k++)
        if (g[k]->valid) {
            if (n < max)
                names[n] = g[k]->name;
            n++;
        }
    return n;
}

static void apply_change(sl_sync *s, const change *c)
{
    char space[SL_SCHEMA_NAME_MAX + 1], why[200];
    uint64_t id = 0;
    sl_doc_key kind = sl_doc_parse_key(c->key, c->klen, space, &id, why, sizeof why);
    if (c->rev > s->st.revision)
        s->st.revision = c->rev;
    if (kind == SL_DOC_BAD) {
        if (c->value)
            refuse(s, c->key, c->klen, c->rev, why);
        return;
    }
    group *g = group_find(s, space, c->value != NULL);
    if (!g) {
        if (c->value)
            refuse(s, c->key, c->klen, c->rev, "out of memory");
        return;
    }
    if (kind == SL_DOC_SPACE && c->value) {
        put_space(s, g, c);
    } else if (kind == SL_DOC_SPACE) {
        s->st.applied += g->valid;
        undefine(s, g);
        g->valid = false;
    } else if (c->value) {
        put_entity(s, g, id, c);
    } else if (doc_find(g, id)) {
        doc_forget(s, g, id);
        sl_server_static_delete(s->srv, g->name, id, s->cfg.static_grace_ms);
        s->st.applied++;
    }
}

/* ---- the queue ----------------------------------------------------------------------------- */

static void change_free(change *c)
{
    free(c->key);
    free(c->value);
}

/* The queue's slot of key, or the free slot where it goes. */
static uint32_t *queue_slot(sl_sync *s, const char *key, size_t klen)
{
    size_t mask = s->qcap - 1;
    size_t i = (size_t)sl_fnv1a64(SL_FNV1A64_BASIS, key, klen) & mask;
    change *q = s->queue.p;
    for (;; i = (i + 1) & mask) {
        uint32_t k = s->qhash[i];
        if (!k || (q[k - 1].klen == klen && !memcmp(q[k - 1].key, key, klen)))
            return &s->qhash[i];
    }
}

/* Makes room for one more queued key (the table stays at most half full). */
static bool queue_room(sl_sync *s)
{
    if ((s->queue.n + 1) * 2 <= s->qcap)
        return true;
    size_t ncap = s->qcap ? s->qcap * 2 : 1024;
    uint32_t *nh = calloc(ncap, sizeof *nh);
    if (!nh)
        return false;
    free(s->qhash);
    s->qhash = nh;
    s->qcap = ncap;
    change *q = s->queue.p;
    for (size_t k = 0; k < s->queue.n; k++)
        *queue_slot(s, q[k].key, q[k].klen) = (uint32_t)k + 1;
    return true;
}

static void enqueue(sl_sync *s, const char *key, size_t klen, const uint8_t *value,
                    size_t vlen, bool deleted, int64_t rev)
{
    uint8_t *v = deleted ? NULL : malloc(vlen ? vlen : 1);
    if (!deleted && v)
        memcpy(v, value, vlen);
    change one = {.key = (char *)key, .klen = klen, .value = v, .vlen = vlen, .rev = rev};
    if (!s->cfg.merge) {
        apply_change(s, &one);
        free(v);
        return;
    }
    char *k = malloc(klen + 1);
    if ((!deleted && !v) || !k || !queue_room(s)) {
        free(v);
        free(k);
        refuse(s, key, klen, rev, "out of memory (the change is lost until a resync)");
        return;
    }
    memcpy(k, key, klen);
    k[klen] = '\0';
    uint32_t *slot = queue_slot(s, key, klen);
    change *c;
    if (*slot) {
        c = (change *)s->queue.p + *slot - 1;
        bool recreated = c->recreated || (!c->value && !deleted);
        change_free(c);
        s->st.merged++;
        one.recreated = recreated;
    } else {
        c = sl_vec_push(&s->queue, sizeof *c);   /* room was made by queue_room's caller */
        if (!c) {
            free(v);
            free(k);
            refuse(s, key, klen, rev, "out of memory (the change is lost until a resync)");
            return;
        }
        *slot = (uint32_t)s->queue.n;
    }
    one.key = k;
    *c = one;
}

void sl_sync_put(sl_sync *s, const char *key, size_t klen, const uint8_t *value, size_t vlen,
                 int64_t rev)
{
    enqueue(s, key, klen, value, vlen, false, rev);
}

void sl_sync_delete(sl_sync *s, const char *key, size_t klen, int64_t rev)
{
    enqueue(s, key, klen, NULL, 0, true, rev);
}

static int by_rev(const void *a, const void *b)
{
    const change *x = a, *y = b;
    return (x->rev > y->rev) - (x->rev < y->rev);
}

void sl_sync_apply(sl_sync *s)
{
    if (!s->queue.n)
        return;
    change *q = s->queue.p;
    qsort(q, s->queue.n, sizeof *q, by_rev);
    for (size_t i = 0; i < s->queue.n; i++) {
        apply_change(s, &q[i]);
        change_free(&q[i]);
    }
    s->queue.n = 0;
    memset(s->qhash, 0, s->qcap * sizeof *s->qhash);
}

/* ---- life ---------------------------------------------------------------------------------- */

sl_sync *sl_sync_new(sl_server *srv, const sl_sync_config *cfg)
{
    sl_sync *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->srv = srv;
    s->cfg = *cfg;
    if (!cfg->script_root || !realpath(cfg->script_root, s->root))
        s->root[0] = '\0';
    return s;
}

void sl_sync_free(sl_sync *s)
{
    if (!s)
        return;
    change *q = s->queue.p;
    for (size_t i = 0; i < s->queue.n; i++)
        change_free(&q[i]);
    sl_vec_free(&s->queue);
    free(s->qhash);
    group **g = s->groups.p;
    for (size_t k = 0; k < s->groups.n; k++) {
        edoc *d = g[k]->docs.p;
        for (size_t i = 0; i < g[k]->docs.n; i++)
            sl_entity_doc_free(&d[i].doc);
        sl_space_doc_free(&g[k]->def);
        sl_vec_free(&g[k]->docs);
        sl_idmap_free(&g[k]->ids, NULL);
        free(g[k]);
    }
    sl_vec_free(&s->groups);
    sl_idmap_free(&s->gids, NULL);
    free(s);
}

void sl_sync_get_stats(const sl_sync *s, sl_sync_stats *st)
{
    *st = s->st;
    st->queued = s->queue.n;
}
