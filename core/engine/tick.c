/*
 * tick.c: the tick.
 *
 * The tick only looks at entities that changed ("dirty"). A pair can change verdict only if
 * one of its ends changed. Pairs are implicit (see space_impl.h: Pairs): the verdict a pair
 * had at the last tick follows from both ends' state then, and from its watcher's exception
 * list when it lies within r + h. The tick (1) sets the removed apart and sorts the rest into
 * special and moved (classify); (2) puts the special entities that existed into the ghost
 * index, at where they were; (3) runs one pass per dirty entity e, the removed first:
 *
 * - Moved (only its position changed, by at most a quarter cell or reach): every lane in the
 *   index carries the entity's position at the last tick beside its current one, and its
 *   radius and masks, which have not changed for e nor for any partner that is not special.
 *   A SIMD kernel (sl_simd_judge) computes old and new "inside r" for e's whole
 *   neighbourhood of buckets, in both roles, and reports the few lanes whose verdict or
 *   exception may change (judge_moved then settles them). The search covers the old pairs
 *   too: a partner's distance at the last tick was within reach, and since then e moved
 *   `dmove` and a partner at most `maxmove`. When all entities are alike (uniform_space),
 *   both roles cross r together: the kernel reads positions only and flush_moved settles a
 *   crossing in both roles at once.
 * - Special (added, removed, radius / layer / mask changed, touched, or a far jump): the
 *   full pass (relate_special) judges every pair e takes part in from both ends' state then
 *   (`was`, px / py) and now (judge_full); its candidates come from the index around e now
 *   and then, and from the ghost index for special partners that were near e then.
 *
 * Roles: each pair is judged once. If either end is special, by that end's pass (the
 * watcher's, if both are); otherwise by the watcher's pass if the watcher moved; otherwise
 * by the target's pass. Watchers whose radius exceeds BIG_CELLS cells are "big": they are
 * kept in a list and checked directly against each dirty target, so one huge radius never
 * makes every search cover the whole map.
 *
 * With a rule installed (sl_space_set_rule), a pair whose distance verdict is "visible" also
 * needs the rule's, but only when it was not visible before or an end was re-shaped (added,
 * touched, radius / layer / mask changed: F_RESHAPED): decide() queues those pairs, and after
 * the passes resolve_rules() asks the rule in batches and settles them. A pair is still
 * judged once, so deferring its settling changes nothing that another pass reads. A pair
 * the rule denies within r is an exception, so its old verdict is known next tick.
 *
 * Events are collected (as packed 64-bit keys when ids allow), sorted by (watcher, target),
 * and an enter and a leave of the same id pair (an id removed and re-added in one tick)
 * cancel into "no change" (or a stay), which makes the output exactly the set difference
 * the contract promises. In the tick order (SL_ORDER_TICK) the sort is skipped unless an id
 * was re-added: the events go out as the passes found them.
 *
 * Two passes follow the judging when a space uses them: the cap pass (caps.c) turns the
 * events the tick diverted from capped watchers (their candidates' enters, leaves and
 * stays) into what they show; the group pass (groups.c) counts the members' events, moves
 * the members that changed group, and makes the vision groups' events.
 */
#include "space_impl.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the tick -------------------------------------------------------------------------- */

#define SPLIT_MIN 4096u     /* dirty entities below which a tick stays on one thread */
#define JOBS_A_THREAD 4u    /* jobs a pool thread gets in a split moved pass, for balance */
#define CLASSIFY_SLICES 16u /* slices of a split classify, at most */

/*
 * Makes room for n events in ev (and ev_tmp, the slow sort's second buffer, of the same
 * size); false on OOM, with both as they were or dropped together.
 */
static bool ev_reserve(sl_space *s, size_t n)
{
    if (n <= s->evcap)
        return true;
    size_t cap = s->evcap ? s->evcap : 1024;
    while (cap < n)
        cap *= 2;
    sl_event *ev = sl_realloc(s->a, s->ev, s->evcap * sizeof(sl_event), cap * sizeof(sl_event));
    if (!ev)
        return false;
    s->ev = ev;
    /* The second buffer holds no data between sorts: it is replaced, not copied. */
    sl_free(s->a, s->ev_tmp, s->evcap * sizeof(sl_event));
    s->ev_tmp = sl_realloc(s->a, NULL, 0, cap * sizeof(sl_event));
    s->evcap = s->ev_tmp ? cap : 0;
    if (!s->ev_tmp) {
        sl_free(s->a, s->ev, cap * sizeof(sl_event));
        s->ev = NULL;
        return false;
    }
    return true;
}

/* Grows a key buffer (*pk, of *cap keys) to hold n keys, doubling; false on OOM. */
static bool keys_reserve(const sl_allocator *a, uint64_t **pk, size_t *cap, size_t n)
{
    if (n <= *cap)
        return true;
    size_t c = *cap ? *cap * 2 : 4096;
    while (c < n)
        c *= 2;
    uint64_t *p = sl_realloc(a, *pk, *cap * 8, c * 8);
    if (!p)
        return false;
    *pk = p;
    *cap = c;
    return true;
}

/* Grows the packed-key buffer to hold n keys; false on OOM. */
static bool pk_reserve(sl_space *s, size_t n)
{
    return keys_reserve(s->a, &s->pk, &s->pkcap, n);
}

/* The sort's second buffer, for n keys (it holds no data between sorts: replaced, not
 * copied); false on OOM. A space whose events need no sort never has one. */
static bool pk_tmp_reserve(sl_space *s, size_t n)
{
    if (n <= s->pk_tmpcap)
        return true;
    sl_free(s->a, s->pk_tmp, s->pk_tmpcap * 8);
    s->pk_tmp = sl_realloc(s->a, NULL, 0, s->pkcap * 8);
    s->pk_tmpcap = s->pk_tmp ? s->pkcap : 0;
    return s->pk_tmp != NULL;
}

/* A streaming tick (sl_space_config.stream) hands the keys gathered so far to the sink
 * once there are STREAM_KEYS of them, instead of holding every event of the tick. */
#define STREAM_KEYS 65536u
static void stream_keys(sl_space *s);
static inline void maybe_stream(sl_space *s)
{
    if (s->streaming && s->npk >= STREAM_KEYS)
        stream_keys(s);
}

/*
 * Records an event. When every id of the space fits in `idbits` bits with
 * 2 * idbits + 2 <= 64 (any ids below 2^31 do), the event is one 64-bit key
 * (watcher, target, kind), which is all the sort moves; otherwise a 24-byte sl_event.
 */
static inline void emit_why(sl_space *s, uint64_t w, uint64_t t, sl_event_kind kind,
                            uint32_t reason)
{
    if (s->pk_shift) {
        if (s->npk == s->pkcap && !pk_reserve(s, s->npk + 1)) {
            s->ev_failed = true;
            return;
        }
        uint64_t key = w << s->pk_shift | t << 2 | (uint64_t)kind;
        s->pk_or |= key;
        s->pk_and &= key;
        s->pk[s->npk++] = key;
        maybe_stream(s);
        return;
    }
    if (s->nev == s->evcap && !ev_reserve(s, s->nev + 1)) {
        s->ev_failed = true;
        return;
    }
    s->ev[s->nev++] = (sl_event){w, t, (uint32_t)kind, reason};
}

static inline void emit(sl_space *s, uint64_t w, uint64_t t, sl_event_kind kind)
{
    emit_why(s, w, t, kind, SL_LEAVE_NONE);
}

void sl__emit(sl_space *s, uint64_t w, uint64_t t, sl_event_kind kind, uint32_t reason)
{
    emit_why(s, w, t, kind, reason);
}

/* Why pair (slot w, slot t), visible at the last tick, is not now (space.h: the reasons).
 * A removed watcher that came back is judged by its new slot. */
static uint32_t leave_reason(const sl_space *s, uint32_t w, uint32_t t)
{
    if (!(s->hot[w].flags & F_LIVE)) {
        uint32_t now = sl_idmap_get(&s->ids, s->id[w]);
        w = now == NONE ? w : now;
    }
    const hot *hw = &s->hot[w], *ht = &s->hot[t];
    if (!(ht->flags & F_LIVE))
        return SL_LEAVE_REMOVED;
    if (s->nrels && (hw->flags & ht->flags & F_REL) && sl__rel_kind(s, w, t) == SL_REL_NEVER)
        return SL_LEAVE_NEVER;
    if (!((hw->mask >> ht->layer) & 1u))
        return SL_LEAVE_LAYER;
    float d2 = sl__d2(s, w, t);
    bool fresh = !s->was[w].present;
    if (!(hw->flags & F_WATCH) || (!(d2 <= hw->r2) && (fresh || !(d2 <= hw->rh2))))
        return SL_LEAVE_RANGE;
    return SL_LEAVE_RULE;
}

uint32_t sl__leave_reason(const sl_space *s, uint32_t w, uint32_t t)
{
    return leave_reason(s, w, t);
}

static inline unsigned bit_length(uint64_t x)
{
    return x ? 64u - (unsigned)__builtin_clzll(x) : 0u;
}

