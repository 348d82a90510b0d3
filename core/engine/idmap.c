/* idmap.c: uint64 -> uint32 open-addressing hash map (see idmap.h). */
#include "idmap.h"

#include <assert.h>

#define EMPTY UINT32_MAX
#define DENSE_SPREAD 4u     /* the array covers ids up to this many times the entries */
#define DENSE_MIN 1024u     /* ... and at least this many */
#define DENSE_MAX (1u << 30)

uint32_t sl_idmap_get_hashed(const sl_idmap *m, uint64_t id)
{
    if (!m->hn)
        return EMPTY;
    for (uint32_t i = (uint32_t)sl_idmap_mix(id) & m->mask;; i = (i + 1) & m->mask) {
        const sl_idmap_slot *b = &m->slots[i];
        if (b->val == EMPTY)
            return EMPTY;
        if (b->key == id)
            return b->val;
    }
}

static void place(sl_idmap *m, uint64_t id, uint32_t slot)
{
    uint32_t i = (uint32_t)sl_idmap_mix(id) & m->mask;
    while (m->slots[i].val != EMPTY)
        i = (i + 1) & m->mask;
    m->slots[i] = (sl_idmap_slot){id, slot, 0};
}

static int grow(sl_idmap *m, const sl_allocator *a)
{
    uint64_t cap = m->mask ? ((uint64_t)m->mask + 1) * 2 : 64;
    if (cap > (1ULL << 31))
        return SL_ENOMEM;
    sl_idmap_slot *slots = sl_realloc(a, NULL, 0, (size_t)cap * sizeof(sl_idmap_slot));
    if (!slots)
        return SL_ENOMEM;
    for (uint64_t i = 0; i < cap; i++)
        slots[i] = (sl_idmap_slot){0, EMPTY, 0};
    sl_idmap_slot *old = m->slots;
    uint32_t old_mask = m->mask;
    m->slots = slots;
    m->mask = (uint32_t)(cap - 1);
    if (old_mask) {
        for (uint32_t i = 0; i <= old_mask; i++)
            if (old[i].val != EMPTY)
                place(m, old[i].key, old[i].val);
        sl_free(a, old, ((size_t)old_mask + 1) * sizeof(sl_idmap_slot));
    }
    return 0;
}

/* Puts id into the table (id not in the array's range). */
static int put_hashed(sl_idmap *m, const sl_allocator *a, uint64_t id, uint32_t slot)
{
    /* Keep the load at or below one half: probes stay short. */
    if (!m->mask || (uint64_t)(m->hn + 1) * 2 > (uint64_t)m->mask + 1) {
        int rc = grow(m, a);
        if (rc)
            return rc;
    }
    place(m, id, slot);
    m->hn++;
    return 0;
}

static bool del_hashed(sl_idmap *m, uint64_t id);

/*
 * Grows the array to cover ids below `cover` (a power of two), moving the table's entries
 * below it over. SL_ENOMEM changes nothing.
 */
static int grow_dense(sl_idmap *m, const sl_allocator *a, uint32_t cover)
{
    uint32_t *d = sl_realloc(a, m->dense, (size_t)m->ndense * 4, (size_t)cover * 4);
    if (!d)
        return SL_ENOMEM;
    for (uint32_t i = m->ndense; i < cover; i++)
        d[i] = EMPTY;
    m->dense = d;
    m->ndense = cover;
    for (uint32_t i = 0; m->hn && m->mask && i <= m->mask; i++) {
        sl_idmap_slot b = m->slots[i];
        if (b.val != EMPTY && b.key < cover) {
            d[b.key] = b.val;
            del_hashed(m, b.key);   /* may pull a later entry into slot i: look again */
            i--;
        }
    }
    return 0;
}

