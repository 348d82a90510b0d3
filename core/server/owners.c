/*
 * owners.c: which node serves which space (see owners.h).
 *
 * Tables, all small (nodes and spaces, never entities): the live nodes (from the registry
 * mirror), the owner keys (from the owners mirror), the spaces this node has asked sync to
 * host, and since when each unowned space has waited. sl_owners_step reconciles them: it
 * hosts what this node owns under its current lease, drops what it no longer owns (the
 * server tells the space's clients where it went), and takes the unowned spaces placement
 * gives it.
 */
#include "server/owners.h"
#include "server/rows.h"

#include "base/common.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/vec.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct node {
    char id[65], listen[128];
    double capacity;
    int64_t lease;              /* its registration's lease */
    int64_t ttl_left;           /* by etcd's last answer, seconds (-1: not asked yet) */
    double ttl_at_ms;           /* when that answer came */
} node;

typedef struct owner {
    char space[65], node[65], listen[128];
    uint64_t epoch;             /* the owner key's revision */
    uint64_t from_epoch;        /* written by a handoff: the epoch it moved the space from */
    int64_t lease;              /* the lease its owner wrote it under */
    double since_ms;            /* when this node first saw it */
    bool deleting;              /* our stale key (an old lease of ours): being deleted */
} owner;

typedef struct waiting {        /* a defined space without owner */
    char space[65];
    double since_ms;
    bool trying;                /* a create of its owner key is out */
} waiting;

typedef struct unservable {     /* a space this node took but could not build */
    char space[65];
    double until_ms;            /* it does not take it again before then */
} unservable;

enum { UNSERVABLE_MS = 30000 };

typedef struct op {             /* an etcd call out; o is NULL once the owners are freed */
    sl_owners *o;
    char space[65];
} op;

struct sl_owners {
    sl_server *srv;
    sl_sync *sync;
    sl_etcd *e;
    char prefix[256], self[65], advertise[128];
    sl_vec nodes, owners, waiting;      /* node, owner, waiting */
    sl_vec hosted;                      /* char[65]: spaces sync hosts for us */
    sl_vec unservable;                  /* unservable */
    sl_vec draining;                    /* char[65]: nodes being drained (no new space) */
    sl_vec ops;                         /* op *: calls out */
};

/* ---- tables (rows.h) ------------------------------------------------------------------- */

static const char *json_str(json_t *d, const char *k)
{
    const char *s = json_string_value(json_object_get(d, k));
    return s ? s : "";
}

void sl_owners_node_put(sl_owners *o, const char *id, size_t n, const uint8_t *json,
                        size_t len)
{
    node *nd = sl__row_get(&o->nodes, sizeof *nd, id, n);
    json_t *d = json_loadb((const char *)json, len, 0, NULL);
    if (nd) {
        snprintf(nd->listen, sizeof nd->listen, "%s", json_str(d, "listen"));
        double cap = json_number_value(json_object_get(d, "capacity"));
        nd->capacity = cap > 0 && isfinite(cap) ? cap : 1;
        int64_t lease = (int64_t)json_integer_value(json_object_get(d, "lease"));
        if (lease != nd->lease || !nd->ttl_at_ms)
            nd->ttl_left = -1;
        nd->lease = lease;
    }
    json_decref(d);
}

void sl_owners_node_delete(sl_owners *o, const char *id, size_t n)
{
    node *nd = sl__row_find(&o->nodes, sizeof *nd, id, n);
    if (nd)
        sl__row_drop(&o->nodes, sizeof *nd, nd);
}

void sl_owners_owner_put(sl_owners *o, const char *space, size_t n, const uint8_t *json,
                         size_t len, int64_t revision)
{
    owner *w = sl__row_find(&o->owners, sizeof *w, space, n);
    bool fresh = !w;
    if (!w && !(w = sl__row_get(&o->owners, sizeof *w, space, n)))
        return;
    json_t *d = json_loadb((const char *)json, len, 0, NULL);
    snprintf(w->node, sizeof w->node, "%s", json_str(d, "node"));
    snprintf(w->listen, sizeof w->listen, "%s", json_str(d, "listen"));
    w->lease = (int64_t)json_integer_value(json_object_get(d, "lease"));
    w->from_epoch = (uint64_t)json_integer_value(json_object_get(d, "from_epoch"));
    json_decref(d);
    if (fresh || w->epoch != (uint64_t)revision)
        w->since_ms = 0;        /* set by the next step */
    w->epoch = (uint64_t)revision;
    w->deleting = false;
}