/* Pair-list searches, through the selected SIMD level. */
static inline bool list_has(const sl_u32vec *v, uint32_t x)
{
    return sl_simd_find(v->v, v->n, x) < v->n;
}

static inline bool list_remove(sl_u32vec *v, uint32_t x)
{
    uint32_t i = sl_simd_find(v->v, v->n, x);
    if (i == v->n)
        return false;
    v->v[i] = v->v[--v->n];
    return true;
}

/* Whether pair w -> t is an exception (see space_impl.h: Pairs). */
static inline bool exc_has(const sl_space *s, uint32_t w, uint32_t t)
{
    return s->nx && list_has(&s->exc[w], t);
}

static inline uint32_t next_stamp(sl_space *s)
{
    if (s->stamp >= NONE - 2) {
        for (uint32_t e = 0; e < s->top; e++)
            s->hot[e].mark = 0;
        s->stamp = 1;
    }
    return ++s->stamp;
}

/* Pair w -> t (slots) became visible (in: enter) or stopped being visible (leave): counts,
 * event. */
static inline void cross(sl_space *s, uint32_t w, uint32_t t, uint64_t wid, uint64_t tid,
                         bool in)
{
    if (in) {
        s->pairs++;
        s->nsees[w]++;
    } else {
        s->pairs--;
        s->nsees[w]--;
    }
    uint32_t why = !in && s->cfg.reasons ? leave_reason(s, w, t) : SL_LEAVE_NONE;
    sl_event_kind kind = in ? SL_EVENT_ENTER : SL_EVENT_LEAVE;
    if (s->ncaps && (s->hot[w].flags & F_CAP)) {
        sl__cap_divert(s, w, t, kind, why);     /* (the cap pass decides) */
        return;
    }
    if (s->groups_used) {
        sl__group_pair(s, w, t, in);
        if (!(s->hot[w].flags & F_LIVE) && sl_idmap_get(&s->ids, wid) == NONE)
            return;     /* (a removed member's pairs, judged for its group only) */
    }
    emit_why(s, wid, tid, kind, why);
}

/*
 * Settles pair w -> t: it was visible (`old`), is visible now (`now`), was an exception
 * (`xin`), and is inside its watcher's radius now (`base`). Keeps the exception list true
 * (an exception is a pair whose visibility differs from `base`), counts, and emits the
 * event. If the exception cannot be recorded (out of memory), the pair follows its distance
 * and the events say so.
 */
static void settle(sl_space *s, uint32_t w, uint32_t t, bool old, bool now, bool xin, bool base)
{
    bool want = now != base;
    if (want != xin) {
        if (!want) {
            list_remove(&s->exc[w], t);
            s->nx--;
        } else if (sl__u32vec_push(&s->exc[w], s->a, t)) {
            s->ev_failed = true;
            now = base;
        } else {
            s->nx++;
        }
    }
    if (old == now) {
        if (!now || !s->stays || !(CHANGED(s->hot[w].flags) || CHANGED(s->hot[t].flags)))
            return;
        if (s->ncaps && (s->hot[w].flags & F_CAP))
            sl__cap_divert(s, w, t, SL_EVENT_STAY, SL_LEAVE_NONE);
        else if (s->cfg.stay && (!s->nlods || sl__lod_keep_slots(s, w, t)))
            emit(s, s->id[w], s->id[t], SL_EVENT_STAY);
        return;
    }
    cross(s, w, t, s->id[w], s->id[t], now);
}

/* Queues pair w -> t for the rule; on OOM the pair keeps its old verdict. */
static void defer(sl_space *s, uint32_t w, uint32_t t, bool old, bool xin, bool base)
{
    if (s->npend == s->pendcap) {
        size_t cap = s->pendcap ? s->pendcap * 2 : 1024;
        struct pending *p = sl_realloc(s->a, s->pend, s->pendcap * sizeof *p, cap * sizeof *p);
        if (!p) {
            s->ev_failed = true;
            settle(s, w, t, old, old, xin, base);
            return;
        }
        s->pend = p;
        s->pendcap = cap;
    }
    s->pend[s->npend++] = (struct pending){w, t, old, xin, base, 0};
}

/*
 * Settles pair w -> t whose distance verdict now is `geo`, or queues it for the rule when
 * the rule must be asked: in range, and not visible before or an end touched.
 */
static inline void decide(sl_space *s, uint32_t w, uint32_t t, bool old, bool geo, bool xin,
                          bool base)
{
    if (geo && s->rule && (!old || ((s->hot[w].flags | s->hot[t].flags) & F_RESHAPED)))
        defer(s, w, t, old, xin, base);
    else
        settle(s, w, t, old, geo, xin, base);
}

/*
 * Judges pair w -> t when neither end changed in more than position: the radii are w's now
 * and then, d2o and d2n the squared distances at the last tick and now.
 */
static inline void judge_moved(sl_space *s, uint32_t w, uint32_t t, float d2o, float d2n,
                               float r2, float rh2)
{
    /* (A watcher with relations may see a forced pair from beyond its reach, and anyone an
     * always-relevant target.) */
    bool near = d2o <= rh2, rel = s->nrels && (s->hot[w].flags & F_REL);
    bool alw = s->nalw && (s->hot[t].flags & F_ALWAYS);    /* (no read without any) */
    bool xin = (near || rel || alw) && exc_has(s, w, t);
    bool old = (near || xin) && (d2o <= r2) != xin;
    bool base = d2n <= r2;
    sl_relation k = rel && (s->hot[t].flags & F_REL) ? sl__rel_kind(s, w, t) : SL_REL_NONE;
    if (k != SL_REL_NONE)       /* (the caller checked the mask: forced, it is seen) */
        settle(s, w, t, old, k == SL_REL_FORCE, xin, base);
    else if (alw)
        settle(s, w, t, old, true, xin, base);
    else
        decide(s, w, t, old, base || (old && d2n <= rh2), xin, base);
}

/*
 * Judges pair w -> t from scratch, from both ends' state at the last tick (`was`, px / py)
 * and now: for pairs with an end that was added, removed, re-shaped or jumped far.
 */
static void judge_full(sl_space *s, uint32_t w, uint32_t t)
{
    const hot *hw = &s->hot[w], *ht = &s->hot[t];
    const was *ow = &s->was[w], *ot = &s->was[t];
    bool old = false, xin = false, base = false, geo = false, allowed = false;
    const bool rel = s->nrels && (hw->flags & F_REL);
    if (ow->present && ot->present && ow->watch && ((ow->mask >> ot->layer) & 1u)) {
        float d2 = sl__d2_then(s, w, t);
        if (d2 <= ow->rh2 || rel || ot->always) {   /* (a forced or always-relevant one may
                                                     * be seen from anywhere) */
            xin = exc_has(s, w, t);
            old = (d2 <= ow->rh2 || xin) && (d2 <= ow->r2) != xin;
        }
    }
    if ((hw->flags & ht->flags & F_LIVE) && (hw->flags & F_WATCH) &&
        ((hw->mask >> ht->layer) & 1u)) {
        float d2 = sl__d2(s, w, t);
        allowed = true;
        base = d2 <= hw->r2;
        geo = base || (old && d2 <= hw->rh2);
    }
    sl_relation k = rel && (ht->flags & F_REL) ? sl__rel_kind(s, w, t) : SL_REL_NONE;
    if (k != SL_REL_NONE)
        settle(s, w, t, old, k == SL_REL_FORCE && allowed, xin, base);
    else if (ht->flags & F_ALWAYS)
        settle(s, w, t, old, allowed, xin, base);
    else
        decide(s, w, t, old, geo, xin, base);
}

/* Appends to cand the slots within sqrt(r2) of (x, y) in index; OOM sets ev_failed. */
static inline void gather(sl_space *s, sl_index *index, float x, float y, float r2)
{
    if (sl_index_query(index, x, y, r2, &s->cand))
        s->ev_failed = true;
}

/*
 * The full pass, for a special entity e: added, removed, re-shaped (radius, layer, mask,
 * touch) or jumped far. It judges every pair e takes part in from both ends' state then and
 * now, except pairs watched by another special entity (that one's pass judges them). The
 * candidates: everything within reach of e now (the index), of e then (the index, widened by
 * how far an ordinary entity can have moved since: `maxmove`), and the special entities that
 * were within e's reach then (the ghost index holds where they were). Big watchers come from
 * their list. A removed e whose id did not come back receives nothing: its own pairs just go.
 */
