/*
 * groups.c: vision groups (space.h: sl_space_set_group).
 *
 * A group sees a target when one of its members sees it, so the group's view is kept as a
 * count per (group, target) of the members that see the target: count > 0 is "the group
 * sees it". The counts follow the members' pair events, which are exact set differences
 * already: each enter or leave of a member w that the tick hands over (or, for a capped
 * watcher, that the cap pass does) adds or takes one, for w's group at the last tick
 * (`gthen`). A removed member receives no events, but its old pairs are still judged, in
 * silence, so that its group loses what it saw. A member that changed group (`grp`) moves
 * at the tick's end: what it sees now is taken from its old group's counts and added to its
 * new one's. The group events are then the (group, target) entries whose count crossed
 * zero during the tick, by id (a re-added target's old slot leaving and new slot entering
 * fold into nothing).
 *
 * The counts are an open-addressing table keyed by group << 32 | target slot (compaction
 * renumbers the slots and rebuilds it). An entry touched in a tick keeps the count it had
 * before, and `leaving`: how many of the members that saw the target at the last tick have
 * left the group (or were removed): the leave reason `left` when they were all of them.
 */
#include "space_impl.h"

#include <stdlib.h>
#include <string.h>

#define EMPTY_KEY UINT64_MAX

static inline uint64_t gkey(uint32_t g, uint32_t t)
{
    return (uint64_t)g << 32 | t;
}

static inline size_t slot_of(const sl_space *s, uint64_t key)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 32) & (s->gcap - 1);
}

/* The table's entry for key, or NULL (for put: added, zero, untouched; NULL on OOM). */
static gcount *find(const sl_space *s, uint64_t key)
{
    if (!s->gcap)
        return NULL;
    for (size_t i = slot_of(s, key);; i = (i + 1) & (s->gcap - 1)) {
        if (s->gtab[i].key == key)
            return &s->gtab[i];
        if (s->gtab[i].key == EMPTY_KEY)
            return NULL;
    }
}

static bool rehash(sl_space *s, size_t cap)
{
    gcount *t = sl_realloc(s->a, NULL, 0, cap * sizeof *t);
    if (!t)
        return false;
    for (size_t i = 0; i < cap; i++)
        t[i].key = EMPTY_KEY;
    gcount *old = s->gtab;
    size_t oldcap = s->gcap;
    s->gtab = t;
    s->gcap = cap;
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i].key == EMPTY_KEY)
            continue;
        size_t j = slot_of(s, old[i].key);
        while (t[j].key != EMPTY_KEY)
            j = (j + 1) & (cap - 1);
        t[j] = old[i];
    }
    sl_free(s->a, old, oldcap * sizeof *old);
    return true;
}

static gcount *put(sl_space *s, uint64_t key)
{
    gcount *e = find(s, key);
    if (e)
        return e;
    if ((s->gn + 1) * 2 > s->gcap && !rehash(s, s->gcap ? s->gcap * 2 : 1024))
        return NULL;
    size_t i = slot_of(s, key);
    while (s->gtab[i].key != EMPTY_KEY)
        i = (i + 1) & (s->gcap - 1);
    s->gtab[i] = (gcount){key, 0, s->gstamp - 1, 0, 0};  /* (untouched) */
    s->gn++;
    return &s->gtab[i];
}

/* Removes the entry at i (backward-shift deletion: no tombstones). */
static void erase(sl_space *s, size_t i)
{
    size_t mask = s->gcap - 1;
    for (size_t j = (i + 1) & mask; s->gtab[j].key != EMPTY_KEY; j = (j + 1) & mask) {
        size_t home = slot_of(s, s->gtab[j].key);
        /* Entry j may move to i when its home is not in (i, j], cyclically. */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            s->gtab[i] = s->gtab[j];
            i = j;
        }
    }
    s->gtab[i].key = EMPTY_KEY;
    s->gn--;
}

