/*
 * query.c: who is where, now (space.h: sl_space_query). The index answers the circle (for a
 * rectangle: the circle around it, a little wider, then the exact test), the layers and
 * the shape are tested exactly, and the hits are sorted by distance, then id. Its scratch is
 * its own, apart from the tick's: a rule may ask in the middle of one.
 */
#include "space_impl.h"

#include <math.h>
#include <stdlib.h>

static inline bool before(const sl_query_hit *x, const sl_query_hit *y)
{
    return x->d2 != y->d2 ? x->d2 < y->d2 : x->id < y->id;
}

static int cmp_hit(const void *a, const void *b)
{
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

/* Sorts hits by (d2, id): an insertion sort for the few a query mostly has. */
static void sort_hits(sl_query_hit *h, size_t n)
{
    if (n > 32) {
        qsort(h, n, sizeof *h, cmp_hit);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        sl_query_hit v = h[i];
        size_t j = i;
        for (; j > 0 && before(&v, &h[j - 1]); j--)
            h[j] = h[j - 1];
        h[j] = v;
    }
}

int sl_space_query(sl_space *s, const sl_query *q, const sl_query_hit **hits, size_t *n)
{
    *hits = NULL;
    *n = 0;
    bool ok = isfinite(q->x) && isfinite(q->y);
    if (q->rect)
        ok = ok && isfinite(q->x1) && isfinite(q->y1) && q->x1 >= q->x && q->y1 >= q->y;
    else
        ok = ok && isfinite(q->r) && q->r >= 0;
    if (q->d3 && !s->d3)
        return sl__space_fail(s, SL_EINVAL, "query: a 3D query needs a 3D space");
    if (q->d3)
        ok = ok && isfinite(q->z) && (!q->rect || (isfinite(q->z1) && q->z1 >= q->z));
    if (!ok)
        return sl__space_fail(s, SL_EINVAL, "query: %s", q->rect
                              ? "a rectangle needs finite x <= x1 and y <= y1 (and z <= z1)"
                              : "a circle needs a finite centre and a finite radius >= 0");
    /* The centre the hits are ordered from, and the circle the index is asked for (a
     * sphere's shadow is its circle: d2 only grows with dz). */
    float cx = q->x, cy = q->y, cz = q->z, r2 = q->r * q->r;
    if (q->rect) {
        float hw = (q->x1 - q->x) * 0.5f, hh = (q->y1 - q->y) * 0.5f;
        cx = q->x + hw;
        cy = q->y + hh;
        if (q->d3)
            cz = q->z + (q->z1 - q->z) * 0.5f;
        r2 = (hw * hw + hh * hh) * 1.0001f + 1e-3f;
    }
    s->qcand.n = 0;
    if (s->index && sl_index_query(s->index, cx, cy, r2, &s->qcand))
        return sl__space_fail(s, SL_ENOMEM, "query: out of memory");
    if (s->qcand.n > s->qcap) {
        size_t cap = s->qcap ? s->qcap : 64;
        while (cap < s->qcand.n)
            cap *= 2;
        sl_query_hit *h = sl_realloc(s->a, s->qhits, s->qcap * sizeof *h, cap * sizeof *h);
        if (!h)
            return sl__space_fail(s, SL_ENOMEM, "query: out of memory");
        s->qhits = h;
        s->qcap = cap;
    }
    size_t k = 0;
    for (uint32_t i = 0; i < s->qcand.n; i++) {
        uint32_t e = s->qcand.v[i];
        const hot *h = &s->hot[e];
        if (!((q->mask >> h->layer) & 1u))
            continue;
        if (q->rect && !(h->x >= q->x && h->x <= q->x1 && h->y >= q->y && h->y <= q->y1))
            continue;
        float dx = h->x - cx, dy = h->y - cy, d2 = dx * dx + dy * dy;
        float z = s->d3 ? s->z[e] : 0.0f;
        if (q->d3) {
            if (q->rect ? !(z >= q->z && z <= q->z1) : false)
                continue;
            float dz = z - cz;
            d2 += dz * dz;
            if (!q->rect && !(d2 <= r2))
                continue;
        }
        s->qhits[k++] = (sl_query_hit){s->id[e], h->x, h->y, d2, z};
    }
    sort_hits(s->qhits, k);
    *hits = s->qhits;
    *n = q->limit && k > q->limit ? q->limit : k;
    return 0;
}
