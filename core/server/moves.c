/*
 * moves.c: planned moves of live spaces (README "Moving a live space"): what operators ask
 * (`sightctl space move`, `sightctl drain`) becomes an intent key in etcd, and the space's
 * owner carries it out, one move at a time.
 *
 * Intents. /sightline/NAME/v1/moves/SPACE = {"to": NODE} ("" or no "to": wherever placement
 * puts it), written by any node's admin command; a drain is /sightline/NAME/v1/drains/NODE
 * = {}: the node moves every space it owns away, one after the other, and placement gives
 * it no new space while the key exists. Every node mirrors both; only the owner acts.
 *
 * A move. The owner hands the space to the target (handoff.c: freeze, one more tick,
 * snapshot, the target holds it), then commits through etcd: a Txn that compares the owner
 * key's mod_revision with the epoch it serves under and, if it still holds, rewrites the
 * key for the target (under the target's lease, naming the epoch it moved from) and
 * deletes the intent. The Txn's revision is the new epoch. A Txn that got no answer (etcd
 * unreachable, a timeout) is sent again until one comes: its failure branch reads the key,
 * so an earlier attempt that did apply is recognised (the key names the target and our
 * epoch). Until then the space stays frozen here: never two owners.
 *
 * What fails where: the target unreachable or refusing, or the snapshot not taken (the
 * scripts keep changing the space): the space serves here again, the intent is deleted and
 * the failure kept in the list `sightctl cluster` shows. The owner key changed under us
 * (our lease lost): aborted; the cluster's placement decides. The target dying after the
 * commit: an ordinary failover (its lease expires, clients re-add).
 */
#include "server/moves.h"
#include "server/rows.h"

#include "base/clock.h"
#include "base/log.h"
#include "base/vec.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_MS 500            /* a Txn without answer goes again after this */
#define KEEP_DONE 16            /* moves remembered for `sightctl cluster` */
#define PAUSE_MS 1000           /* after a failed move, the next waits this long */
#define REBALANCE_MS 5000       /* with --rebalance: a node looks at the balance this often */

typedef struct intent {
    char space[65], to[65];
    int64_t mod;
} intent;

typedef struct drain {
    char node[65];
} drain;

enum { M_HANDING, M_TXN, M_UNKNOWN };

typedef struct move {
    sl_moves *m;                /* NULL once the moves are freed (a Txn's answer then frees it) */
    char space[65], to[65], listen[128];
    int64_t to_lease, intent_mod;
    uint64_t from_epoch;
    int state;
    double started_ms, retry_at;
} move;

typedef struct done {
    char space[65], to[65], why[160];
    bool ok;
    double ms, at_ms, frozen_ms;
    uint64_t epoch;
} done;

struct sl_moves {
    sl_server *srv;
    sl_owners *o;
    sl_etcd *e;
    char owners_prefix[256], moves_prefix[256], drains_prefix[256], self[65];
    sl_vec intents, drains;     /* intent, drain */
    move *cur;                  /* the move in progress, one at a time */
    done last[KEEP_DONE];
    size_t nlast;
    uint64_t moved, failed;
    double next_ms;             /* no move starts before (after a failure) */
    bool rebalance;             /* --rebalance: move spaces to nodes with less than their share */
    double next_rebalance_ms;
    void (*changed)(void *ud);  /* the owner tables changed: reconcile soon */
    void *changed_ud;
};

/* ---- tables ---------------------------------------------------------------------------------- */

void sl_moves_intent_put(sl_moves *m, const char *space, size_t n, const uint8_t *json,
                         size_t len, int64_t mod)
{
    intent *it = sl__row_get(&m->intents, sizeof *it, space, n);
    if (!it)
        return;
    json_t *d = json_loadb((const char *)json, len, 0, NULL);
    const char *to = json_string_value(json_object_get(d, "to"));
    snprintf(it->to, sizeof it->to, "%s", to ? to : "");
    json_decref(d);
    it->mod = mod;
}