void sl_owners_owner_delete(sl_owners *o, const char *space, size_t n)
{
    owner *w = sl__row_find(&o->owners, sizeof *w, space, n);
    if (w)
        sl__row_drop(&o->owners, sizeof *w, w);
}

/* ---- etcd calls ---------------------------------------------------------------------------- */

static op *op_new(sl_owners *o, const char *space)
{
    op *p = calloc(1, sizeof *p);
    op **slot = p ? sl_vec_push(&o->ops, sizeof *slot) : NULL;
    if (!slot) {
        free(p);
        return NULL;
    }
    *slot = p;
    p->o = o;
    snprintf(p->space, sizeof p->space, "%s", space);
    return p;
}

/* The call's answer came: it leaves the list (and is freed by the caller). */
static sl_owners *op_done(op *p)
{
    sl_owners *o = p->o;
    if (!o)
        return NULL;
    op **ops = o->ops.p;
    for (size_t i = 0; i < o->ops.n; i++)
        if (ops[i] == p) {
            ops[i] = ops[--o->ops.n];
            break;
        }
    return o;
}

/* The answer to a create-if-absent of an owner key: the mirror brings the key either way;
 * the space may be tried again. */
static void on_acquired(void *ud, const sl_etcd_result *r)
{
    op *p = ud;
    sl_owners *o = op_done(p);
    waiting *w = o ? sl__row_find(&o->waiting, sizeof *w, p->space, strlen(p->space)) : NULL;
    if (w)
        w->trying = false;
    (void)r;
    free(p);
}

static void try_acquire(sl_owners *o, waiting *w, int64_t lease)
{
    char key[320], text[400];
    snprintf(key, sizeof key, "%s%s", o->prefix, w->space);
    snprintf(text, sizeof text, "{\"node\":\"%s\",\"listen\":\"%s\",\"lease\":%lld}", o->self,
             o->advertise, (long long)lease);
    sl_etcd_cmp cmp = {.key = key, .target = SL_CMP_CREATE, .op = SL_CMP_EQUAL, .number = 0};
    sl_etcd_txn_op put = {.kind = SL_TXN_PUT, .key = key, .value = text,
                          .value_len = strlen(text), .lease = lease};
    op *p = op_new(o, w->space);
    if (p && !sl_etcd_txn(o->e, &cmp, 1, &put, 1, NULL, 0, on_acquired, p))
        w->trying = true;
    else if (p) {
        op_done(p);
        free(p);
    }
}

static void on_deleted(void *ud, const sl_etcd_result *r)
{
    (void)r;
    op *p = ud;
    op_done(p);
    free(p);
}

/* An owner key of ours under an older lease (lost and granted again): deleted, if nobody
 * changed it meanwhile, so that the space is placed again without waiting for its expiry. */
static void delete_stale(sl_owners *o, owner *w)
{
    char key[320];
    snprintf(key, sizeof key, "%s%s", o->prefix, w->space);
    sl_etcd_cmp cmp = {.key = key, .target = SL_CMP_MOD, .op = SL_CMP_EQUAL,
                       .number = (int64_t)w->epoch};
    sl_etcd_txn_op del = {.kind = SL_TXN_DELETE, .key = key};
    op *p = op_new(o, w->space);
    if (p && !sl_etcd_txn(o->e, &cmp, 1, &del, 1, NULL, 0, on_deleted, p))
        w->deleting = true;
    else if (p) {
        op_done(p);
        free(p);
    }
}

/* ---- placement ----------------------------------------------------------------------------- */

