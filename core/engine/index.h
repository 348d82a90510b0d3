/*
 * index.h: the spatial index interface. A space keeps every live entity in one index (a
 * uniform grid or a quadtree) keyed by the entity's dense slot number, and asks it for the
 * entities within a distance of a point. Both kinds answer exactly the same queries.
 */
#pragma once

#include "u32vec.h"

typedef enum sl_index_kind {
    SL_INDEX_GRID = 0,
    SL_INDEX_QUADTREE,
    SL_INDEX_AUTO           /* only for spaces: choose and re-choose by density */
} sl_index_kind;

typedef struct sl_index sl_index;

/*
 * Creates an empty index over [0, width) x [0, height). For a grid, `cell` is the cell side
 * (enlarged if the map would need more than SL_GRID_MAX_CELLS cells); for a quadtree it is
 * the smallest leaf side. Returns NULL on OOM or when kind is SL_INDEX_AUTO.
 */
sl_index *sl_index_new(sl_index_kind kind, float width, float height, float cell,
                       const sl_allocator *alloc);
/* Frees the index and everything it holds. */
void sl_index_free(sl_index *index);

/* Adds slot at (x, y), which must lie in the map. Returns 0 or SL_ENOMEM (unchanged). */
int sl_index_insert(sl_index *index, uint32_t slot, float x, float y);
/* Removes slot, which must be present. Never fails. */
void sl_index_remove(sl_index *index, uint32_t slot);
/* Moves present slot to (x, y). Returns 0 or SL_ENOMEM, in which case slot is unchanged. */
int sl_index_move(sl_index *index, uint32_t slot, float x, float y);

/*
 * Appends to out every slot whose point (px, py) satisfies, in float32,
 * (px - cx)^2 + (py - cy)^2 <= r2; order unspecified. Returns 0 or SL_ENOMEM (out may then
 * hold part of the answer).
 */
int sl_index_query(sl_index *index, float cx, float cy, float r2, sl_u32vec *out);

/*
 * Writes every present slot to out (room for all of them), in spatial order: grid cells row
 * by row, quadtree leaves depth first. Returns how many were written.
 */
uint32_t sl_index_order(sl_index *index, uint32_t *out);
/*
 * Renames every present slot s to perm[s] (a one-to-one map of the present slots into
 * [0, nslots)), keeps room for nslots slots, and gives back memory the index no longer
 * needs. Returns 0, or SL_ENOMEM with the index unchanged.
 */
int sl_index_renumber(sl_index *index, const uint32_t *perm, uint32_t nslots);

/* Bytes the index holds, buckets and bookkeeping included. */
size_t sl_index_memory(const sl_index *index);
/* The kind, and the cell size actually in use. */
sl_index_kind sl_index_kind_of(const sl_index *index);
float sl_index_cell(const sl_index *index);
/* "grid", "quadtree" or "auto"; and the reverse, returning 0 or SL_EINVAL. */
const char *sl_index_kind_name(sl_index_kind kind);
int sl_index_kind_parse(const char *name, sl_index_kind *kind);

/* A grid never allocates more cells than this; a finer cell size is coarsened instead. */
#define SL_GRID_MAX_CELLS (1u << 22)
