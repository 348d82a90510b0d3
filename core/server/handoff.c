/*
 * handoff.c: a live space handed from this node to another, and taken from another (README
 * "Moving a live space", PROTOCOL.md 8 "Node to node").
 *
 * The source (handoff_out). sl_server_handoff_start freezes the space: its requests are
 * answered not_owner from then on, and it ticks once more, so that what its clients sent
 * before the freeze comes out of this node, under its epoch. Right after that tick the
 * space is at a tick boundary (engine: nothing pending) and is exported: entities, the
 * exception pairs, props, which session owns what, the scripts' state and the tick count,
 * sent to the target over a connection of our own (hello with the cluster secret, then
 * handoff.begin / .entities / .pairs / .end). From then on the space neither ticks nor
 * serves here. When the target answers handoff.ready, the cluster side decides (an etcd Txn
 * on the owner key, moves.c): commit (the target serves from the Txn's revision on, this
 * node drops the space and tells its sessions to claim their entities there) or abort (the
 * space serves here again, as if nothing happened: nothing changed it meanwhile).
 *
 * The target (handoff_in). A peer session's handoff frames fill a snapshot, checked as it
 * comes and complete at handoff.end; it waits until it is committed (handoff.commit from the
 * source, or the owner key naming this node for that handoff) or given up (abort, or the
 * source's connection lost before it was complete). A committed snapshot is built when the
 * cluster hosts the space (spaces.c asks sl__handoff_committed): the scripts start from its
 * state, the engine imports the entities and pairs (the rule is not asked), props are set
 * without re-judging, and each client session of the source becomes a parked session here
 * (same token) whose tick frames wait until the client claims it.
 *
 * A snapshot is only taken at a clean tick boundary: when the space's scripts leave changes
 * for the next tick (sightline.set_radius in on_tick, a tick cut at the script budget), the
 * space ticks again, up to MAX_TRIES times, then the handoff fails with that reason.
 */
#include "server/server_impl.h"

#include "base/clock.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TRIES 4             /* tick boundaries tried for a clean snapshot */
#define CHUNK_BYTES (256u << 10)    /* a handoff.entities / .pairs frame, about */
#define READY_MS 2000           /* a target that holds no snapshot by then is given up */
#define ORPHAN_MS 30000         /* a snapshot whose source left uncommitted waits this long for
                                 * the owner key to name this node for it */

enum { HO_WAIT, HO_SENT, HO_READY, HO_DONE };

struct handoff_out {
    char space[MAX_NAME + 1], node[65], listen[128];
    int state;
    sl_conn *peer;              /* NULL once closed */
    uint64_t from_epoch;
    double frozen_ms, sent_ms;
    uint32_t tries;
    size_t bytes;               /* of the snapshot sent */
    sl_handoff_fn fn;
    void *ud;
};

/* A prop of a snapshot: entity, key and value (strings in the snapshot's arena). */
typedef struct in_prop {
    uint64_t id;
    size_t key, klen, str;      /* offsets in the arena */
    sl_value v;                 /* .s is set when applied */
} in_prop;

struct handoff_in {
    char space[MAX_NAME + 1], from[65];
    sl_conn *peer;              /* the source's connection (NULL once closed) */
    uint64_t from_epoch, epoch, ticks;
    uint64_t want_ents, want_pairs, want_shown;
    double frozen_ms, commit_ms;    /* the source's freeze when it committed; when that came */
    sl_vec tokens;              /* char[33], the source's sessions in this space */
    sl_vec ents;                /* sl_entity_info */
    sl_vec owner;               /* uint32_t: index into tokens, or UINT32_MAX (static) */
    sl_vec props;               /* in_prop */
    sl_vec arena;               /* bytes */
    sl_vec pairs;               /* uint64_t watcher, target */
    sl_vec shown;               /* uint64_t watcher, target: capped watchers' shown targets */
    sl_vec rels;                /* sl_relation_pair (handoff.begin's `relations`) */
    sl_vec subs;                /* uint32_t session index (in tokens), group (`subs`) */
    sl_vec state;               /* bytes: the scripts' state (msgpack) */
    uint64_t want_regions;      /* region items (a region may come in several) */
    uint64_t items;             /* region items read */
    sl_vec regions;             /* in_region */
    sl_vec rvals;               /* float: the regions' coordinates; uint64 ids in rids */
    sl_vec rids;                /* uint64_t: the regions' members */
    bool complete, committed;
    double at_ms;
    float depth;                /* handoff.begin's `depth` (0: a flat space) */
};

static void in_free(handoff_in *in)
{
    sl_vec_free(&in->tokens);
    sl_vec_free(&in->ents);
    sl_vec_free(&in->owner);
    sl_vec_free(&in->props);
    sl_vec_free(&in->arena);
    sl_vec_free(&in->pairs);
    sl_vec_free(&in->shown);
    sl_vec_free(&in->rels);
    sl_vec_free(&in->subs);
    sl_vec_free(&in->state);
    sl_vec_free(&in->regions);
    sl_vec_free(&in->rvals);
    sl_vec_free(&in->rids);
    free(in);
}

/* Takes list[i] (a vector of pointers) out, keeping the others. */
static void unlist(sl_vec *list, void *item)
{
    void **p = list->p;
    for (size_t i = 0; i < list->n; i++)
        if (p[i] == item) {
            p[i] = p[--list->n];
            return;
        }
}

static bool list_add(sl_vec *list, void *item)
{
    void **p = sl_vec_push(list, sizeof *p);
    if (p)
        *p = item;
    return p != NULL;
}

static handoff_out *out_by_space(const sl_server *srv, const char *name)
{
    handoff_out *const *p = srv->outgoing.p;
    for (size_t i = 0; i < srv->outgoing.n; i++)
        if (!strcmp(p[i]->space, name))
            return p[i];
    return NULL;
}

static handoff_in *in_by_space(const sl_server *srv, const char *name, size_t n)
{
    handoff_in *const *p = srv->incoming.p;
    for (size_t i = 0; i < srv->incoming.n; i++)
        if (strlen(p[i]->space) == n && !memcmp(p[i]->space, name, n))
            return p[i];
    return NULL;
}

/* ---- the source ------------------------------------------------------------------------------ */

/* The handoff ends here (fn told, unless done): the space serves again if it is still ours. */
static void out_end(sl_server *srv, handoff_out *ho, const char *why)
{
    hosted_space *sp = sl__space_find(srv, ho->space, strlen(ho->space));
    if (sp && sp->handoff == ho) {
        sp->handoff = NULL;
        sp->exported = false;
    }
    unlist(&srv->outgoing, ho);
    if (ho->peer) {
        sl_conn *c = ho->peer;
        ho->peer = NULL;
        if (why)
            sl_conn_close(c, "aborted", why);
        else
            sl_conn_close(c, "done", "handoff done");
    }
    if (why) {
        sl__log(srv, "space %s: handoff to node %s failed: %s; it stays here", ho->space,
                ho->node, why);
        if (ho->fn)
            ho->fn(ho->ud, ho->space, SL_HANDOFF_FAILED, why);
    }
    free(ho);
}