static void relate_special(sl_space *s, uint32_t e, float reach_small, float maxmove)
{
    const hot *h = &s->hot[e];
    const was *o = &s->was[e];
    const bool live = h->flags & F_LIVE;
    const uint32_t st = next_stamp(s);
    bool watch_now = live && (h->flags & F_WATCH), watch_then = o->present && o->watch;
    if (!live && sl_idmap_get(&s->ids, s->id[e]) == NONE && !(s->groups_used && s->gthen[e])) {
        s->pairs -= s->nsees[e];
        s->nsees[e] = 0;
        watch_then = false;     /* (a group member's are judged: its group loses them) */
    }
    s->cand.n = 0;
    if (live) {
        float q = watch_now && sqrtf(h->rh2) > reach_small ? sqrtf(h->rh2) : reach_small;
        if (q >= 0)
            gather(s, s->index, h->x, h->y, q * q);
    }
    if (o->present) {
        float q = watch_then && sqrtf(o->rh2) > reach_small ? sqrtf(o->rh2) : reach_small;
        if (q >= 0) {
            q = (q + maxmove) * 1.0001f + 1e-3f;
            gather(s, s->index, h->px, h->py, q * q);
        }
        if (watch_then && s->ghost && s->ghosts.n)
            gather(s, s->ghost, h->px, h->py, o->rh2);
    }
    /* The entities it has relations with, wherever they are (and those removed this tick,
     * by their old slot), are candidates too. */
    const rel_rec *rr = s->nrels && (h->flags & F_REL) ? sl__rel_record(s, s->id[e]) : NULL;
    for (uint32_t i = 0; rr && i < rr->n; i++) {
        uint32_t c = sl_idmap_get(&s->ids, rr->e[i].other);
        if ((c != NONE && sl__u32vec_push(&s->cand, s->a, c)) ||
            (rr->e[i].dead != NONE && sl__u32vec_push(&s->cand, s->a, rr->e[i].dead)))
            s->ev_failed = true;
    }
    /* Always relevant now or then: every watcher; a watcher: every always-relevant one. */
    if ((h->flags & F_ALWAYS) || (o->present && o->always)) {
        for (uint32_t c = 0; c < s->top; c++)
            if ((s->hot[c].flags & (F_LIVE | F_WATCH)) == (F_LIVE | F_WATCH) &&
                sl__u32vec_push(&s->cand, s->a, c))
                s->ev_failed = true;
    }
    if (s->nalw && (watch_now || watch_then))
        sl__always_candidates(s, &s->cand);
    for (uint32_t i = 0; i < s->cand.n; i++) {
        uint32_t c = s->cand.v[i];
        if (c == e || s->hot[c].mark == st)
            continue;
        s->hot[c].mark = st;
        if (watch_now || watch_then)
            judge_full(s, e, c);
        if ((s->hot[c].flags & (F_SPECIAL | F_BIG | F_WATCH)) == F_WATCH)
            judge_full(s, c, e);
    }
    for (uint32_t i = 0; i < s->big.n; i++) {
        uint32_t b = s->big.v[i];
        if (b != e && !(s->hot[b].flags & F_SPECIAL))
            judge_full(s, b, e);
    }
    if (!live) {
        /* Nothing can name a removed slot any more. */
        s->pairs -= s->nsees[e];
        s->nsees[e] = 0;
        s->nx -= s->exc[e].n;
        sl__u32vec_free(&s->exc[e], s->a);
    }
}

/* Buckets judged in one kernel call (a 3 x 3 neighbourhood fits; more are done in turns). */
#define MOVED_BATCH 32u

/*
 * One job's share of a tick whose moved passes are split over a thread pool (see
 * moved_in_parallel): its own scratch and event keys, merged into the space's in job order.
 */
typedef struct sl__tick_part {
    sl_u32vec cand, tag;
    uint64_t *pk;
    size_t npk, pkcap;
    uint64_t pk_or, pk_and;
    int64_t dpairs;
    bool failed;
    sl_event *ev;           /* its keys unpacked, when handed over in parallel */
    size_t nev, evcap;
} sl__tick_part;

typedef struct moved_ctx {
    sl_space *s;
    sl__tick_part *part;    /* NULL: the serial tick, writing into the space itself */
    uint32_t e;
    sl_judge j;
    uint32_t nb, room;      /* buckets gathered; output entries the kernel may write */
    const sl_lanes *l[MOVED_BATCH];     /* their lanes, as the kernels read them */
} moved_ctx;

/*
 * Whether every pair of the space is visible exactly when inside its watcher's radius (and
 * allowed by its mask): no hysteresis, no rule, no exception, no stays wanted. The moved
 * pass then needs neither exception lists nor rule batches, only the two distances.
 */
static inline bool plain_space(const sl_space *s)
{
    return s->hpos == 0 && !s->rule && !s->nx && !s->stays && !s->nrels && !s->nalw;
}

/*
 * Whether, besides being plain, every entity has the same radius, mask and layer (which it
 * sees) and none is a big watcher: a pair then crosses the radius in both roles at once, or
 * in neither, and both roles always apply (the kernels may skip the lanes' radii and masks).
 */
static inline bool uniform_space(const sl_space *s)
{
    return plain_space(s) && s->big.n == 0 && sl__space_same_shapes(s);
}

/*
 * Whether the kernels may judge the uniform way even with a rule (and the exceptions it
 * leaves): every entity alike and no big one, no hysteresis, no stays. A moved pair's
 * verdict and exception then change only when it crosses the radius (the rule's verdicts
 * stay until an end is re-shaped, which makes it special), and it crosses in both roles at
 * once: the kernel reports the crossings, which the general settling then judges (asking
 * the rule about pairs coming into range). Without a rule this is uniform_space, whose
 * settling is faster still.
 */
static inline bool same_judging(const sl_space *s)
{
    return s->hpos == 0 && !s->stays && s->big.n == 0 && sl__space_same_shapes(s) &&
           !s->nrels && !s->nalw;
}

/* Adds d to a count that passes on other threads may change too (atomic when par). */
static inline void add_count(uint32_t *c, int d, const bool par)
{
    if (par)
        __atomic_fetch_add(c, (uint32_t)d, __ATOMIC_RELAXED);
    else
        *c += (uint32_t)d;
}

/*
 * flush_moved's settling in a uniform space with packed events: each reported lane is a
 * crossing in both roles (the lane's own only when it is not dirty), written straight into
 * the key buffer pk (room for 2 * total keys), with the counts kept in locals (the buffer's
 * stores could alias them). Returns the keys written; *k_or, *k_and, *dpairs accumulate.
 * par: other passes run at once (the see counts are then changed atomically).
 */
static inline size_t settle_lanes(sl_space *s, const moved_ctx *m, uint32_t total,
                                  const uint32_t *out, const uint32_t *tag, uint64_t *pk,
                                  uint64_t *k_or_out, uint64_t *k_and_out, int64_t *dpairs_out,
                                  const bool par)
{
    const sl_judge *j = &m->j;
    const unsigned sh = s->pk_shift;
    const uint64_t eid = s->id[m->e], as_w = eid << sh, as_t = eid << 2;
    const uint64_t *id = s->id;
    uint32_t *nsees = s->nsees;
    uint64_t *pk0 = pk, k_or = 0, k_and = ~0ULL;
    int64_t dsees = 0, dpairs = 0;
    for (uint32_t q = 0; q < total; q++) {
        const sl_lanes *b = m->l[tag[q]];
        uint32_t i = out[q], c = b->slot[i];
        float dx = b->x[i] - j->x, dy = b->y[i] - j->y, d2 = dx * dx + dy * dy;
        if (j->d3) {
            float dz = sl_lanes_z(b)[i] - j->z;
            d2 += dz * dz;
        }
        bool in = d2 <= j->r2;
        uint64_t kind = in ? SL_EVENT_ENTER : SL_EVENT_LEAVE, cid = id[c];
        int d = in ? 1 : -1;
        uint64_t key = as_w | cid << 2 | kind;
        *pk++ = key;
        k_or |= key;
        k_and &= key;
        dsees += d;
        /* The lane's role, written always and kept unless dirty (no branch to miss). */
        int keep = !(b->flags[i] & SL_LANE_DIRTY);
        key = cid << sh | as_t | kind;
        *pk = key;
        pk += keep;
        uint64_t kmask = -(uint64_t)keep;
        k_or |= key & kmask;
        k_and &= key | ~kmask;
        add_count(&nsees[c], d & -keep, par);
        dpairs += d & -keep;
    }
    add_count(&nsees[m->e], (int)dsees, par);
    *k_or_out |= k_or;
    *k_and_out &= k_and;
    *dpairs_out += dpairs + dsees;
    return (size_t)(pk - pk0);
}

/* settle_lanes into the space's key buffer, or into the pass's part. */
static void settle_uniform(sl_space *s, const moved_ctx *m, uint32_t total,
                           const uint32_t *out, const uint32_t *tag)
{
    sl__tick_part *p = m->part;
    if (p) {
        if (!keys_reserve(s->a, &p->pk, &p->pkcap, p->npk + 2 * (size_t)total)) {
            p->failed = true;
            return;
        }
        p->npk += settle_lanes(s, m, total, out, tag, p->pk + p->npk, &p->pk_or, &p->pk_and,
                               &p->dpairs, true);
        return;
    }
    if (s->npk + 2 * (size_t)total > s->pkcap && !pk_reserve(s, s->npk + 2 * (size_t)total)) {
        s->ev_failed = true;
        return;
    }
    int64_t dpairs = 0;
    s->npk += settle_lanes(s, m, total, out, tag, s->pk + s->npk, &s->pk_or, &s->pk_and,
                           &dpairs, false);
    s->pairs += (uint64_t)dpairs;
    maybe_stream(s);
}

