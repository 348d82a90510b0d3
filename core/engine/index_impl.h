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

/*
 * One entity as a bucket stores it: ten 4-byte columns. Besides the position the index
 * needs, a lane carries what the tick judges a pair by (last tick's position, the squared
 * radius and radius + hysteresis, the layers it sees, its layer bit, tick flags), so that a
 * SIMD kernel can judge a whole bucket from contiguous memory. The field order is the
 * column order.
 */
typedef struct sl__lane {
    float x, y;             /* position now */
    float px, py;           /* position at the last tick */
    float r2, rh2;          /* r^2 and (r + h)^2 */
    uint32_t slot;
    uint32_t wmask;         /* layers it sees; 0 when it watches nothing (r = 0) */
    uint32_t lbit;          /* 1 << layer */
    uint32_t flags;         /* SL_LANE_* */
    float z, pz;            /* height now and at the last tick: columns of 3D indexes only */
} sl__lane;

#define SL__NCOLS 12u       /* the most a bucket has: 10 flat, 12 with heights */

/*
 * The columns and count are laid out exactly as sl_lanes, which a bucket also is (`lanes`),
 * so that the judge kernels read buckets in place.
 */
typedef struct sl__bucket {
    union {
        sl_lanes lanes;
        struct {
            float *x, *y, *px, *py, *r2, *rh2;
            uint32_t *slot, *wmask, *lbit, *flags;
            uint32_t n;
            uint32_t cap;
        };
    };
    uint32_t cell;          /* the owner's tag (a grid cell); kept by the functions below */
} sl__bucket;

typedef struct sl__loc {
    uint32_t bucket;
    uint32_t pos;
} sl__loc;

struct sl__index_vt {
    int (*insert)(sl_index *index, const sl__lane *lane);
    void (*remove)(sl_index *index, uint32_t slot);
    int (*move)(sl_index *index, uint32_t slot, float x, float y);
    /* Calls fn for every non-empty bucket overlapping the square of half-side `half`
     * around (cx, cy); stops at and returns the first non-zero result. */
    int (*box)(sl_index *index, float cx, float cy, float half,
               int (*fn)(void *ud, const sl__bucket *b), void *ud);
    /* Writes to out (room for max) the lanes of the non-empty buckets box() would visit, in
     * the same order, adds their sl_simd_padded(n) to *padded, and returns how many there
     * are (more than max: out holds the first max, *padded counts those). NULL for kinds that
     * only walk (sl__index_gather then collects through box()). */
    uint32_t (*gather)(sl_index *index, float cx, float cy, float half, const sl_lanes **out,
                       uint32_t max, uint32_t *padded);
    /* The bucket with number id. */
    sl__bucket *(*bucket)(sl_index *index, uint32_t id);
    size_t (*memory)(const sl_index *index);
    void (*free)(sl_index *index);
    /* Calls visit for every non-empty bucket, in spatial order. */
    void (*visit)(sl_index *index, void (*visit)(void *ud, sl__bucket *b, uint32_t id), void *ud);
    /* Gives back what the index holds beyond its entities' needs, and may renumber its
     * buckets: only from sl_index_renumber, which then rewrites every location. */
    void (*trim)(sl_index *index);
};

/* The part every index kind starts with. */
struct sl_index {
    const struct sl__index_vt *vt;
    const sl_allocator *alloc;
    sl_index_kind kind;
    unsigned ncols;         /* columns a bucket has: 10, or 12 with heights (sl__index_use_z) */
    float width, height, cell;
    sl__loc *loc;           /* per slot: which bucket (cell or node) and where in it */
    uint32_t loc_cap;
    /* The bucket blocks, laid end to end in spatial order by the last renumbering (so that
     * a neighbourhood's buckets are near each other in memory); a block that is resized or
     * freed leaves it, and the arena goes with its last block. */
    char *arena;
    size_t arena_bytes, arena_live;     /* its size; bytes of blocks still in it */
};

/* Fills in the part every index kind starts with. */
void sl__index_base_init(sl_index *index, const struct sl__index_vt *vt, sl_index_kind kind,
                         float width, float height, float cell, const sl_allocator *alloc);
/* Makes the per-slot location arrays cover `slot`; returns 0 or SL_ENOMEM. */
int sl__index_reserve_slot(sl_index *index, uint32_t slot);
void sl__index_base_free(sl_index *index);

/* Appends a lane to b, recording its bucket number `id`; 0 or SL_ENOMEM. */
int sl__bucket_put(sl_index *index, sl__bucket *b, uint32_t id, const sl__lane *lane);
/* Reads the lane at pos. */
void sl__bucket_get(const sl_index *index, const sl__bucket *b, uint32_t pos, sl__lane *lane);
/* Removes the lane at pos, moving the last lane into its place (its location updated). */
void sl__bucket_remove_at(sl_index *index, sl__bucket *b, uint32_t pos);
/* Frees b's block (to the heap or out of the arena) and empties b. */
void sl__bucket_free(sl_index *index, sl__bucket *b);
static inline size_t sl__bucket_bytes(const sl_index *index, const sl__bucket *b)
{
    return (size_t)b->cap * index->ncols * 4;
}
/* A 3D index's height columns (sl_lanes_z) of bucket b, writable. */
static inline float *sl__bucket_z(sl__bucket *b)
{
    return b->py + b->cap;
}

static inline float *sl__bucket_pz(sl__bucket *b)
{
    return b->py + 2 * (size_t)b->cap;
}
/* Gives an empty index's buckets the height columns (a 3D space's). */
void sl__index_use_z(sl_index *index);
/* A fresh lane for an entity at (x, y) that watches nothing yet. */
static inline sl__lane sl__lane_at(uint32_t slot, float x, float y)
{
    return (sl__lane){.x = x, .y = y, .px = x, .py = y, .slot = slot};
}

/* The bucket and position of present slot's lane (valid until the index changes). */
static inline sl__bucket *sl__index_lane(sl_index *index, uint32_t slot, uint32_t *pos)
{
    sl__loc loc = index->loc[slot];
    *pos = loc.pos;
    return index->vt->bucket(index, loc.bucket);
}

/* Calls fn for every non-empty bucket within reach of the float32 test d2 <= r2 around
 * (cx, cy) (see sl_index_query for the box). */
int sl__index_box(sl_index *index, float cx, float cy, float r2,
                  int (*fn)(void *ud, const sl__bucket *b), void *ud);
/* The same buckets' lanes, written to out (room for max), their sl_simd_padded(n) added to
 * *padded; returns how many there are, which may be more than max (out then holds the first
 * max, and *padded counts those). */
uint32_t sl__index_gather(sl_index *index, float cx, float cy, float r2, const sl_lanes **out,
                          uint32_t max, uint32_t *padded);

sl_index *sl__grid_new(float width, float height, float cell, const sl_allocator *alloc);
sl_index *sl__quadtree_new(float width, float height, float cell, const sl_allocator *alloc);