void sl_moves_intent_delete(sl_moves *m, const char *space, size_t n)
{
    intent *it = sl__row_find(&m->intents, sizeof *it, space, n);
    if (it)
        sl__row_drop(&m->intents, sizeof *it, it);
}

void sl_moves_drain_put(sl_moves *m, const char *node, size_t n)
{
    sl__row_get(&m->drains, sizeof(drain), node, n);
}

void sl_moves_drain_delete(sl_moves *m, const char *node, size_t n)
{
    drain *d = sl__row_find(&m->drains, sizeof *d, node, n);
    if (d)
        sl__row_drop(&m->drains, sizeof *d, d);
}

bool sl_moves_draining(const sl_moves *m, const char *node)
{
    return sl__row_find(&m->drains, sizeof(drain), node, strlen(node)) != NULL;
}

size_t sl_moves_drained(const sl_moves *m, const char **nodes, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < m->drains.n && k < max; i++)
        nodes[k++] = ((const drain *)m->drains.p)[i].node;
    return k;
}

/* ---- one move -------------------------------------------------------------------------------- */

static void remember(sl_moves *m, const move *mv, bool ok, uint64_t epoch, double frozen_ms,
                     const char *why)
{
    if (m->nlast == KEEP_DONE) {
        memmove(m->last, m->last + 1, (KEEP_DONE - 1) * sizeof *m->last);
        m->nlast--;
    }
    done *d = &m->last[m->nlast++];
    memset(d, 0, sizeof *d);
    snprintf(d->space, sizeof d->space, "%s", mv->space);
    snprintf(d->to, sizeof d->to, "%s", mv->to);
    snprintf(d->why, sizeof d->why, "%s", why ? why : "");
    d->ok = ok;
    d->epoch = epoch;
    d->frozen_ms = frozen_ms;
    d->at_ms = sl_now_ms();
    d->ms = d->at_ms - mv->started_ms;
    if (ok)
        m->moved++;
    else
        m->failed++;
}

static void on_intent_deleted(void *ud, const sl_etcd_result *r)
{
    (void)ud;
    (void)r;
}

/* Deletes the intent of space if it is still the one at mod (a newer one stays). */
static void delete_intent(sl_moves *m, const char *space, int64_t mod)
{
    char key[320];
    snprintf(key, sizeof key, "%s%s", m->moves_prefix, space);
    sl_etcd_cmp cmp = {.key = key, .target = SL_CMP_MOD, .op = SL_CMP_EQUAL, .number = mod};
    sl_etcd_txn_op del = {.kind = SL_TXN_DELETE, .key = key};
    sl_etcd_txn(m->e, &cmp, 1, &del, 1, NULL, 0, on_intent_deleted, NULL);
    intent *it = sl__row_find(&m->intents, sizeof *it, space, strlen(space));
    if (it && it->mod == mod)
        sl__row_drop(&m->intents, sizeof *it, it);
}

/* The move ends, failed: the space serves here again (if it was frozen), the intent goes. */
static void fail_move(sl_moves *m, move *mv, const char *why, bool abort_handoff)
{
    sl_log("cluster: moving space %s to node %s failed: %s", mv->space, mv->to, why);
    if (abort_handoff)
        sl_server_handoff_abort(m->srv, mv->space, why);
    remember(m, mv, false, 0, 0, why);
    m->next_ms = sl_now_ms() + PAUSE_MS;
    if (mv->intent_mod)
        delete_intent(m, mv->space, mv->intent_mod);
    m->cur = NULL;
    free(mv);
}

static void send_txn(move *mv);

