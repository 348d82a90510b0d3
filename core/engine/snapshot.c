/*
 * snapshot.c: a space's state at a tick boundary, out (sl_space_export) and back in
 * (sl_space_import), so that a space can continue elsewhere as if it had never moved.
 *
 * At a tick boundary nothing is pending: every entity is as the last tick saw it, and the
 * visible pairs follow from the entities except the exceptions (space_impl.h: Pairs): the
 * hysteresis-held pairs (visible beyond r) and the rule-denied ones (not visible within r).
 * So the state is the entities and the exception pairs, nothing else; slot numbers, the
 * index and its tuning are the space's own business and do not change a single event.
 *
 * Import adds the entities and takes them as the last tick left them (positions, shapes),
 * without judging a single pair: which pairs are visible follows from them and the
 * exceptions, written in next; the counts of targets each watcher sees come with the
 * export (sl_entity_info.sees). So an import costs O(entities + exceptions), not a tick.
 */
#include "engine/space_impl.h"

#include "engine/simd.h"


int sl_space_export(sl_space *s, void (*entity)(void *ud, const sl_entity_info *e),
                    void (*pair)(void *ud, uint64_t watcher, uint64_t target), void *ud)
{
    if (s->dirty.n || s->dead.n || s->nregroup || sl__regions_pending(s))
        return sl__space_fail(s, SL_EINVAL, "export: only between a tick and the next change");
    for (uint32_t e = 0; e < s->top && entity; e++) {
        if (!(s->hot[e].flags & F_LIVE))
            continue;
        sl_entity_info info = sl__space_info(s, e);
        entity(ud, &info);
    }
    for (uint32_t w = 0; w < s->top && pair && s->nx; w++)
        for (uint32_t i = 0; (s->hot[w].flags & F_LIVE) && i < s->exc[w].n; i++)
            pair(ud, s->id[w], s->id[s->exc[w].v[i]]);
    return 0;
}

/* Writes exception w -> t in: the pair must be one a tick could have left as an exception
 * (both present, w watches t's layer, within r_w + h, not listed yet). */
static int put_exception(sl_space *s, uint64_t wid, uint64_t tid)
{
    uint32_t w = sl_idmap_get(&s->ids, wid), t = sl_idmap_get(&s->ids, tid);
    if (w == NONE || t == NONE || w == t)
        return sl__space_fail(s, SL_EINVAL, "import: pair %llu -> %llu: no such entities",
                    (unsigned long long)wid, (unsigned long long)tid);
    const hot *hw = &s->hot[w], *ht = &s->hot[t];
    float d2 = sl__d2(s, w, t);
    if (!(hw->flags & F_WATCH) || !((hw->mask >> ht->layer) & 1u) ||
        (!(d2 <= hw->rh2) && sl_space_relation(s, wid, tid) != SL_REL_FORCE &&
         !(ht->flags & F_ALWAYS)))
        return sl__space_fail(s, SL_EINVAL, "import: pair %llu -> %llu cannot be an exception (out of "
                    "reach or layers)", (unsigned long long)wid, (unsigned long long)tid);
    if (sl_simd_find(s->exc[w].v, s->exc[w].n, t) < s->exc[w].n)
        return sl__space_fail(s, SL_EINVAL, "import: pair %llu -> %llu given twice",
                    (unsigned long long)wid, (unsigned long long)tid);
    if (sl__u32vec_push(&s->exc[w], s->a, t))
        return sl__space_fail(s, SL_ENOMEM, "import: out of memory");
    s->nx++;
    return 0;
}

int sl_space_import(sl_space *s, const sl_space_state *st)
{
    if (s->live || s->dirty.n || s->dead.n)
        return sl__space_fail(s, SL_EINVAL, "import: only into a space without entities");
    const sl_entity_info *ents = st->ents;
    const size_t n = st->nents;
    for (size_t i = 0; i < n; i++) {
        const sl_entity_info *e = &ents[i];
        int rc = sl_space_add3(s, e->id, e->x, e->y, e->z, e->radius, e->layer, e->mask);
        if (!rc && e->own_hysteresis)
            rc = sl_space_set_hysteresis(s, e->id, e->hysteresis < 0 ? 0 : e->hysteresis);
        if (!rc && e->nlod)
            rc = sl_space_set_lod(s, e->id, e->lod, e->nlod);
        if (!rc && e->always)
            rc = sl__always_set(s, e->id, true, NONE);
        if (!rc && e->priority)
            rc = sl_space_set_priority(s, e->id, e->priority);
        if (!rc && e->cap)
            rc = sl_space_set_cap(s, e->id, e->cap, e->cap_margin);
        if (!rc && e->cap && e->sees > e->candidates)
            rc = sl__space_fail(s, SL_EINVAL, "import: %llu shows %u of %u candidates",
                                (unsigned long long)e->id, e->sees, e->candidates);
        if (rc)
            return rc;  /* (sl_space_add, set_hysteresis, set_lod or set_cap said why) */
    }
    for (size_t i = 0; i < st->nrels; i++) {
        const sl_relation_pair *r = &st->rels[i];
        if (sl_idmap_get(&s->ids, r->watcher) == NONE || sl_idmap_get(&s->ids, r->target) == NONE ||
            r->watcher == r->target || (r->rel != SL_REL_FORCE && r->rel != SL_REL_NEVER))
            return sl__space_fail(s, SL_EINVAL, "import: relation %llu %llu cannot be",
                                  (unsigned long long)r->watcher, (unsigned long long)r->target);
        int rc = sl__rel_set(s, r->watcher, r->target, r->rel);
        if (rc)
            return rc;
    }
    sl__space_settle(s);
    s->pairs = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t e = sl_idmap_get(&s->ids, ents[i].id);
        uint32_t c = ents[i].cap ? ents[i].candidates : ents[i].sees;
        s->nsees[e] = c;
        s->pairs += c;
    }
    int rc;
    for (size_t i = 0; i < st->npairs; i++)
        if ((rc = put_exception(s, st->pairs[2 * i], st->pairs[2 * i + 1])))
            return rc;
    if ((rc = sl__cap_import(s, st)) || (rc = sl__group_import(s, st)))
        return rc;
    s->ticks = st->ticks;
    return 0;
}
