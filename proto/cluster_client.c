/*
 * cluster_client.c: a cluster-aware client (see cluster_client.h).
 *
 * Every request the caller makes becomes a `pend` record that keeps what is needed to send
 * it again (kind, space, arguments), and is sent with a request id of the library's own so
 * that every answer, `ok` or error, can be matched to it: the caller's rid only comes back in
 * the SL_CC_OK / SL_CC_ERROR event. A pend is in one of three states: HELD (not sent: its
 * space has no known owner, or the owner changed and it waits to go there), SENT (to one
 * node, under one rid) or WAIT (answered not_owner, sent again at `due`).
 *
 * Routing. A space's route is the node that serves it, learned from a `where` answer, a
 * `moved` error or a `space.moved` notice, each with the ownership's epoch. A space with no
 * route holds its requests and has one `where` out (to any live node). A request answered
 * `moved` is HELD again and the space re-homed to the owner named; `not_owner` waits
 * (50 ms doubling to 250 ms) and goes again, up to retry_ms, then fails.
 *
 * The record. What the server confirmed (`ok`) is kept per space: each entity's id, place,
 * radius, layer and mask (moves update the place), its settings (own hysteresis, always
 * relevant, cap and margin, priority, vision group: `set`), and the session's group
 * subscriptions. It is confirmed, not intended, state: a request refused by the server never
 * enters it. A re-add sends the settings and subscriptions again after the entities, as
 * part of the re-add (`again`).
 *
 * Re-homing (rehome): when a space gets a new node or epoch, every recorded entity is added
 * again there (READD pends, sent before anything else of the space), then, once every re-add
 * is answered ok, every pend of the space not yet answered goes there in its original order.
 * (Not pipelined behind the re-adds: a new owner named by another node's `moved` may answer
 * the first re-adds not_owner and the next ones ok, as it starts serving in between; a move
 * sent behind them would find some entities missing.) Why this is exact: answers on one
 * connection come in order, so when the old owner says `moved` or `space.moved`, every
 * request it applied before has already been answered `ok` (and is in the record), and
 * every later one will be refused (so it must go again). When the connection is lost, the
 * node is gone with its state: the record plus the requests not answered is what the caller
 * asked for. The old rids are forgotten, so late answers from the old owner are ignored.
 *
 * Epochs. Tick frames are handed out only from the space's route node and not older than
 * its epoch; each re-home queues an SL_CC_EPOCH event before any tick of the new owner.
 *
 * Sending is done by pump(): it walks the pends in order (re-adds first), sends what can go
 * and, when a send fails, takes the node as lost and starts over. Nothing else sends, so a
 * lost node never recurses.
 */
#include "proto/cluster_client.h"

#include "base/clock.h"
#include "base/vec.h"

#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 64
#define MAX_NODES 32
#define NODE_RETRY_MS 500       /* a node whose connection failed is tried again after this */
#define REFUSED_PAUSE_MS 200    /* a frame refused by the rate limit goes again after this */
#define PROBE_MS 300            /* a node silent this long with requests out gets a ping */
#define READD_BATCH 4096u       /* entities of one `adds` frame when re-adding */

/* ---- a uint64 -> uintptr_t map (linear probing, backward-shift deletion) ------------------ */

typedef struct u64map {
    uint64_t *k;
    uintptr_t *v;       /* 0: empty slot */
    size_t cap, n;      /* cap: a power of two */
} u64map;

static size_t slot_of(uint64_t k, size_t cap)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

static uintptr_t map_get(const u64map *m, uint64_t k)
{
    if (!m->cap)
        return 0;
    for (size_t i = slot_of(k, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (!m->v[i])
            return 0;
        if (m->k[i] == k)
            return m->v[i];
    }
}

static int map_put(u64map *m, uint64_t k, uintptr_t v);

static int map_grow(u64map *m)
{
    u64map g = {calloc(m->cap ? m->cap * 2 : 64, sizeof(uint64_t)),
                calloc(m->cap ? m->cap * 2 : 64, sizeof(uintptr_t)), m->cap ? m->cap * 2 : 64, 0};
    if (!g.k || !g.v) {
        free(g.k);
        free(g.v);
        return SL_ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->v[i])
            map_put(&g, m->k[i], m->v[i]);
    free(m->k);
    free(m->v);
    *m = g;
    return 0;
}

/* Sets k to v (nonzero), replacing. */
static int map_put(u64map *m, uint64_t k, uintptr_t v)
{
    if ((m->n + 1) * 4 > m->cap * 3 && map_grow(m))
        return SL_ENOMEM;
    size_t i = slot_of(k, m->cap);
    while (m->v[i] && m->k[i] != k)
        i = (i + 1) & (m->cap - 1);
    m->n += !m->v[i];
    m->k[i] = k;
    m->v[i] = v;
    return 0;
}

static void map_del(u64map *m, uint64_t k)
{
    if (!m->cap)
        return;
    size_t i = slot_of(k, m->cap);
    while (m->v[i] && m->k[i] != k)
        i = (i + 1) & (m->cap - 1);
    if (!m->v[i])
        return;
    m->v[i] = 0;
    m->n--;
    /* Move back the entries that probed past the hole. */
    for (size_t j = (i + 1) & (m->cap - 1); m->v[j]; j = (j + 1) & (m->cap - 1)) {
        size_t home = slot_of(m->k[j], m->cap);
        bool between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (between)
            continue;
        m->k[i] = m->k[j];
        m->v[i] = m->v[j];
        m->v[j] = 0;
        i = j;
    }
}

static void map_free(u64map *m)
{
    free(m->k);
    free(m->v);
    memset(m, 0, sizeof *m);
}

/* ---- the client's state -------------------------------------------------------------------- */

typedef sl_client_entity ent;

typedef struct space {
    char name[NAME_MAX_LEN + 1];
    int route;              /* node index, -1: none known */
    uint64_t epoch;
    bool where_out;         /* a WHERE pend exists for it */
    bool blocked;           /* (pump) a pend of it could not go: the later ones wait */
    sl_vec ents;            /* ent, the record */
    u64map at;              /* id -> index in ents + 1 */
    sl_vec sets;            /* set: the entities' settings (set_default() left out) */
    u64map set_at;          /* id -> index in sets + 1 */
    sl_vec subs;            /* uint32_t: groups subscribed */
    sl_vec regions;         /* setting (S_REGION): the regions set, as confirmed */
} space;

/* An entity's settings as the server confirmed them. */
typedef struct set {
    uint64_t id;
    float hyst;             /* NaN: the space's */
    bool always;
    uint32_t cap;
    float margin;
    int32_t prio;
    uint32_t group;
    uint32_t nlod;          /* its LOD bands (none: 0) */
    sl_client_band lod[8];
} set;

/* One setting a K_SET request changes. */
enum { S_HYST, S_ALWAYS, S_CAP, S_PRIORITY, S_GROUP, S_LOD, S_SUBSCRIBE, S_REGION };
typedef struct setting {
    int what;
    uint64_t id;            /* (S_SUBSCRIBE: none) */
    float f, margin;        /* hysteresis; cap margin */
    uint32_t u;             /* always (0 / 1), cap, group; subscribe: group */
    int32_t i;              /* priority; subscribe: 1 on, 0 off */
    uint32_t nlod;          /* LOD bands */
    sl_client_band lod[8];
    /* S_REGION (id: the region's): shape "circle", "rect", "poly", or "" to remove it;
     * nv coordinates in v (sl_client_region's); mask in u */
    char shape[8];
    uint32_t nv;
    float v[128];
} setting;

typedef struct node {
    char listen[64];
    sl_client *cl;          /* NULL: not open */
    double retry_at;        /* after a failure: not before this sl_now_ms */
    sl_vec sent;            /* uint64 rids in the order sent, not known answered */
    size_t head;            /* sent's first item not looked at */
    double rx_ms, probe_ms; /* when a frame last came from it; when a probe last went */
    double tokens, fill_ms; /* the frame budget (a token bucket) and when it was filled */
} node;

enum { K_ADD, K_ADDS, K_MOVE, K_MOVES, K_REMOVE, K_READD, K_CLAIM, K_WHERE, K_SET };
enum { P_HELD, P_SENT, P_WAIT };

typedef struct pend {
    int kind, state, sp, node;
    uint64_t rid, caller_rid;
    ent a;                  /* add: all of it; move: id, x, y; remove: id */
    ent *batch;             /* adds, readd: n entities, one `adds` frame */
    char token[33];         /* claim: the session on the space's old owner */
    setting set;            /* K_SET */
    bool again;             /* part of a re-add (sent first, answered to nobody) */
    uint64_t *ids;          /* moves */
    float *xy;
    uint32_t n;
    int hops, tries;
    double first_refused, due;
    bool done;
} pend;

/* An event the library makes (strings copied). */
typedef struct made {
    sl_cc_kind kind;
    char space[NAME_MAX_LEN + 1], code[32], msg[200], node[64];
    uint64_t rid, epoch;
    bool continued;
} made;

struct sl_cclient {
    sl_cclient_config cfg;
    node nodes[MAX_NODES];
    int nnodes;
    space **spaces;
    size_t nspaces, capspaces;
    pend **p;               /* in the order made; done ones compacted away by pump */
    size_t np, capp;
    u64map by_rid;          /* rid -> pend* */
    uint64_t next_rid;
    made *q;                /* made events, a queue */
    size_t qhead, qn, qcap;
    made cur;               /* the made event handed out last */
    sl_client_frame frame;
    char code[32], msg[256];    /* an error frame's, handed out */
    int rr;                 /* the node read first next time (round robin) */
    int held_tick;          /* a tick in `frame`, from this node + 1, handed out after the
                             * SL_CC_EPOCH queued before it (0: none) */
    sl_cclient_stats st;
};

/* ---- small helpers -------------------------------------------------------------------------- */

static bool split(const char *addr, char *host, size_t hlen, int *port)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= hlen)
        return false;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    *port = atoi(colon + 1);
    return *port > 0;
}