/* Whether member slot w leaves its group at this tick (changed group, or removed). */
static inline bool leaving(const sl_space *s, uint32_t w)
{
    return s->grp[w] != s->gthen[w] || !(s->hot[w].flags & F_LIVE);
}

/* Adds delta to the count of (g, target slot t), and dl to its `leaving`. */
static void note(sl_space *s, uint32_t g, uint32_t t, int delta, int dl)
{
    gcount *e = put(s, gkey(g, t));
    if (!e || (e->stamp != s->gstamp &&
               !sl__space_grow(s, (void **)&s->gkeys, &s->capgkeys, s->ngkeys, 8))) {
        s->ev_failed = true;
        return;
    }
    if (e->stamp != s->gstamp) {
        e->stamp = s->gstamp;
        e->old = e->n;
        e->leaving = 0;
        s->gkeys[s->ngkeys++] = e->key;
    }
    e->n += (uint32_t)delta;
    e->leaving += dl;
}

void sl__group_pair(sl_space *s, uint32_t w, uint32_t t, bool in)
{
    /* `leaving` counts the leaving members that saw t at the last tick: a leave says w did;
     * an enter that it did not (the move at the tick's end counts what it sees now). */
    uint32_t g = s->gthen[w];
    if (g)
        note(s, g, t, in ? 1 : -1, leaving(s, w) ? (in ? -1 : 1) : 0);
}

int sl_space_set_group(sl_space *s, uint64_t id, uint32_t group)
{
    uint32_t e;
    int rc = sl__space_lookup(s, "group", id, &e);
    if (rc)
        return rc;
    if (s->grp[e] == group)
        return 0;
    if (!(s->hot[e].flags & F_REGROUP)) {
        if (!sl__space_grow(s, (void **)&s->regroup, &s->capregroup, s->nregroup, 4))
            return sl__space_fail(s, SL_ENOMEM, "group %llu: out of memory",
                                  (unsigned long long)id);
        s->regroup[s->nregroup++] = e;
        s->hot[e].flags |= F_REGROUP;
    }
    s->grp[e] = group;
    s->groups_used = true;
    return 0;
}

static int cmp_gev(const void *a, const void *b)
{
    const sl_group_event *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    if (x->target != y->target)
        return x->target < y->target ? -1 : 1;
    return (x->kind > y->kind) - (x->kind < y->kind);
}

void sl__group_pass(sl_space *s)
{
    /* Members that changed group move what they see now. */
    for (uint32_t i = 0; i < s->nregroup; i++) {
        uint32_t w = s->regroup[i];
        s->hot[w].flags &= (uint16_t)~F_REGROUP;
        if (!(s->hot[w].flags & F_LIVE) || s->grp[w] == s->gthen[w])
            continue;
        s->cand.n = 0;
        if (sl__visible_now(s, w, &s->cand))
            s->ev_failed = true;
        for (uint32_t j = 0; j < s->cand.n; j++) {
            if (s->gthen[w])
                note(s, s->gthen[w], s->cand.v[j], -1, 1);
            if (s->grp[w])
                note(s, s->grp[w], s->cand.v[j], 1, 0);
        }
        s->gthen[w] = s->grp[w];
    }
    s->nregroup = 0;
    /* The entries that crossed zero, by id. */
    s->ngev = 0;
    for (size_t i = 0; i < s->ngkeys; i++) {
        gcount *e = find(s, s->gkeys[i]);
        if (!e || (e->old > 0) == (e->n > 0))
            continue;
        if (!sl__space_grow(s, (void **)&s->gev, &s->capgev, s->ngev, sizeof *s->gev)) {
            s->ev_failed = true;
            break;
        }
        uint32_t t = (uint32_t)e->key;
        uint32_t why = SL_GLEAVE_NONE;
        if (!e->n && s->cfg.reasons)
            why = !(s->hot[t].flags & F_LIVE) ? SL_GLEAVE_REMOVED
                  : (int64_t)e->old - e->leaving == 0 ? SL_GLEAVE_LEFT : SL_GLEAVE_UNSEEN;
        s->gev[s->ngev++] = (sl_group_event){(uint32_t)(e->key >> 32),
                                             e->n ? SL_EVENT_ENTER : SL_EVENT_LEAVE, s->id[t],
                                             why};
    }
    if (s->ngev > 1) {
        qsort(s->gev, s->ngev, sizeof *s->gev, cmp_gev);
        size_t w = 0;
        for (size_t i = 0; i < s->ngev; i++) {
            if (i + 1 < s->ngev && s->gev[i + 1].group == s->gev[i].group &&
                s->gev[i + 1].target == s->gev[i].target) {
                i++;        /* (a re-added target, seen before and after) */
                continue;
            }
            s->gev[w++] = s->gev[i];
        }
        s->ngev = w;
    }
    /* Drop the entries at zero; the next tick starts untouched. */
    for (size_t i = 0; i < s->ngkeys; i++) {
        gcount *e = find(s, s->gkeys[i]);
        if (e && !e->n)
            erase(s, (size_t)(e - s->gtab));
    }
    s->ngkeys = 0;
    s->gstamp++;
}