static uint64_t pair_hash(const char *space, const char *nodeid)
{
    uint64_t h = sl_fnv1a64(SL_FNV1A64_BASIS, space, strlen(space));
    h = sl_fnv1a64(h ^ 0x9e3779b97f4a7c15ULL, nodeid, strlen(nodeid));
    h ^= h >> 33;
    return h * 0xff51afd7ed558ccdULL;
}

static int by_space_hash(const void *a, const void *b)
{
    const waiting *x = a, *y = b;
    uint64_t hx = sl_fnv1a64(SL_FNV1A64_BASIS, x->space, strlen(x->space));
    uint64_t hy = sl_fnv1a64(SL_FNV1A64_BASIS, y->space, strlen(y->space));
    return hx != hy ? (hx > hy) - (hx < hy) : strcmp(x->space, y->space);
}

/* Where each waiting space goes (rank of this node for it: 0 chosen, else its place in the
 * hash order of the others), the same on every node that sees the same tables. */
static void place(sl_owners *o, int *rank)
{
    size_t nn = o->nodes.n;
    node *nd = o->nodes.p;
    double *load = calloc(nn ? nn : 1, sizeof *load);
    if (!load)
        return;
    const owner *w = o->owners.p;
    for (size_t i = 0; i < o->owners.n; i++)
        for (size_t k = 0; k < nn; k++)
            if (!strcmp(w[i].node, nd[k].id))
                load[k]++;
    waiting *q = o->waiting.p;
    qsort(q, o->waiting.n, sizeof *q, by_space_hash);
    /* A node being drained takes nothing new (unless every node is). */
    bool *out = calloc(nn ? nn : 1, sizeof *out);
    size_t nout = 0;
    for (size_t k = 0; out && k < nn; k++)
        nout += out[k] = sl__row_find(&o->draining, 65, nd[k].id, strlen(nd[k].id)) != NULL;
    if (out && nout == nn)
        memset(out, 0, nn * sizeof *out);
    for (size_t i = 0; i < o->waiting.n; i++) {
        size_t best = 0;
        while (out && best + 1 < nn && out[best])
            best++;
        for (size_t k = best + 1; k < nn; k++) {
            if (out && out[k])
                continue;
            double a = (load[k] + 1) / nd[k].capacity, b = (load[best] + 1) / nd[best].capacity;
            if (a < b || (a == b && pair_hash(q[i].space, nd[k].id) >
                                        pair_hash(q[i].space, nd[best].id)))
                best = k;
        }
        load[best]++;
        rank[i] = -1;
        if (!strcmp(nd[best].id, o->self)) {
            rank[i] = 0;
            continue;
        }
        /* A fallback: after the chosen one, by hash order. */
        uint64_t mine = pair_hash(q[i].space, o->self);
        int r = 1;
        for (size_t k = 0; k < nn; k++)
            if (k != best && strcmp(nd[k].id, o->self) && pair_hash(q[i].space, nd[k].id) > mine)
                r++;
        rank[i] = r;
    }
    free(out);
    free(load);
}

/* ---- the step ------------------------------------------------------------------------------ */

static bool is_hosted(const sl_owners *o, const char *space)
{
    return sl__row_find(&o->hosted, 65, space, strlen(space)) != NULL;
}

static void set_hosted(sl_owners *o, const char *space, bool on)
{
    char *row = sl__row_find(&o->hosted, 65, space, strlen(space));
    if (on && !row)
        sl__row_get(&o->hosted, 65, space, strlen(space));
    else if (!on && row)
        sl__row_drop(&o->hosted, 65, row);
}

static bool names_has(const char **names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], s))
            return true;
    return false;
}

/* Hosts what this node owns under its current lease; drops the rest (the server learns
 * first where it went, so that its clients are told). */