static int node_find_or_add(sl_cclient *c, const char *listen)
{
    for (int i = 0; i < c->nnodes; i++)
        if (!strcmp(c->nodes[i].listen, listen))
            return i;
    if (c->nnodes == MAX_NODES || strlen(listen) >= sizeof c->nodes[0].listen)
        return -1;
    node *n = &c->nodes[c->nnodes];
    memset(n, 0, sizeof *n);
    snprintf(n->listen, sizeof n->listen, "%s", listen);
    return c->nnodes++;
}

/* Opens node i's connection when it is not open (and not in its retry pause): true when
 * open. Learns the nodes its welcome lists. */
static bool node_open(sl_cclient *c, int i, char *err, size_t errlen)
{
    node *n = &c->nodes[i];
    if (n->cl)
        return true;
    if (sl_now_ms() < n->retry_at)
        return false;
    char host[64];
    int port;
    char e2[256];
    if (!err) {
        err = e2;
        errlen = sizeof e2;
    }
    if (!split(n->listen, host, sizeof host, &port) ||
        sl_client_connect(&n->cl, host, port, c->cfg.token, NULL, err, errlen)) {
        n->cl = NULL;
        n->retry_at = sl_now_ms() + NODE_RETRY_MS;
            return false;
    }
    const char *l;
    for (size_t k = 0; (l = sl_client_node(n->cl, k)); k++)
        node_find_or_add(c, l);
    return true;
}

static space *space_get(sl_cclient *c, const char *name, bool make, int *idx)
{
    for (size_t i = 0; i < c->nspaces; i++)
        if (!strcmp(c->spaces[i]->name, name)) {
            if (idx)
                *idx = (int)i;
            return c->spaces[i];
        }
    if (!make || strlen(name) > NAME_MAX_LEN || !*name)
        return NULL;
    space *s = calloc(1, sizeof *s);
    if (!s || sl_grow(NULL, (void **)&c->spaces, &c->capspaces, c->nspaces + 1,
                      sizeof *c->spaces)) {
        free(s);
        return NULL;
    }
    snprintf(s->name, sizeof s->name, "%s", name);
    s->route = -1;
    c->spaces[c->nspaces] = s;
    if (idx)
        *idx = (int)c->nspaces;
    c->nspaces++;
    return s;
}

