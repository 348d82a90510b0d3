/* idmap.c: uint64 -> uint32 open-addressing hash map (see idmap.h). */
#include "idmap.h"

#define EMPTY UINT32_MAX

uint32_t sl__idmap_get(const sl__idmap *m, uint64_t id)
{
    if (!m->n)
        return EMPTY;
    for (uint32_t i = (uint32_t)sl__idmap_mix(id) & m->mask;; i = (i + 1) & m->mask) {
        const sl__idslot *b = &m->slots[i];
        if (b->val == EMPTY)
            return EMPTY;
        if (b->key == id)
            return b->val;
    }
}

static void place(sl__idmap *m, uint64_t id, uint32_t slot)
{
    uint32_t i = (uint32_t)sl__idmap_mix(id) & m->mask;
    while (m->slots[i].val != EMPTY)
        i = (i + 1) & m->mask;
    m->slots[i] = (sl__idslot){id, slot, 0};
}

static int grow(sl__idmap *m, const sl_allocator *a)
{
    uint64_t cap = m->mask ? ((uint64_t)m->mask + 1) * 2 : 64;
    if (cap > (1ULL << 31))
        return SL_ENOMEM;
    sl__idslot *slots = sl__realloc(a, NULL, 0, (size_t)cap * sizeof(sl__idslot));
    if (!slots)
        return SL_ENOMEM;
    for (uint64_t i = 0; i < cap; i++)
        slots[i] = (sl__idslot){0, EMPTY, 0};
    sl__idmap old = *m;
    m->slots = slots;
    m->mask = (uint32_t)(cap - 1);
    if (old.mask) {
        for (uint32_t i = 0; i <= old.mask; i++)
            if (old.slots[i].val != EMPTY)
                place(m, old.slots[i].key, old.slots[i].val);
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
    uint32_t i = (uint32_t)sl__idmap_mix(id) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        if (m->slots[i].val == EMPTY)
            return;
        if (m->slots[i].key == id)
            break;
    }
    /* Backward shift: pull later members of the probe run into the hole. */
    uint32_t hole = i;
    for (uint32_t j = (hole + 1) & m->mask; m->slots[j].val != EMPTY; j = (j + 1) & m->mask) {
        uint32_t home = (uint32_t)sl__idmap_mix(m->slots[j].key) & m->mask;
        /* j may move to the hole when its home is not cyclically inside (hole, j]. */
        bool inside = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!inside) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole].val = EMPTY;
    m->n--;
}

void sl__idmap_remap(sl__idmap *m, const uint32_t *perm)
{
    if (!m->mask)
        return;
    for (uint32_t i = 0; i <= m->mask; i++)
        if (m->slots[i].val != EMPTY)
            m->slots[i].val = perm[m->slots[i].val];
}

void sl__idmap_free(sl__idmap *m, const sl_allocator *a)
{
    if (m->mask)
        sl__free(a, m->slots, ((size_t)m->mask + 1) * sizeof(sl__idslot));
    *m = (sl__idmap){0};
}

size_t sl__idmap_bytes(const sl__idmap *m)
{
    return m->mask ? ((size_t)m->mask + 1) * sizeof(sl__idslot) : 0;
}