/* The Txn's answer: committed, refused (the key changed), or none (sent again). */
static void on_txn(void *ud, const sl_etcd_result *r)
{
    move *mv = ud;
    sl_moves *m = mv->m;
    if (!m) {
        free(mv);
        return;
    }
    uint64_t epoch = 0;
    if (r->status.code) {
        mv->state = M_UNKNOWN;          /* applied or not: ask again (see the top) */
        mv->retry_at = sl_now_ms() + RETRY_MS;
        return;
    }
    if (r->succeeded) {
        epoch = (uint64_t)r->revision;
    } else if (r->nkvs) {
        /* Refused: unless an earlier attempt of ours is what changed it. */
        json_t *d = json_loadb((const char *)r->kvs[0].value, r->kvs[0].value_len, 0, NULL);
        const char *node = json_string_value(json_object_get(d, "node"));
        uint64_t from = (uint64_t)json_integer_value(json_object_get(d, "from_epoch"));
        if (node && !strcmp(node, mv->to) && from == mv->from_epoch)
            epoch = (uint64_t)r->kvs[0].mod_revision;
        json_decref(d);
    }
    if (!epoch) {
        fail_move(m, mv, "the owner key changed meanwhile (this node's lease was lost?)", true);
        return;
    }
    double frozen = sl_server_handoff_commit(m->srv, mv->space, epoch);
    sl_owners_note(m->o, mv->space, mv->to, mv->listen, mv->to_lease, epoch, mv->from_epoch);
    sl_log("cluster: space %s moved to node %s (epoch %llu -> %llu, %.0f ms)", mv->space,
           mv->to, (unsigned long long)mv->from_epoch, (unsigned long long)epoch,
           sl_now_ms() - mv->started_ms);
    remember(m, mv, true, epoch, frozen, NULL);
    intent *it = sl__row_find(&m->intents, sizeof *it, mv->space, strlen(mv->space));
    if (it && it->mod == mv->intent_mod)
        sl__row_drop(&m->intents, sizeof *it, it);
    m->cur = NULL;
    free(mv);
    if (m->changed)
        m->changed(m->changed_ud);
}

static void send_txn(move *mv)
{
    sl_moves *m = mv->m;
    char key[320], ikey[320], text[512];
    snprintf(key, sizeof key, "%s%s", m->owners_prefix, mv->space);
    snprintf(ikey, sizeof ikey, "%s%s", m->moves_prefix, mv->space);
    snprintf(text, sizeof text, "{\"node\":\"%s\",\"listen\":\"%s\",\"lease\":%lld,"
             "\"from\":\"%s\",\"from_epoch\":%llu}", mv->to, mv->listen,
             (long long)mv->to_lease, m->self, (unsigned long long)mv->from_epoch);
    sl_etcd_cmp cmp = {.key = key, .target = SL_CMP_MOD, .op = SL_CMP_EQUAL,
                       .number = (int64_t)mv->from_epoch};
    sl_etcd_txn_op ok[2] = {
        {.kind = SL_TXN_PUT, .key = key, .value = text, .value_len = strlen(text),
         .lease = mv->to_lease},
        {.kind = SL_TXN_DELETE, .key = ikey},
    };
    sl_etcd_txn_op fail = {.kind = SL_TXN_RANGE, .key = key};
    mv->state = M_TXN;
    if (sl_etcd_txn(m->e, &cmp, 1, ok, mv->intent_mod ? 2 : 1, &fail, 1, on_txn, mv)) {
        mv->state = M_UNKNOWN;
        mv->retry_at = sl_now_ms() + RETRY_MS;
    }
}

/* handoff.c: the target holds the snapshot (commit through etcd), or the handoff failed. */
static void on_handoff(void *ud, const char *space, sl_handoff_event ev, const char *why)
{
    (void)space;
    sl_moves *m = ud;
    move *mv = m->cur;
    if (!mv)
        return;
    if (ev == SL_HANDOFF_READY)
        send_txn(mv);
    else
        fail_move(m, mv, why, false);
}

/* Starts the move of space to node `to` ("": placement's choice); false when it cannot
 * start (logged, the intent deleted). */