static made *push_made(sl_cclient *c, sl_cc_kind kind, const char *sp, uint64_t rid,
                       uint64_t epoch, const char *code, const char *msg, const char *nd)
{
    if (c->qn == c->qcap) {
        size_t cap = c->qcap ? c->qcap * 2 : 16;
        made *q = malloc(cap * sizeof *q);
        if (!q)
            return NULL;    /* (out of memory: the event is lost) */
        for (size_t i = 0; i < c->qn; i++)
            q[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = q;
        c->qcap = cap;
        c->qhead = 0;
    }
    made *m = &c->q[(c->qhead + c->qn++) % c->qcap];
    memset(m, 0, sizeof *m);
    m->kind = kind;
    m->rid = rid;
    m->epoch = epoch;
    snprintf(m->space, sizeof m->space, "%s", sp ? sp : "");
    snprintf(m->code, sizeof m->code, "%s", code ? code : "");
    snprintf(m->msg, sizeof m->msg, "%s", msg ? msg : "");
    snprintf(m->node, sizeof m->node, "%s", nd ? nd : "");
    return m;
}

static void pend_free(pend *p)
{
    free(p->batch);
    free(p->ids);
    free(p->xy);
    free(p);
}

static pend *pend_new(sl_cclient *c, int kind, int sp, uint64_t caller_rid)
{
    if (sl_grow(NULL, (void **)&c->p, &c->capp, c->np + 1, sizeof *c->p))
        return NULL;
    pend *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->kind = kind;
    p->state = P_HELD;
    p->sp = sp;
    p->node = -1;
    p->caller_rid = caller_rid;
    c->p[c->np++] = p;
    return p;
}

/* Forgets p's rid (its answer, if it comes, is ignored). */
static void unsend(sl_cclient *c, pend *p)
{
    if (p->state == P_SENT)
        map_del(&c->by_rid, p->rid);
    p->state = P_HELD;
    p->node = -1;
}

static void pend_done(sl_cclient *c, pend *p)
{
    unsend(c, p);
    if (p->kind == K_WHERE)
        c->spaces[p->sp]->where_out = false;
    p->done = true;
}

/* Gives p up: an SL_CC_ERROR for the caller. */
static void pend_fail(sl_cclient *c, pend *p, const char *code, const char *msg)
{
    c->st.failed++;
    if (p->kind != K_WHERE)
        push_made(c, SL_CC_ERROR, c->spaces[p->sp]->name, p->caller_rid, 0, code, msg, NULL);
    pend_done(c, p);
}

/* ---- the record -------------------------------------------------------------------------- */

static ent *rec_find(space *s, uint64_t id)
{
    uintptr_t k = map_get(&s->at, id);
    return k ? (ent *)s->ents.p + (k - 1) : NULL;
}

static void rec_put(space *s, const ent *e)
{
    ent *have = rec_find(s, e->id);
    if (have) {
        *have = *e;
        return;
    }
    size_t k = sl_vec_append(&s->ents, e, sizeof *e, 1);
    if (k != SIZE_MAX && map_put(&s->at, e->id, (uintptr_t)k + 1))
        s->ents.n--;
}

static void rec_move(space *s, uint64_t id, float x, float y)
{
    ent *e = rec_find(s, id);
    if (e) {
        e->x = x;
        e->y = y;
    }
}

static set *set_find(space *s, uint64_t id)
{
    uintptr_t k = map_get(&s->set_at, id);
    return k ? (set *)s->sets.p + (k - 1) : NULL;
}

/* Applies a confirmed setting to the record. */
static void set_put(space *s, const setting *st)
{
    if (st->what == S_REGION) {
        setting *r = s->regions.p;
        size_t i = 0;
        while (i < s->regions.n && r[i].id != st->id)
            i++;
        if (!st->shape[0] && i < s->regions.n)
            r[i] = r[--s->regions.n];
        else if (st->shape[0] && i < s->regions.n)
            r[i] = *st;
        else if (st->shape[0])
            sl_vec_append(&s->regions, st, sizeof *st, 1);
        return;
    }
    if (st->what == S_SUBSCRIBE) {
        uint32_t *g = s->subs.p;
        size_t i = 0;
        while (i < s->subs.n && g[i] != st->u)
            i++;
        if (st->i && i == s->subs.n)
            sl_vec_append(&s->subs, &st->u, sizeof st->u, 1);
        else if (!st->i && i < s->subs.n)
            g[i] = g[--s->subs.n];
        return;
    }
    set *e = set_find(s, st->id);
    if (!e) {
        set fresh = {.id = st->id, .hyst = NAN};
        size_t k = sl_vec_append(&s->sets, &fresh, sizeof fresh, 1);
        if (k == SIZE_MAX || map_put(&s->set_at, st->id, (uintptr_t)k + 1)) {
            s->sets.n -= k != SIZE_MAX;
            return;
        }
        e = (set *)s->sets.p + k;
    }
    switch (st->what) {
    case S_HYST: e->hyst = st->f < 0 ? NAN : st->f; break;
    case S_ALWAYS: e->always = st->u != 0; break;
    case S_CAP: e->cap = st->u; e->margin = st->margin; break;
    case S_PRIORITY: e->prio = st->i; break;
    case S_LOD:
        e->nlod = st->nlod;
        memcpy(e->lod, st->lod, sizeof e->lod);
        break;
    default: e->group = st->u; break;
    }
}

/* Removes the element of id from v (elements of `size` bytes that start with their uint64
 * id), indexed by m (id -> index + 1): the last element takes its place. */
static void indexed_del(sl_vec *v, u64map *m, uint64_t id, size_t size)
{
    uintptr_t k = map_get(m, id);
    if (!k)
        return;
    map_del(m, id);
    char *p = v->p;
    size_t i = k - 1, last = v->n - 1;
    if (i != last) {
        uint64_t moved;
        memcpy(p + i * size, p + last * size, size);
        memcpy(&moved, p + i * size, sizeof moved);
        map_put(m, moved, (uintptr_t)i + 1);
    }
    v->n--;
}

static void rec_del(space *s, uint64_t id)
{
    indexed_del(&s->sets, &s->set_at, id, sizeof(set));
    indexed_del(&s->ents, &s->at, id, sizeof(ent));
}

/* ---- routing ------------------------------------------------------------------------------ */

/* Whether p goes before the space's other requests: part of a re-add, or the claim. */
static inline bool first(const pend *p)
{
    return p->kind == K_READD || p->kind == K_CLAIM || p->again;
}

/* The space has no known owner: its requests wait, and a `where` goes out (pump). */
static void lose_space(sl_cclient *c, int si)
{
    space *s = c->spaces[si];
    s->route = -1;
    for (size_t i = 0; i < c->np; i++) {
        pend *p = c->p[i];
        if (p->done || p->sp != si)
            continue;
        if (first(p))
            pend_done(c, p);        /* the record is added again at the next re-home */
        else if (p->kind != K_WHERE)
            unsend(c, p);
    }
}

/* A setting sent again as part of a re-add. */
static void again(sl_cclient *c, int si, setting st)
{
    pend *p = pend_new(c, K_SET, si, 0);
    if (p) {
        p->set = st;
        p->again = true;
    }
}

/* Adds the record of space si again on its route (READD pends, in `adds` frames), then its
 * settings and subscriptions. */
static void readd_all(sl_cclient *c, int si)
{
    space *s = c->spaces[si];
    const ent *v = s->ents.p;
    for (size_t i = 0; i < s->ents.n; i += READD_BATCH) {
        uint32_t n = (uint32_t)(s->ents.n - i < READD_BATCH ? s->ents.n - i : READD_BATCH);
        pend *p = pend_new(c, K_READD, si, 0);
        if (p && !(p->batch = malloc(n * sizeof *p->batch)))
            pend_done(c, p);
        if (!p || !p->batch)
            break;              /* (out of memory: what is left is not added again) */
        memcpy(p->batch, v + i, n * sizeof *p->batch);
        p->n = n;
        c->st.readds += n;
    }
    const set *e = s->sets.p;
    for (size_t i = 0; i < s->sets.n; i++) {
        if (!isnan(e[i].hyst))
            again(c, si, (setting){.what = S_HYST, .id = e[i].id, .f = e[i].hyst});
        if (e[i].always)
            again(c, si, (setting){.what = S_ALWAYS, .id = e[i].id, .u = 1});
        if (e[i].cap)
            again(c, si, (setting){.what = S_CAP, .id = e[i].id, .u = e[i].cap,
                                   .margin = e[i].margin});
        if (e[i].prio)
            again(c, si, (setting){.what = S_PRIORITY, .id = e[i].id, .i = e[i].prio});
        if (e[i].group)
            again(c, si, (setting){.what = S_GROUP, .id = e[i].id, .u = e[i].group});
        if (e[i].nlod) {
            setting st = {.what = S_LOD, .id = e[i].id, .nlod = e[i].nlod};
            memcpy(st.lod, e[i].lod, sizeof st.lod);
            again(c, si, st);
        }
    }
    const uint32_t *g = s->subs.p;
    for (size_t i = 0; i < s->subs.n; i++)
        again(c, si, (setting){.what = S_SUBSCRIBE, .u = g[i], .i = 1});
    const setting *r = s->regions.p;
    for (size_t i = 0; i < s->regions.n; i++)
        again(c, si, r[i]);
}


/*
 * Space si is served by the node at `listen` under epoch: re-add the record there (or, after
 * a planned move, claim there the session `claim` of the old owner, which the entities came
 * with) and send it every pend of the space not answered (pump sends them, re-adds or the
 * claim first). Returns false when the news is stale or the node cannot be reached: after
 * its owner died, the other nodes name it (`moved`, same epoch) until its lease expires, so
 * an owner that does not answer is no owner: ask again later.
 */
static bool rehome(sl_cclient *c, int si, const char *listen, uint64_t epoch,
                   const char *claim)
{
    space *s = c->spaces[si];
    int to = node_find_or_add(c, listen);
    if (to >= 0 && to == s->route && epoch == s->epoch)
        return true;            /* what we knew */
    if (to < 0 || epoch < s->epoch || !node_open(c, to, NULL, 0))
        return false;
    s->route = to;
    s->epoch = epoch;
    c->st.rehomes++;
    c->st.last_rehome_ms = sl_now_ms();
    for (size_t i = 0; i < c->np; i++) {
        pend *p = c->p[i];
        if (p->done || p->sp != si)
            continue;
        if (first(p) || p->kind == K_WHERE) {
            pend_done(c, p);
        } else if (p->state != P_SENT || p->node != to) {
            unsend(c, p);
        }
    }
    pend *cl = claim && *claim ? pend_new(c, K_CLAIM, si, 0) : NULL;
    if (cl) {
        snprintf(cl->token, sizeof cl->token, "%s", claim);
        c->st.claims++;
    } else {
        readd_all(c, si);
    }
    made *m = push_made(c, SL_CC_EPOCH, s->name, 0, epoch, NULL, NULL, listen);
    if (m)
        m->continued = cl != NULL;
    return true;
}

/* Node i's connection is gone: every space it served waits for a new owner. */
static void node_lost(sl_cclient *c, int i)
{
    node *n = &c->nodes[i];
    if (n->cl) {
        sl_client_close(n->cl);
        n->cl = NULL;
        c->st.lost++;
    }
    n->retry_at = sl_now_ms() + NODE_RETRY_MS;
    n->sent.n = n->head = 0;
    for (size_t k = 0; k < c->nspaces; k++)
        if (c->spaces[k]->route == i)
            lose_space(c, (int)k);
    for (size_t k = 0; k < c->np; k++)
        if (!c->p[k]->done && c->p[k]->state == P_SENT && c->p[k]->node == i)
            unsend(c, c->p[k]);
}

/* A node to ask `where` (any that is open, else the first that opens): -1 if none now. */
static int any_node(sl_cclient *c)
{
    for (int i = 0; i < c->nnodes; i++)
        if (c->nodes[i].cl)
            return i;
    for (int i = 0; i < c->nnodes; i++)
        if (node_open(c, i, NULL, 0))
            return i;
    return -1;
}

static bool spend(sl_cclient *c, int i);

/* Keeps rid in node n's list of requests not known answered. */
static void note_sent(node *nd, uint64_t rid)
{
    if (nd->head > 0 && nd->head * 2 >= nd->sent.n) {
        memmove(nd->sent.p, (uint64_t *)nd->sent.p + nd->head,
                (nd->sent.n - nd->head) * sizeof(uint64_t));
        nd->sent.n -= nd->head;
        nd->head = 0;
    }
    if (!nd->sent.n)
        nd->probe_ms = sl_now_ms();     /* (its silence counts from now) */
    sl_vec_append(&nd->sent, &rid, sizeof rid, 1);  /* (out of memory: not inferred) */
}

/*
 * A node with requests out that has said nothing for PROBE_MS gets a ping with a rid: its
 * pong (answered()) shows which of the requests before it were refused by the rate limit
 * without an answer. Returns a node whose send failed, or -1.
 */
static int probe(sl_cclient *c, double now)
{
    for (int i = 0; i < c->nnodes; i++) {
        node *nd = &c->nodes[i];
        if (!nd->cl || nd->head >= nd->sent.n || now - nd->rx_ms < PROBE_MS ||
            now - nd->probe_ms < PROBE_MS)
            continue;
        if (!spend(c, i))
            continue;
        uint64_t rid = ++c->next_rid;
        nd->probe_ms = now;
        if (sl_client_ping(nd->cl, rid))
            return i;
        note_sent(nd, rid);
    }
    return -1;
}

/*
 * Takes one frame from node i's budget: false when it is spent. The server refuses frames
 * past its rate limit (default 2000 a second, a bucket of a second's worth) without an
 * answer, and counts by when frames reach it: frames sent evenly can arrive bunched, so the
 * library keeps well under (max_frames_per_s, default 1500, a bucket of a quarter second's
 * worth) rather than find out.
 */
static bool spend(sl_cclient *c, int i)
{
    node *nd = &c->nodes[i];
    double rate = c->cfg.max_frames_per_s > 0 ? c->cfg.max_frames_per_s : 1500;
    double burst = rate / 4 > 1 ? rate / 4 : 1;
    double now = sl_now_ms();
    if (nd->fill_ms == 0)
        nd->tokens = burst;
    else
        nd->tokens += (now - nd->fill_ms) * rate / 1000;
    if (nd->tokens > burst)
        nd->tokens = burst;
    nd->fill_ms = now;
    if (nd->tokens < 1)
        return false;
    nd->tokens -= 1;
    return true;
}

/* Sends p to node i: 0, 1 when i's frame budget is spent (try later), or SL_EIO (the
 * connection failed: the caller takes it as lost). */
static int send_setting(sl_client *cl, const char *sp, const setting *st, uint64_t rid)
{
    switch (st->what) {
    case S_HYST: return sl_client_hysteresis(cl, sp, st->id, st->f, rid);
    case S_ALWAYS: return sl_client_always(cl, sp, st->id, st->u != 0, rid);
    case S_CAP: return sl_client_cap(cl, sp, st->id, st->u, st->margin, rid);
    case S_PRIORITY: return sl_client_priority(cl, sp, st->id, st->i, rid);
    case S_GROUP: return sl_client_group(cl, sp, st->id, st->u, rid);
    case S_LOD: return sl_client_lod(cl, sp, st->id, st->lod, st->nlod, rid);
    case S_REGION:
        return st->shape[0] ? sl_client_region(cl, sp, st->id, st->shape, st->v, st->nv, st->u,
                                               rid)
                            : sl_client_unregion(cl, sp, st->id, rid);
    default: return sl_client_subscribe(cl, sp, st->u, st->i != 0, rid);
    }
}

static int send_to(sl_cclient *c, pend *p, int i)
{
    if (!node_open(c, i, NULL, 0))
        return SL_EIO;
    if (!spend(c, i))
        return 1;
    sl_client *cl = c->nodes[i].cl;
    const char *sp = c->spaces[p->sp]->name;
    uint64_t rid = ++c->next_rid;
    if (map_put(&c->by_rid, rid, (uintptr_t)p))
        return 0;           /* (out of memory: it stays held, to go at the next pump) */
    int rc;
    switch (p->kind) {
    case K_ADDS:
    case K_READD:
        rc = sl_client_adds(cl, sp, p->batch, p->n, rid);
        break;
    case K_CLAIM:
        rc = sl_client_claim(cl, sp, p->token, rid);
        break;
    case K_ADD:
        rc = sl_client_add_ex(cl, sp, p->a.id, p->a.x, p->a.y, p->a.r, p->a.layer, p->a.mask,
                              rid);
        break;
    case K_MOVE:
        rc = sl_client_move(cl, sp, p->a.id, p->a.x, p->a.y, rid);
        break;
    case K_MOVES:
        rc = sl_client_moves(cl, sp, p->ids, p->xy, p->n, rid);
        break;
    case K_REMOVE:
        rc = sl_client_remove(cl, sp, p->a.id, rid);
        break;
    case K_SET:
        rc = send_setting(cl, sp, &p->set, rid);
        break;
    default:
        rc = sl_client_where(cl, sp, rid);
        break;
    }
    if (rc) {
        map_del(&c->by_rid, rid);
        return SL_EIO;
    }
    c->st.resent += p->rid != 0 && p->kind != K_WHERE;
    note_sent(&c->nodes[i], rid);
    p->rid = rid;
    p->node = i;
    p->state = P_SENT;
    return 0;
}

/* Whether p may go now (held, or its wait over). */
static bool ready(const pend *p, double now)
{
    return !p->done && (p->state == P_HELD || (p->state == P_WAIT && p->due <= now));
}

/* One pass over the pends: re-adds (pass 0) then the rest (pass 1). Returns a node whose
 * send failed, or -1. */
static int pump_once(sl_cclient *c)
{
    double now = sl_now_ms();
    for (size_t k = 0; k < c->nspaces; k++)
        c->spaces[k]->blocked = false;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < c->np; i++) {
            pend *p = c->p[i];
            bool early = first(p);
            if (p->done || (pass == 0) != early)
                continue;
            space *s = c->spaces[p->sp];
            if (early)
                s->blocked = true;      /* the space's requests wait for every re-add's ok */
            if (p->state == P_SENT)
                continue;
            int to;
            if (p->kind == K_WHERE) {
                if (!ready(p, now))
                    continue;
                if (s->route >= 0) {        /* answered meanwhile */
                    pend_done(c, p);
                    continue;
                }
                to = any_node(c);
                if (to < 0) {
                    p->state = P_WAIT;
                    p->due = now + NODE_RETRY_MS;
                    continue;
                }
            } else if ((s->blocked && !early) || !ready(p, now)) {
                s->blocked = true;          /* nothing of the space overtakes it */
                continue;
            } else if (s->route < 0) {
                if (!s->where_out) {
                    s->where_out = true;
                    pend *w = pend_new(c, K_WHERE, p->sp, 0);
                    if (!w)
                        s->where_out = false;
                    else
                        w->first_refused = now;
                }
                p->state = P_HELD;
                s->blocked = true;
                continue;
            } else {
                to = s->route;
            }
            int rc = send_to(c, p, to);
            if (rc < 0)
                return to;
            if (rc > 0)
                s->blocked = true;          /* the node's frame budget is spent for now */
        }
    }
    return -1;
}