static void reconcile(sl_owners *o, const char **names, size_t n, int64_t lease, double now)
{
    for (size_t i = 0; i < n; i++) {
        owner *w = sl__row_find(&o->owners, sizeof *w, names[i], strlen(names[i]));
        if (w && !w->since_ms)
            w->since_ms = now;
        bool mine = w && lease && !strcmp(w->node, o->self) && w->lease == lease;
        if (mine && !is_hosted(o, names[i]))    /* a handoff's snapshot is built, if it is this one */
            sl_server_handoff_adopted(o->srv, names[i], w->epoch, w->from_epoch);
        if (mine && !is_hosted(o, names[i]) && sl_sync_host(o->sync, names[i], true)) {
            /* Its definition does not build here (e.g. scripts this node lacks): let it go
             * at once, so that another node can serve it, and leave it alone a while. */
            unservable *u = sl__row_get(&o->unservable, sizeof *u, names[i], strlen(names[i]));
            if (u)
                u->until_ms = now + UNSERVABLE_MS;
            sl_log("cluster: space %s cannot be built on this node (see the refusal before): "
                   "released for another node; not taken again for %d s", names[i],
                   UNSERVABLE_MS / 1000);
            sl_sync_host(o->sync, names[i], false);
            if (!w->deleting)
                delete_stale(o, w);
            mine = false;
        } else if (mine) {
            set_hosted(o, names[i], true);
            sl_server_forget_remote(o->srv, names[i]);
            sl_server_set_epoch(o->srv, names[i], w->epoch);
            continue;
        }
        /* An owner key naming this node under a lease it lost is on its way out: no owner
         * (not_owner), never a `moved` pointing clients back here. */
        bool other = w && strcmp(w->node, o->self);
        sl_server_set_remote(o->srv, names[i], other ? w->node : "", other ? w->listen : "",
                             w ? w->epoch : 0);
        if (is_hosted(o, names[i])) {
            if (other)      /* (the watch can show our move's Txn before its answer) */
                sl_server_handoff_seen(o->srv, names[i], w->node, w->from_epoch);
            sl_sync_host(o->sync, names[i], false);
            set_hosted(o, names[i], false);
        }
        if (w && lease && !strcmp(w->node, o->self) && w->lease != lease && !w->deleting)
            delete_stale(o, w);     /* (an older lease of ours) */
    }
    /* Spaces no longer defined: neither hosted nor pointed at. */
    for (size_t k = o->hosted.n; k-- > 0;) {
        const char *h = (const char *)o->hosted.p + k * 65;
        if (!names_has(names, n, h)) {
            sl_server_forget_remote(o->srv, h);
            sl__row_drop(&o->hosted, 65, (char *)h);
        }
    }
}

/* The live nodes, for the server's `welcome`. */
static void tell_nodes(sl_owners *o)
{
    const char *ids[64], *listens[64];
    const node *nd = o->nodes.p;
    size_t k = 0;
    for (size_t i = 0; i < o->nodes.n && k < 64; i++, k++) {
        ids[k] = nd[i].id;
        listens[k] = nd[i].listen;
    }
    sl_server_set_nodes(o->srv, ids, listens, k);
}

void sl_owners_step(sl_owners *o, int64_t lease, double now_ms)
{
    size_t n = sl_sync_spaces(o->sync, NULL, 0);
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names)
        return;
    sl_sync_spaces(o->sync, names, n);
    tell_nodes(o);
    reconcile(o, names, n, lease, now_ms);
    /* The spaces without owner, and since when. */
    waiting *q = o->waiting.p;
    for (size_t k = o->waiting.n; k-- > 0;) {
        bool still = !sl__row_find(&o->owners, sizeof(owner), q[k].space, strlen(q[k].space)) &&
                     names_has(names, n, q[k].space);
        if (!still && !q[k].trying)
            sl__row_drop(&o->waiting, sizeof *q, &q[k]);
    }
    for (size_t i = 0; i < n; i++)
        if (!sl__row_find(&o->owners, sizeof(owner), names[i], strlen(names[i]))) {
            waiting *w = sl__row_get(&o->waiting, sizeof *w, names[i], strlen(names[i]));
            if (w && !w->since_ms)
                w->since_ms = now_ms;
        }
    free(names);
    if (!lease || !sl__row_find(&o->nodes, sizeof(node), o->self, strlen(o->self)) || !o->waiting.n)
        return;
    int *rank = calloc(o->waiting.n, sizeof *rank);
    if (!rank)
        return;
    place(o, rank);
    q = o->waiting.p;
    for (size_t i = 0; i < o->waiting.n; i++) {
        const unservable *u = sl__row_find(&o->unservable, sizeof *u, q[i].space, strlen(q[i].space));
        if (u && u->until_ms > now_ms)
            continue;               /* it did not build here a moment ago */
        if (rank[i] >= 0 && !q[i].trying && now_ms - q[i].since_ms >= rank[i] * 1000.0)
            try_acquire(o, &q[i], lease);
    }
    free(rank);
}

