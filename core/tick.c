/*
 * tick.c: the tick.
 *
 * The tick only looks at entities that changed ("dirty"). A pair can change verdict only if
 * one of its ends changed. The tick (1) sorts the dirty into removed, special and moved
 * (classify); (2) buries the removed, emitting leave for each pair they were in; (3) runs
 * one pass per remaining dirty entity e:
 *
 * - Moved (only its position changed, by at most a quarter cell): every lane in the index
 *   carries the entity's position at the last tick beside its current one, and its radius
 *   and masks, which have not changed for e nor for any partner that is not special. So the
 *   verdict a pair had at the last tick follows from the old positions, except inside the
 *   hysteresis band, where the pair list decides. A SIMD kernel (sl_simd_judge) computes old
 *   and new verdicts for a whole bucket at once, in both roles, and reports the few lanes
 *   whose verdict may differ; only those cost scalar work, and only real changes touch the
 *   pair lists. The search covers the old pairs too: a partner's distance at the last tick
 *   was within reach, and since then e moved `dmove` and a partner at most `maxmove`.
 * - Special (added, radius / layer / mask changed, or a far jump): the list pass re-judges
 *   every pair e is in against its previous pairs, stamped from its lists into per-slot
 *   marks. A special entity's pass owns all of its pairs; other passes skip it.
 *
 * Roles: each pair is judged once. If either end is special, by that end's pass (the
 * watcher's, if both are); otherwise by the watcher's pass if the watcher moved; otherwise
 * by the target's pass. Watchers whose radius exceeds BIG_CELLS cells are "big": they are
 * kept in a list and checked directly against each dirty target, so one huge radius never
 * makes every search cover the whole map.
 *
 * With a rule installed (sl_space_set_rule), a pair whose distance verdict is "visible" also
 * needs the rule's, but only when it was not visible before or an end was re-shaped (added,
 * touched, radius / layer / mask changed: F_RESHAPED): decide()
 * queues those pairs, and after the passes resolve_rules() asks the rule in batches and
 * settles them. A pair is still judged once, so deferring its settling changes nothing that
 * another pass reads. The old verdict of a pair then always comes from its watcher's list,
 * since being in range no longer implies being visible.
 *
 * Events are collected, sorted by (watcher, target), and an enter and a leave of the same id
 * pair (an id removed and re-added in one tick) cancel into "no change" (or a stay), which
 * makes the output exactly the set difference the contract promises.
 */
#include "space_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the tick -------------------------------------------------------------------------- */

static inline void emit(sl_space *s, uint64_t w, uint64_t t, sl_event_kind kind)
{
    if (s->nev == s->evcap) {
        size_t cap = s->evcap ? s->evcap * 2 : 1024;
        sl_event *ev = sl__realloc(s->a, s->ev, s->evcap * sizeof(sl_event),
                                   cap * sizeof(sl_event));
        if (!ev) {
            s->ev_failed = true;
            return;
        }
        s->ev = ev;
        /* The radix sort's second buffer keeps the same size; the old one holds no data. */
        sl__free(s->a, s->ev_tmp, s->evcap * sizeof(sl_event));
        s->ev_tmp = sl__realloc(s->a, NULL, 0, cap * sizeof(sl_event));
        s->evcap = s->ev_tmp ? cap : 0;
        if (!s->ev_tmp) {
            s->ev_failed = true;
            return;
        }
    }
    s->ev[s->nev++] = (sl_event){w, t, (uint32_t)kind};
}

/* emit() for the other files of the space (compaction reports leaves too). */
void sl__space_emit(sl_space *s, uint64_t w, uint64_t t, sl_event_kind kind)
{
    emit(s, w, t, kind);
}

/* Pair-list searches, through the selected SIMD level (lists reach hundreds in crowds). */
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

/* Adds pair w -> t; false on OOM (the pair is then not recorded). */
static bool link(sl_space *s, uint32_t w, uint32_t t)
{
    if (sl__u32vec_push(&s->sees[w], s->a, t))
        return false;
    s->pairs++;
    return true;
}