static bool start(sl_moves *m, const intent *it)
{
    move *mv = calloc(1, sizeof *mv);
    if (!mv)
        return false;
    mv->m = m;
    snprintf(mv->space, sizeof mv->space, "%s", it->space);
    mv->intent_mod = it->mod;
    mv->started_ms = sl_now_ms();
    char owner[65];
    uint64_t from = 0;
    sl_owners_owner(m->o, it->space, owner, sizeof owner, &mv->from_epoch, &from);
    if (it->to[0]) {
        snprintf(mv->to, sizeof mv->to, "%s", it->to);
    } else {
        const char *except[65] = {m->self};
        size_t n = 1 + sl_moves_drained(m, except + 1, 64);
        if (!sl_owners_pick(m->o, except, n, mv->to, sizeof mv->to)) {
            m->cur = mv;
            fail_move(m, mv, "no other live node to take it", false);
            return false;
        }
    }
    m->cur = mv;
    char why[300];
    if (!strcmp(mv->to, m->self)) {
        fail_move(m, mv, "it is on that node already", false);
        return false;
    }
    if (!sl_owners_node(m->o, mv->to, mv->listen, sizeof mv->listen, &mv->to_lease)) {
        snprintf(why, sizeof why, "node %s is not a live node of the cluster", mv->to);
        fail_move(m, mv, why, false);
        return false;
    }
    if (sl_server_handoff_start(m->srv, mv->space, mv->to, mv->listen, on_handoff, m, why,
                                sizeof why)) {
        fail_move(m, mv, why, false);
        return false;
    }
    mv->state = M_HANDING;
    return true;
}

/*
 * --rebalance: when moving one of this node's spaces to the least loaded node (by
 * (spaces + 1) / capacity) still leaves this node at least as loaded as that one would be,
 * the move makes the spread better without overshooting: it is started (the first of this
 * node's spaces by name). Every node decides for itself, one move at a time, every
 * REBALANCE_MS, so a node that joins fills up gradually; with equal capacities the counts
 * end within one of each other.
 */
static void rebalance(sl_moves *m, const char **mine, size_t nmine)
{
    const char *ids[64];
    double load[64], cap[64];
    size_t n = sl_owners_loads(m->o, ids, load, cap, 64), me = n, to = n;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(ids[i], m->self))
            me = i;
        else if (to == n || (load[i] + 1) / cap[i] < (load[to] + 1) / cap[to])
            to = i;
    }
    if (me == n || to == n || !nmine || (load[me] - 1) / cap[me] < (load[to] + 1) / cap[to])
        return;
    const char *first = mine[0];
    for (size_t i = 1; i < nmine; i++)
        if (strcmp(mine[i], first) < 0)
            first = mine[i];
    intent it = {0};
    snprintf(it.space, sizeof it.space, "%s", first);
    snprintf(it.to, sizeof it.to, "%s", ids[to]);
    sl_log("cluster: rebalancing: space %s to node %s (%g spaces here, %g there)", first,
           ids[to], load[me], load[to]);
    start(m, &it);
}

void sl_moves_step(sl_moves *m, int64_t lease, double now_ms)
{
    if (m->cur) {
        if (m->cur->state == M_UNKNOWN && now_ms >= m->cur->retry_at)
            send_txn(m->cur);
        return;
    }
    if (!lease || now_ms < m->next_ms)
        return;
    /* The first intent (by name) for a space this node serves; a drain of this node makes
     * one for every space it still hosts. */
    const char *mine[1024];
    size_t nmine = sl_owners_mine(m->o, mine, 1024);
    if (sl_moves_draining(m, m->self))
        for (size_t i = 0; i < nmine && i < 1024; i++)
            if (!sl__row_find(&m->intents, sizeof(intent), mine[i], strlen(mine[i]))) {
                intent it = {0};
                snprintf(it.space, sizeof it.space, "%s", mine[i]);
                start(m, &it);
                return;
            }
    const intent *best = NULL;
    const intent *it = m->intents.p;
    for (size_t i = 0; i < m->intents.n; i++) {
        bool ours = false;
        for (size_t k = 0; k < nmine && k < 1024 && !ours; k++)
            ours = !strcmp(mine[k], it[i].space);
        if (ours && (!best || strcmp(it[i].space, best->space) < 0))
            best = &it[i];
    }
    if (best) {
        intent copy = *best;
        start(m, &copy);
        return;
    }
    if (m->rebalance && now_ms >= m->next_rebalance_ms) {
        m->next_rebalance_ms = now_ms + REBALANCE_MS;
        rebalance(m, mine, nmine < 1024 ? nmine : 1024);
    }
}

