/*
 * index_impl.h: what the grid and the quadtree share, private to core/.
 *
 * A bucket holds the entities of one grid cell or quadtree leaf as three parallel arrays
 * (slot, x, y) whose capacity is a multiple of SL_SIMD_PAD and whose unused tail holds NaN,
 * so the SIMD filter runs over it with no tail handling. Every index records, per slot,
 * which bucket holds it and where, so removal and in-place moves are O(1).
 */
#pragma once

#include "index.h"
#include "simd.h"

typedef struct sl__bucket {
    uint32_t *slot;
    float *x;
    float *y;
    uint32_t n;
    uint32_t cap;
} sl__bucket;

typedef struct sl__loc {
    uint32_t bucket;
    uint32_t pos;
} sl__loc;

struct sl__index_vt {
    int (*insert)(sl_index *index, uint32_t slot, float x, float y);
    void (*remove)(sl_index *index, uint32_t slot);
    int (*move)(sl_index *index, uint32_t slot, float x, float y);
    int (*query)(sl_index *index, float cx, float cy, float half, float r2, sl_u32vec *out);
    size_t (*memory)(const sl_index *index);
    void (*free)(sl_index *index);
    /* Calls visit for every non-empty bucket, in spatial order. */
    void (*visit)(sl_index *index, void (*visit)(void *ud, sl__bucket *b, uint32_t id), void *ud);
};

/* The part every index kind starts with. */
struct sl_index {
    const struct sl__index_vt *vt;
    const sl_allocator *alloc;
    sl_index_kind kind;
    float width, height, cell;
    sl__loc *loc;           /* per slot: which bucket (cell or node) and where in it */
    uint32_t loc_cap;
};

/* Fills in the part every index kind starts with. */
void sl__index_base_init(sl_index *index, const struct sl__index_vt *vt, sl_index_kind kind,
                         float width, float height, float cell, const sl_allocator *alloc);
/* Makes the per-slot location arrays cover `slot`; returns 0 or SL_ENOMEM. */
int sl__index_reserve_slot(sl_index *index, uint32_t slot);
void sl__index_base_free(sl_index *index);

/* Appends (slot, x, y) to b, recording its bucket number `id`; 0 or SL_ENOMEM. */
int sl__bucket_add(sl_index *index, sl__bucket *b, uint32_t id, uint32_t slot, float x, float y);
/* Removes the entry at pos, moving the last entry into its place (its location updated). */
void sl__bucket_remove_at(sl_index *index, sl__bucket *b, uint32_t pos);
/* Filters b with the selected SIMD kernel and appends matching slots to out. */
int sl__bucket_query(const sl_allocator *a, const sl__bucket *b, float cx, float cy, float r2,
                     sl_u32vec *out);
void sl__bucket_free(const sl_allocator *a, sl__bucket *b);
static inline size_t sl__bucket_bytes(const sl__bucket *b)
{
    return (size_t)b->cap * (sizeof(uint32_t) + 2 * sizeof(float));
}

sl_index *sl__grid_new(float width, float height, float cell, const sl_allocator *alloc);
sl_index *sl__quadtree_new(float width, float height, float cell, const sl_allocator *alloc);