/* Removes target d from watcher c's list, if there, with its leave. */
static void drop_target(sl_space *s, uint32_t c, uint32_t d)
{
    if (list_remove(&s->sees[c], d)) {
        s->pairs--;
        emit(s, s->id[c], s->id[d], SL_EVENT_LEAVE);
    }
}

/*
 * Emits the leaves of a removed entity d's pairs. Its own targets are in its list (a leave
 * each, if its id is back in this tick). Its watchers are found where they must be: an
 * ordinary one saw d from within reach of d's last position and has moved at most
 * `maxmove` since; big ones are in their list; a special one meets d in its own pass (or
 * in the compaction, which drops dead targets). The slot stays reserved until the end of
 * the tick.
 */
static void bury(sl_space *s, uint32_t d, float reach_small, float maxmove)
{
    uint64_t did = s->id[d];
    bool back = sl__idmap_get(&s->ids, did) != NONE;
    sl_u32vec *se = &s->sees[d];
    s->pairs -= se->n;
    if (back)
        for (uint32_t i = 0; i < se->n; i++)
            emit(s, did, s->id[se->v[i]], SL_EVENT_LEAVE);
    sl__u32vec_free(se, s->a);
    if (reach_small >= 0) {
        float q = (reach_small + maxmove) * 1.0001f + 1e-3f;
        s->cand.n = 0;
        if (sl_index_query(s->index, s->hot[d].px, s->hot[d].py, q * q, &s->cand))
            s->ev_failed = true;
        for (uint32_t i = 0; i < s->cand.n; i++) {
            uint32_t c = s->cand.v[i];
            if (!(s->hot[c].flags & (F_SPECIAL | F_BIG)))
                drop_target(s, c, d);
        }
    }
    for (uint32_t i = 0; i < s->big.n; i++)
        if (!(s->hot[s->big.v[i]].flags & F_SPECIAL))
            drop_target(s, s->big.v[i], d);
}

static inline uint32_t next_stamp(sl_space *s)
{
    if (s->stamp >= NONE - 4) {
        for (uint32_t e = 0; e < s->top; e++)
            s->hot[e].mark_a = s->hot[e].mark_b = 0;
        s->stamp = 2;
    }
    s->stamp += 2;
    return s->stamp;
}

static void settle(sl_space *s, uint32_t w, uint32_t t, bool old, bool now);

/* Queues pair w -> t for the rule; on OOM the pair keeps its old verdict. */
static void defer(sl_space *s, uint32_t w, uint32_t t, bool old)
{
    if (s->npend == s->pendcap) {
        size_t cap = s->pendcap ? s->pendcap * 2 : 1024;
        struct pending *p = sl__realloc(s->a, s->pend, s->pendcap * sizeof *p, cap * sizeof *p);
        if (!p) {
            s->ev_failed = true;
            settle(s, w, t, old, old);
            return;
        }
        s->pend = p;
        s->pendcap = cap;
    }
    s->pend[s->npend++] = (struct pending){w, t, old};
}

/*
 * Settles pair w -> t whose distance verdict now is `geo`, or queues it for the rule when
 * the rule must be asked: in range, and not visible before or an end touched.
 */
static inline void decide(sl_space *s, uint32_t w, uint32_t t, bool old, bool geo)
{
    if (geo && s->rule && (!old || ((s->hot[w].flags | s->hot[t].flags) & F_RESHAPED)))
        defer(s, w, t, old);
    else
        settle(s, w, t, old, geo);
}

/*
 * Judges watcher c (not special) against special target e at squared distance d2 now; the
 * old verdict is c's list's, unless e is new (no list can name it). Marks c judged.
 */
static void judge_watcher(sl_space *s, uint32_t e, uint32_t c, float d2, uint32_t st)
{
    const hot *w = &s->hot[c];
    s->hot[c].mark_b = st;
    bool old = !(s->hot[e].flags & F_NEW) && list_has(&s->sees[c], e);
    bool now = (w->mask & (1u << s->hot[e].layer)) &&
               (d2 <= w->r2 || (old && d2 <= w->rh2));
    decide(s, c, e, old, now);
}