/* Sends what can go; takes nodes whose sends fail as lost. Also drops finished pends. */
static void pump(sl_cclient *c)
{
    for (int round = 0; round <= c->nnodes + 1; round++) {
        int bad = pump_once(c);
        if (bad < 0)
            break;
        node_lost(c, bad);
    }
    size_t k = 0;
    for (size_t i = 0; i < c->np; i++) {
        if (c->p[i]->done) {
            pend_free(c->p[i]);
        } else {
            c->p[k++] = c->p[i];
        }
    }
    c->np = k;
}

/* ---- answers ------------------------------------------------------------------------------ */

/* Whether a bad_items error (NULL: an ok) refused item i (it lists only the first 100
 * refused items: past those, an item is taken as applied). */
static bool item_refused(const sl_client_frame *bad_items, uint32_t i)
{
    const msgpack_object *items = bad_items ? sl_frame_get(bad_items, "items") : NULL;
    for (uint32_t k = 0; items && items->type == MSGPACK_OBJECT_ARRAY &&
                         k < items->via.array.size; k++) {
        const msgpack_object *it = &items->via.array.ptr[k];
        if (it->type == MSGPACK_OBJECT_ARRAY && it->via.array.size > 0 &&
            it->via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
            it->via.array.ptr[0].via.u64 == i)
            return true;
    }
    return false;
}

