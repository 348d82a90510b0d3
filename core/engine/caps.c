/*
 * caps.c: nearest-N with priority (space.h: sl_space_set_cap).
 *
 * The tick goes on working out every watcher's candidates as it works out any watcher's
 * visible pairs (space_impl.h: Pairs), so hysteresis, the rule, relations and exceptions
 * need nothing new. A capped watcher's record keeps its candidates explicitly (their slots),
 * each with whether it showed it at the last tick. While a space has capped watchers the
 * tick works out stays (for every watcher: the judges then report every pair a change
 * reached), and it diverts the events of capped watchers here (cev) instead of emitting
 * them: the enters and leaves of candidates, which keep the list exact, and the stays of
 * candidates that a change of either end may have moved in the ranking. A capped watcher
 * without any diverted event has the same candidates at the same distances and priorities
 * as at the last tick, and so shows the same (a shown target only gains by its margin, one
 * left out only loses). The cap pass, after the tick's passes and the rule, takes each
 * capped watcher that has some: it updates the list and, unless the cap does not bind (no
 * more candidates than the cap, and none left out at the last tick: the events then pass
 * as they are), ranks the candidates and emits the difference.
 *
 * A watcher capped since the last tick ("fresh") showed all its candidates then: its
 * candidates now (found in the index and its exceptions, as the tick left them) less the
 * diverted enters, plus the diverted leaves. A removed capped watcher whose id came back
 * leaves what its old slot showed (the new slot's enters fold with those leaves, as the tick
 * folds a re-added id's pairs). Slots in the lists are live at every tick boundary (a
 * removed target's leave takes it out), and compaction renumbers them.
 */
#include "space_impl.h"

#include "engine/simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const cap_rec *sl__cap_of(const sl_space *s, uint32_t e)
{
    uint32_t k = s->ncaps && (s->hot[e].flags & F_CAP) ? sl_idmap_get(&s->cap_at, e) : NONE;
    return k == NONE ? NULL : &s->caps[k];
}

static cap_rec *rec_of(sl_space *s, uint32_t e)
{
    return (cap_rec *)sl__cap_of(s, e);
}

int sl_space_set_cap(sl_space *s, uint64_t id, uint32_t n, float margin)
{
    uint32_t e;
    int rc = sl__space_lookup(s, "cap", id, &e);
    if (rc)
        return rc;
    if (!isfinite(margin) || margin < 0)
        return sl__space_fail(s, SL_EINVAL, "cap %llu: margin %g is not a number >= 0",
                              (unsigned long long)id, (double)margin);
    cap_rec *c = rec_of(s, e);
    if (!n) {
        if (c && !c->lift) {
            c->lift = true;
            sl__space_mark_moved(s, e);
        }
        return 0;
    }
    if (!c) {
        if (!sl__space_grow(s, (void **)&s->caps, &s->capcaps, s->ncaps, sizeof *s->caps) ||
            sl_idmap_put(&s->cap_at, s->a, e, s->ncaps))
            return sl__space_fail(s, SL_ENOMEM, "cap %llu: out of memory",
                                  (unsigned long long)id);
        c = &s->caps[s->ncaps++];
        *c = (cap_rec){.slot = e, .fresh = true};
        s->hot[e].flags |= F_CAP;
    }
    if (c->n != n || c->margin != margin || c->lift) {
        c->n = n;
        c->margin = margin;
        c->lift = false;
        sl__space_mark_moved(s, e);
    }
    return 0;
}

int sl_space_set_priority(sl_space *s, uint64_t id, int32_t priority)
{
    uint32_t e;
    int rc = sl__space_lookup(s, "priority", id, &e);
    if (rc)
        return rc;
    if (s->prio[e] != priority) {
        s->prio[e] = priority;
        sl__space_mark_moved(s, e);
    }
    return 0;
}

void sl__cap_divert(sl_space *s, uint32_t w, uint32_t t, sl_event_kind kind, uint32_t reason)
{
    if (s->ncev == s->capcev) {
        size_t cap = s->capcev ? s->capcev * 2 : 1024;
        cap_ev *p = sl_realloc(s->a, s->cev, s->capcev * sizeof *p, cap * sizeof *p);
        if (!p) {
            s->ev_failed = true;
            return;
        }
        s->cev = p;
        s->capcev = cap;
    }
    s->cev[s->ncev++] = (cap_ev){w, t, (uint8_t)kind, (uint8_t)reason};
}