/* Whether c may judge as a watcher of special e here: an ordinary watcher, not e, not yet. */
static inline bool judges_as_watcher(const sl_space *s, uint32_t e, uint32_t c, uint32_t st)
{
    return c != e && (s->hot[c].flags & (F_SPECIAL | F_BIG | F_WATCH)) == F_WATCH &&
           s->hot[c].mark_b != st;
}

/*
 * The list pass, for a special entity e (added, re-shaped or jumped far): re-judges every
 * pair e takes part in, except those whose watcher is itself special (judged in that
 * watcher's pass). As a watcher, e's old targets are its list, stamped into marks. As a
 * target, its watchers now are near its position now, and its old watchers near its last
 * position (within reach plus `maxmove`); their lists say whether they saw it. Allocation
 * failures set ev_failed; the lists stay consistent with the events emitted.
 */
static void relate_special(sl_space *s, uint32_t e, float reach2_small, float maxmove)
{
    const float ex = s->hot[e].x, ey = s->hot[e].y;
    const bool watch = s->hot[e].flags & F_WATCH;
    const uint32_t emask = watch ? s->hot[e].mask : 0;
    const uint32_t st = next_stamp(s);
    sl_u32vec *sees = &s->sees[e];

    for (uint32_t i = 0; i < sees->n; i++)
        s->hot[sees->v[i]].mark_a = st;

    float q2 = watch && s->hot[e].rh2 > reach2_small ? s->hot[e].rh2 : reach2_small;
    s->cand.n = 0;
    s->fresh.n = 0;
    if (q2 >= 0 && sl_index_query(s->index, ex, ey, q2, &s->cand))
        s->ev_failed = true;

    for (uint32_t i = 0; i < s->cand.n; i++) {
        uint32_t c = s->cand.v[i];
        if (c == e)
            continue;
        float dx = s->hot[c].x - ex, dy = s->hot[c].y - ey;
        float d2 = dx * dx + dy * dy;
        /* e as watcher of c. */
        if ((emask >> s->hot[c].layer) & 1u) {
            bool prev = s->hot[c].mark_a == st;
            if (d2 <= s->hot[e].r2 || (prev && d2 <= s->hot[e].rh2)) {
                bool ask = s->rule && (!prev || ((s->hot[e].flags | s->hot[c].flags) &
                                                 F_RESHAPED));
                if (ask && !prev) {
                    defer(s, e, c, false);      /* the rule decides whether it enters */
                } else if (sl__u32vec_push(&s->fresh, s->a, c)) {
                    /* Out of memory: c drops out of e's list (a leave if it was there). */
                    s->ev_failed = true;
                } else if (prev) {
                    /* Listed meanwhile; with `ask` the rule decides whether it stays. */
                    s->hot[c].mark_a = st + 1;
                    if (ask)
                        defer(s, e, c, true);
                    else if (s->cfg.stay && (CHANGED(s->hot[e].flags) ||
                                             CHANGED(s->hot[c].flags)))
                        emit(s, s->id[e], s->id[c], SL_EVENT_STAY);
                } else {
                    s->pairs++;
                    emit(s, s->id[e], s->id[c], SL_EVENT_ENTER);
                }
            }
        }
        /* c as watcher of e. */
        if (judges_as_watcher(s, e, c, st))
            judge_watcher(s, e, c, d2, st);
    }
    /* Old watchers that are no longer within reach of e now. */
    if (!(s->hot[e].flags & F_NEW) && reach2_small >= 0) {
        float q = (sqrtf(reach2_small) + maxmove) * 1.0001f + 1e-3f;
        s->cand.n = 0;
        if (sl_index_query(s->index, s->hot[e].px, s->hot[e].py, q * q, &s->cand))
            s->ev_failed = true;
        for (uint32_t i = 0; i < s->cand.n; i++) {
            uint32_t c = s->cand.v[i];
            if (judges_as_watcher(s, e, c, st)) {
                float dx = s->hot[c].x - ex, dy = s->hot[c].y - ey;
                judge_watcher(s, e, c, dx * dx + dy * dy, st);
            }
        }
    }
    for (uint32_t i = 0; i < s->big.n; i++) {
        uint32_t c = s->big.v[i];
        if (c == e || (s->hot[c].flags & F_SPECIAL))
            continue;
        float dx = s->hot[c].x - ex, dy = s->hot[c].y - ey;
        judge_watcher(s, e, c, dx * dx + dy * dy, st);
    }

    /* Leaves of e as watcher: old targets not confirmed. Then e's list becomes `fresh`. */
    for (uint32_t i = 0; i < sees->n; i++) {
        uint32_t c = sees->v[i];
        if (s->hot[c].mark_a == st) {
            s->pairs--;
            emit(s, s->id[e], s->id[c], SL_EVENT_LEAVE);
        }
    }
    if (sl__u32vec_reserve(sees, s->a, s->fresh.n) == 0) {
        if (s->fresh.n)
            memcpy(sees->v, s->fresh.v, (size_t)s->fresh.n * sizeof(uint32_t));
        sees->n = s->fresh.n;
    } else {
        /* No memory to copy: hand e the scratch buffer itself and keep its old one. */
        sl_u32vec t = *sees;
        *sees = s->fresh;
        s->fresh = t;
    }
}