/* The record takes what an ok (or a bad_items error: the items not refused) confirms. */
static void confirm(sl_cclient *c, pend *p, const sl_client_frame *bad_items)
{
    space *s = c->spaces[p->sp];
    switch (p->kind) {
    case K_ADD:
        rec_put(s, &p->a);
        break;
    case K_READD:
        c->st.readds_ok += p->n - (bad_items ? sl_frame_u64(bad_items, "failed") : 0);
        c->st.last_readd_ok_ms = sl_now_ms();
        break;
    case K_CLAIM:
        c->st.claims_ok++;
        c->st.last_readd_ok_ms = sl_now_ms();
        break;
    case K_MOVE:
        rec_move(s, p->a.id, p->a.x, p->a.y);
        break;
    case K_ADDS:
        for (uint32_t i = 0; i < p->n; i++)
            if (!item_refused(bad_items, i))
                rec_put(s, &p->batch[i]);
        break;
    case K_MOVES:
        for (uint32_t i = 0; i < p->n; i++)
            if (!item_refused(bad_items, i))
                rec_move(s, p->ids[i], p->xy[2 * i], p->xy[2 * i + 1]);
        break;
    case K_REMOVE:
        rec_del(s, p->a.id);
        break;
    case K_SET:
        set_put(s, &p->set);
        c->st.settings_again += p->again;
        break;
    }
}

static double backoff(int tries)
{
    double ms = 50;
    for (int i = 0; i < tries && ms < 250; i++)
        ms *= 2;
    return ms < 250 ? ms : 250;
}

