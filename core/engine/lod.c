/*
 * lod.c: update rate by distance (space.h: sl_space_set_lod). A watcher's bands are kept by
 * its id, apart from the slots (few watchers have them, and ids survive compaction); the
 * tick asks sl__lod_keep about each stay as it hands the events over, when it has both
 * ends' positions at the tick's end.
 */
#include "space_impl.h"

#include <math.h>
#include <string.h>

bool sl_lod_due(const sl_lod_band *bands, uint32_t n, uint64_t w, uint64_t t, float d2,
                uint64_t tick)
{
    uint32_t i = 0;
    while (i + 1 < n && !(d2 <= bands[i].distance * bands[i].distance))
        i++;
    uint64_t k = bands[i].period;
    if (k == 1)
        return true;
    if (!(k & (k - 1)))         /* (a power of two: no division, the commonest periods) */
        return ((w + t) & (k - 1)) == (tick & (k - 1));
    return (w + t) % k == tick % k;
}

static struct lod_profile *profile_of(const sl_space *s, uint64_t id)
{
    uint32_t k = s->nlods ? sl_idmap_get(&s->lod_at, id) : NONE;
    return k == NONE ? NULL : &s->lods[k];
}

void sl__lod_get(const sl_space *s, uint64_t id, sl_entity_info *info)
{
    const struct lod_profile *p = profile_of(s, id);
    info->nlod = p ? p->n : 0;
    if (p)
        memcpy(info->lod, p->b, p->n * sizeof *p->b);
}

void sl__lod_drop(sl_space *s, uint64_t id)
{
    struct lod_profile *p = profile_of(s, id);
    if (!p)
        return;
    uint32_t k = (uint32_t)(p - s->lods), last = --s->nlods;
    sl_idmap_del(&s->lod_at, id);
    if (k != last) {
        s->lods[k] = s->lods[last];
        sl_idmap_del(&s->lod_at, s->lods[k].id);
        sl_idmap_put(&s->lod_at, s->a, s->lods[k].id, k);  /* (a slot freed just before) */
    }
}

int sl_space_set_lod(sl_space *s, uint64_t id, const sl_lod_band *bands, uint32_t n)
{
    int rc = sl__space_lookup(s, "lod", id, NULL);
    if (rc)
        return rc;
    if (n > SL_LOD_BANDS)
        return sl__space_fail(s, SL_EINVAL, "lod %llu: %u bands (at most %u)",
                              (unsigned long long)id, n, SL_LOD_BANDS);
    for (uint32_t i = 0; i < n; i++) {
        if (!isfinite(bands[i].distance) || bands[i].distance < 0 ||
            (i && !(bands[i].distance > bands[i - 1].distance)))
            return sl__space_fail(s, SL_EINVAL, "lod %llu: band %u's distance %g is not finite, "
                                  ">= 0 and beyond the band before", (unsigned long long)id, i,
                                  (double)bands[i].distance);
        if (bands[i].period < 1 || bands[i].period > 65535)
            return sl__space_fail(s, SL_EINVAL, "lod %llu: band %u's period %u is not in 1..65535",
                                  (unsigned long long)id, i, bands[i].period);
    }
    struct lod_profile *p = profile_of(s, id);
    if (!n) {
        sl__lod_drop(s, id);
        return 0;
    }
    if (!p) {
        if (!sl__space_grow(s, (void **)&s->lods, &s->caplods, s->nlods, sizeof *s->lods) ||
            sl_idmap_put(&s->lod_at, s->a, id, s->nlods))
            return sl__space_fail(s, SL_ENOMEM, "lod %llu: out of memory",
                                  (unsigned long long)id);
        p = &s->lods[s->nlods++];
    }
    p->id = id;
    p->n = n;
    memcpy(p->b, bands, n * sizeof *bands);
    return 0;
}

bool sl__lod_keep_slots(const sl_space *s, uint32_t a, uint32_t b)
{
    const struct lod_profile *p = profile_of(s, s->id[a]);
    if (!p)
        return true;
    /* (during the tick, before it is counted: its number is ticks + 1) */
    return sl_lod_due(p->b, p->n, s->id[a], s->id[b], sl__d2(s, a, b), s->ticks + 1);
}

bool sl__lod_keep(const sl_space *s, uint64_t w, uint64_t t)
{
    const struct lod_profile *p = profile_of(s, w);
    if (!p)
        return true;
    uint32_t a = sl_idmap_get(&s->ids, w), b = sl_idmap_get(&s->ids, t);
    if (a == NONE || b == NONE)
        return true;
    return sl_lod_due(p->b, p->n, w, t, sl__d2(s, a, b), s->ticks);
}
