/* idmap.c: uint64 -> uint32 open-addressing hash map (see idmap.h). */
#include "idmap.h"

#define EMPTY UINT32_MAX

/* A 64-bit finaliser (from splitmix64): sequential ids spread over the whole table. */
static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint32_t sl__idmap_get(const sl__idmap *m, uint64_t id)
{
    if (!m->n)
        return EMPTY;
    for (uint32_t i = (uint32_t)mix(id) & m->mask;; i = (i + 1) & m->mask) {
        if (m->vals[i] == EMPTY)
            return EMPTY;
        if (m->keys[i] == id)
            return m->vals[i];
    }
}

static void place(sl__idmap *m, uint64_t id, uint32_t slot)
{
    uint32_t i = (uint32_t)mix(id) & m->mask;
    while (m->vals[i] != EMPTY)
        i = (i + 1) & m->mask;
    m->keys[i] = id;
    m->vals[i] = slot;
}

static int grow(sl__idmap *m, const sl_allocator *a)
{
    uint64_t cap = m->mask ? ((uint64_t)m->mask + 1) * 2 : 64;
    if (cap > (1ULL << 31))
        return SL_ENOMEM;
    uint64_t *keys = sl__realloc(a, NULL, 0, (size_t)cap * sizeof(uint64_t));
    uint32_t *vals = sl__realloc(a, NULL, 0, (size_t)cap * sizeof(uint32_t));
    if (!keys || !vals) {
        sl__free(a, keys, (size_t)cap * sizeof(uint64_t));
        sl__free(a, vals, (size_t)cap * sizeof(uint32_t));
        return SL_ENOMEM;
    }
    for (uint64_t i = 0; i < cap; i++)
        vals[i] = EMPTY;
    sl__idmap old = *m;
    m->keys = keys;
    m->vals = vals;
    m->mask = (uint32_t)(cap - 1);
    if (old.mask) {
        for (uint32_t i = 0; i <= old.mask; i++)
            if (old.vals[i] != EMPTY)
                place(m, old.keys[i], old.vals[i]);
    }
    sl__idmap_free(&old, a);
    return 0;
}

int sl__idmap_put(sl__idmap *m, const sl_allocator *a, uint64_t id, uint32_t slot)
{
    /* Keep the load at or below one half: probes stay short. */
    if (!m->mask || (uint64_t)(m->n + 1) * 2 > (uint64_t)m->mask + 1) {
        int rc = grow(m, a);
        if (rc)
            return rc;
    }
    place(m, id, slot);
    m->n++;
    return 0;
}

void sl__idmap_del(sl__idmap *m, uint64_t id)
{
    if (!m->n)
        return;
    uint32_t i = (uint32_t)mix(id) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        if (m->vals[i] == EMPTY)
            return;
        if (m->keys[i] == id)
            break;
    }
    /* Backward shift: pull later members of the probe run into the hole. */
    uint32_t hole = i;
    for (uint32_t j = (hole + 1) & m->mask; m->vals[j] != EMPTY; j = (j + 1) & m->mask) {
        uint32_t home = (uint32_t)mix(m->keys[j]) & m->mask;
        /* j may move to the hole when its home is not cyclically inside (hole, j]. */
        bool inside = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!inside) {
            m->keys[hole] = m->keys[j];
            m->vals[hole] = m->vals[j];
            hole = j;
        }
    }
    m->vals[hole] = EMPTY;
    m->n--;
}

void sl__idmap_free(sl__idmap *m, const sl_allocator *a)
{
    if (m->mask) {
        sl__free(a, m->keys, ((size_t)m->mask + 1) * sizeof(uint64_t));
        sl__free(a, m->vals, ((size_t)m->mask + 1) * sizeof(uint32_t));
    }
    *m = (sl__idmap){0};
}

size_t sl__idmap_bytes(const sl__idmap *m)
{
    return m->mask ? ((size_t)m->mask + 1) * (sizeof(uint64_t) + sizeof(uint32_t)) : 0;
}