/* Links or unlinks pair w -> t after a verdict change; emits the event. */
static void settle(sl_space *s, uint32_t w, uint32_t t, bool old, bool now)
{
    if (old == now) {
        if (now && s->cfg.stay && (CHANGED(s->hot[w].flags) || CHANGED(s->hot[t].flags)))
            emit(s, s->id[w], s->id[t], SL_EVENT_STAY);
        return;
    }
    if (now) {
        if (link(s, w, t))
            emit(s, s->id[w], s->id[t], SL_EVENT_ENTER);
        else
            s->ev_failed = true;
        return;
    }
    list_remove(&s->sees[w], t);
    s->pairs--;
    emit(s, s->id[w], s->id[t], SL_EVENT_LEAVE);
}

/*
 * A pair's verdict at the last tick and now, from squared distances then (d2o) and now
 * (d2n): certain unless the old distance lay in the hysteresis band, where only the pair
 * list knows (`list` holds `who` exactly when the pair was visible), or a rule is installed.
 */
static inline void verdicts(const sl_space *s, float d2o, float d2n, float r2, float rh2,
                            const sl_u32vec *list, uint32_t who, bool *old, bool *now)
{
    if (s->rule)    /* in range is not visible when the rule may have said no */
        *old = d2o <= rh2 && list_has(list, who);
    else
        *old = d2o <= r2 || (d2o <= rh2 && list_has(list, who));
    *now = d2n <= r2 || (*old && d2n <= rh2);
}

typedef struct moved_ctx {
    sl_space *s;
    uint32_t e;
    sl_judge j;
} moved_ctx;

/* Judges one bucket for a moved entity, then settles the few lanes the kernel reports. */
static int moved_bucket(void *ud, const sl__bucket *b)
{
    moved_ctx *m = ud;
    sl_space *s = m->s;
    const uint32_t e = m->e;
    const sl_judge *j = &m->j;
    uint32_t room = sl_simd_padded(b->n) + SL_SIMD_PAD;
    if (s->cand.cap < room && sl__u32vec_reserve(&s->cand, s->a, room)) {
        s->ev_failed = true;
        return 0;
    }
    sl_lanes l = {b->x, b->y, b->px, b->py, b->r2, b->rh2, b->slot, b->wmask, b->lbit,
                  b->flags, b->n};
    uint32_t k = sl_simd_judge(&l, j, s->cand.v);
    /* The pair lists of the reported partners are mostly cold: start their loads a few
     * lanes ahead, header first, then the buffer it points to. */
    for (uint32_t q = 0; q < k && q < 4; q++)
        __builtin_prefetch(&s->sees[b->slot[s->cand.v[q]]]);
    for (uint32_t q = 0; q < k; q++) {
        if (q + 4 < k)
            __builtin_prefetch(&s->sees[b->slot[s->cand.v[q + 4]]]);
        if (q + 2 < k) {
            const sl_u32vec *ahead = &s->sees[b->slot[s->cand.v[q + 2]]];
            __builtin_prefetch(ahead->v);
        }
        uint32_t i = s->cand.v[q], c = b->slot[i];
        float dx = b->x[i] - j->x, dy = b->y[i] - j->y;
        float d2n = dx * dx + dy * dy;
        float ox = b->px[i] - j->px, oy = b->py[i] - j->py;
        float d2o = ox * ox + oy * oy;
        bool old, now;
        if (j->wmask & b->lbit[i]) {
            verdicts(s, d2o, d2n, j->r2, j->rh2, &s->sees[e], c, &old, &now);
            decide(s, e, c, old, now);
        }
        if ((b->wmask[i] & j->lbit) && !(b->flags[i] & (SL_LANE_DIRTY | SL_LANE_BIG))) {
            verdicts(s, d2o, d2n, b->r2[i], b->rh2[i], &s->sees[c], e, &old, &now);
            decide(s, c, e, old, now);
        }
    }
    return 0;
}