/* Judges the gathered buckets for a moved entity, then settles the few lanes reported. */
static void flush_moved(moved_ctx *m)
{
    sl_space *s = m->s;
    const uint32_t e = m->e, nb = m->nb;
    const sl_judge *j = &m->j;
    m->nb = 0;
    if (!nb)
        return;
    sl_u32vec *cand = m->part ? &m->part->cand : &s->cand;
    sl_u32vec *tags = m->part ? &m->part->tag : &s->tag;
    if ((cand->cap < m->room && sl__u32vec_reserve(cand, s->a, m->room)) ||
        (tags->cap < m->room && sl__u32vec_reserve(tags, s->a, m->room))) {
        if (m->part)
            m->part->failed = true;
        else
            s->ev_failed = true;
        return;
    }
    uint32_t total = sl_simd_judge(m->l, nb, j, cand->v, tags->v);
    if (s->uniform && s->pk_shift) {
        settle_uniform(s, m, total, cand->v, tags->v);
        return;
    }
    assert(!m->part);       /* (only uniform spaces with packed keys split their passes) */
    /* In a plain space each reported lane is a radius crossing in a role (in a uniform one,
     * in both: the plain settling is right there too, only slower). */
    const bool plain = plain_space(s);
    const uint64_t eid = s->id[e];
    const uint32_t *out = s->cand.v, *tag = s->tag.v;
    for (uint32_t q = 0; q < total; q++) {
        const sl_lanes *b = m->l[tag[q]];
        uint32_t i = out[q], c = b->slot[i];
        float dx = b->x[i] - j->x, dy = b->y[i] - j->y;
        float d2n = dx * dx + dy * dy;
        float ox = b->px[i] - j->px, oy = b->py[i] - j->py;
        float d2o = ox * ox + oy * oy;
        if (j->d3) {
            float dz = sl_lanes_z(b)[i] - j->z, oz = sl_lanes_pz(b)[i] - j->pz;
            d2n += dz * dz;
            d2o += oz * oz;
        }
        /* (A role whose pair lies beyond reach then and now is left to forced_stays and
         * always_stays, which judge such pairs: the kernel may report a lane for the other
         * role only.) */
        if ((j->wmask & b->lbit[i]) && (d2o <= j->rh2 || d2n <= j->r2)) {
            if (!plain)
                judge_moved(s, e, c, d2o, d2n, j->r2, j->rh2);
            else if ((d2o <= j->r2) != (d2n <= j->r2))
                cross(s, e, c, eid, s->id[c], d2n <= j->r2);
        }
        if ((b->wmask[i] & j->lbit) && !(b->flags[i] & (SL_LANE_DIRTY | SL_LANE_BIG)) &&
            (d2o <= b->rh2[i] || d2n <= b->r2[i])) {
            if (!plain)
                judge_moved(s, c, e, d2o, d2n, b->r2[i], b->rh2[i]);
            else if ((d2o <= b->r2[i]) != (d2n <= b->r2[i]))
                cross(s, c, e, s->id[c], eid, d2n <= b->r2[i]);
        }
    }
}

/* Gathers one bucket of a moved entity's neighbourhood (sl__index_box callback). */
static int moved_bucket(void *ud, const sl__bucket *b)
{
    moved_ctx *m = ud;
    if (m->nb == MOVED_BATCH)
        flush_moved(m);
    if (m->nb == 0)
        m->room = SL_SIMD_PAD;
    m->l[m->nb++] = &b->lanes;
    m->room += sl_simd_padded(b->n) + SL_SIMD_PAD;
    return 0;
}

/*
 * The stays of e's forced pairs beyond reach (e only moved): the kernel takes a pair
 * beyond r + h then and beyond r now for one that was and is unseen, and leaves it. As in
 * the rest of the pass, a pair e watches is e's to judge, and one it is watched in is,
 * unless its watcher moved (its own pass) or is big (the pass's big loop).
 */
static void forced_stays(sl_space *s, uint32_t e)
{
    const rel_rec *r = sl__rel_record(s, s->id[e]);
    const hot *h = &s->hot[e];
    for (uint32_t i = 0; r && i < r->n; i++) {
        uint32_t c = r->e[i].kind == SL_REL_FORCE ? sl_idmap_get(&s->ids, r->e[i].other) : NONE;
        if (c == NONE || (s->hot[c].flags & F_SPECIAL))
            continue;
        const hot *hc = &s->hot[c];
        float d2n = sl__d2(s, e, c), d2o = sl__d2_then(s, e, c);
        if (r->e[i].out) {
            if ((h->flags & F_WATCH) && ((h->mask >> hc->layer) & 1u) && d2o > h->rh2 &&
                d2n > h->r2)
                judge_moved(s, e, c, d2o, d2n, h->r2, h->rh2);
        } else if (!(hc->flags & (F_DIRTY | F_BIG)) && (hc->flags & F_WATCH) &&
                   ((hc->mask >> h->layer) & 1u) && d2o > hc->rh2 && d2n > hc->r2) {
            judge_moved(s, c, e, d2o, d2n, hc->r2, hc->rh2);
        }
    }
}

/* Whether pair (w, t) is forced (forced_stays has it). */
static inline bool forced(const sl_space *s, uint32_t w, uint32_t t)
{
    return (s->hot[w].flags & s->hot[t].flags & F_REL) && sl__rel_kind(s, w, t) == SL_REL_FORCE;
}

/*
 * The stays of always-relevant pairs beyond reach (e only moved), by the same rules as
 * forced_stays: e always relevant, by every far watcher that neither moved nor is big; e a
 * watcher, of every far always-relevant entity.
 */
static void always_stays(sl_space *s, uint32_t e)
{
    const hot *h = &s->hot[e];
    const uint16_t plain = F_LIVE | F_WATCH, skip = F_DIRTY | F_BIG | F_SPECIAL;
    for (uint32_t c = 0; (h->flags & F_ALWAYS) && c < s->top; c++) {
        const hot *hc = &s->hot[c];
        if (c == e || (hc->flags & (plain | skip)) != plain || !((hc->mask >> h->layer) & 1u))
            continue;
        float d2n = sl__d2(s, c, e), d2o = sl__d2_then(s, c, e);
        if (d2o > hc->rh2 && d2n > hc->r2 && !forced(s, c, e))
            judge_moved(s, c, e, d2o, d2n, hc->r2, hc->rh2);
    }
    for (uint32_t i = 0; (h->flags & F_WATCH) && i < s->nalw; i++) {
        uint32_t c = s->alw[i].on ? sl_idmap_get(&s->ids, s->alw[i].id) : NONE;
        if (c == NONE || c == e || (s->hot[c].flags & F_SPECIAL) ||
            !((h->mask >> s->hot[c].layer) & 1u))
            continue;
        float d2n = sl__d2(s, e, c), d2o = sl__d2_then(s, e, c);
        if (d2o > h->rh2 && d2n > h->r2 && !forced(s, e, c))
            judge_moved(s, e, c, d2o, d2n, h->r2, h->rh2);
    }
}

/*
 * The judge pass, for an entity e that only moved, and by no more than the tick's move
 * bound. Nothing about e or its partners but positions changed since the last tick, so the
 * old verdict of each pair follows from the old positions (kept in the lanes) and the
 * exception lists, and the SIMD judge finds the few pairs whose verdict may differ; only
 * those are looked at. The search reaches every partner that e saw or that saw e at the
 * last tick: their distance then was within reach, and since then e moved by `dmove` and a
 * partner by at most `maxmove`. Special partners are skipped: their own pass judges every
 * pair they are in.
 */
static void relate_moved(sl_space *s, sl__tick_part *part, uint32_t e, float reach_small,
                         float maxmove)
{
    const hot *h = &s->hot[e];
    moved_ctx m;            /* field by field: the bucket arrays need no clearing */
    m.s = s;
    m.part = part;
    m.e = e;
    m.nb = m.room = 0;
    m.j = (sl_judge){.x = h->x, .y = h->y, .px = h->px, .py = h->py, .r2 = h->r2,
                     .rh2 = h->rh2, .wmask = (h->flags & F_WATCH) ? h->mask : 0,
                     .lbit = 1u << h->layer, .slot = e, .stay = s->stays, .h0 = s->hpos == 0,
                     .uniform = s->uniform_judge, .d3 = s->d3};
    if (s->d3) {
        m.j.z = s->z[e];
        m.j.pz = s->pz[e];
    }
    float mx = h->x - h->px, my = h->y - h->py;
    float dmove = sqrtf(mx * mx + my * my);
    float reach = (h->flags & F_WATCH) ? sqrtf(h->rh2) : -1.0f;
    if (reach_small > reach)
        reach = reach_small;
    if (reach >= 0) {
        reach = (reach + dmove + maxmove) * 1.0001f + 1e-3f;
        /* The neighbourhood's buckets in one call (a 3 x 3 box fits); a larger one, such as
         * a big watcher's, is walked and judged MOVED_BATCH buckets at a time. */
        uint32_t padded = 0;
        uint32_t nb = sl__index_gather(s->index, h->x, h->y, reach * reach, m.l, MOVED_BATCH,
                                       &padded);
        if (nb <= MOVED_BATCH) {
            m.room = padded + (nb + 1) * SL_SIMD_PAD;
            m.nb = nb;
        } else {
            sl__index_box(s->index, h->x, h->y, reach * reach, moved_bucket, &m);
        }
        flush_moved(&m);
    }
    /* Big watchers that saw e, or see it now (those that moved judge it in their pass). */
    for (uint32_t i = 0; i < s->big.n; i++) {
        uint32_t c = s->big.v[i];
        const hot *w = &s->hot[c];
        if (c == e || (w->flags & (F_DIRTY | F_SPECIAL)) || !(w->mask & m.j.lbit))
            continue;
        judge_moved(s, c, e, sl__d2_then(s, c, e), sl__d2(s, c, e), w->r2, w->rh2);
    }
    if (s->stays && s->nrels && (h->flags & F_REL))
        forced_stays(s, e);
    if (s->stays && s->nalw)
        always_stays(s, e);
}