/*
 * Replies come in the order of the requests and every request the library sends has a rid,
 * so when rid is answered on node i, the requests sent there before it that got no answer
 * were refused without one (the server's frame rate limit answers a refused frame with at
 * most one `limit` error without rid): they go again after a pause.
 */
static void answered(sl_cclient *c, int i, uint64_t rid)
{
    node *nd = &c->nodes[i];
    const uint64_t *s = nd->sent.p;
    size_t at = nd->head;
    while (at < nd->sent.n && s[at] != rid)
        at++;
    if (at == nd->sent.n)
        return;                 /* (not in the list: sent before a loss, or not recorded) */
    for (size_t k = nd->head; k < at; k++) {
        pend *p = (pend *)map_get(&c->by_rid, s[k]);
        if (!p || p->node != i || p->state != P_SENT)
            continue;
        c->st.refused++;
        unsend(c, p);
        p->state = P_WAIT;
        p->due = sl_now_ms() + REFUSED_PAUSE_MS;
    }
    nd->head = at + 1;
}

/*
 * Handles a frame from node `from`. Returns true when it is for the caller (ev filled), false
 * when the library took it.
 */
static bool on_frame(sl_cclient *c, int from, sl_cc_event *ev)
{
    const sl_client_frame *f = &c->frame;
    char t[32], sp[NAME_MAX_LEN + 1];
    sl_frame_str(f, "t", t, sizeof t);
    sl_frame_str(f, "space", sp, sizeof sp);
    memset(ev, 0, sizeof *ev);
    ev->frame = f;
    ev->node = c->nodes[from].listen;
    c->nodes[from].rx_ms = sl_now_ms();
    if (!strcmp(t, "pong") && sl_frame_get(f, "rid")) {
        answered(c, from, sl_frame_u64(f, "rid"));
        return false;           /* a probe's */
    }
    if (!strcmp(t, "tick")) {
        int si;
        space *s = space_get(c, sp, false, &si);
        uint64_t epoch = sl_frame_u64(f, "epoch");
        if (s && (s->route != from || (epoch && epoch < s->epoch))) {
            c->st.dropped_ticks++;
            return false;
        }
        if (s && epoch > s->epoch) {
            /* A new epoch on the same node with its state kept (it lost its lease and took
             * the space again before dropping it): the events go on exactly, but the caller
             * hears of the epoch first. */
            s->epoch = epoch;
            made *m = push_made(c, SL_CC_EPOCH, s->name, 0, epoch, NULL, NULL,
                                c->nodes[from].listen);
            if (m) {
                m->continued = true;
                c->held_tick = from + 1;
                return false;
            }
        }
        ev->kind = SL_CC_TICK;
        ev->space = s ? s->name : "";
        ev->epoch = epoch;
        return true;
    }
    if (!strcmp(t, "space.moved")) {
        int si;
        char owner[64];
        if (space_get(c, sp, false, &si) && c->spaces[si]->route == from) {
            const msgpack_object *h = sl_frame_get(f, "handoff");
            bool handoff = h && h->type == MSGPACK_OBJECT_BOOLEAN && h->via.boolean;
            if (*sl_frame_str(f, "owner", owner, sizeof owner))
                rehome(c, si, owner, sl_frame_u64(f, "epoch"),
                       handoff ? sl_client_session(c->nodes[from].cl) : NULL);
            else
                lose_space(c, si);
        }
        return false;
    }
    const msgpack_object *ridv = sl_frame_get(f, "rid");
    bool is_ok = !strcmp(t, "ok"), is_err = !strcmp(t, "error"), is_where = !strcmp(t, "where");
    if ((is_ok || is_err || is_where) && ridv)
        answered(c, from, sl_frame_u64(f, "rid"));
    if (is_err && !ridv && !strcmp(sl_frame_str(f, "code", c->code, sizeof c->code), "limit")) {
        c->st.limit_errors++;       /* frames refused: found and sent again by answered() */
        return false;
    }
    if (!(is_ok || is_err || is_where) || !ridv) {
        ev->kind = is_err ? SL_CC_ERROR : SL_CC_FRAME;
        if (is_err) {
            ev->code = sl_frame_str(f, "code", c->code, sizeof c->code);
            ev->msg = sl_frame_str(f, "msg", c->msg, sizeof c->msg);
        }
        ev->space = "";
        return true;
    }
    pend *p = (pend *)map_get(&c->by_rid, sl_frame_u64(f, "rid"));
    if (!p || p->node != from)
        return false;           /* an answer to a request sent again elsewhere since */
    space *s = c->spaces[p->sp];
    char code[32], owner[64];
    if (is_where) {             /* the node we asked serves it */
        pend_done(c, p);
        rehome(c, p->sp, sl_frame_str(f, "owner", owner, sizeof owner), sl_frame_u64(f, "epoch"),
               NULL);
        return false;
    }
    sl_frame_str(f, "code", code, sizeof code);
    bool moved = !strcmp(code, "moved");
    if (moved && !rehome(c, p->sp, sl_frame_str(f, "owner", owner, sizeof owner),
                         sl_frame_u64(f, "epoch"), NULL))
        strcpy(code, "not_owner");      /* a dead owner, or stale news: as good as none yet */
    if (is_ok) {
        confirm(c, p, NULL);
        uint64_t rid = p->caller_rid;
        int kind = p->kind;
        pend_done(c, p);
        if (!rid || kind == K_READD || kind == K_CLAIM)
            return false;
        ev->kind = SL_CC_OK;
        ev->rid = rid;
        ev->space = s->name;
        return true;
    }
    if (!strcmp(code, "moved")) {
        c->st.redirects++;
        if (p->kind == K_WHERE) {
            pend_done(c, p);
        } else if (++p->hops > (c->cfg.max_hops ? c->cfg.max_hops : 8)) {
            char msg[200];
            pend_fail(c, p, "moved", sl_frame_str(f, "msg", msg, sizeof msg));
        } else if (p->state == P_SENT && p->node == from) {
            unsend(c, p);       /* (re-homed already: it is held, to go to the new owner) */
        }
        return false;
    }
    if (!strcmp(code, "not_owner")) {
        c->st.not_owner++;
        double now = sl_now_ms();
        if (!p->first_refused)
            p->first_refused = now;
        if (now - p->first_refused > (c->cfg.retry_ms ? c->cfg.retry_ms : 15000)) {
            /* Given up; when the space's `where` is, so are the requests it held (the
             * record stays, and the caller's next request asks again). */
            for (size_t i = 0; p->kind == K_WHERE && i < c->np; i++)
                if (!c->p[i]->done && c->p[i]->sp == p->sp && c->p[i]->state != P_SENT &&
                    c->p[i]->kind != K_WHERE)
                    pend_fail(c, c->p[i], "not_owner", "no node served the space within "
                              "retry_ms");
            pend_fail(c, p, "not_owner", "no node served the space within retry_ms");
            return false;
        }
        unsend(c, p);
        p->state = P_WAIT;
        p->due = now + backoff(p->tries++);
        return false;
    }
    if (p->kind == K_CLAIM) {
        /* The entities did not wait there after all (expired, or the new owner lost them):
         * added again from the record, and the caller rebuilds its view. */
        pend_done(c, p);
        readd_all(c, p->sp);
        push_made(c, SL_CC_EPOCH, s->name, 0, s->epoch, NULL, NULL, c->nodes[from].listen);
        return false;
    }
    /* Any other error is the request's own. */
    if ((p->kind == K_MOVES || p->kind == K_ADDS || p->kind == K_READD) &&
        !strcmp(code, "bad_items"))
        confirm(c, p, f);
    if (p->kind == K_WHERE && !strcmp(code, "no_space")) {
        /* No such space: every request of it fails. */
        for (size_t i = 0; i < c->np; i++)
            if (!c->p[i]->done && c->p[i]->sp == p->sp && c->p[i] != p)
                pend_fail(c, c->p[i], "no_space", "no such space in the cluster");
        pend_done(c, p);
        return false;
    }
    ev->kind = SL_CC_ERROR;
    ev->rid = p->kind == K_READD ? 0 : p->caller_rid;
    ev->space = s->name;
    ev->code = sl_frame_str(f, "code", c->code, sizeof c->code);
    ev->msg = sl_frame_str(f, "msg", c->msg, sizeof c->msg);
    pend_done(c, p);
    return true;
}