/*
 * The judge pass, for an entity e that only moved, and by no more than the tick's move
 * bound. Nothing about e or its partners but positions changed since the last tick, so the
 * old verdict of each pair follows from the old positions (kept in the lanes), and the SIMD
 * judge finds the few pairs whose verdict may differ; only those are looked at, and only
 * real changes touch the pair lists. The search reaches every partner that e saw or that
 * saw e at the last tick: their distance then was within reach, and since then e moved by
 * `dmove` and a partner by at most `maxmove`. Special partners are skipped: their own pass
 * judges every pair they are in.
 */
static void relate_moved(sl_space *s, uint32_t e, float reach_small, float maxmove)
{
    const hot *h = &s->hot[e];
    moved_ctx m = {
        .s = s, .e = e,
        .j = {.x = h->x, .y = h->y, .px = h->px, .py = h->py, .r2 = h->r2, .rh2 = h->rh2,
              .wmask = (h->flags & F_WATCH) ? h->mask : 0, .lbit = 1u << h->layer,
              .slot = e, .stay = s->cfg.stay},
    };
    float mx = h->x - h->px, my = h->y - h->py;
    float dmove = sqrtf(mx * mx + my * my);
    float reach = (h->flags & F_WATCH) ? sqrtf(h->rh2) : -1.0f;
    if (reach_small > reach)
        reach = reach_small;
    if (reach >= 0) {
        reach = (reach + dmove + maxmove) * 1.0001f + 1e-3f;
        sl__index_box(s->index, h->x, h->y, reach * reach, moved_bucket, &m);
    }
    /* Big watchers that saw e, or see it now (those that moved judge it in their pass). */
    for (uint32_t i = 0; i < s->big.n; i++) {
        uint32_t c = s->big.v[i];
        const hot *w = &s->hot[c];
        if (c == e || (w->flags & (F_DIRTY | F_SPECIAL)) || !(w->mask & m.j.lbit))
            continue;
        float dx = w->x - h->x, dy = w->y - h->y, ox = w->px - h->px, oy = w->py - h->py;
        bool old, now;
        verdicts(s, ox * ox + oy * oy, dx * dx + dy * dy, w->r2, w->rh2, &s->sees[c], e,
                 &old, &now);
        decide(s, c, e, old, now);
    }
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
            settle(s, p[i].w, p[i].t, p[i].old, verdict[i] != 0);
    }
    s->rule_calls += s->npend;
    s->npend = 0;
}

/*
 * The fast path of sort_events, for ids small enough that (watcher, target, kind) packs into
 * one 64-bit key (tbits: the target's bit length): sorts keys instead of 24-byte events,
 * 11 bits a pass, skipping digits that are the same in every key. keys needs 2n entries.
 */