const sl_group_event *sl_space_group_events(const sl_space *s, size_t *n)
{
    *n = s->ngev;
    return s->gev;
}

/* ---- snapshots, compaction, memory ----------------------------------------------------- */

int sl__group_import(sl_space *s, const sl_space_state *st)
{
    for (size_t i = 0; i < st->nents; i++) {
        uint32_t e = sl_idmap_get(&s->ids, st->ents[i].id), g = st->ents[i].group;
        if (!g)
            continue;
        s->grp[e] = s->gthen[e] = g;
        s->groups_used = true;
        s->cand.n = 0;
        if (sl__visible_now(s, e, &s->cand))
            return sl__space_fail(s, SL_ENOMEM, "import: out of memory");
        for (uint32_t j = 0; j < s->cand.n; j++) {
            gcount *c = put(s, gkey(g, s->cand.v[j]));
            if (!c)
                return sl__space_fail(s, SL_ENOMEM, "import: out of memory");
            c->n++;
        }
    }
    return 0;
}

void sl__group_renumber(sl_space *s, const uint32_t *perm)
{
    if (!s->gn)
        return;
    gcount *old = s->gtab;
    size_t cap = s->gcap;
    s->gtab = NULL;
    s->gcap = s->gn = 0;
    /* (the same number of entries: the new table, as big as the old, cannot fail to fill;
     * its allocation can: then the counts are lost and the groups' events will be wrong,
     * which the tick reports as out of memory) */
    if (!rehash(s, cap)) {
        s->ev_failed = true;
        sl_free(s->a, old, cap * sizeof *old);
        return;
    }
    for (size_t i = 0; i < cap; i++) {
        if (old[i].key == EMPTY_KEY)
            continue;
        gcount *e = put(s, gkey((uint32_t)(old[i].key >> 32), perm[(uint32_t)old[i].key]));
        if (e)
            e->n = old[i].n;
    }
    sl_free(s->a, old, cap * sizeof *old);
}

void sl__group_free(sl_space *s)
{
    sl_free(s->a, s->gtab, s->gcap * sizeof *s->gtab);
    sl_free(s->a, s->gkeys, (size_t)s->capgkeys * 8);
    sl_free(s->a, s->gev, (size_t)s->capgev * sizeof *s->gev);
    sl_free(s->a, s->regroup, (size_t)s->capregroup * 4);
}

size_t sl__group_bytes(const sl_space *s)
{
    return s->gcap * sizeof *s->gtab + (size_t)s->capgkeys * 8 +
           (size_t)s->capgev * sizeof *s->gev + (size_t)s->capregroup * 4;
}