/* ---- the API ------------------------------------------------------------------------------- */

int sl_cclient_open(sl_cclient **out, const char *const *seeds, int nseeds,
                    const sl_cclient_config *cfg, char *err, size_t errlen)
{
    sl_cclient *c = calloc(1, sizeof *c);
    if (!c)
        return sl_fail(err, errlen, SL_ENOMEM, "out of memory");
    if (cfg)
        c->cfg = *cfg;
    snprintf(err, errlen, "no seed given");
    bool any = false;
    for (int i = 0; i < nseeds && !any; i++) {
        int k = node_find_or_add(c, seeds[i]);
        any = k >= 0 && node_open(c, k, err, errlen);
    }
    for (int i = 0; i < nseeds; i++)
        node_find_or_add(c, seeds[i]);
    if (!any) {
        sl_cclient_close(c);
        return SL_EIO;
    }
    *out = c;
    return 0;
}

void sl_cclient_close(sl_cclient *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->nnodes; i++) {
        sl_client_close(c->nodes[i].cl);
        sl_vec_free(&c->nodes[i].sent);
    }
    for (size_t i = 0; i < c->np; i++)
        pend_free(c->p[i]);
    free(c->p);
    for (size_t i = 0; i < c->nspaces; i++) {
        sl_vec_free(&c->spaces[i]->ents);
        map_free(&c->spaces[i]->at);
        sl_vec_free(&c->spaces[i]->sets);
        sl_vec_free(&c->spaces[i]->regions);
        map_free(&c->spaces[i]->set_at);
        sl_vec_free(&c->spaces[i]->subs);
        free(c->spaces[i]);
    }
    free(c->spaces);
    map_free(&c->by_rid);
    free(c->q);
    free(c);
}

/* A new request of the caller's on space name: its pend (HELD), or NULL (*rc says why). */
static pend *request(sl_cclient *c, const char *name, int kind, uint64_t rid, int *rc)
{
    int si;
    if (strlen(name) > NAME_MAX_LEN || !*name) {
        *rc = SL_EINVAL;
        return NULL;
    }
    pend *p = space_get(c, name, true, &si) ? pend_new(c, kind, si, rid) : NULL;
    *rc = p ? 0 : SL_ENOMEM;
    return p;
}

int sl_cclient_add(sl_cclient *c, const char *space, uint64_t e, float x, float y, float r,
                   uint32_t layer, uint32_t mask, uint64_t rid)
{
    int rc;
    pend *p = request(c, space, K_ADD, rid, &rc);
    if (p) {
        p->a = (ent){e, x, y, r, layer, mask};
        pump(c);
    }
    return rc;
}

int sl_cclient_adds(sl_cclient *c, const char *space, const sl_client_entity *v, uint32_t n,
                    uint64_t rid)
{
    ent *batch = malloc((n ? n : 1) * sizeof *batch);
    int rc = SL_ENOMEM;
    pend *p = batch ? request(c, space, K_ADDS, rid, &rc) : NULL;
    if (!p) {
        free(batch);
        return rc;
    }
    memcpy(batch, v, n * sizeof *batch);
    p->batch = batch;
    p->n = n;
    pump(c);
    return 0;
}

int sl_cclient_move(sl_cclient *c, const char *space, uint64_t e, float x, float y,
                    uint64_t rid)
{
    int rc;
    pend *p = request(c, space, K_MOVE, rid, &rc);
    if (p) {
        p->a = (ent){.id = e, .x = x, .y = y};
        pump(c);
    }
    return rc;
}

int sl_cclient_moves(sl_cclient *c, const char *space, const uint64_t *e, const float *xy,
                     uint32_t n, uint64_t rid)
{
    uint64_t *ids = malloc((n ? n : 1) * sizeof *ids);
    float *pos = malloc((n ? 2 * n : 1) * sizeof *pos);
    int rc = SL_ENOMEM;
    pend *p = ids && pos ? request(c, space, K_MOVES, rid, &rc) : NULL;
    if (!p) {
        free(ids);
        free(pos);
        return rc;
    }
    memcpy(ids, e, n * sizeof *ids);
    memcpy(pos, xy, 2 * n * sizeof *pos);
    p->ids = ids;
    p->xy = pos;
    p->n = n;
    pump(c);
    return 0;
}

/* A setting request (K_SET). */
static int set_request(sl_cclient *c, const char *space, setting st, uint64_t rid)
{
    int rc;
    pend *p = request(c, space, K_SET, rid, &rc);
    if (p) {
        p->set = st;
        pump(c);
    }
    return rc;
}

int sl_cclient_hysteresis(sl_cclient *c, const char *space, uint64_t e, float h, uint64_t rid)
{
    return set_request(c, space, (setting){.what = S_HYST, .id = e, .f = h}, rid);
}

int sl_cclient_always(sl_cclient *c, const char *space, uint64_t e, bool on, uint64_t rid)
{
    return set_request(c, space, (setting){.what = S_ALWAYS, .id = e, .u = on}, rid);
}

int sl_cclient_cap(sl_cclient *c, const char *space, uint64_t e, uint32_t n, float margin,
                   uint64_t rid)
{
    return set_request(c, space, (setting){.what = S_CAP, .id = e, .u = n, .margin = margin},
                       rid);
}

int sl_cclient_priority(sl_cclient *c, const char *space, uint64_t e, int32_t p, uint64_t rid)
{
    return set_request(c, space, (setting){.what = S_PRIORITY, .id = e, .i = p}, rid);
}