/* ---- a record's candidates ------------------------------------------------------------- */

/* Makes room for n candidates in r; false on OOM. */
static bool cand_reserve(sl_space *s, cap_rec *r, uint32_t n)
{
    if (n <= r->capcand)
        return true;
    uint32_t c = r->capcand ? r->capcand : 8;
    while (c < n)
        c *= 2;
    uint32_t *cs = sl_realloc(s->a, NULL, 0, (size_t)c * 4);
    uint8_t *sh = cs ? sl_realloc(s->a, NULL, 0, c) : NULL;
    if (!sh) {
        sl_free(s->a, cs, (size_t)c * 4);
        return false;
    }
    if (r->ncand) {
        memcpy(cs, r->cs, (size_t)r->ncand * 4);
        memcpy(sh, r->sh, r->ncand);
    }
    sl_free(s->a, r->cs, (size_t)r->capcand * 4);
    sl_free(s->a, r->sh, r->capcand);
    r->cs = cs;
    r->sh = sh;
    r->capcand = c;
    return true;
}

static bool cand_push(sl_space *s, cap_rec *r, uint32_t t, uint8_t shown)
{
    if (!cand_reserve(s, r, r->ncand + 1))
        return false;
    r->cs[r->ncand] = t;
    r->sh[r->ncand++] = shown;
    return true;
}

/* Index of candidate slot t in r (ncand: none). */
static inline uint32_t cand_find(const cap_rec *r, uint32_t t)
{
    return sl_simd_find(r->cs, r->ncand, t);
}

static void cand_drop(cap_rec *r, uint32_t i)
{
    r->cs[i] = r->cs[--r->ncand];
    r->sh[i] = r->sh[r->ncand];
}

/* Appends live slot w's visible targets now as the tick left its pairs (for a capped
 * watcher: its candidates) to out; 0 or SL_ENOMEM. */
static int base_visible(sl_space *s, uint32_t w, sl_u32vec *out)
{
    const hot *hw = &s->hot[w];
    if (!(hw->flags & F_WATCH))
        return 0;
    const sl_u32vec *ex = &s->exc[w];
    uint32_t from = out->n, k = from;
    if (sl_index_query(s->index, hw->x, hw->y, hw->rh2, out))
        return SL_ENOMEM;
    for (uint32_t i = from; i < out->n; i++) {
        uint32_t t = out->v[i];
        const hot *ht = &s->hot[t];
        if (t == w || !((hw->mask >> ht->layer) & 1u))
            continue;
        float d2 = sl__d2(s, w, t);
        bool xin = ex->n && sl_simd_find(ex->v, ex->n, t) < ex->n;
        if (d2 <= hw->rh2 && (d2 <= hw->r2) != xin)
            out->v[k++] = t;
    }
    out->n = k;
    /* Beyond reach only exceptions are visible: forced and always-relevant targets. */
    for (uint32_t i = 0; i < ex->n; i++) {
        uint32_t t = ex->v[i];
        if (!(sl__d2(s, w, t) <= hw->rh2) && sl__u32vec_push(out, s->a, t))
            return SL_ENOMEM;
    }
    return 0;
}

int sl__visible_now(sl_space *s, uint32_t w, sl_u32vec *out)
{
    const cap_rec *r = sl__cap_of(s, w);
    if (!r || r->fresh)
        return base_visible(s, w, out);
    for (uint32_t i = 0; i < r->ncand; i++)
        if (r->sh[i] && sl__u32vec_push(out, s->a, r->cs[i]))
            return SL_ENOMEM;
    return 0;
}

/* Watcher w's candidates now appended to r (none shown); false on OOM. */
static bool enumerate(sl_space *s, cap_rec *r, uint32_t w)
{
    s->cand.n = 0;
    if (base_visible(s, w, &s->cand) || !cand_reserve(s, r, r->ncand + s->cand.n))
        return false;
    for (uint32_t i = 0; i < s->cand.n; i++)
        cand_push(s, r, s->cand.v[i], 0);
    return true;
}