/* ---- life and figures ------------------------------------------------------------------------ */

sl_moves *sl_moves_new(sl_server *srv, sl_owners *o, sl_etcd *e, const char *root,
                       const char *self, bool rebalance, void (*changed)(void *ud), void *ud)
{
    sl_moves *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->srv = srv;
    m->o = o;
    m->e = e;
    snprintf(m->owners_prefix, sizeof m->owners_prefix, "%sowners/", root);
    snprintf(m->moves_prefix, sizeof m->moves_prefix, "%smoves/", root);
    snprintf(m->drains_prefix, sizeof m->drains_prefix, "%sdrains/", root);
    snprintf(m->self, sizeof m->self, "%s", self);
    m->changed = changed;
    m->changed_ud = ud;
    m->rebalance = rebalance;
    m->next_rebalance_ms = sl_now_ms() + REBALANCE_MS;
    return m;
}

void sl_moves_free(sl_moves *m)
{
    if (!m)
        return;
    if (m->cur) {
        if (m->cur->state == M_HANDING)
            free(m->cur);
        else
            m->cur->m = NULL;   /* its Txn's answer (or cancellation) frees it */
    }
    sl_vec_free(&m->intents);
    sl_vec_free(&m->drains);
    free(m);
}

size_t sl_moves_describe(const sl_moves *m, char *out, size_t len, double now_ms)
{
    size_t k = 0;
#define SAY(...) (k += (size_t)snprintf(out + k, k < len ? len - k : 0, __VA_ARGS__))
    if (m->cur)
        SAY("move %s to %s in progress (%s, %.1f s)\n", m->cur->space, m->cur->to,
            m->cur->state == M_HANDING ? "handing over" : m->cur->state == M_TXN
            ? "committing" : "commit unanswered, retrying", (now_ms - m->cur->started_ms) / 1e3);
    const intent *it = m->intents.p;
    for (size_t i = 0; i < m->intents.n; i++)
        SAY("move %s to %s asked\n", it[i].space, it[i].to[0] ? it[i].to : "(any node)");
    const drain *d = m->drains.p;
    for (size_t i = 0; i < m->drains.n; i++)
        SAY("drain %s\n", d[i].node);
    for (size_t i = 0; i < m->nlast; i++) {
        const done *x = &m->last[i];
        if (x->ok)
            SAY("moved %s to %s epoch %llu in %.0f ms, frozen %.1f ms here (%.1f s ago)\n",
                x->space, x->to, (unsigned long long)x->epoch, x->ms, x->frozen_ms,
                (now_ms - x->at_ms) / 1e3);
        else
            SAY("move %s to %s FAILED after %.0f ms (%.1f s ago): %s\n", x->space, x->to,
                x->ms, (now_ms - x->at_ms) / 1e3, x->why);
    }
#undef SAY
    return k < len ? k : (len ? len - 1 : 0);
}

void sl_moves_counts(const sl_moves *m, uint64_t *moved, uint64_t *failed, bool *moving)
{
    *moved = m->moved;
    *failed = m->failed;
    *moving = m->cur != NULL;
}