int sl_cclient_group(sl_cclient *c, const char *space, uint64_t e, uint32_t g, uint64_t rid)
{
    return set_request(c, space, (setting){.what = S_GROUP, .id = e, .u = g}, rid);
}

int sl_cclient_lod(sl_cclient *c, const char *space, uint64_t e, const sl_client_band *bands,
                   uint32_t n, uint64_t rid)
{
    if (n > 8)
        return SL_EINVAL;
    setting st = {.what = S_LOD, .id = e, .nlod = n};
    if (n)
        memcpy(st.lod, bands, n * sizeof *bands);
    return set_request(c, space, st, rid);
}

int sl_cclient_subscribe(sl_cclient *c, const char *space, uint32_t g, bool on, uint64_t rid)
{
    return set_request(c, space, (setting){.what = S_SUBSCRIBE, .u = g, .i = on}, rid);
}

int sl_cclient_region(sl_cclient *c, const char *space, uint64_t id, const char *shape,
                      const float *v, uint32_t nv, uint32_t mask, uint64_t rid)
{
    setting st = {.what = S_REGION, .id = id, .u = mask, .nv = nv};
    bool poly = strcmp(shape, "poly") == 0;
    if (!shape[0] || strlen(shape) >= sizeof st.shape ||
        nv > (poly ? 128u : strcmp(shape, "circle") == 0 ? 3u : 4u))
        return SL_EINVAL;
    snprintf(st.shape, sizeof st.shape, "%s", shape);
    memcpy(st.v, v, nv * sizeof *v);
    return set_request(c, space, st, rid);
}

int sl_cclient_unregion(sl_cclient *c, const char *space, uint64_t id, uint64_t rid)
{
    return set_request(c, space, (setting){.what = S_REGION, .id = id}, rid);
}

int sl_cclient_remove(sl_cclient *c, const char *space, uint64_t e, uint64_t rid)
{
    int rc;
    pend *p = request(c, space, K_REMOVE, rid, &rc);
    if (p) {
        p->a.id = e;
        pump(c);
    }
    return rc;
}

/* When the next WAIT pend is due (or a lost node may be tried again): ms from now, or -1. */
static int next_due(const sl_cclient *c, double now)
{
    double best = -1;
    for (size_t i = 0; i < c->np; i++) {
        const pend *p = c->p[i];
        double at = p->state == P_WAIT ? p->due : p->state == P_HELD ? now + 20 : -1;
        if (!p->done && at >= 0 && (best < 0 || at < best))
            best = at;
    }
    for (int i = 0; i < c->nnodes; i++)
        if (c->nodes[i].cl && c->nodes[i].head < c->nodes[i].sent.n &&
            (best < 0 || now + PROBE_MS / 3 < best))
            best = now + PROBE_MS / 3;
    return best < 0 ? -1 : best <= now ? 0 : (int)(best - now) + 1;
}

int sl_cclient_next(sl_cclient *c, sl_cc_event *ev, int timeout_ms)
{
    double deadline = sl_now_ms() + timeout_ms;
    for (;;) {
        pump(c);
        if (c->qn) {
            c->cur = c->q[c->qhead];
            c->qhead = (c->qhead + 1) % c->qcap;
            c->qn--;
            memset(ev, 0, sizeof *ev);
            ev->kind = c->cur.kind;
            ev->space = c->cur.space;
            ev->rid = c->cur.rid;
            ev->epoch = c->cur.epoch;
            ev->code = c->cur.code;
            ev->msg = c->cur.msg;
            ev->node = c->cur.node;
            ev->continued = c->cur.continued;
            return 1;
        }
        if (c->held_tick) {         /* the tick that came with a new epoch, after it */
            int from = c->held_tick - 1;
            c->held_tick = 0;
            char sp[NAME_MAX_LEN + 1];
            int si;
            sl_frame_str(&c->frame, "space", sp, sizeof sp);
            memset(ev, 0, sizeof *ev);
            ev->kind = SL_CC_TICK;
            ev->frame = &c->frame;
            ev->node = c->nodes[from].listen;
            ev->epoch = sl_frame_u64(&c->frame, "epoch");
            ev->space = space_get(c, sp, false, &si) ? c->spaces[si]->name : "";
            return 1;
        }
        /* A frame already received, from any node (round robin). */
        bool took = false;
        for (int k = 0; k < c->nnodes && !took; k++) {
            int i = (c->rr + k) % c->nnodes;
            if (!c->nodes[i].cl)
                continue;
            int rc = sl_client_next(c->nodes[i].cl, &c->frame, 0);
            if (rc < 0) {
                node_lost(c, i);
                took = true;
            } else if (rc == 1) {
                c->rr = (i + 1) % c->nnodes;
                took = true;
                if (on_frame(c, i, ev))
                    return 1;       /* (a frame for the caller never queues an event) */
            }
        }
        if (took)
            continue;
        double now = sl_now_ms();
        int bad = probe(c, now);
        if (bad >= 0) {
            node_lost(c, bad);
            continue;
        }
        int left = (int)(deadline - now);
        if (left <= 0)
            return 0;
        int due = next_due(c, now);
        if (due >= 0 && due < left)
            left = due;
        struct pollfd pfd[MAX_NODES];
        int n = 0;
        for (int i = 0; i < c->nnodes; i++)
            if (c->nodes[i].cl)
                pfd[n++] = (struct pollfd){.fd = sl_client_fd(c->nodes[i].cl), .events = POLLIN};
        poll(pfd, (nfds_t)n, left);
    }
}

size_t sl_cclient_pending(const sl_cclient *c)
{
    size_t n = 0;
    for (size_t i = 0; i < c->np; i++)
        n += !c->p[i]->done;
    return n;
}

uint64_t sl_cclient_epoch(const sl_cclient *c, const char *name)
{
    for (size_t i = 0; i < c->nspaces; i++)
        if (!strcmp(c->spaces[i]->name, name))
            return c->spaces[i]->epoch;
    return 0;
}

const char *sl_cclient_owner(const sl_cclient *c, const char *name)
{
    for (size_t i = 0; i < c->nspaces; i++)
        if (!strcmp(c->spaces[i]->name, name))
            return c->spaces[i]->route >= 0 ? c->nodes[c->spaces[i]->route].listen : NULL;
    return NULL;
}

size_t sl_cclient_entities(const sl_cclient *c, const char *name)
{
    for (size_t i = 0; i < c->nspaces; i++)
        if (!strcmp(c->spaces[i]->name, name))
            return c->spaces[i]->ents.n;
    return 0;
}

size_t sl_cclient_nodes(const sl_cclient *c, size_t *open)
{
    size_t k = 0;
    for (int i = 0; i < c->nnodes; i++)
        k += c->nodes[i].cl != NULL;
    if (open)
        *open = k;
    return (size_t)c->nnodes;
}

const sl_cclient_stats *sl_cclient_stats_get(const sl_cclient *c)
{
    return &c->st;
}