/* ---- what moves.c asks ----------------------------------------------------------------------- */

bool sl_owners_node(const sl_owners *o, const char *id, char *listen, size_t len,
                    int64_t *lease)
{
    const node *nd = sl__row_find(&o->nodes, sizeof(node), id, strlen(id));
    if (!nd)
        return false;
    snprintf(listen, len, "%s", nd->listen);
    *lease = nd->lease;
    return nd->listen[0] && nd->lease;
}

bool sl_owners_owner(const sl_owners *o, const char *space, char *node_id, size_t len,
                     uint64_t *epoch, uint64_t *from_epoch)
{
    const owner *w = sl__row_find(&o->owners, sizeof(owner), space, strlen(space));
    if (!w)
        return false;
    snprintf(node_id, len, "%s", w->node);
    *epoch = w->epoch;
    *from_epoch = w->from_epoch;
    return true;
}

void sl_owners_note(sl_owners *o, const char *space, const char *node_id, const char *listen,
                    int64_t lease, uint64_t epoch, uint64_t from_epoch)
{
    owner *w = sl__row_find(&o->owners, sizeof *w, space, strlen(space));
    if (!w && !(w = sl__row_get(&o->owners, sizeof *w, space, strlen(space))))
        return;
    if (w->epoch > epoch)
        return;                 /* the mirror knows better already */
    snprintf(w->node, sizeof w->node, "%s", node_id);
    snprintf(w->listen, sizeof w->listen, "%s", listen);
    w->lease = lease;
    if (w->epoch != epoch)
        w->since_ms = 0;
    w->epoch = epoch;
    w->from_epoch = from_epoch;
    w->deleting = false;
}

bool sl_owners_pick(const sl_owners *o, const char *const *except, size_t nexcept, char *id,
                    size_t len)
{
    const node *nd = o->nodes.p;
    const owner *w = o->owners.p;
    double best = 0;
    bool found = false;
    for (size_t i = 0; i < o->nodes.n; i++) {
        if (names_has((const char **)except, nexcept, nd[i].id) || !nd[i].listen[0])
            continue;
        double load = 0;
        for (size_t j = 0; j < o->owners.n; j++)
            load += !strcmp(w[j].node, nd[i].id);
        double score = (load + 1) / nd[i].capacity;
        if (!found || score < best) {
            best = score;
            found = true;
            snprintf(id, len, "%s", nd[i].id);
        }
    }
    return found;
}

size_t sl_owners_loads(const sl_owners *o, const char **ids, double *load, double *cap,
                       size_t max)
{
    const node *nd = o->nodes.p;
    const owner *w = o->owners.p;
    size_t k = 0;
    for (size_t i = 0; i < o->nodes.n && k < max; i++) {
        if (!nd[i].listen[0] || sl__row_find(&o->draining, 65, nd[i].id, strlen(nd[i].id)))
            continue;
        ids[k] = nd[i].id;
        cap[k] = nd[i].capacity;
        load[k] = 0;
        for (size_t j = 0; j < o->owners.n; j++)
            load[k] += !strcmp(w[j].node, nd[i].id);
        k++;
    }
    return k;
}

void sl_owners_set_draining(sl_owners *o, const char *const *nodes, size_t n)
{
    o->draining.n = 0;
    for (size_t i = 0; i < n; i++)
        sl__row_get(&o->draining, 65, nodes[i], strlen(nodes[i]));
}