static void sort_packed(uint32_t count[16][256], sl_event *ev, uint64_t *keys, size_t n,
                        unsigned tbits, uint64_t or_all)
{
    uint64_t *k = keys, *t = keys + n, and_all = ~0ULL;
    for (size_t i = 0; i < n; i++) {
        k[i] = ev[i].watcher << (tbits + 2) | ev[i].target << 2 | ev[i].kind;
        and_all &= k[i];
    }
    uint64_t differ = or_all ^ and_all;
    uint32_t *hist = &count[0][0];     /* 4096 counters: room for one 11-bit digit */
    for (unsigned sh = 0; sh < 64 && (differ >> sh); sh += 11) {
        if (!((differ >> sh) & 0x7ff))
            continue;
        memset(hist, 0, 2048 * sizeof(uint32_t));
        for (size_t i = 0; i < n; i++)
            hist[(k[i] >> sh) & 0x7ff]++;
        uint32_t sum = 0;
        for (unsigned d = 0; d < 2048; d++) {
            uint32_t c = hist[d];
            hist[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            t[hist[(k[i] >> sh) & 0x7ff]++] = k[i];
        uint64_t *x = k;
        k = t;
        t = x;
    }
    const uint64_t tmask = (tbits == 64 ? ~0ULL : (1ULL << tbits) - 1);
    for (size_t i = 0; i < n; i++)
        ev[i] = (sl_event){k[i] >> (tbits + 2), (k[i] >> 2) & tmask, (uint32_t)(k[i] & 3)};
}

static inline unsigned bit_length(uint64_t x)
{
    return x ? 64u - (unsigned)__builtin_clzll(x) : 0u;
}

/*
 * Sorts events by (watcher, target) with a stable LSD radix sort. Ids that pack two to a
 * 64-bit key (any below 2^31 do) take the packed path; otherwise one byte a pass over the
 * events themselves, with all sixteen histograms from one read, and a byte that is the same
 * in every id (from the OR and AND of all ids) costing no pass. Returns the buffer that
 * holds the result.
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
    unsigned wbits = bit_length(w_or), tbits = bit_length(t_or);
    if (wbits + tbits + 2 <= 64 && tbits + 2 < 64) {
        /* tmp holds 24 bytes an event: room for the two key arrays. */
        sort_packed(count, ev, (uint64_t *)(void *)tmp, n, tbits,
                    w_or << (tbits + 2) | t_or << 2 | 3);
        return ev;
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

/* Sorts the events and folds an enter + leave of one id pair into nothing (or a stay). */
static void finish_events(sl_space *s)
{
    if (s->nev > 1) {
        sl_event *sorted = sort_events(s->radix, s->ev, s->ev_tmp, s->nev);
        if (sorted != s->ev) {
            s->ev_tmp = s->ev;
            s->ev = sorted;
        }
    }
    size_t w = 0;
    for (size_t i = 0; i < s->nev; i++) {
        sl_event ev = s->ev[i];
        if (i + 1 < s->nev && s->ev[i + 1].watcher == ev.watcher &&
            s->ev[i + 1].target == ev.target) {
            i++;
            if (!s->cfg.stay)
                continue;
            ev.kind = SL_EVENT_STAY;
        }
        s->ev[w++] = ev;
    }
    s->nev = w;
}

/* Sorts the dirty list by slot (a radix sort; after compaction slot order is spatial). */
static void order_dirty(sl_space *s)
{
    uint32_t n = s->dirty.n;
    if (n < 64)
        return;
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

/*
 * The list pass is bound by memory latency: a special entity's list and the records it
 * names are first touches. The dirty list is known in advance, so those loads start a few
 * entities early, in stages (list header, then the buffer, then the records it names).
 */
static inline void prefetch_ahead(const sl_space *s, const uint32_t *d, uint32_t nd, uint32_t i)
{
    if (i + 8 < nd) {
        __builtin_prefetch(&s->sees[d[i + 8]]);
        __builtin_prefetch(&s->hot[d[i + 8]]);
    }
    if (i + 4 < nd) {
        const sl_u32vec *a = &s->sees[d[i + 4]];
        for (uint32_t k = 0; k < a->n; k += 16)
            __builtin_prefetch(a->v + k);
    }
    if (i + 2 < nd) {
        const sl_u32vec *a = &s->sees[d[i + 2]];
        for (uint32_t k = 0; k < a->n; k++)
            __builtin_prefetch(&s->hot[a->v[k]], 1);
    }
}

/* Gives back event buffers that a burst (such as the first tick of a big world) left far
 * larger than recent ticks need. */
static void shrink_events(sl_space *s)
{
    const size_t keep = 1u << 16;
    if (s->evcap <= keep || s->nev * 8 > s->evcap)
        return;
    size_t cap = s->nev * 2 > keep ? s->nev * 2 : keep;
    sl__free(s->a, s->ev_tmp, s->evcap * sizeof(sl_event));
    s->ev_tmp = NULL;
    sl_event *ev = sl__realloc(s->a, s->ev, s->evcap * sizeof(sl_event), cap * sizeof(sl_event));
    if (ev)
        s->ev = ev;
    else
        cap = s->evcap;     /* shrinking failed: keep the block at its old size */
    s->ev_tmp = sl__realloc(s->a, NULL, 0, cap * sizeof(sl_event));
    s->evcap = cap;
    if (!s->ev_tmp) {
        sl__free(s->a, s->ev, cap * sizeof(sl_event));
        s->ev = NULL;
        s->evcap = 0;
    }
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
    const float far = scale * FAR_SHARE, far2 = far * far;
    float max2 = 0;
    for (uint32_t i = 0; i < s->dirty.n; i++) {
        uint32_t e = s->dirty.v[i];
        hot *h = &s->hot[e];
        float dx = h->x - h->px, dy = h->y - h->py, d2 = dx * dx + dy * dy;
        if ((h->flags & F_RESHAPED) || !(d2 <= far2)) {
            h->flags |= F_SPECIAL;
            sl__space_lane_sync(s, e);
        } else if (d2 > max2) {
            max2 = d2;
        }
    }
    s->last_special = 0;
    for (uint32_t i = 0; i < s->dirty.n; i++)
        s->last_special += (s->hot[s->dirty.v[i]].flags & F_SPECIAL) != 0;
    return sqrtf(max2);
}

void sl__space_retune(sl_space *s);

int sl_space_tick(sl_space *s, sl_event_sink sink, void *ud)
{
    s->nev = 0;
    s->ev_failed = false;
    sl__space_retune(s);

    uint32_t n = 0;
    s->dead.n = 0;
    for (uint32_t i = 0; i < s->dirty.n; i++) {
        uint32_t e = s->dirty.v[i];
        if (s->hot[e].flags & F_DEAD)
            s->dead.v[s->dead.n++] = e;
        else
            s->dirty.v[n++] = e;
    }
    s->dirty.n = n;
    float reach2 = sl__space_small_reach2(s);
    float reach = reach2 >= 0 ? sqrtf(reach2) : -1.0f;
    float maxmove = classify(s, reach2);
    for (uint32_t i = 0; i < s->dead.n; i++)
        bury(s, s->dead.v[i], reach, maxmove);
    bool compacted = sl__space_want_compact(s) && sl__space_compact(s);
    if (!compacted)
        order_dirty(s);

    const uint32_t *d = s->dirty.v, nd = s->dirty.n;
    for (uint32_t i = 0; i < nd; i++) {
        if (s->hot[d[i]].flags & F_SPECIAL) {
            prefetch_ahead(s, d, nd, i);
            relate_special(s, d[i], reach2, maxmove);
        } else {
            relate_moved(s, d[i], reach, maxmove);
        }
    }
    if (s->npend)
        resolve_rules(s);
    /* What was "now" becomes "the last tick". */
    for (uint32_t i = 0; i < nd; i++) {
        hot *h = &s->hot[d[i]];
        uint32_t pos;
        sl__bucket *b = sl__index_lane(s->index, d[i], &pos);
        h->px = b->px[pos] = h->x;
        h->py = b->py[pos] = h->y;
        h->flags &= (uint16_t)~(F_DIRTY | F_SPECIAL | F_RESHAPED | F_NEW | F_QUIET);
        b->flags[pos] &= ~(SL_LANE_DIRTY | SL_LANE_SPECIAL);
    }
    /* The dead slots are free now (a compaction has already dropped them). */
    if (!compacted) {
        for (uint32_t i = 0; i < s->dead.n; i++) {
            s->hot[s->dead.v[i]].flags = 0;
            s->free_slots.v[s->free_slots.n++] = s->dead.v[i];
        }
    }
    s->last_dirty = s->dirty.n;
    s->dirty.n = 0;
    s->ticks++;

    finish_events(s);
    if (sink && s->nev)
        sink(ud, s->ev, s->nev);
    shrink_events(s);
    return s->ev_failed ? SL_ENOMEM : 0;
}
