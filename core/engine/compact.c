/* compact.c: renumbering a space's slots in spatial order (see sl__space_compact). */
#include "space_impl.h"

#include <string.h>

/* Moves one list's buffer to a fresh allocation (for heap locality); keeps it on failure. */
static void *relocate_list(sl_space *s, sl_u32vec *v)
{
    if (!v->cap)
        return NULL;
    size_t bytes = sl__u32vec_bytes(v);
    uint32_t *nb = sl_realloc(s->a, NULL, 0, bytes);
    if (!nb)
        return NULL;
    memcpy(nb, v->v, (size_t)v->n * sizeof(uint32_t));
    void *old = v->v;
    v->v = nb;
    return old;
}

/* Gives a list reserved to the slot capacity back down to cap; keeps it if that fails. */
static void fit_list(sl_space *s, sl_u32vec *v, uint32_t cap)
{
    if (v->cap <= cap)
        return;
    if (!cap) {
        sl__u32vec_free(v, s->a);
        return;
    }
    uint32_t *nv = sl_realloc(s->a, v->v, sl__u32vec_bytes(v), (size_t)cap * sizeof(uint32_t));
    if (nv) {
        v->v = nv;
        v->cap = cap;
    }
}

/* The tick's scratch holds nothing between ticks (nor before a tick's first pass): it is
 * given back and made again by the next tick that needs it. */
static void drop_scratch(sl_space *s)
{
    sl__u32vec_free(&s->cand, s->a);
    sl__u32vec_free(&s->tag, s->a);
    sl__space_free_parts(s);
    sl__u32vec_free(&s->ghosts, s->a);
    sl_index_free(s->ghost);
    s->ghost = NULL;
    sl_free(s->a, s->pend, s->pendcap * sizeof *s->pend);
    s->pend = NULL;
    s->pendcap = s->npend = 0;
}

/* The slot capacity for the live entities: the current one, halved while a quarter of it
 * would still hold them (not below SLOTS_MIN), or none without entities. */
static uint32_t fit_cap(const sl_space *s)
{
    uint32_t cap = s->cap;
    if (!s->live)
        return 0;
    while (cap > SLOTS_MIN && s->live <= cap / 4)
        cap /= 2;
    return cap;
}

/*
 * Renumbers the live slots in the index's spatial order, so that entities near each other
 * in the world are near each other in memory: their hot records (and exception lists, after
 * relocation) share cache lines and pages, and the tick walks them in order. Runs at the
 * start of a tick that removes nothing, at the end of one that does, or through
 * sl_space_compact() when nothing is pending. It also fits the memory to the entities left
 * (the slot block and the lists reserved to its capacity, the id map, the index, the tick's
 * scratch), and gives it all back when none is left. Any allocation failure leaves the
 * space as it was (or merely less compact).
 */
bool sl__space_compact(sl_space *s)
{
    uint32_t n = s->live, top = s->top, cap = fit_cap(s);
    if (!s->cap) {
        drop_scratch(s);
        return true;    /* no slot block: nothing was added since it was given back */
    }
    uint32_t *order = (uint32_t *)s->keys, *perm = (uint32_t *)s->keys_tmp;
    if (sl_index_order(s->index, order) != n)
        return false;   /* cannot happen: every live slot is in the index */
    for (uint32_t i = 0; i < top; i++)
        perm[i] = NONE;
    for (uint32_t i = 0; i < n; i++)
        perm[order[i]] = i;
    size_t bytes = sl__space_block_bytes(cap);
    void *block = NULL;
    if (cap && !(block = sl_realloc(s->a, NULL, 0, bytes)))
        return false;
    if (sl_index_renumber(s->index, perm, cap)) {
        sl_free(s->a, block, bytes);
        return false;
    }
    if (block)
        memset(block, 0, bytes);
    sl_space old = *s;
    sl__space_carve(s, block, cap);
    s->block = block;
    s->block_bytes = bytes;
    s->cap = cap;
    if (cap)
        memcpy(s->hist, old.hist, (HIST + 1) * sizeof(uint32_t));
    for (uint32_t i = 0; i < n; i++) {
        uint32_t o = order[i];
        s->hot[i] = old.hot[o];
        s->id[i] = old.id[o];
        s->r[i] = old.r[o];
        s->hy[i] = old.hy[o];
        s->prio[i] = old.prio[o];
        s->grp[i] = old.grp[o];
        s->gthen[i] = old.gthen[o];
        s->z[i] = old.z[o];
        s->pz[i] = old.pz[o];
        s->was[i] = old.was[o];
        s->nsees[i] = old.nsees[o];
        s->exc[i] = old.exc[o];
        /* Exception lists name live slots only (a removed target's pass drops its entries);
         * one naming a slot that is gone would be stale, and is dropped. */
        sl_u32vec *v = &s->exc[i];
        for (uint32_t j = 0; j < v->n;) {
            uint32_t t = perm[v->v[j]];
            if (t == NONE) {
                s->nx--;
                v->v[j] = v->v[--v->n];
            } else {
                v->v[j++] = t;
            }
        }
    }
    for (uint32_t o = 0; o < top; o++) {
        if (perm[o] == NONE) {
            s->nx -= old.exc[o].n;
            sl__u32vec_free(&old.exc[o], s->a);
        }
    }
    /* New list buffers in slot order; the old ones are freed only afterwards, so that the
     * allocator cannot hand their scattered chunks straight back. */
    void **stale = n ? sl_realloc(s->a, NULL, 0, (size_t)n * sizeof(void *)) : NULL;
    if (stale) {
        for (uint32_t i = 0; i < n; i++)
            stale[i] = relocate_list(s, &s->exc[i]);
        for (uint32_t i = 0; i < n; i++)
            sl_free(s->a, stale[i], sl__u32vec_bytes(&s->exc[i]));
        sl_free(s->a, stale, (size_t)n * sizeof(void *));
    }
    sl_idmap_remap(&s->ids, perm);
    sl__cap_renumber(s, perm);
    sl__group_renumber(s, perm);
    sl_idmap_trim(&s->ids, s->a);
    for (uint32_t j = 0; j < s->big.n; j++) {
        s->big.v[j] = perm[s->big.v[j]];
        s->big_pos[s->big.v[j]] = j;
    }
    s->dirty.n = 0;
    for (uint32_t i = 0; i < n; i++)
        if (s->hot[i].flags & F_DIRTY)
            s->dirty.v[s->dirty.n++] = i;
    s->free_slots.n = 0;
    s->top = n;
    fit_list(s, &s->free_slots, cap);
    fit_list(s, &s->dirty, cap);
    fit_list(s, &s->dead, cap);
    fit_list(s, &s->big, cap);
    sl_free(s->a, old.block, old.block_bytes);
    drop_scratch(s);
    s->adds_since_compact = 0;
    s->compactions++;
    return true;
}

/*
 * After bulk adds (a quarter of the population since the last compaction): a world being
 * loaded, or heavy churn. Not on a timer: entities drift slowly enough that the order a
 * compaction leaves holds up (measured: W1 50k ticks as fast 3,000 ticks later), and a
 * compaction costs O(entities + pairs) in the tick that runs it. Also after bulk removals
 * (the slot block eight times larger than its entities need, or none left), to give the
 * memory back.
 */
bool sl__space_want_compact(const sl_space *s)
{
    return (s->live >= COMPACT_MIN && s->adds_since_compact > s->live / 4) ||
           (s->cap > SLOTS_MIN && s->live <= s->cap / 8) || (s->cap && !s->live);
}