/* A pair event of capped watcher w (slots): handed over, and counted for w's vision group
 * (a removed watcher's, whose id did not come back, only counted: `silent`). */
static void pair_out(sl_space *s, uint32_t w, uint32_t t, sl_event_kind kind, uint32_t why,
                     bool silent)
{
    if (s->groups_used && kind != SL_EVENT_STAY)
        sl__group_pair(s, w, t, kind == SL_EVENT_ENTER);
    if (!silent)
        sl__emit(s, s->id[w], s->id[t], kind, why);
}

/* ---- the cap pass ------------------------------------------------------------------------ */

/* A ranked candidate: its sort key (priority, then distance with the margin), its id. */
typedef struct ranked {
    uint64_t key, tid;
    uint32_t i;
} ranked;

static inline bool before(const ranked *a, const ranked *b)
{
    return a->key != b->key ? a->key < b->key : a->tid < b->tid;
}

static int cmp_ranked(const void *a, const void *b)
{
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

/* A float's bits, as an unsigned number in the float's order (no NaN, no -0 here). */
static inline uint32_t ordered(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

/* The pass's scratch: ranked candidates, and a new-shown flag per candidate. */
typedef struct scratch {
    ranked *r;
    uint8_t *now;
    size_t cap;
} scratch;

static bool scratch_reserve(sl_space *s, scratch *x, size_t n)
{
    if (n <= x->cap)
        return true;
    size_t c = x->cap ? x->cap : 64;
    while (c < n)
        c *= 2;
    ranked *r = sl_realloc(s->a, NULL, 0, c * sizeof *r);
    uint8_t *now = r ? sl_realloc(s->a, NULL, 0, c) : NULL;
    if (!now) {
        sl_free(s->a, r, c * sizeof *r);
        return false;
    }
    sl_free(s->a, x->r, x->cap * sizeof *x->r);
    sl_free(s->a, x->now, x->cap);
    *x = (scratch){r, now, c};
    return true;
}

/* The reason the diverted leave of target slot t in d[0..nd) gave (none: removed). */
static uint32_t leave_why(const cap_ev *d, size_t nd, uint32_t t)
{
    for (size_t i = 0; i < nd; i++)
        if (d[i].t == t && d[i].kind == SL_EVENT_LEAVE)
            return d[i].reason;
    return SL_LEAVE_REMOVED;
}

static inline bool stay_due(const sl_space *s, uint32_t w, uint32_t t)
{
    return s->cfg.stay && (CHANGED(s->hot[w].flags) || CHANGED(s->hot[t].flags)) &&
           (!s->nlods || sl__lod_keep_slots(s, w, t));
}

/* Marks in x->now the candidates of r that w shows now: the forced and always-relevant ones,
 * and the first n of the others by the ranking (space.h). */
static void rank(sl_space *s, scratch *x, const cap_rec *r, uint32_t w)
{
    const hot *hw = &s->hot[w];
    const bool was_w = s->was[w].present, rel = s->nrels && (hw->flags & F_REL);
    size_t nr = 0;
    for (uint32_t i = 0; i < r->ncand; i++) {
        uint32_t t = r->cs[i];
        const hot *ht = &s->hot[t];
        if ((ht->flags & F_ALWAYS) ||
            (rel && (ht->flags & F_REL) && sl__rel_kind(s, w, t) == SL_REL_FORCE)) {
            x->now[i] = 1;
            continue;
        }
        x->now[i] = 0;
        float dk = sqrtf(sl__d2(s, w, t));
        if (r->margin > 0 && r->sh[i] && was_w && s->was[t].present)
            dk -= r->margin;
        uint32_t p = (uint32_t)((int64_t)INT32_MAX - s->prio[t]);
        x->r[nr++] = (ranked){(uint64_t)p << 32 | ordered(dk), s->id[t], i};
    }
    uint32_t n = r->lift ? UINT32_MAX : r->n;
    if (nr > n) {
        if (nr <= 48) {
            for (size_t i = 1; i < nr; i++) {   /* (insertion sort: a few dozen at most) */
                ranked v = x->r[i];
                size_t j = i;
                for (; j > 0 && before(&v, &x->r[j - 1]); j--)
                    x->r[j] = x->r[j - 1];
                x->r[j] = v;
            }
        } else {
            qsort(x->r, nr, sizeof *x->r, cmp_ranked);
        }
        nr = n;
    }
    for (size_t i = 0; i < nr; i++)
        x->now[x->r[i].i] = 1;
}

/* Settles capped watcher r, whose diverted events are d[0..nd). */
static void settle_capped(sl_space *s, scratch *x, cap_rec *r, const cap_ev *d, size_t nd)
{
    const uint32_t w = r->slot;
    const uint64_t wid = s->id[w];
    const bool reasons = s->cfg.reasons;
    if (!(s->hot[w].flags & F_LIVE)) {
        /* Removed: it receives nothing, unless its id came back (see above); its group
         * loses what it showed either way. A fresh one showed the candidates it left. */
        bool silent = sl_idmap_get(&s->ids, wid) == NONE;
        for (uint32_t i = 0; i < r->ncand && !r->fresh; i++)
            if (r->sh[i])
                pair_out(s, w, r->cs[i], SL_EVENT_LEAVE,
                         reasons ? leave_why(d, nd, r->cs[i]) : SL_LEAVE_NONE, silent);
        for (size_t i = 0; i < nd && r->fresh; i++)
            if (d[i].kind == SL_EVENT_LEAVE)
                pair_out(s, w, d[i].t, SL_EVENT_LEAVE, d[i].reason, silent);
        return;
    }
    if (r->fresh) {
        /* Its candidates now; it showed those not entered, and those that left. */
        r->ncand = 0;
        if (!enumerate(s, r, w)) {
            s->ev_failed = true;
            return;
        }
        for (uint32_t i = 0; i < r->ncand; i++)
            r->sh[i] = 1;
        for (size_t i = 0; i < nd; i++) {
            uint32_t at = d[i].kind == SL_EVENT_ENTER ? cand_find(r, d[i].t) : r->ncand;
            if (at < r->ncand)
                r->sh[at] = 0;
            else if (d[i].kind == SL_EVENT_LEAVE)
                pair_out(s, w, d[i].t, SL_EVENT_LEAVE, d[i].reason, false);
        }
        r->fresh = false;
        r->cut = 0;
    } else {
        /* The list follows the enters and leaves; a shown one that left leaves. */
        for (size_t i = 0; i < nd; i++) {
            if (d[i].kind == SL_EVENT_LEAVE) {
                uint32_t at = cand_find(r, d[i].t);
                if (at == r->ncand)
                    continue;       /* (cannot be: the list is the candidates) */
                if (r->sh[at]) {
                    pair_out(s, w, d[i].t, SL_EVENT_LEAVE, d[i].reason, false);
                } else {
                    r->cut--;
                    s->capcut--;
                }
                cand_drop(r, at);
            } else if (d[i].kind == SL_EVENT_ENTER && !cand_push(s, r, d[i].t, 0)) {
                s->ev_failed = true;
            }
        }
    }
    /* Unbinding: no more candidates than the cap, none left out before: all are shown. */
    if (r->cut == 0 && (r->lift || r->ncand <= r->n)) {
        for (size_t i = 0; i < nd; i++) {
            uint32_t t = d[i].t;
            if (d[i].kind == SL_EVENT_ENTER)
                pair_out(s, w, t, SL_EVENT_ENTER, SL_LEAVE_NONE, false);
            else if (d[i].kind == SL_EVENT_STAY && stay_due(s, w, t))
                sl__emit(s, wid, s->id[t], SL_EVENT_STAY, SL_LEAVE_NONE);
        }
        if (r->ncand)
            memset(r->sh, 1, r->ncand);
        s->capcut -= r->cut;
        r->cut = 0;
        return;
    }
    if (!scratch_reserve(s, x, r->ncand)) {
        s->ev_failed = true;
        return;
    }
    rank(s, x, r, w);
    uint32_t cut = 0;
    for (uint32_t i = 0; i < r->ncand; i++) {
        uint32_t t = r->cs[i];
        if (x->now[i] && !r->sh[i])
            pair_out(s, w, t, SL_EVENT_ENTER, SL_LEAVE_NONE, false);
        else if (!x->now[i] && r->sh[i])
            pair_out(s, w, t, SL_EVENT_LEAVE, reasons ? SL_LEAVE_CAP : SL_LEAVE_NONE, false);
        else if (x->now[i] && stay_due(s, w, t))
            sl__emit(s, wid, s->id[t], SL_EVENT_STAY, SL_LEAVE_NONE);
        r->sh[i] = x->now[i];
        cut += !x->now[i];
    }
    s->capcut += (uint64_t)cut - r->cut;
    r->cut = cut;
}

/* Drops record k (its slot is gone or uncapped). */
static void drop_rec(sl_space *s, uint32_t k)
{
    cap_rec *r = &s->caps[k];
    s->capcut -= r->cut;
    sl_free(s->a, r->cs, (size_t)r->capcand * 4);
    sl_free(s->a, r->sh, r->capcand);
    s->hot[r->slot].flags &= (uint16_t)~F_CAP;
    sl_idmap_del(&s->cap_at, r->slot);
    uint32_t last = --s->ncaps;
    if (k != last) {
        s->caps[k] = s->caps[last];
        sl_idmap_del(&s->cap_at, s->caps[k].slot);
        sl_idmap_put(&s->cap_at, s->a, s->caps[k].slot, k);    /* (a slot freed just before) */
    }
}

void sl__cap_pass(sl_space *s)
{
    /* The diverted events by record (a counting sort; the tick's `keys` scratch maps a
     * capped slot to its record, and holds the counts). */
    uint32_t *rec = (uint32_t *)s->keys, *at = rec + s->cap;
    const uint32_t nk = s->ncaps;
    cap_ev *sorted = s->ncev ? sl_realloc(s->a, NULL, 0, s->ncev * sizeof *sorted) : NULL;
    if (s->ncev && !sorted) {
        s->ev_failed = true;
        s->ncev = 0;
    }
    if (s->ncev) {
        for (uint32_t k = 0; k < nk; k++) {
            rec[s->caps[k].slot] = k;
            at[k] = 0;
        }
        for (size_t i = 0; i < s->ncev; i++)
            at[rec[s->cev[i].w]]++;
        for (uint32_t k = 0, sum = 0; k < nk; k++) {
            uint32_t c = at[k];
            at[k] = sum;
            sum += c;
        }
        for (size_t i = 0; i < s->ncev; i++)
            sorted[at[rec[s->cev[i].w]]++] = s->cev[i];
    }
    scratch x = {0};
    for (uint32_t k = 0, from = 0; k < nk; k++) {
        uint32_t to = s->ncev ? at[k] : 0;     /* (at[k]: where record k's events end) */
        cap_rec *r = &s->caps[k];
        if (to > from || r->fresh)
            settle_capped(s, &x, r, sorted + from, to - from);
        from = to;
    }
    sl_free(s->a, sorted, s->ncev * sizeof *sorted);
    sl_free(s->a, x.r, x.cap * sizeof *x.r);
    sl_free(s->a, x.now, x.cap);
    s->ncev = 0;
    for (uint32_t k = 0; k < s->ncaps;) {
        cap_rec *r = &s->caps[k];
        if (r->lift || !(s->hot[r->slot].flags & F_LIVE))
            drop_rec(s, k);
        else
            k++;
    }
    if (!s->ncaps && s->capcev > 4096) {
        sl_free(s->a, s->cev, s->capcev * sizeof *s->cev);
        s->cev = NULL;
        s->capcev = 0;
    }
}

/* ---- snapshots, compaction, memory ----------------------------------------------------- */

void sl_space_shown_each(const sl_space *s, void (*fn)(void *ud, uint64_t w, uint64_t t),
                         void *ud)
{
    for (uint32_t k = 0; k < s->ncaps; k++) {
        const cap_rec *r = &s->caps[k];
        for (uint32_t i = 0; !r->fresh && i < r->ncand; i++)
            if (r->sh[i])
                fn(ud, s->id[r->slot], s->id[r->cs[i]]);
    }
}

uint32_t sl__cap_reason(const sl_space *s, uint64_t wid, uint64_t tid)
{
    uint32_t w = sl_idmap_get(&s->ids, wid), t = sl_idmap_get(&s->ids, tid);
    const cap_rec *r = w == NONE || t == NONE ? NULL : sl__cap_of(s, w);
    return r && cand_find(r, t) < r->ncand ? SL_LEAVE_CAP : SL_LEAVE_RULE;
}

bool sl__cap_shows(const cap_rec *r, uint32_t t)
{
    uint32_t i = cand_find(r, t);
    return i < r->ncand && r->sh[i];
}

int sl__cap_import(sl_space *s, const sl_space_state *st)
{
    for (uint32_t k = 0; k < s->ncaps; k++) {
        cap_rec *r = &s->caps[k];
        r->ncand = 0;
        if (!enumerate(s, r, r->slot))
            return sl__space_fail(s, SL_ENOMEM, "import: out of memory");
        r->fresh = false;
    }
    for (size_t i = 0; i < st->nshown; i++) {
        uint64_t wid = st->shown[2 * i], tid = st->shown[2 * i + 1];
        uint32_t w = sl_idmap_get(&s->ids, wid), t = sl_idmap_get(&s->ids, tid);
        cap_rec *r = w == NONE ? NULL : rec_of(s, w);
        uint32_t at = r && t != NONE ? cand_find(r, t) : NONE;
        if (!r || t == NONE || at == r->ncand || r->sh[at])
            return sl__space_fail(s, SL_EINVAL, "import: %llu cannot show %llu (no such "
                                  "capped watcher or candidate, or shown twice)",
                                  (unsigned long long)wid, (unsigned long long)tid);
        r->sh[at] = 1;
    }
    for (size_t i = 0; i < st->nents; i++) {
        const sl_entity_info *e = &st->ents[i];
        cap_rec *r = e->cap ? rec_of(s, sl_idmap_get(&s->ids, e->id)) : NULL;
        if (!r)
            continue;
        uint32_t shown = 0;
        for (uint32_t j = 0; j < r->ncand; j++)
            shown += r->sh[j];
        if (r->ncand != e->candidates || shown != e->sees)
            return sl__space_fail(s, SL_EINVAL, "import: %llu shows %u of %u candidates, not "
                                  "%u of %u", (unsigned long long)e->id, shown, r->ncand,
                                  e->sees, e->candidates);
        r->cut = r->ncand - shown;
        s->capcut += r->cut;
    }
    return 0;
}

void sl__cap_renumber(sl_space *s, const uint32_t *perm)
{
    for (uint32_t k = 0; k < s->ncaps; k++)
        sl_idmap_del(&s->cap_at, s->caps[k].slot);
    for (uint32_t k = 0; k < s->ncaps; k++) {
        cap_rec *r = &s->caps[k];
        r->slot = perm[r->slot];
        for (uint32_t i = 0; i < r->ncand; i++)
            r->cs[i] = perm[r->cs[i]];
        sl_idmap_put(&s->cap_at, s->a, r->slot, k);   /* (as many as were deleted) */
    }
}

void sl__cap_free(sl_space *s)
{
    for (uint32_t k = 0; k < s->ncaps; k++) {
        sl_free(s->a, s->caps[k].cs, (size_t)s->caps[k].capcand * 4);
        sl_free(s->a, s->caps[k].sh, s->caps[k].capcand);
    }
    sl_free(s->a, s->caps, (size_t)s->capcaps * sizeof *s->caps);
    sl_free(s->a, s->cev, s->capcev * sizeof *s->cev);
    sl_idmap_free(&s->cap_at, s->a);
}

size_t sl__cap_bytes(const sl_space *s)
{
    size_t b = sl_idmap_bytes(&s->cap_at) + (size_t)s->capcaps * sizeof *s->caps;
    for (uint32_t k = 0; k < s->ncaps; k++)
        b += (size_t)s->caps[k].capcand * 5;
    return b;
}