size_t sl_owners_mine(const sl_owners *o, const char **names, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < o->hosted.n; i++) {
        if (n < max)
            names[n] = (const char *)o->hosted.p + i * 65;
        n++;
    }
    return n;
}

/* ---- life and figures ---------------------------------------------------------------------- */

sl_owners *sl_owners_new(sl_server *srv, sl_sync *sync, sl_etcd *e, const char *owners_prefix,
                         const char *node_id, const char *advertise)
{
    sl_owners *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->srv = srv;
    o->sync = sync;
    o->e = e;
    snprintf(o->prefix, sizeof o->prefix, "%s", owners_prefix);
    snprintf(o->self, sizeof o->self, "%s", node_id);
    snprintf(o->advertise, sizeof o->advertise, "%s", advertise);
    return o;
}

void sl_owners_free(sl_owners *o)
{
    if (!o)
        return;
    op **ops = o->ops.p;
    for (size_t i = 0; i < o->ops.n; i++)
        ops[i]->o = NULL;       /* their answers (or cancellations) free them */
    sl_vec_free(&o->ops);
    sl_vec_free(&o->nodes);
    sl_vec_free(&o->owners);
    sl_vec_free(&o->waiting);
    sl_vec_free(&o->hosted);
    sl_vec_free(&o->unservable);
    sl_vec_free(&o->draining);
    free(o);
}

void sl_owners_counts(const sl_owners *o, size_t *nodes, size_t *mine, size_t *unowned)
{
    *nodes = o->nodes.n;
    *mine = o->hosted.n;
    *unowned = o->waiting.n;
}

size_t sl_owners_describe(const sl_owners *o, char *out, size_t len, double now_ms)
{
    size_t k = 0;
#define SAY(...) (k += (size_t)snprintf(out + k, k < len ? len - k : 0, __VA_ARGS__))
    const node *nd = o->nodes.p;
    const owner *w = o->owners.p;
    for (size_t i = 0; i < o->nodes.n; i++) {
        unsigned load = 0;
        for (size_t j = 0; j < o->owners.n; j++)
            load += !strcmp(w[j].node, nd[i].id);
        char ttl[80] = "lease ttl unknown";
        if (nd[i].ttl_left >= 0)
            snprintf(ttl, sizeof ttl, "lease ttl left %lld s (%.1f s ago)",
                     (long long)nd[i].ttl_left, (now_ms - nd[i].ttl_at_ms) / 1e3);
        SAY("node %s listen %s capacity %g spaces %u %s%s\n", nd[i].id, nd[i].listen,
            nd[i].capacity, load, ttl, strcmp(nd[i].id, o->self) ? "" : " (this node)");
    }
    for (size_t j = 0; j < o->owners.n; j++)
        SAY("space %s owner %s listen %s epoch %llu since %.1f s\n", w[j].space, w[j].node,
            w[j].listen, (unsigned long long)w[j].epoch,
            w[j].since_ms > 0 ? (now_ms - w[j].since_ms) / 1e3 : 0.0);
    const waiting *q = o->waiting.p;
    for (size_t j = 0; j < o->waiting.n; j++)
        SAY("space %s owner (none) waiting %.1f s\n", q[j].space,
            q[j].since_ms > 0 ? (now_ms - q[j].since_ms) / 1e3 : 0.0);
#undef SAY
    return k < len ? k : (len ? len - 1 : 0);
}

size_t sl_owners_node_leases(const sl_owners *o, int64_t *leases, size_t max)
{
    const node *nd = o->nodes.p;
    size_t k = 0;
    for (size_t i = 0; i < o->nodes.n && k < max; i++)
        if (nd[i].lease)
            leases[k++] = nd[i].lease;
    return k;
}

void sl_owners_lease_ttl(sl_owners *o, int64_t lease, int64_t ttl_s, double now_ms)
{
    node *nd = o->nodes.p;
    for (size_t i = 0; i < o->nodes.n; i++)
        if (nd[i].lease == lease) {
            nd[i].ttl_left = ttl_s;
            nd[i].ttl_at_ms = now_ms;
        }
}