/*
 * Asks the rule about the queued pairs, in batches of RULE_BATCH, and settles each by its
 * answer (a rule that leaves a verdict alone keeps the pair as it was).
 */
#define RULE_BATCH 1024u
static void resolve_rules(sl_space *s)
{
    sl_rule_pair pairs[RULE_BATCH];
    uint8_t verdict[RULE_BATCH];
    for (size_t base = 0; base < s->npend; base += RULE_BATCH) {
        size_t n = s->npend - base < RULE_BATCH ? s->npend - base : RULE_BATCH;
        const struct pending *p = s->pend + base;
        for (size_t i = 0; i < n; i++) {
            pairs[i] = (sl_rule_pair){s->id[p[i].w], s->id[p[i].t]};
            verdict[i] = (uint8_t)p[i].old;
        }
        s->rule(s->rule_ud, pairs, n, verdict);
        for (size_t i = 0; i < n; i++)
            settle(s, p[i].w, p[i].t, p[i].old, verdict[i] != 0, p[i].xin, p[i].base);
    }
    s->rule_calls += s->npend;
    s->npend = 0;
}

#define SINK_CHUNK 8192u   /* events a sink call gets at most, from the packed path */

/*
 * Whether the tick's events need the sort: for the id order, always; for the tick order only
 * when an id was removed and re-added in this tick, the one case where a pair's enter and
 * leave both occur (the sort brings them together to cancel). Each pair is judged once
 * otherwise, so the events are already the set difference.
 */
static inline bool must_sort(const sl_space *s)
{
    return s->cfg.order == SL_ORDER_ID || s->readded;
}