int sl_server_handoff_start(sl_server *srv, const char *space, const char *node,
                            const char *listen, sl_handoff_fn fn, void *ud, char *err,
                            size_t len)
{
    hosted_space *sp = sl__space_find(srv, space, strlen(space));
    if (!sp || sp->creator != SL_CREATOR_CLUSTER || !sl__serving(srv, sp, sl_now_ms()))
        return sl_fail(err, len, SL_ENOENT, "space %s is not served by this node", space);
    if (sp->handoff)
        return sl_fail(err, len, SL_EEXIST, "space %s is already moving (to node %s)", space,
                       sp->handoff->node);
    if (!srv->secret[0])
        return sl_fail(err, len, SL_EPERM, "no cluster secret (--cluster-secret-file): nodes "
                       "cannot hand spaces to each other");
    char host[128];
    const char *colon = strrchr(listen, ':');
    int port = colon ? atoi(colon + 1) : 0;
    if (!colon || port <= 0 || (size_t)(colon - listen) >= sizeof host)
        return sl_fail(err, len, SL_EINVAL, "bad node address %s", listen);
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {   /* [v6]:port */
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    handoff_out *ho = calloc(1, sizeof *ho);
    if (!ho || !list_add(&srv->outgoing, ho)) {
        free(ho);
        return sl_fail(err, len, SL_ENOMEM, "out of memory");
    }
    snprintf(ho->space, sizeof ho->space, "%s", space);
    snprintf(ho->node, sizeof ho->node, "%s", node);
    snprintf(ho->listen, sizeof ho->listen, "%s", listen);
    ho->fn = fn;
    ho->ud = ud;
    ho->from_epoch = sp->epoch;
    ho->frozen_ms = sl_now_ms();
    int rc = sl_net_dial(srv->net, host, port, NULL, &ho->peer);
    if (rc) {
        unlist(&srv->outgoing, ho);
        free(ho);
        return sl_fail(err, len, rc, "cannot connect to node %s at %s", node, listen);
    }
    sl_enc e;
    sl_enc_begin(&e, sl_conn_out(ho->peer));
    sl_enc_map(&e, 4);
    sl_enc_kv_str(&e, "t", "hello");
    sl_enc_kv_u64(&e, "v", SL_PROTO_VERSION);
    sl_enc_kv_str(&e, "node", srv->node_id);
    sl_enc_kv_str(&e, "secret", srv->secret);
    sl_enc_end(&e);
    sl_conn_flush(ho->peer);
    sp->handoff = ho;
    sl__log(srv, "space %s: handing over to node %s at %s (frozen; one more tick here)", space,
            node, listen);
    return 0;
}

/* What the export callbacks fill: the snapshot's frames, built as they go. */
typedef struct packer {
    sl_server *srv;
    hosted_space *sp;
    sl_obuf *out;               /* the peer connection's */
    sl_obuf items;              /* the current chunk's items (msgpack values) */
    uint32_t nitems;
    const char *kind;           /* "entities", "pairs", "shown" or "regions" */
    uint64_t ents, pairs, shown, regions;
    sl_vec sessions;            /* uint32_t: session index of each token sent, in order */
    sl_obuf frames;             /* the entity and pair frames, until begin is written */
    /* Every prop of the space, read in one walk of the script host (sl_lua_props_all: one
     * script call an entity cost 1.2 us, 62 ms at 50,000 entities), by entity. */
    sl_idmap heads;             /* entity id -> its last record's index */
    sl_vec recs, arena;         /* prop_rec; their keys' and strings' bytes */
    bool props_failed;
} packer;

/* One prop of the snapshot's index: the entity's previous record (index + 1, 0: none). */
/* A region of a snapshot: its shape (coordinates at `at` in rvals), owner (index into
 * tokens, UINT32_MAX: no session's) and members (`nm` ids at `m` in rids). */
typedef struct in_region {
    uint64_t id;
    sl_region g;
    size_t at, m, nm;
    uint32_t owner;
} in_region;

typedef struct prop_rec {
    uint32_t prev;
    size_t key, str;            /* offsets in the arena (the key NUL-terminated) */
    sl_value v;                 /* .s set when packed */
} prop_rec;

static void index_prop(void *ud, uint64_t id, const char *key, const sl_value *v)
{
    packer *pk = ud;
    uint32_t head = sl_idmap_get(&pk->heads, id);
    prop_rec *r = sl_vec_push(&pk->recs, sizeof *r);
    size_t k = sl_vec_append(&pk->arena, key, 1, strlen(key) + 1);
    size_t str = v->type == SL_VALUE_STRING ? sl_vec_append(&pk->arena, v->s, 1, v->len) : 0;
    if (!r || k == SIZE_MAX || str == SIZE_MAX) {
        pk->props_failed = true;
        return;
    }
    *r = (prop_rec){head == UINT32_MAX ? 0 : head + 1, k, str, *v};
    uint32_t at = (uint32_t)(pk->recs.n - 1);
    if (head != UINT32_MAX)
        sl_idmap_del(&pk->heads, id);
    if (sl_idmap_put(&pk->heads, NULL, id, at))
        pk->props_failed = true;
}

/* Index of session idx among the snapshot's sessions (added when new). */
static uint32_t session_slot(packer *pk, uint32_t idx)
{
    const uint32_t *v = pk->sessions.p;
    for (size_t i = 0; i < pk->sessions.n; i++)
        if (v[i] == idx)
            return (uint32_t)i;
    uint32_t *p = sl_vec_push(&pk->sessions, sizeof *p);
    if (p)
        *p = idx;
    return (uint32_t)pk->sessions.n - 1;
}

/* Writes the chunk gathered so far as one frame (into pk->frames). */
static void flush_chunk(packer *pk)
{
    if (!pk->nitems)
        return;
    sl_enc e;
    sl_enc_begin(&e, &pk->frames);
    sl_enc_map(&e, 3);
    sl_enc_kv_str(&e, "t", pk->kind[0] == 'p'   ? "handoff.pairs"
                           : pk->kind[0] == 's' ? "handoff.shown"
                           : pk->kind[0] == 'r' ? "handoff.regions"
                                                : "handoff.entities");
    sl_enc_kv_str(&e, "space", pk->sp->name);
    sl_enc_str(&e, "items");
    sl_enc_array(&e, pk->nitems);
    sl_enc_raw(&e, pk->items.bytes.p, pk->items.bytes.n);
    sl_enc_end(&e);
    pk->items.bytes.n = 0;
    pk->nitems = 0;
}

/* One entity: [id, x, y, r, layer, mask, owner (session slot, or nil: static), props, sees],
 * then its own hysteresis (nil: none), its LOD bands [distance, period, ...] (nil: none),
 * `true` when it is always relevant (nil: not), its priority (nil: 0), its cap
 * [n, margin, candidates] (nil: none), its vision group (nil: none) and its height z (a 3D
 * space's; nil: 0), as far as it has them (the elements left out: none). */
static void pack_entity(void *ud, const sl_entity_info *info)
{
    packer *pk = ud;
    if (pk->kind[0] != 'e') {
        flush_chunk(pk);
        pk->kind = "entities";
    }
    uint32_t o = sl_idmap_get(&pk->sp->owners, info->id);
    sl_enc e;
    sl_enc_values(&e, &pk->items);
    uint32_t nf = info->z != 0 ? 16 : info->group ? 15 : info->cap ? 14 : info->priority ? 13
                : info->always ? 12 : info->nlod ? 11 : info->own_hysteresis ? 10 : 9;
    sl_enc_array(&e, nf);
    sl_enc_u64(&e, info->id);
    sl_enc_f32(&e, info->x);
    sl_enc_f32(&e, info->y);
    sl_enc_f32(&e, info->radius);
    sl_enc_u64(&e, info->layer);
    sl_enc_u64(&e, info->mask);
    if (o == STATIC_OWNER || o == UINT32_MAX || o == 0)
        sl_enc_nil(&e);
    else
        sl_enc_u64(&e, session_slot(pk, o - 1));
    uint32_t np = 0, head = sl_idmap_get(&pk->heads, info->id);
    const prop_rec *rec = pk->recs.p;
    for (uint32_t r = head; r != UINT32_MAX; r = rec[r].prev - 1)
        np++;
    sl_enc_map(&e, np);
    const char *arena = pk->arena.p;
    for (uint32_t r = head; r != UINT32_MAX; r = rec[r].prev - 1) {
        sl_enc_str(&e, arena + rec[r].key);
        switch (rec[r].v.type) {
        case SL_VALUE_BOOL: sl_enc_bool(&e, rec[r].v.b); break;
        case SL_VALUE_NUMBER: sl_enc_f64(&e, rec[r].v.n); break;
        case SL_VALUE_STRING: sl_enc_strn(&e, arena + rec[r].str, rec[r].v.len); break;
        default: sl_enc_nil(&e); break;
        }
    }
    sl_enc_u64(&e, info->sees);
    if (info->own_hysteresis)
        sl_enc_f32(&e, info->hysteresis);
    else if (nf > 9)
        sl_enc_nil(&e);
    if (info->nlod) {
        sl_enc_array(&e, 2 * info->nlod);
        for (uint32_t i = 0; i < info->nlod; i++) {
            sl_enc_f32(&e, info->lod[i].distance);
            sl_enc_u64(&e, info->lod[i].period);
        }
    } else if (nf > 10) {
        sl_enc_nil(&e);
    }
    if (info->always)
        sl_enc_bool(&e, true);
    else if (nf > 11)
        sl_enc_nil(&e);
    if (info->priority)
        sl_enc_i64(&e, info->priority);
    else if (nf > 12)
        sl_enc_nil(&e);
    if (info->cap) {
        sl_enc_array(&e, 3);
        sl_enc_u64(&e, info->cap);
        sl_enc_f32(&e, info->cap_margin);
        sl_enc_u64(&e, info->candidates);
    } else if (nf > 13) {
        sl_enc_nil(&e);
    }
    if (info->group)
        sl_enc_u64(&e, info->group);
    else if (nf > 14)
        sl_enc_nil(&e);
    if (info->z != 0)
        sl_enc_f32(&e, info->z);
    pk->nitems++;
    pk->ents++;
    if (pk->items.bytes.n >= CHUNK_BYTES)
        flush_chunk(pk);
}

static void count_relation(void *ud, uint64_t w, uint64_t t, sl_relation k)
{
    (void)w, (void)t, (void)k;
    (*(size_t *)ud)++;
}

static void pack_relation(void *ud, uint64_t w, uint64_t t, sl_relation k)
{
    sl_relation_pair p = {w, t, k};
    sl_vec_append(ud, &p, sizeof p, 1);     /* (out of memory: checked with the count) */
}

/* A pair of ids into the chunk of kind ("pairs" or "shown"), counted in *count. */
static void pack_ids(packer *pk, const char *kind, uint64_t *count, uint64_t w, uint64_t t)
{
    if (pk->kind[0] != kind[0]) {
        flush_chunk(pk);
        pk->kind = kind;
    }
    sl_enc e;
    sl_enc_values(&e, &pk->items);
    sl_enc_u64(&e, w);
    sl_enc_u64(&e, t);
    pk->nitems += 2;
    (*count)++;
    if (pk->items.bytes.n >= CHUNK_BYTES)
        flush_chunk(pk);
}

static void pack_pair(void *ud, uint64_t w, uint64_t t)
{
    packer *pk = ud;
    pack_ids(pk, "pairs", &pk->pairs, w, t);
}

static void pack_shown(void *ud, uint64_t w, uint64_t t)
{
    packer *pk = ud;
    pack_ids(pk, "shown", &pk->shown, w, t);
}

static void collect_id(void *ud, uint64_t id)
{
    sl_vec_append(ud, &id, sizeof id, 1);   /* (out of memory: checked with the count) */
}

/* One region: [id, kind (0 circle, 1 rect, 2 poly), mask, owner (session slot, or nil: no
 * session's), [x, y, r] | [x, y, x1, y1] | [x1, y1, ...], [member ids]], as items of at
 * most MEMBERS_ITEM members (the same region's items follow each other), so that no frame
 * passes the peer's max_frame however many members a region has. */
#define MEMBERS_ITEM 16384u
static void pack_region(packer *pk, uint64_t id, sl_vec *members)
{
    sl_region g;
    uint32_t n;
    if (sl_space_get_region(pk->sp->s, id, &g, &n))
        return;
    members->n = 0;
    sl_space_region_members(pk->sp->s, id, collect_id, members);
    if (members->n != n) {
        pk->items.failed = true;        /* (out of memory) */
        return;
    }
    if (pk->kind[0] != 'r') {
        flush_chunk(pk);
        pk->kind = "regions";
    }
    const sl_server *srv = pk->srv;
    uint32_t o = sl_idmap_get(&pk->sp->region_owners, id);
    const session *s = o != UINT32_MAX && o - 1 < srv->nsessions ? srv->sessions[o - 1] : NULL;
    uint32_t slot = s && s->used && !s->peer ? session_slot(pk, o - 1) : UINT32_MAX;
    float v[5] = {g.x, g.y, g.kind == SL_REGION_CIRCLE ? g.r : g.x1, g.y1};
    uint32_t nv = g.kind == SL_REGION_CIRCLE ? 3 : g.kind == SL_REGION_RECT ? 4 : 2 * g.n;
    const uint64_t *m = members->p;
    for (uint32_t at = 0; at == 0 || at < n; at += MEMBERS_ITEM) {
        uint32_t k = n - at < MEMBERS_ITEM ? n - at : MEMBERS_ITEM;
        sl_enc e;
        sl_enc_values(&e, &pk->items);
        sl_enc_array(&e, 6);
        sl_enc_u64(&e, id);
        sl_enc_u64(&e, (uint64_t)g.kind);
        sl_enc_u64(&e, g.mask);
        if (slot != UINT32_MAX)
            sl_enc_u64(&e, slot);
        else
            sl_enc_nil(&e);
        sl_enc_array(&e, nv);
        for (uint32_t i = 0; i < nv; i++)
            sl_enc_f32(&e, g.kind == SL_REGION_POLYGON ? g.xy[i] : v[i]);
        sl_enc_array(&e, k);
        for (uint32_t i = 0; i < k; i++)
            sl_enc_u64(&e, m[at + i]);
        pk->nitems++;
        pk->regions++;
        if (pk->items.bytes.n >= CHUNK_BYTES)
            flush_chunk(pk);
    }
}

/* Exports sp into handoff frames on the peer connection; 0, or SL_EINVAL (not at a clean
 * boundary: try after the next tick), or another error with why. */
static int send_snapshot(sl_server *srv, hosted_space *sp, handoff_out *ho, char *why,
                         size_t len)
{
    packer pk = {.srv = srv, .sp = sp, .kind = ""};
    if (sp->h)
        sl_lua_props_all(sp->h, index_prop, &pk);
    int rc = pk.props_failed ? sl_fail(why, len, SL_ENOMEM, "out of memory (props)")
                             : sl_space_export(sp->s, pack_entity, pack_pair, &pk);
    if (!rc)
        sl_space_shown_each(sp->s, pack_shown, &pk);
    sl_vec rids = {0}, members = {0};
    if (!rc)
        sl_space_regions_each(sp->s, collect_id, &rids);
    for (size_t i = 0; !rc && i < rids.n; i++)
        pack_region(&pk, ((const uint64_t *)rids.p)[i], &members);
    sl_vec_free(&rids);
    sl_vec_free(&members);
    flush_chunk(&pk);
    /* Subscriptions to its vision groups go with their sessions: (session slot, group). */
    sl_vec subs = {0};
    const gsub *gs = sp->gsubs.p;
    for (size_t i = 0; !rc && i < sp->gsubs.n; i++) {
        const session *s = gs[i].idx < srv->nsessions ? srv->sessions[gs[i].idx] : NULL;
        uint32_t *p = s && s->used && s->serial == gs[i].serial && !s->peer
                          ? sl_vec_extend(&subs, sizeof *p, 2) : NULL;
        if (p) {
            p[0] = session_slot(&pk, gs[i].idx);
            p[1] = gs[i].group;
        }
    }
    sl_vec rels = {0};
    size_t nrels = 0;
    sl_space_relations_each(sp->s, pack_relation, &rels);
    sl_space_relations_each(sp->s, count_relation, &nrels);
    if (!rc && rels.n != nrels)
        rc = sl_fail(why, len, SL_ENOMEM, "out of memory (relations)");
    char *state = NULL;
    size_t state_len = 0;
    if (!rc && sp->h && (rc = sl_lua_state_save(sp->h, &state, &state_len, why, len)))
        rc = rc == SL_EINVAL ? SL_EPERM : rc;       /* (a state that cannot move: no retry) */
    if (!rc && (pk.items.failed || pk.frames.failed))
        rc = sl_fail(why, len, SL_ENOMEM, "out of memory");
    if (!rc) {
        sl_obuf *out = sl_conn_out(ho->peer);
        sl_enc e;
        sl_enc_begin(&e, out);
        float depth = sl_space_config_of(sp->s)->depth;
        sl_enc_map(&e, 9 + (rels.n > 0) + (pk.shown > 0) + (subs.n > 0) + (pk.regions > 0) +
                           (depth > 0));
        sl_enc_kv_str(&e, "t", "handoff.begin");
        sl_enc_kv_str(&e, "space", sp->name);
        sl_enc_kv_str(&e, "from", srv->node_id);
        sl_enc_kv_u64(&e, "epoch", sp->epoch);
        sl_enc_kv_u64(&e, "n", sp->ticks);
        sl_enc_kv_u64(&e, "entities", pk.ents);
        sl_enc_kv_u64(&e, "pairs", pk.pairs);
        if (pk.shown)
            sl_enc_kv_u64(&e, "shown", pk.shown);
        if (pk.regions)
            sl_enc_kv_u64(&e, "regions", pk.regions);
        if (depth > 0)
            sl_enc_kv_f32(&e, "depth", depth);
        sl_enc_str(&e, "sessions");
        sl_enc_array(&e, (uint32_t)pk.sessions.n);
        const uint32_t *idx = pk.sessions.p;
        for (size_t i = 0; i < pk.sessions.n; i++)
            sl_enc_str(&e, srv->sessions[idx[i]]->token);
        sl_enc_str(&e, "state");
        sl_enc_bin(&e, state ? state : "", state_len);
        if (rels.n) {
            const sl_relation_pair *r = rels.p;
            sl_enc_str(&e, "relations");
            sl_enc_array(&e, (uint32_t)(3 * rels.n));
            for (size_t i = 0; i < rels.n; i++) {
                sl_enc_u64(&e, r[i].watcher);
                sl_enc_u64(&e, r[i].target);
                sl_enc_u64(&e, (uint64_t)r[i].rel);
            }
        }
        if (subs.n) {
            const uint32_t *p = subs.p;
            sl_enc_str(&e, "subs");
            sl_enc_array(&e, (uint32_t)subs.n);
            for (size_t i = 0; i < subs.n; i++)
                sl_enc_u64(&e, p[i]);
        }
        sl_enc_end(&e);
        sl_enc_raw(&e, pk.frames.bytes.p, pk.frames.bytes.n);
        sl_enc_begin(&e, out);
        sl_enc_map(&e, 2);
        sl_enc_kv_str(&e, "t", "handoff.end");
        sl_enc_kv_str(&e, "space", sp->name);
        sl_enc_end(&e);
        ho->bytes = pk.frames.bytes.n + state_len;
        sl_conn_flush(ho->peer);
    } else if (rc == SL_EINVAL && !pk.props_failed) {
        snprintf(why, len, "the space was not at a clean tick boundary (%s)",
                 sl_space_error(sp->s));
    }
    free(state);
    sl_vec_free(&rels);
    sl_vec_free(&subs);
    sl_obuf_free(&pk.items);
    sl_vec_free(&pk.sessions);
    sl_obuf_free(&pk.frames);
    sl_idmap_free(&pk.heads, NULL);
    sl_vec_free(&pk.recs);
    sl_vec_free(&pk.arena);
    return rc;
}

void sl__handoff_after_tick(sl_server *srv, hosted_space *sp)
{
    handoff_out *ho = sp->handoff;
    if (!ho || ho->state != HO_WAIT)
        return;
    if (!ho->peer) {
        out_end(srv, ho, "the connection to the target closed before the snapshot");
        return;
    }
    char why[300];
    ho->tries++;
    int rc = send_snapshot(srv, sp, ho, why, sizeof why);
    if (rc == SL_EINVAL && ho->tries < MAX_TRIES)
        return;                 /* the next tick boundary, then */
    if (rc) {
        out_end(srv, ho, why);
        return;
    }
    ho->state = HO_SENT;
    ho->sent_ms = sl_now_ms();
    sp->exported = true;
    sl__serving(srv, sp, ho->sent_ms);      /* (logged as released: it ticked here last) */
}

void sl__handoff_check(sl_server *srv, double now_ms)
{
    handoff_out *const *p = srv->outgoing.p;
    for (size_t i = 0; i < srv->outgoing.n; i++)
        if (p[i]->state == HO_SENT && now_ms - p[i]->sent_ms > READY_MS) {
            out_end(srv, p[i], "the target did not say it holds the snapshot within 2 s");
            break;              /* (one at a time: the list changed) */
        }
    handoff_in *const *q = srv->incoming.p;
    for (size_t i = 0; i < srv->incoming.n; i++)
        if (!q[i]->peer && !q[i]->committed && now_ms - q[i]->at_ms > ORPHAN_MS) {
            sl__log(srv, "space %s: the snapshot from node %s was never committed; dropped",
                    q[i]->space, q[i]->from);
            sl__handoff_drop(srv, q[i]);
            break;
        }
}

/* The target's answers on our connection: welcome, handoff.ready, ok (commit), errors. */
static void out_frame(sl_server *srv, handoff_out *ho, const sl_msg *m)
{
    const msgpack_object *root = sl_decoder_root(srv->dec);
    sl_str t = {0};
    sl_obj_str(sl_obj_get(root, "t"), &t);
    if (t.n == 5 && !memcmp(t.p, "error", 5)) {
        sl_str code = {0}, msg = {0};
        sl_obj_str(sl_obj_get(root, "code"), &code);
        sl_obj_str(sl_obj_get(root, "msg"), &msg);
        char why[300];
        snprintf(why, sizeof why, "node %s refused: %.*s: %.*s", ho->node, (int)code.n, code.p,
                 (int)msg.n, msg.p);
        if (ho->state < HO_READY)
            out_end(srv, ho, why);
        return;
    }
    (void)m;
    if (t.n == 13 && !memcmp(t.p, "handoff.ready", 13) && ho->state == HO_SENT) {
        ho->state = HO_READY;
        if (ho->fn)
            ho->fn(ho->ud, ho->space, SL_HANDOFF_READY, NULL);
    }
}

void sl_server_handoff_seen(sl_server *srv, const char *space, const char *node,
                            uint64_t from_epoch)
{
    handoff_out *ho = out_by_space(srv, space);
    hosted_space *sp = sl__space_find(srv, space, strlen(space));
    if (ho && sp && ho->state == HO_READY && from_epoch && ho->from_epoch == from_epoch &&
        !strcmp(ho->node, node))
        sp->handed = true;
}

double sl_server_handoff_commit(sl_server *srv, const char *space, uint64_t epoch)
{
    handoff_out *ho = out_by_space(srv, space);
    if (!ho)
        return 0;
    double now = sl_now_ms();
    if (ho->peer) {
        sl_enc e;
        sl_enc_begin(&e, sl_conn_out(ho->peer));
        sl_enc_map(&e, 5);
        sl_enc_kv_str(&e, "t", "handoff.commit");
        sl_enc_kv_str(&e, "space", space);
        sl_enc_kv_u64(&e, "epoch", epoch);
        sl_enc_kv_u64(&e, "from_epoch", ho->from_epoch);
        sl_enc_str(&e, "frozen_ms");
        sl_enc_f64(&e, now - ho->frozen_ms);
        sl_enc_end(&e);
        sl_conn_flush(ho->peer);
    }
    hosted_space *sp = sl__space_find(srv, space, strlen(space));
    if (sp)
        sp->handed = true;      /* its drop (the cluster's, next) tells sessions to claim */
    srv->handoffs_done++;
    srv->last_freeze_ms = now - ho->frozen_ms;
    sl__log(srv, "space %s: handed over to node %s (epoch %llu; frozen %.1f ms, snapshot %zu "
            "bytes sent in %.1f ms)", space, ho->node, (unsigned long long)epoch,
            now - ho->frozen_ms, ho->bytes, now - ho->sent_ms);
    ho->state = HO_DONE;
    if (sp && sp->handoff == ho)
        sp->handoff = NULL;
    unlist(&srv->outgoing, ho);
    if (ho->peer) {
        sl_conn *c = ho->peer;
        ho->peer = NULL;
        sl_conn_close(c, "done", "handoff committed");
    }
    free(ho);
    return srv->last_freeze_ms;
}

void sl_server_handoff_abort(sl_server *srv, const char *space, const char *why)
{
    handoff_out *ho = out_by_space(srv, space);
    if (!ho)
        return;
    if (ho->peer) {
        sl_enc e;
        sl_enc_begin(&e, sl_conn_out(ho->peer));
        sl_enc_map(&e, 2);
        sl_enc_kv_str(&e, "t", "handoff.abort");
        sl_enc_kv_str(&e, "space", space);
        sl_enc_end(&e);
    }
    srv->handoffs_failed++;
    ho->fn = NULL;              /* (the caller knows) */
    out_end(srv, ho, why);
}

/* ---- the target ------------------------------------------------------------------------------ */

static void reply(sl_server *srv, sl_conn *c, const char *t, const char *space)
{
    (void)srv;
    sl_enc e;
    sl_enc_begin(&e, sl_conn_out(c));
    sl_enc_map(&e, 2);
    sl_enc_kv_str(&e, "t", t);
    sl_enc_kv_str(&e, "space", space);
    sl_enc_end(&e);
}

/* Refuses the handoff in (if any) with code and msg, and closes the connection. */
static void in_refuse(sl_server *srv, sl_conn *c, handoff_in *in, const char *code,
                      const char *msg)
{
    sl__log(srv, "handoff from %s refused: %s", sl_conn_peer(c), msg);
    if (in) {
        unlist(&srv->incoming, in);
        in_free(in);
    }
    sl_conn_close(c, code, msg);
}

static bool read_begin(sl_server *srv, sl_conn *c, const msgpack_object *root)
{
    sl_str space = {0}, from = {0};
    uint64_t epoch = 0, n = 0, ents = 0, pairs = 0, shown = 0, regions = 0;
    float depth = 0;
    const msgpack_object *sessions = sl_obj_get(root, "sessions");
    const msgpack_object *state = sl_obj_get(root, "state");
    if (!sl_obj_str(sl_obj_get(root, "space"), &space) || !space.n || space.n > MAX_NAME ||
        !sl_obj_str(sl_obj_get(root, "from"), &from) || from.n > 64 ||
        !sl_obj_u64(sl_obj_get(root, "epoch"), &epoch) ||
        !sl_obj_u64(sl_obj_get(root, "n"), &n) ||
        !sl_obj_u64(sl_obj_get(root, "entities"), &ents) ||
        !sl_obj_u64(sl_obj_get(root, "pairs"), &pairs) || !sessions ||
        sessions->type != MSGPACK_OBJECT_ARRAY || !state || state->type != MSGPACK_OBJECT_BIN ||
        (sl_obj_get(root, "shown") && !sl_obj_u64(sl_obj_get(root, "shown"), &shown)) ||
        (sl_obj_get(root, "regions") && !sl_obj_u64(sl_obj_get(root, "regions"), &regions)) ||
        (sl_obj_get(root, "depth") && !sl_obj_f32(sl_obj_get(root, "depth"), &depth))) {
        in_refuse(srv, c, NULL, "bad_message", "handoff.begin: missing or wrong fields");
        return false;
    }
    hosted_space *sp = sl__space_find(srv, space.p, space.n);
    if (sp && sp->serving) {
        in_refuse(srv, c, NULL, "exists", "handoff.begin: this node serves that space");
        return false;
    }
    handoff_in *old = in_by_space(srv, space.p, space.n);
    if (old) {                  /* an earlier attempt: this one replaces it */
        unlist(&srv->incoming, old);
        in_free(old);
    }
    handoff_in *in = calloc(1, sizeof *in);
    if (!in || !list_add(&srv->incoming, in)) {
        free(in);
        in_refuse(srv, c, NULL, "internal", "out of memory");
        return false;
    }
    memcpy(in->space, space.p, space.n);
    memcpy(in->from, from.p, from.n);
    in->peer = c;
    in->from_epoch = epoch;
    in->ticks = n;
    in->want_ents = ents;
    in->want_pairs = pairs;
    in->want_shown = shown;
    in->want_regions = regions;
    in->depth = depth;
    in->at_ms = sl_now_ms();
    for (uint32_t i = 0; i < sessions->via.array.size; i++) {
        sl_str tok;
        char *slot = sl_vec_push(&in->tokens, 33);
        if (!slot || !sl_obj_str(&sessions->via.array.ptr[i], &tok) || tok.n != 32) {
            in_refuse(srv, c, in, "bad_message", "handoff.begin: a session token is not 32 "
                      "hex digits");
            return false;
        }
        memcpy(slot, tok.p, 32);
        slot[32] = '\0';
    }
    if (sl_vec_append(&in->state, state->via.bin.ptr, 1, state->via.bin.size) == SIZE_MAX &&
        state->via.bin.size) {
        in_refuse(srv, c, in, "internal", "out of memory");
        return false;
    }
    const msgpack_object *rels = sl_obj_get(root, "relations");
    bool ok = !rels || (rels->type == MSGPACK_OBJECT_ARRAY && rels->via.array.size % 3 == 0);
    for (uint32_t i = 0; ok && rels && i < rels->via.array.size; i += 3) {
        uint64_t k;
        sl_relation_pair *r = sl_vec_push(&in->rels, sizeof *r);
        ok = r && sl_obj_u64(&rels->via.array.ptr[i], &r->watcher) &&
             sl_obj_u64(&rels->via.array.ptr[i + 1], &r->target) &&
             sl_obj_u64(&rels->via.array.ptr[i + 2], &k) &&
             (k == SL_REL_FORCE || k == SL_REL_NEVER);
        if (r)
            r->rel = ok ? (sl_relation)k : SL_REL_NONE;
    }
    if (!ok) {
        in_refuse(srv, c, in, "bad_message", "handoff.begin: relations is not a flat array of "
                  "[watcher, target, kind (1 force, 2 never)]");
        return false;
    }
    const msgpack_object *subs = sl_obj_get(root, "subs");
    ok = !subs || (subs->type == MSGPACK_OBJECT_ARRAY && subs->via.array.size % 2 == 0);
    for (uint32_t i = 0; ok && subs && i < subs->via.array.size; i++) {
        uint64_t v;
        uint32_t *p = sl_vec_push(&in->subs, sizeof *p);
        ok = p && sl_obj_u64(&subs->via.array.ptr[i], &v) &&
             (i % 2 ? v && v <= UINT32_MAX : v < in->tokens.n);
        if (p)
            *p = (uint32_t)v;
    }
    if (!ok) {
        in_refuse(srv, c, in, "bad_message", "handoff.begin: subs is not a flat array of "
                  "[session, group]");
        return false;
    }
    return true;
}

/* One entity item (pack_entity). The bands, cap and counts are checked when the space is
 * built (sl_space_import). */
static bool read_entity(handoff_in *in, const msgpack_object *it)
{
    if (it->type != MSGPACK_OBJECT_ARRAY || it->via.array.size < 9 || it->via.array.size > 16)
        return false;
    const msgpack_object *f = it->via.array.ptr;
    sl_entity_info info = {0};
    uint64_t layer, mask, owner = UINT32_MAX, sees;
    if (!sl_obj_u64(&f[0], &info.id) || !sl_obj_f32(&f[1], &info.x) ||
        !sl_obj_f32(&f[2], &info.y) || !sl_obj_f32(&f[3], &info.radius) ||
        !sl_obj_u64(&f[4], &layer) || layer > 31 || !sl_obj_u64(&f[5], &mask) ||
        mask > UINT32_MAX || (f[6].type != MSGPACK_OBJECT_NIL &&
                              (!sl_obj_u64(&f[6], &owner) || owner >= in->tokens.n)) ||
        f[7].type != MSGPACK_OBJECT_MAP || !sl_obj_u64(&f[8], &sees) ||
        sees >= in->want_ents)
        return false;
    if (it->via.array.size >= 10 && f[9].type != MSGPACK_OBJECT_NIL) {
        if (!sl_obj_f32(&f[9], &info.hysteresis) || !(info.hysteresis >= 0) ||
            !isfinite(info.hysteresis))
            return false;
        info.own_hysteresis = true;
    }
    uint32_t nf = it->via.array.size;
    if (nf >= 12 && f[11].type != MSGPACK_OBJECT_NIL) {
        if (f[11].type != MSGPACK_OBJECT_BOOLEAN)
            return false;
        info.always = f[11].via.boolean;
    }
    int64_t prio = 0;
    if (nf >= 13 && f[12].type != MSGPACK_OBJECT_NIL &&
        (!sl_obj_i64(&f[12], &prio) || prio < INT32_MIN || prio > INT32_MAX))
        return false;
    info.priority = (int32_t)prio;
    info.candidates = (uint32_t)sees;
    uint64_t group = 0;
    if (nf >= 15 && f[14].type != MSGPACK_OBJECT_NIL &&
        (!sl_obj_u64(&f[14], &group) || group > UINT32_MAX))
        return false;
    if (nf == 16 && f[15].type != MSGPACK_OBJECT_NIL && !sl_obj_f32(&f[15], &info.z))
        return false;           /* (its range is the space's to check: sl_space_import) */
    info.group = (uint32_t)group;
    if (nf >= 14 && f[13].type != MSGPACK_OBJECT_NIL) {
        const msgpack_object *c = f[13].via.array.ptr;
        uint64_t cap, cand;
        if (f[13].type != MSGPACK_OBJECT_ARRAY || f[13].via.array.size != 3 ||
            !sl_obj_u64(&c[0], &cap) || !cap || cap > UINT32_MAX ||
            !sl_obj_f32(&c[1], &info.cap_margin) || !sl_obj_u64(&c[2], &cand) ||
            cand >= in->want_ents)
            return false;
        info.cap = (uint32_t)cap;
        info.candidates = (uint32_t)cand;
    }
    if (it->via.array.size >= 11 && f[10].type != MSGPACK_OBJECT_NIL) {
        const msgpack_object *b = &f[10];
        if (b->type != MSGPACK_OBJECT_ARRAY || b->via.array.size % 2 ||
            b->via.array.size > 2 * SL_LOD_BANDS)
            return false;
        info.nlod = b->via.array.size / 2;
        for (uint32_t i = 0; i < info.nlod; i++) {
            uint64_t k;
            if (!sl_obj_f32(&b->via.array.ptr[2 * i], &info.lod[i].distance) ||
                !sl_obj_u64(&b->via.array.ptr[2 * i + 1], &k) || k > UINT32_MAX)
                return false;
            info.lod[i].period = (uint32_t)k;
        }
    }
    info.sees = (uint32_t)sees;
    info.layer = (uint32_t)layer;
    info.mask = (uint32_t)mask;
    sl_entity_info *e = sl_vec_push(&in->ents, sizeof *e);
    uint32_t *o = e ? sl_vec_push(&in->owner, sizeof *o) : NULL;
    if (!o)
        return false;
    *e = info;
    *o = (uint32_t)owner;
    const msgpack_object_map *pm = &f[7].via.map;
    for (uint32_t i = 0; i < pm->size; i++) {
        sl_str key;
        sl_value v;
        if (!sl_obj_str(&pm->ptr[i].key, &key) || !key.n ||
            !sl_obj_value(&pm->ptr[i].val, &v))
            return false;
        in_prop *p = sl_vec_push(&in->props, sizeof *p);
        if (!p)
            return false;
        *p = (in_prop){.id = info.id, .klen = key.n, .v = v};
        p->key = sl_vec_append(&in->arena, key.p, 1, key.n);
        p->str = v.type == SL_VALUE_STRING ? sl_vec_append(&in->arena, v.s, 1, v.len) : 0;
        if (p->key == SIZE_MAX || p->str == SIZE_MAX)
            return false;
        p->v.s = NULL;          /* (set from the arena when applied) */
    }
    return true;
}

/* One region item (pack_region). The shape is checked when the space is built. */
static bool read_region(handoff_in *in, const msgpack_object *it)
{
    if (it->type != MSGPACK_OBJECT_ARRAY || it->via.array.size != 6)
        return false;
    const msgpack_object *f = it->via.array.ptr;
    in_region r = {.owner = UINT32_MAX, .at = in->rvals.n, .m = in->rids.n};
    uint64_t kind, mask, owner;
    if (!sl_obj_u64(&f[0], &r.id) || !sl_obj_u64(&f[1], &kind) || kind > 2 ||
        !sl_obj_u64(&f[2], &mask) || mask > UINT32_MAX ||
        (f[3].type != MSGPACK_OBJECT_NIL &&
         (!sl_obj_u64(&f[3], &owner) || owner >= in->tokens.n)) ||
        f[4].type != MSGPACK_OBJECT_ARRAY || f[5].type != MSGPACK_OBJECT_ARRAY)
        return false;
    uint32_t nv = f[4].via.array.size;
    if (nv != (kind == 0 ? 3 : kind == 1 ? 4 : nv) || (kind == 2 && (nv % 2 || nv < 6 ||
                                                                     nv > 2 * SL_REGION_VERTICES)))
        return false;
    if (f[3].type != MSGPACK_OBJECT_NIL)
        r.owner = (uint32_t)owner;
    r.g = (sl_region){.kind = (sl_region_kind)kind, .mask = (uint32_t)mask, .n = nv / 2};
    for (uint32_t i = 0; i < nv; i++) {
        float *v = sl_vec_push(&in->rvals, sizeof *v);
        if (!v || !sl_obj_f32(&f[4].via.array.ptr[i], v))
            return false;
    }
    uint32_t nm = f[5].via.array.size;
    for (uint32_t i = 0; i < nm; i++) {
        uint64_t *v = sl_vec_push(&in->rids, sizeof *v);
        if (!v || !sl_obj_u64(&f[5].via.array.ptr[i], v))
            return false;
    }
    in_region *last = in->regions.n ? (in_region *)in->regions.p + in->regions.n - 1 : NULL;
    in->items++;
    if (last && last->id == r.id) {     /* more of the region before: its members go on */
        in->rvals.n -= nv;
        last->nm += nm;
        return true;
    }
    r.nm = nm;
    in_region *p = sl_vec_push(&in->regions, sizeof *p);
    if (p)
        *p = r;
    return p != NULL;
}

/* The items of a handoff.entities frame (kind 'e'), of a pairs or shown one ('p', 's'), or
 * of a regions one ('r'). */
static bool read_items(handoff_in *in, const msgpack_object *root, char kind)
{
    const msgpack_object *items = sl_obj_get(root, "items");
    if (!items || items->type != MSGPACK_OBJECT_ARRAY)
        return false;
    const msgpack_object *it = items->via.array.ptr;
    uint32_t n = items->via.array.size;
    if (kind == 'r') {
        for (uint32_t i = 0; i < n; i++)
            if (!read_region(in, &it[i]))
                return false;
        return in->items <= in->want_regions;
    }
    if (kind != 'e') {
        sl_vec *ids = kind == 'p' ? &in->pairs : &in->shown;
        if (n % 2)
            return false;
        for (uint32_t i = 0; i < n; i++) {
            uint64_t *v = sl_vec_push(ids, sizeof *v);
            if (!v || !sl_obj_u64(&it[i], v))
                return false;
        }
        return ids->n / 2 <= (kind == 'p' ? in->want_pairs : in->want_shown);
    }
    for (uint32_t i = 0; i < n; i++)
        if (!read_entity(in, &it[i]))
            return false;
    return in->ents.n <= in->want_ents;
}

/* A handoff.* frame from a peer session. */
static void in_frame(sl_server *srv, sl_conn *c, const sl_str *t)
{
    const msgpack_object *root = sl_decoder_root(srv->dec);
    sl_str space = {0};
    sl_obj_str(sl_obj_get(root, "space"), &space);
    if (t->n == 13 && !memcmp(t->p, "handoff.begin", 13)) {
        if (read_begin(srv, c, root))
            sl_conn_flush(c);
        return;
    }
    handoff_in *in = in_by_space(srv, space.p, space.n);
    hosted_space *sp = sl__space_find(srv, space.p, space.n);
    if (!in && sp && t->n == 14 && !memcmp(t->p, "handoff.commit", 14))
        return;                 /* built already: the owner key's news came first */
    if (!in || in->peer != c) {
        in_refuse(srv, c, NULL, "bad_message", "a handoff frame without handoff.begin");
        return;
    }
    char what[32];
    snprintf(what, sizeof what, "%.*s", (int)(t->n < 31 ? t->n : 31), t->p);
    if (!strcmp(what, "handoff.entities") || !strcmp(what, "handoff.pairs") ||
        !strcmp(what, "handoff.shown") || !strcmp(what, "handoff.regions")) {
        if (in->complete || !read_items(in, root, what[8]))
            in_refuse(srv, c, in, "bad_message", "handoff: a malformed or surplus item");
    } else if (!strcmp(what, "handoff.end")) {
        if (in->ents.n != in->want_ents || in->pairs.n / 2 != in->want_pairs ||
            in->shown.n / 2 != in->want_shown || in->items != in->want_regions) {
            in_refuse(srv, c, in, "bad_message", "handoff.end: entities or pairs missing");
            return;
        }
        in->complete = true;
        reply(srv, c, "handoff.ready", in->space);
        sl__log(srv, "space %s: snapshot from node %s received in %.1f ms (%zu entities, %zu "
                "pairs, %zu sessions); waiting for the commit", in->space, in->from,
                sl_now_ms() - in->at_ms, in->ents.n, in->pairs.n / 2, in->tokens.n);
    } else if (!strcmp(what, "handoff.commit")) {
        uint64_t epoch = 0, from_epoch = 0;
        if (!in->complete || !sl_obj_u64(sl_obj_get(root, "epoch"), &epoch) ||
            !sl_obj_u64(sl_obj_get(root, "from_epoch"), &from_epoch) ||
            from_epoch != in->from_epoch) {
            in_refuse(srv, c, in, "bad_message", "handoff.commit: no complete snapshot of "
                      "that epoch");
            return;
        }
        in->committed = true;
        in->epoch = epoch;
        const msgpack_object *fz = sl_obj_get(root, "frozen_ms");
        in->frozen_ms = fz && fz->type == MSGPACK_OBJECT_FLOAT64 ? fz->via.f64 : 0;
        in->commit_ms = sl_now_ms();
        if (srv->adopt_fn)
            srv->adopt_fn(srv->adopt_ud, in->space, epoch, in->from_epoch);
    } else if (!strcmp(what, "handoff.abort")) {
        sl__log(srv, "space %s: handoff from node %s aborted by its source", in->space,
                in->from);
        unlist(&srv->incoming, in);
        in_free(in);
    } else {
        in_refuse(srv, c, in, "unknown_type", "unknown handoff message");
    }
    sl_conn_flush(c);
}

bool sl__handoff_frame(sl_server *srv, sl_conn *c, session *s, const sl_msg *m,
                       sl_decode_rc rc)
{
    handoff_out *const *p = srv->outgoing.p;
    for (size_t i = 0; i < srv->outgoing.n; i++)
        if (p[i]->peer == c) {
            out_frame(srv, p[i], m);
            return true;
        }
    if (!s || rc != SL_DECODE_UNKNOWN)
        return false;
    sl_str t = {0};
    sl_obj_str(sl_obj_get(sl_decoder_root(srv->dec), "t"), &t);
    if (t.n < 8 || memcmp(t.p, "handoff.", 8))
        return false;
    if (!s->peer) {
        sl_enc_error(sl_conn_out(c), false, 0, "forbidden", "handoff messages come only "
                     "from nodes of the cluster (hello with its secret)");
        return true;
    }
    in_frame(srv, c, &t);
    return true;
}

void sl__handoff_conn_closed(sl_server *srv, sl_conn *c)
{
    handoff_out *const *p = srv->outgoing.p;
    for (size_t i = 0; i < srv->outgoing.n; i++)
        if (p[i]->peer == c) {
            handoff_out *ho = p[i];
            ho->peer = NULL;
            /* Before the target said it holds the snapshot: given up (no commit can come).
             * After: the cluster decides (the commit may be under way). */
            if (ho->state < HO_READY)
                out_end(srv, ho, "the connection to the target was lost");
            return;
        }
    handoff_in *const *q = srv->incoming.p;
    for (size_t i = 0; i < srv->incoming.n; i++)
        if (q[i]->peer == c) {
            handoff_in *in = q[i];
            in->peer = NULL;
            if (!in->complete) {        /* half a snapshot is nothing */
                unlist(&srv->incoming, in);
                in_free(in);
            }
            return;
        }
}

bool sl__handoff_has_token(const sl_server *srv, const char *token, size_t n)
{
    handoff_in *const *p = srv->incoming.p;
    for (size_t i = 0; i < srv->incoming.n; i++) {
        const char *tok = p[i]->tokens.p;
        for (size_t k = 0; p[i]->complete && k < p[i]->tokens.n; k++)
            if (n == 32 && !memcmp(tok + 33 * k, token, 32))
                return true;
    }
    return false;
}

handoff_in *sl__handoff_committed(sl_server *srv, const char *name, size_t n)
{
    handoff_in *in = in_by_space(srv, name, n);
    return in && in->committed ? in : NULL;
}

void sl_server_handoff_adopted(sl_server *srv, const char *space, uint64_t epoch,
                               uint64_t from_epoch)
{
    handoff_in *in = in_by_space(srv, space, strlen(space));
    if (!in || !in->complete)
        return;
    if (in->from_epoch == from_epoch) {
        if (!in->committed)
            in->commit_ms = sl_now_ms();
        in->committed = true;
        in->epoch = epoch;
    } else {                    /* the space went another way: this snapshot is history */
        unlist(&srv->incoming, in);
        in_free(in);
    }
}

void sl__handoff_drop(sl_server *srv, handoff_in *in)
{
    unlist(&srv->incoming, in);
    in_free(in);
}

const char *sl__handoff_state(const handoff_in *in, size_t *len)
{
    *len = in->state.n;
    return in->state.n ? in->state.p : NULL;
}

/* The snapshot's owners and props into sp (its engine space imported already). */
static int build_owners(sl_server *srv, hosted_space *sp, handoff_in *in, char *err,
                        size_t len)
{
    /* Owners: static, or the parked session of the source's token. */
    session **by_token = calloc(in->tokens.n ? in->tokens.n : 1, sizeof *by_token);
    if (!by_token)
        return sl_fail(err, len, SL_ENOMEM, "out of memory");
    const char *tok = in->tokens.p;
    for (size_t i = 0; i < in->tokens.n; i++)
        by_token[i] = sl__session_park(srv, tok + 33 * i);
    const sl_entity_info *e = in->ents.p;
    const uint32_t *o = in->owner.p;
    int rc = 0;
    for (size_t i = 0; i < in->ents.n && !rc; i++) {
        session *s = o[i] == UINT32_MAX ? NULL : by_token[o[i]];
        owned *ow = s ? sl_vec_push(&s->owned, sizeof *ow) : NULL;
        if ((o[i] != UINT32_MAX && !ow) ||
            sl_idmap_put(&sp->owners, NULL, e[i].id, s ? s->idx + 1 : STATIC_OWNER))
            rc = sl_fail(err, len, SL_ENOMEM, "out of memory (owners)");
        else if (s) {
            *ow = (owned){sp->serial, e[i].id};
            s->live++;
        }
    }
    /* Regions, with their members and owners. */
    const in_region *rg = in->regions.p;
    const float *rv = in->rvals.p;
    const uint64_t *rm = in->rids.p;
    for (size_t i = 0; !rc && i < in->regions.n; i++) {
        sl_region g = rg[i].g;
        const float *v = rv + rg[i].at;
        if (g.kind == SL_REGION_POLYGON)
            g.xy = v;
        else if (g.kind == SL_REGION_CIRCLE)
            g.x = v[0], g.y = v[1], g.r = v[2];
        else
            g.x = v[0], g.y = v[1], g.x1 = v[2], g.y1 = v[3];
        if (sl_space_restore_region(sp->s, rg[i].id, &g, rm + rg[i].m, rg[i].nm))
            rc = sl_fail(err, len, SL_EINVAL, "region %llu: %s",
                         (unsigned long long)rg[i].id, sl_space_error(sp->s));
        session *s = rc || rg[i].owner == UINT32_MAX ? NULL : by_token[rg[i].owner];
        owned *ow = s ? sl_vec_push(&s->regions, sizeof *ow) : NULL;
        if (s && (!ow || sl_idmap_put(&sp->region_owners, NULL, rg[i].id, s->idx + 1)))
            rc = sl_fail(err, len, SL_ENOMEM, "out of memory (regions)");
        else if (ow)
            *ow = (owned){sp->serial, rg[i].id};
    }
    const uint32_t *sub = in->subs.p;
    for (size_t i = 0; !rc && i + 1 < in->subs.n; i += 2)
        if (by_token[sub[i]] && sl__group_subscribe(sp, by_token[sub[i]], sub[i + 1], true))
            rc = sl_fail(err, len, SL_ENOMEM, "out of memory (subscriptions)");
    free(by_token);
    in_prop *p = in->props.p;
    const char *arena = in->arena.p;
    char key[128];
    for (size_t i = 0; !rc && sp->h && i < in->props.n; i++) {
        snprintf(key, sizeof key, "%.*s", (int)(p[i].klen < 127 ? p[i].klen : 127),
                 arena + p[i].key);
        if (p[i].v.type == SL_VALUE_STRING)
            p[i].v.s = arena + p[i].str;
        sl_lua_restore_prop(sp->h, p[i].id, key, &p[i].v);
    }
    return rc;
}

int sl__handoff_build(sl_server *srv, hosted_space *sp, handoff_in *in, char *err, size_t len)
{
    sl_space_state st = {in->ents.p, in->ents.n,  in->rels.p,      in->rels.n,
                         in->pairs.p, in->pairs.n / 2, in->shown.p, in->shown.n / 2,
                         in->ticks};
    /* The space here was built from the same definition; a source whose space has another
     * depth (heights that would not fit, or be lost) is refused. */
    float depth = sl_space_config_of(sp->s)->depth;
    int rc = depth == in->depth ? sl_space_import(sp->s, &st)
           : sl_fail(err, len, SL_EINVAL, "the source's space has depth %g, this node's %g",
                     (double)in->depth, (double)depth);
    if (rc && depth == in->depth)
        rc = sl_fail(err, len, rc, "%s", sl_space_error(sp->s));
    else
        rc = build_owners(srv, sp, in, err, len);
    if (!rc) {
        sp->ticks = in->ticks;
        srv->handoffs_taken++;
        srv->last_freeze_ms = in->frozen_ms + (sl_now_ms() - in->commit_ms);
        sl__log(srv, "space %s: built from node %s's snapshot (%zu entities, tick %llu; "
                "frozen %.1f ms from its freeze there to serving here)", sp->name, in->from,
                in->ents.n, (unsigned long long)in->ticks, srv->last_freeze_ms);
    }
    unlist(&srv->incoming, in);
    in_free(in);
    return rc;
}

void sl_server_on_adopt(sl_server *srv,
                        void (*fn)(void *ud, const char *space, uint64_t epoch,
                                   uint64_t from_epoch),
                        void *ud)
{
    srv->adopt_fn = fn;
    srv->adopt_ud = ud;
}

void sl_server_set_secret(sl_server *srv, const char *secret)
{
    snprintf(srv->secret, sizeof srv->secret, "%s", secret ? secret : "");
}

void sl__handoff_free_all(sl_server *srv)
{
    handoff_out **p = srv->outgoing.p;
    for (size_t i = 0; i < srv->outgoing.n; i++)
        free(p[i]);
    sl_vec_free(&srv->outgoing);
    handoff_in **q = srv->incoming.p;
    for (size_t i = 0; i < srv->incoming.n; i++)
        in_free(q[i]);
    sl_vec_free(&srv->incoming);
}