int sl_idmap_put(sl_idmap *m, const sl_allocator *a, uint64_t id, uint32_t slot)
{
    assert(sl_idmap_get(m, id) == UINT32_MAX && slot != UINT32_MAX);
    if (id >= m->ndense && id < DENSE_MAX &&
        id < (uint64_t)(m->n + 1) * DENSE_SPREAD + DENSE_MIN) {
        uint32_t cover = m->ndense ? m->ndense : DENSE_MIN;
        while (cover <= id)
            cover *= 2;
        /* Without memory for a larger array the table takes the id. */
        (void)grow_dense(m, a, cover);
    }
    if (id < m->ndense) {
        m->dense[id] = slot;
    } else {
        int rc = put_hashed(m, a, id, slot);
        if (rc)
            return rc;
    }
    m->n++;
    return 0;
}

void sl_idmap_del(sl_idmap *m, uint64_t id)
{
    if (id < m->ndense) {
        if (m->dense[id] != EMPTY) {
            m->dense[id] = EMPTY;
            m->n--;
        }
        return;
    }
    if (m->hn && del_hashed(m, id))
        m->n--;
}

/* Removes id from the table; false when it is not there. */
static bool del_hashed(sl_idmap *m, uint64_t id)
{
    uint32_t i = (uint32_t)sl_idmap_mix(id) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        if (m->slots[i].val == EMPTY)
            return false;
        if (m->slots[i].key == id)
            break;
    }
    /* Backward shift: pull later members of the probe run into the hole. */
    uint32_t hole = i;
    for (uint32_t j = (hole + 1) & m->mask; m->slots[j].val != EMPTY; j = (j + 1) & m->mask) {
        uint32_t home = (uint32_t)sl_idmap_mix(m->slots[j].key) & m->mask;
        /* j may move to the hole when its home is not cyclically inside (hole, j]. */
        bool inside = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!inside) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole].val = EMPTY;
    m->hn--;
    return true;
}

void sl_idmap_remap(sl_idmap *m, const uint32_t *perm)
{
    for (uint32_t i = 0; i < m->ndense; i++)
        if (m->dense[i] != EMPTY)
            m->dense[i] = perm[m->dense[i]];
    if (!m->mask)
        return;
    for (uint32_t i = 0; i <= m->mask; i++)
        if (m->slots[i].val != EMPTY)
            m->slots[i].val = perm[m->slots[i].val];
}

void sl_idmap_free(sl_idmap *m, const sl_allocator *a)
{
    if (m->mask)
        sl_free(a, m->slots, ((size_t)m->mask + 1) * sizeof(sl_idmap_slot));
    sl_free(a, m->dense, (size_t)m->ndense * 4);
    *m = (sl_idmap){0};
}

void sl_idmap_trim(sl_idmap *m, const sl_allocator *a)
{
    if (!m->n) {
        sl_idmap_free(m, a);
        return;
    }
    /* A fresh map would have a table of at most 4 x its entries (load 1/4 .. 1/2, at least
     * 64) and an array of at most 2 x (DENSE_SPREAD x entries + DENSE_MIN). */
    uint64_t table = m->mask ? (uint64_t)m->mask + 1 : 0, fresh = 4 * (uint64_t)m->hn + 64;
    uint64_t dense_fresh = 2 * ((uint64_t)m->n * DENSE_SPREAD + DENSE_MIN);
    if (table <= 8 * fresh && m->ndense <= 8 * dense_fresh)
        return;
    sl_idmap fresh_map = {0};
    for (uint32_t i = 0; i < m->ndense; i++)
        if (m->dense[i] != EMPTY && sl_idmap_put(&fresh_map, a, i, m->dense[i]))
            goto fail;
    for (uint64_t i = 0; i < table; i++)
        if (m->slots[i].val != EMPTY && sl_idmap_put(&fresh_map, a, m->slots[i].key,
                                                     m->slots[i].val))
            goto fail;
    sl_idmap_free(m, a);
    *m = fresh_map;
    return;
fail:
    sl_idmap_free(&fresh_map, a);
}

size_t sl_idmap_bytes(const sl_idmap *m)
{
    return (m->mask ? ((size_t)m->mask + 1) * sizeof(sl_idmap_slot) : 0) + (size_t)m->ndense * 4;
}