uint64_t *sl__radix64(uint32_t hist[PK_PASSES][1u << PK_DIGIT], uint64_t *k, uint64_t *t,
                      size_t n, uint64_t differ)
{
    unsigned lo = (unsigned)__builtin_ctzll(differ);
    unsigned hi = 64u - (unsigned)__builtin_clzll(differ);
    unsigned passes = (hi - lo + PK_DIGIT - 1) / PK_DIGIT;
    unsigned width = (hi - lo + passes - 1) / passes;
    const uint64_t dmask = (1ULL << width) - 1;
    memset(hist, 0, passes * sizeof hist[0]);
    for (size_t i = 0; i < n; i++) {
        uint64_t key = k[i] >> lo;
        for (unsigned p = 0; p < passes; p++)
            hist[p][(key >> (p * width)) & dmask]++;
    }
    for (unsigned p = 0; p < passes; p++) {
        uint32_t *h = hist[p], sum = 0;
        unsigned sh = lo + p * width;
        if (h[(k[0] >> sh) & dmask] == n)
            continue;       /* this digit is the same in every key */
        for (size_t d = 0; d <= dmask; d++) {
            uint32_t c = h[d];
            h[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            t[h[(k[i] >> sh) & dmask]++] = k[i];
        uint64_t *x = k;
        k = t;
        t = x;
    }
    return k;
}

/* One pass of radix64_pool: the slices' digit counts, then where each slice writes. */
typedef struct radix_job {
    const uint64_t *k;
    uint64_t *t;
    size_t n;
    unsigned sh;
    uint64_t dmask;
    uint32_t nslices;
    uint32_t (*count)[1u << PK_DIGIT];
} radix_job;

static void radix_count(void *ud, size_t j)
{
    const radix_job *r = ud;
    uint32_t *c = r->count[j];
    memset(c, 0, (r->dmask + 1) * sizeof *c);
    size_t from = r->n * j / r->nslices, to = r->n * (j + 1) / r->nslices;
    for (size_t i = from; i < to; i++)
        c[(r->k[i] >> r->sh) & r->dmask]++;
}

static void radix_scatter(void *ud, size_t j)
{
    const radix_job *r = ud;
    uint32_t *c = r->count[j];
    size_t from = r->n * j / r->nslices, to = r->n * (j + 1) / r->nslices;
    for (size_t i = from; i < to; i++)
        r->t[c[(r->k[i] >> r->sh) & r->dmask]++] = r->k[i];
}

/*
 * sl__radix64 on the space's pool, when it has one and the keys are many: each pass counts
 * and scatters slices of the keys at once, slice j writing each digit's keys after those of
 * slices before it (so the sort stays stable and gives sl__radix64's result).
 */
static uint64_t *radix64_pool(sl_space *s, uint64_t *k, uint64_t *t, size_t n, uint64_t differ)
{
    uint32_t threads = s->pool ? sl_pool_threads(s->pool) : 1;
    uint32_t (*count)[1u << PK_DIGIT] = NULL;
    if (threads > 1 && n >= 4 * (size_t)SPLIT_MIN)
        count = sl_realloc(s->a, NULL, 0, threads * sizeof *count);
    if (!count)
        return sl__radix64(s->khist, k, t, n, differ);
    unsigned lo = (unsigned)__builtin_ctzll(differ);
    unsigned hi = 64u - (unsigned)__builtin_clzll(differ);
    unsigned passes = (hi - lo + PK_DIGIT - 1) / PK_DIGIT;
    unsigned width = (hi - lo + passes - 1) / passes;
    radix_job r = {.n = n, .dmask = (1ULL << width) - 1, .nslices = threads, .count = count};
    for (unsigned p = 0; p < passes; p++) {
        r.k = k;
        r.t = t;
        r.sh = lo + p * width;
        sl_pool_run(s->pool, threads, radix_count, &r);
        uint32_t sum = 0;
        bool same = false;
        for (uint64_t d = 0; d <= r.dmask; d++) {
            uint32_t all = 0;
            for (uint32_t j = 0; j < threads; j++) {
                uint32_t c = count[j][d];
                count[j][d] = sum;
                sum += c;
                all += c;
            }
            same |= all == n;
        }
        if (same)
            continue;       /* this digit is the same in every key */
        sl_pool_run(s->pool, threads, radix_scatter, &r);
        uint64_t *x = k;
        k = t;
        t = x;
    }
    sl_free(s->a, count, threads * sizeof *count);
    return k;
}

/*
 * Unpacks n keys into ev (room for SINK_CHUNK), folding an enter + leave of one id pair
 * into nothing (or a stay) when they are adjacent, and hands them to the sink a chunk at a
 * time, so that they reach it while in cache. Returns how many events it handed over.
 */
static size_t hand_over(sl_space *s, const uint64_t *k, size_t n, sl_event_sink sink, void *ud)
{
    const unsigned sh = s->pk_shift;
    const uint64_t tmask = (1ULL << (sh - 2)) - 1;
    size_t w = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t key = k[i];
        uint32_t kind = (uint32_t)(key & 3);
        if (i + 1 < n && (k[i + 1] >> 2) == (key >> 2)) {
            i++;            /* (a stay from a re-added id: LOD bands checked here) */
            if (!s->cfg.stay || (s->nlods && !sl__lod_keep(s, key >> sh, (key >> 2) & tmask)))
                continue;
            kind = SL_EVENT_STAY;
        }
        s->ev[w++] = (sl_event){key >> sh, (key >> 2) & tmask, kind, SL_LEAVE_NONE};
        if (w == SINK_CHUNK) {
            if (sink)
                sink(ud, s->ev, w);
            total += w;
            w = 0;
        }
    }
    if (w && sink)
        sink(ud, s->ev, w);
    return total + w;
}

static void stream_keys(sl_space *s)
{
    if (!ev_reserve(s, SINK_CHUNK)) {
        s->ev_failed = true;
        s->npk = 0;
        return;
    }
    s->nev_streamed += hand_over(s, s->pk, s->npk, s->sink, s->sink_ud);
    s->npk = 0;
}

/* Job k of hand_parts: part k's keys unpacked into its own events. */
static void unpack_part(void *ud, size_t k)
{
    sl_space *s = ud;
    sl__tick_part *p = &s->parts[k];
    p->nev = 0;
    if (p->npk > p->evcap) {
        sl_free(s->a, p->ev, p->evcap * sizeof(sl_event));
        p->ev = sl_realloc(s->a, NULL, 0, p->npk * sizeof(sl_event));
        p->evcap = p->ev ? p->npk : 0;
        if (!p->ev) {
            p->failed = true;
            return;
        }
    }
    const unsigned sh = s->pk_shift;
    const uint64_t tmask = (1ULL << (sh - 2)) - 1;
    for (size_t i = 0; i < p->npk; i++) {
        uint64_t key = p->pk[i];
        p->ev[i] = (sl_event){key >> sh, (key >> 2) & tmask, (uint32_t)(key & 3),
                              SL_LEAVE_NONE};
    }
    p->nev = p->npk;
}

/*
 * The held parts of a split tick (moved_passes), after the space's own keys: unpacked on the
 * pool, then handed to the sink part after part, SINK_CHUNK at a time (the sequence of the
 * merged keys: no pair comes twice when nothing needs the sort, so nothing folds). Returns
 * how many events.
 */
static size_t hand_parts(sl_space *s, sl_event_sink sink, void *ud)
{
    uint32_t njobs = s->held_parts;
    s->held_parts = 0;
    sl_pool_run(s->pool, njobs, unpack_part, s);
    size_t total = 0;
    for (uint32_t k = 0; k < njobs; k++) {
        const sl__tick_part *p = &s->parts[k];
        s->ev_failed |= p->failed;
        for (size_t at = 0; sink && at < p->nev; at += SINK_CHUNK)
            sink(ud, p->ev + at, p->nev - at < SINK_CHUNK ? p->nev - at : SINK_CHUNK);
        total += p->nev;
    }
    return total;
}

/*
 * Sorts this tick's packed keys by (watcher, target) with sl__radix64 over the bits that
 * differ between keys (the two kind bits are left out: an enter and a leave of one pair only
 * need to be adjacent), unless must_sort says no. Then hands them over (after those a
 * streaming tick handed over already). OOM for ev drops the events (ev_failed).
 */
static void finish_packed(sl_space *s, sl_event_sink sink, void *ud)
{
    size_t n = s->npk;
    s->nev = s->nev_streamed;
    if (!n) {
        if (s->held_parts)
            s->nev += hand_parts(s, sink, ud);
        return;
    }
    if (!ev_reserve(s, n < SINK_CHUNK ? n : SINK_CHUNK)) {
        s->ev_failed = true;
        s->npk = 0;
        return;
    }
    uint64_t *k = s->pk;
    uint64_t differ = (s->pk_or ^ s->pk_and) & ~3ULL;
    if (differ && n > 1 && must_sort(s)) {
        if (!pk_tmp_reserve(s, n)) {
            s->ev_failed = true;
            s->npk = 0;
            return;
        }
        k = radix64_pool(s, k, s->pk_tmp, n, differ);
    }
    s->nev = s->nev_streamed + hand_over(s, k, n, sink, ud);
    if (s->held_parts)
        s->nev += hand_parts(s, sink, ud);
    s->npk = 0;
}

/*
 * Sorts events by (watcher, target) with a stable LSD radix sort, for spaces whose ids do
 * not pack into 64-bit keys (see emit): one byte a pass over the events themselves, with
 * all sixteen histograms from one read, and a byte that is the same in every id (from the
 * OR and AND of all ids) costing no pass. Returns the buffer that holds the result.
 */
static sl_event *sort_events(uint32_t count[16][256], sl_event *ev, sl_event *tmp, size_t n)
{
    uint64_t w_or = 0, w_and = ~0ULL, t_or = 0, t_and = ~0ULL;
    for (size_t i = 0; i < n; i++) {
        w_or |= ev[i].watcher;
        w_and &= ev[i].watcher;
        t_or |= ev[i].target;
        t_and &= ev[i].target;
    }
    unsigned shift[16], np = 0;
    bool is_target[16];
    for (unsigned b = 0; b < 16; b++) {
        uint64_t diff = b < 8 ? t_or ^ t_and : w_or ^ w_and;
        unsigned sh = 8 * (b & 7);
        if ((diff >> sh) & 0xff) {
            shift[np] = sh;
            is_target[np++] = b < 8;
        }
    }
    memset(count, 0, np * 256 * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++)
        for (unsigned p = 0; p < np; p++)
            count[p][((is_target[p] ? ev[i].target : ev[i].watcher) >> shift[p]) & 0xff]++;
    for (unsigned p = 0; p < np; p++) {
        size_t pos[256], sum = 0;
        for (unsigned d = 0; d < 256; d++) {
            pos[d] = sum;
            sum += count[p][d];
        }
        if (is_target[p]) {
            for (size_t i = 0; i < n; i++)
                tmp[pos[(ev[i].target >> shift[p]) & 0xff]++] = ev[i];
        } else {
            for (size_t i = 0; i < n; i++)
                tmp[pos[(ev[i].watcher >> shift[p]) & 0xff]++] = ev[i];
        }
        sl_event *t = ev;
        ev = tmp;
        tmp = t;
    }
    return ev;
}

/* Sorts the events (unless must_sort says no) and folds an enter + leave of one id pair
 * into nothing (or a stay). */
static void finish_events(sl_space *s)
{
    if (s->nev > 1 && must_sort(s)) {
        sl_event *sorted = sort_events(s->radix, s->ev, s->ev_tmp, s->nev);
        if (sorted != s->ev) {
            s->ev_tmp = s->ev;
            s->ev = sorted;
        }
    }
    size_t w = 0;
    for (size_t i = 0; i < s->nev; i++) {
        sl_event ev = s->ev[i];
        if (ev.reason == SL_LEAVE_RULE && s->ncaps)
            ev.reason = sl__cap_reason(s, ev.watcher, ev.target);
        if (i + 1 < s->nev && s->ev[i + 1].watcher == ev.watcher &&
            s->ev[i + 1].target == ev.target) {
            i++;
            if (!s->cfg.stay || (s->nlods && !sl__lod_keep(s, ev.watcher, ev.target)))
                continue;
            ev.kind = SL_EVENT_STAY;
            ev.reason = SL_LEAVE_NONE;
        }
        s->ev[w++] = ev;
    }
    s->nev = w;
}

/* Sorts the dirty list by slot (a radix sort; after compaction slot order is spatial). */
static void order_dirty(sl_space *s)
{
    uint32_t n = s->dirty.n, i = 1;
    if (n < 64)
        return;     /* too few to matter */
    while (i < n && s->dirty.v[i - 1] < s->dirty.v[i])
        i++;
    if (i == n)
        return;     /* already in order: batched moves come sorted */
    uint32_t *k = s->dirty.v, *t = (uint32_t *)s->keys;
    uint32_t (*count)[256] = s->radix;
    memset(count, 0, 4 * 256 * sizeof(uint32_t));
    for (uint32_t i = 0; i < n; i++)
        for (unsigned d = 0; d < 4; d++)
            count[d][(k[i] >> (8 * d)) & 0xff]++;
    for (unsigned d = 0; d < 4; d++) {
        if (count[d][(k[0] >> (8 * d)) & 0xff] == n)
            continue;
        uint32_t pos[256], sum = 0;
        for (unsigned v = 0; v < 256; v++) {
            pos[v] = sum;
            sum += count[d][v];
        }
        for (uint32_t i = 0; i < n; i++)
            t[pos[(k[i] >> (8 * d)) & 0xff]++] = k[i];
        uint32_t *x = k;
        k = t;
        t = x;
    }
    if (k != s->dirty.v)
        memcpy(s->dirty.v, k, (size_t)n * sizeof(uint32_t));
}

void sl__space_drop_events(sl_space *s)
{
    sl_free(s->a, s->ev, s->evcap * sizeof(sl_event));
    sl_free(s->a, s->ev_tmp, s->evcap * sizeof(sl_event));
    sl_free(s->a, s->pk, s->pkcap * 8);
    sl_free(s->a, s->pk_tmp, s->pk_tmpcap * 8);
    s->ev = s->ev_tmp = NULL;
    s->pk = s->pk_tmp = NULL;
    s->evcap = s->pkcap = s->pk_tmpcap = 0;
}

/* Gives back event buffers that a burst (such as the first tick of a big world) left far
 * larger than recent ticks need, and all of them once the space is empty and quiet. */
static void shrink_events(sl_space *s)
{
    const size_t keep = 1u << 16;
    if (s->live == 0 && s->nev == 0) {
        sl__space_drop_events(s);
        return;
    }
    if (s->pkcap > keep && s->nev * 8 < s->pkcap) {
        sl_free(s->a, s->pk, s->pkcap * 8);
        sl_free(s->a, s->pk_tmp, s->pk_tmpcap * 8);
        s->pk = s->pk_tmp = NULL;
        s->pkcap = s->pk_tmpcap = 0;
        (void)pk_reserve(s, s->nev * 2 > keep ? s->nev * 2 : keep);
    }
    if (s->evcap <= keep || s->nev * 8 > s->evcap)
        return;
    size_t cap = s->nev * 2 > keep ? s->nev * 2 : keep;
    sl_free(s->a, s->ev_tmp, s->evcap * sizeof(sl_event));
    s->ev_tmp = NULL;
    sl_event *ev = sl_realloc(s->a, s->ev, s->evcap * sizeof(sl_event), cap * sizeof(sl_event));
    if (ev)
        s->ev = ev;
    else
        cap = s->evcap;     /* shrinking failed: keep the block at its old size */
    s->ev_tmp = sl_realloc(s->a, NULL, 0, cap * sizeof(sl_event));
    s->evcap = cap;
    if (!s->ev_tmp) {
        sl_free(s->a, s->ev, cap * sizeof(sl_event));
        s->ev = NULL;
        s->evcap = 0;
    }
}

typedef struct classify_job {
    sl_space *s;
    float far2;
    uint32_t njobs;
    float max2[CLASSIFY_SLICES];
    uint32_t special[CLASSIFY_SLICES];
} classify_job;

/* Classifies the dirty entities of slice k (see classify); entities are independent. */
static void classify_slice(void *ud, size_t k)
{
    classify_job *c = ud;
    sl_space *s = c->s;
    const uint32_t *d = s->dirty.v, n = s->dirty.n;
    uint32_t from = (uint32_t)((uint64_t)n * k / c->njobs);
    uint32_t to = (uint32_t)((uint64_t)n * (k + 1) / c->njobs);
    float max2 = 0;
    uint32_t special = 0;
    for (uint32_t i = from; i < to; i++) {
        uint32_t e = d[i];
        if (i + 8 < to)
            __builtin_prefetch(&s->hot[d[i + 8]], 1);
        hot *h = &s->hot[e];
        float dx = h->x - h->px, dy = h->y - h->py, d2 = dx * dx + dy * dy;
        if ((h->flags & F_RESHAPED) || !(d2 <= c->far2)) {
            h->flags |= F_SPECIAL;
            sl__space_lane_sync(s, e);
            special++;
        } else if (d2 > max2) {
            max2 = d2;
        }
    }
    c->max2[k] = max2;
    c->special[k] = special;
}

/*
 * Sorts this tick's dirty entities into the two passes: special (added, re-shaped, or moved
 * further than FAR_SHARE of the cell or of the widest ordinary reach, whichever is larger:
 * every judge search widens by the largest move) and moved. Returns the largest move among
 * the moved ones, which bounds how far any partner can have gone.
 */
static float classify(sl_space *s, float reach2_small)
{
    float scale = sl_index_cell(s->index);
    if (reach2_small > scale * scale)
        scale = sqrtf(reach2_small);
    const float far = scale * FAR_SHARE;
    uint32_t threads = s->pool ? sl_pool_threads(s->pool) : 1;
    classify_job c = {.s = s, .far2 = far * far, .njobs = 1};
    if (threads > 1 && s->dirty.n >= SPLIT_MIN) {
        c.njobs = threads < CLASSIFY_SLICES ? threads : CLASSIFY_SLICES;
        sl_pool_run(s->pool, c.njobs, classify_slice, &c);
    } else {
        classify_slice(&c, 0);
    }
    float max2 = 0;
    s->last_special = 0;
    for (uint32_t k = 0; k < c.njobs; k++) {
        max2 = c.max2[k] > max2 ? c.max2[k] : max2;
        s->last_special += c.special[k];
    }
    return sqrtf(max2);
}

/*
 * Puts the special entities that existed at the last tick into the ghost index, at where
 * they were then, so that special passes find each other's old pairs. The ghost index is a
 * quadtree (its memory follows the few entities it holds, however large the map) with the
 * main index's cell as its finest leaf; it holds nothing between ticks.
 */
static void place_ghosts(sl_space *s)
{
    s->ghosts.n = 0;
    bool any = false;
    for (uint32_t i = 0; i < s->dead.n && !any; i++)
        any = s->was[s->dead.v[i]].present;
    /* classify counted the special ones: without any, no need to look through the list. */
    for (uint32_t i = 0; s->last_special && i < s->dirty.n && !any; i++)
        any = (s->hot[s->dirty.v[i]].flags & F_SPECIAL) && s->was[s->dirty.v[i]].present;
    if (!any)
        return;
    if (s->ghost && sl_index_cell(s->ghost) != sl_index_cell(s->index)) {
        sl_index_free(s->ghost);
        s->ghost = NULL;
    }
    if (!s->ghost)
        s->ghost = sl_index_new(SL_INDEX_QUADTREE, s->cfg.width, s->cfg.height,
                                sl_index_cell(s->index), s->a);
    if (!s->ghost) {
        s->ev_failed = true;
        return;
    }
    for (int list = 0; list < 2; list++) {
        const sl_u32vec *v = list ? &s->dirty : &s->dead;
        for (uint32_t i = 0; i < v->n; i++) {
            uint32_t e = v->v[i];
            if (!(s->hot[e].flags & F_SPECIAL) || !s->was[e].present)
                continue;
            if (sl__u32vec_push(&s->ghosts, s->a, e) ||
                sl_index_insert(s->ghost, e, s->hot[e].px, s->hot[e].py)) {
                if (s->ghosts.n && s->ghosts.v[s->ghosts.n - 1] == e)
                    s->ghosts.n--;
                s->ev_failed = true;
            }
        }
    }
}

static void clear_ghosts(sl_space *s)
{
    for (uint32_t i = 0; i < s->ghosts.n; i++)
        sl_index_remove(s->ghost, s->ghosts.v[i]);
    s->ghosts.n = 0;
}

/* Moves the removed entities from the dirty list to the dead list (without removals since
 * the last tick the list is not walked for them). */
static void set_dead_apart(sl_space *s)
{
    s->dead.n = 0;
    s->readded = 0;
    if (!s->removed)
        return;
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->dirty.n; i++) {
        uint32_t e = s->dirty.v[i];
        if (s->hot[e].flags & F_DEAD) {
            s->hot[e].flags |= F_SPECIAL;
            s->dead.v[s->dead.n++] = e;
            s->readded += sl_idmap_get(&s->ids, s->id[e]) != NONE;
        } else {
            s->dirty.v[n++] = e;
        }
    }
    s->dirty.n = n;
    s->removed = 0;
}

/* ---- the moved passes on several threads ----------------------------------------------- */

/*
 * Whether the tick runs its special passes before the moved ones, so that the moved ones
 * may run at once: in a uniform space with packed events on a grid, a moved pass only reads
 * the index and positions, writes event keys and changes see counts (no exception, rule or
 * stay, and the grid's walk keeps no state; the quadtree's does). Each pair is still judged
 * once (a moved pass skips special partners), so the order of passes changes nothing but
 * the tick order's sequence, which is the same with a pool or without.
 */
static inline bool splits(const sl_space *s)
{
    return s->uniform && s->pk_shift && sl_index_kind_of(s->index) == SL_INDEX_GRID;
}

typedef struct moved_job {
    sl_space *s;
    float reach, maxmove;
    uint32_t njobs;
} moved_job;

/* Job k: the moved entities of the k-th slice of the dirty list, into part k. */
static void moved_slice(void *ud, size_t k)
{
    const moved_job *mj = ud;
    sl_space *s = mj->s;
    sl__tick_part *p = &s->parts[k];
    p->npk = 0;
    p->pk_or = 0;
    p->pk_and = ~0ULL;
    p->dpairs = 0;
    p->failed = false;
    const uint32_t *d = s->dirty.v, nd = s->dirty.n;
    uint32_t from = (uint32_t)((uint64_t)nd * k / mj->njobs);
    uint32_t to = (uint32_t)((uint64_t)nd * (k + 1) / mj->njobs);
    for (uint32_t i = from; i < to; i++) {
        if (i + 8 < to)
            __builtin_prefetch(&s->hot[d[i + 8]]);
        if (!(s->hot[d[i]].flags & F_SPECIAL))
            relate_moved(s, p, d[i], mj->reach, mj->maxmove);
    }
}

/* Makes room for n parts (kept from tick to tick); false on OOM. */
static bool parts_reserve(sl_space *s, uint32_t n)
{
    if (n <= s->nparts)
        return true;
    sl__tick_part *p = sl_realloc(s->a, s->parts, s->nparts * sizeof *p, n * sizeof *p);
    if (!p)
        return false;
    memset(p + s->nparts, 0, (n - s->nparts) * sizeof *p);
    s->parts = p;
    s->nparts = n;
    return true;
}

size_t sl__space_parts_bytes(const sl_space *s)
{
    size_t bytes = s->nparts * sizeof *s->parts;
    for (uint32_t k = 0; k < s->nparts; k++)
        bytes += sl__u32vec_bytes(&s->parts[k].cand) + sl__u32vec_bytes(&s->parts[k].tag) +
                 s->parts[k].pkcap * 8 + s->parts[k].evcap * sizeof(sl_event);
    return bytes;
}

void sl__space_free_parts(sl_space *s)
{
    for (uint32_t k = 0; k < s->nparts; k++) {
        sl__u32vec_free(&s->parts[k].cand, s->a);
        sl__u32vec_free(&s->parts[k].tag, s->a);
        sl_free(s->a, s->parts[k].pk, s->parts[k].pkcap * 8);
        sl_free(s->a, s->parts[k].ev, s->parts[k].evcap * sizeof(sl_event));
    }
    sl_free(s->a, s->parts, s->nparts * sizeof *s->parts);
    s->parts = NULL;
    s->nparts = 0;
}

/*
 * The moved passes of a splitting tick: on the space's pool, in slices of the dirty list
 * whose keys are then appended in slice order (the sequence of one thread), or here.
 */
static void moved_passes(sl_space *s, float reach, float maxmove)
{
    const uint32_t *d = s->dirty.v, nd = s->dirty.n;
    uint32_t threads = s->pool ? sl_pool_threads(s->pool) : 1;
    uint32_t njobs = threads * JOBS_A_THREAD;
    if (threads < 2 || nd < SPLIT_MIN || !parts_reserve(s, njobs)) {
        for (uint32_t i = 0; i < nd; i++) {
            if (i + 8 < nd)
                __builtin_prefetch(&s->hot[d[i + 8]]);
            if (!(s->hot[d[i]].flags & F_SPECIAL))
                relate_moved(s, NULL, d[i], reach, maxmove);
        }
        return;
    }
    moved_job mj = {s, reach, maxmove, njobs};
    sl_pool_run(s->pool, njobs, moved_slice, &mj);
    if (!must_sort(s)) {
        /* The keys stay in the parts (which hold them anyway), unpacked there in parallel
         * at the end (hand_parts). */
        for (uint32_t k = 0; k < njobs; k++) {
            const sl__tick_part *p = &s->parts[k];
            s->pairs += (uint64_t)p->dpairs;
            s->ev_failed |= p->failed;
        }
        s->held_parts = njobs;
        return;
    }
    size_t total = 0;
    for (uint32_t k = 0; k < njobs; k++)
        total += s->parts[k].npk;
    if (!pk_reserve(s, s->npk + total)) {
        s->ev_failed = true;
        return;
    }
    for (uint32_t k = 0; k < njobs; k++) {
        const sl__tick_part *p = &s->parts[k];
        if (p->npk)     /* (a part that found nothing may have no buffer) */
            memcpy(s->pk + s->npk, p->pk, p->npk * 8);
        s->npk += p->npk;
        s->pk_or |= p->pk_or;
        s->pk_and &= p->pk_and;
        s->pairs += (uint64_t)p->dpairs;
        s->ev_failed |= p->failed;
        maybe_stream(s);
    }
}

/* What was "now" becomes "the last tick" for the dirty entities d[from..to). (The lanes'
 * lines are loaded a few entities on: the passes since they were last read have mostly
 * pushed them out.) Entities are independent: slices may run at once. */
static void age_slice(sl_space *s, const uint32_t *d, uint32_t from, uint32_t to)
{
    for (uint32_t i = from; i < to; i++) {
        if (i + 16 < to) {
            uint32_t pos;
            sl__bucket *b = sl__index_lane(s->index, d[i + 16], &pos);
            __builtin_prefetch(&b->px[pos], 1);
            __builtin_prefetch(&b->py[pos], 1);
            __builtin_prefetch(&b->flags[pos], 1);
        }
        hot *h = &s->hot[d[i]];
        uint32_t pos;
        sl__bucket *b = sl__index_lane(s->index, d[i], &pos);
        h->px = b->px[pos] = h->x;
        h->py = b->py[pos] = h->y;
        if (s->d3)
            s->pz[d[i]] = sl__bucket_pz(b)[pos] = s->z[d[i]];
        if (h->flags & F_SPECIAL)
            s->was[d[i]] = (was){.r2 = h->r2, .rh2 = h->rh2, .mask = h->mask, .layer = h->layer,
                                 .present = 1, .watch = (h->flags & F_WATCH) != 0,
                                 .always = (h->flags & F_ALWAYS) != 0};
        h->flags &= (uint16_t)~(F_DIRTY | F_SPECIAL | F_RESHAPED | F_QUIET);
        b->flags[pos] &= ~(SL_LANE_DIRTY | SL_LANE_SPECIAL);
    }
}

typedef struct age_job {
    sl_space *s;
    const uint32_t *d;
    uint32_t nd, njobs;
} age_job;

static void age_job_run(void *ud, size_t k)
{
    const age_job *a = ud;
    age_slice(a->s, a->d, (uint32_t)((uint64_t)a->nd * k / a->njobs),
              (uint32_t)((uint64_t)a->nd * (k + 1) / a->njobs));
}

/* What was "now" becomes "the last tick" for the nd dirty entities d (on the pool when the
 * moved passes were split), and the dead slots are free. */
static void end_of_tick(sl_space *s, const uint32_t *d, uint32_t nd, bool split)
{
    assert(s->free_slots.n + s->dead.n <= s->free_slots.cap);
    uint32_t threads = split && s->pool ? sl_pool_threads(s->pool) : 1;
    if (threads > 1 && nd >= SPLIT_MIN) {
        age_job a = {s, d, nd, threads};
        sl_pool_run(s->pool, threads, age_job_run, &a);
    } else {
        age_slice(s, d, 0, nd);
    }
    for (uint32_t i = 0; i < s->dead.n; i++) {
        s->hot[s->dead.v[i]].flags = 0;
        s->was[s->dead.v[i]].present = 0;
        s->free_slots.v[s->free_slots.n++] = s->dead.v[i];
    }
}

void sl__space_settle(sl_space *s)
{
    for (uint32_t i = 0; i < s->dirty.n; i++)
        s->hot[s->dirty.v[i]].flags |= F_SPECIAL;  /* (their `was` is taken from now) */
    end_of_tick(s, s->dirty.v, s->dirty.n, false);
    s->dirty.n = 0;
    s->dead.n = 0;
}

int sl_space_tick(sl_space *s, sl_event_sink sink, void *ud)
{
    s->nev = s->npk = 0;
    s->ev_failed = false;
    unsigned idbits = bit_length(s->id_or);
    s->pk_shift = idbits <= 31 && !s->cfg.reasons ? idbits + 2 : 0;
    s->pk_or = 0;
    s->pk_and = ~0ULL;
    s->stays = s->cfg.stay || s->ncaps;
    sl__space_retune(s);

    set_dead_apart(s);
    /* A streaming tick: the tick order, no id re-added (no pair can come twice), ids that
     * pack into keys. */
    s->sink = sink;
    s->sink_ud = ud;
    s->nev_streamed = 0;
    s->held_parts = 0;
    s->streaming = s->cfg.stream && s->cfg.order == SL_ORDER_TICK && !s->readded &&
                   s->pk_shift && sink;
    /* Renumbering needs every slot it keeps to be live: with removals pending, it waits for
     * the end of the tick. */
    bool compact_late = false, compacted = false;
    if (sl__space_want_compact(s)) {
        if (s->dead.n)
            compact_late = true;
        else
            compacted = sl__space_compact(s);
    }
    if (!compacted)
        order_dirty(s);
    float reach2 = sl__space_small_reach2(s);
    float reach = reach2 >= 0 ? sqrtf(reach2) : -1.0f;
    float maxmove = classify(s, reach2);
    place_ghosts(s);
    s->uniform_judge = same_judging(s);
    s->uniform = uniform_space(s);

    for (uint32_t i = 0; i < s->dead.n; i++)
        relate_special(s, s->dead.v[i], reach, maxmove);
    const uint32_t *d = s->dirty.v, nd = s->dirty.n;
    const bool split = splits(s);
    if (split) {
        /* The special passes first, then the moved ones (in parallel if there is a pool):
         * the same events as one after the other, and the same sequence with or without. */
        for (uint32_t i = 0, left = s->last_special; left && i < nd; i++) {
            if (s->hot[d[i]].flags & F_SPECIAL) {   /* (classify counted them) */
                relate_special(s, d[i], reach, maxmove);
                left--;
            }
        }
        moved_passes(s, reach, maxmove);
    } else {
        for (uint32_t i = 0; i < nd; i++) {
            if (i + 8 < nd)     /* the dirty are sparse: each hot record is a first touch */
                __builtin_prefetch(&s->hot[d[i + 8]]);
            if (s->hot[d[i]].flags & F_SPECIAL)
                relate_special(s, d[i], reach, maxmove);
            else
                relate_moved(s, NULL, d[i], reach, maxmove);
        }
    }
    if (s->npend)
        resolve_rules(s);
    if (s->ncaps)
        sl__cap_pass(s);
    if (s->groups_used)
        sl__group_pass(s);
    if (s->regions)
        sl__region_pass(s);
    clear_ghosts(s);
    end_of_tick(s, d, nd, split);
    s->last_dirty = s->dirty.n;
    s->dirty.n = 0;
    s->dead.n = 0;
    s->ticks++;
    sl__rel_after_tick(s);
    if (s->nalw)
        sl__always_after_tick(s);

    if (s->pk_shift) {
        finish_packed(s, sink, ud);
    } else {
        finish_events(s);
        if (sink && s->nev)
            sink(ud, s->ev, s->nev);
    }
    /* After the events: a compaction may give back the tables their sort needs. */
    if (compact_late)
        (void)sl__space_compact(s);
    shrink_events(s);
    return s->ev_failed ? SL_ENOMEM : 0;
}
