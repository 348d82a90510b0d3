/*
 * index.c: the index front door (dispatch, search box) and the bucket shared by the grid
 * cells and the quadtree leaves.
 */
#include "index_impl.h"

#include <math.h>
#include <string.h>

typedef struct within_ctx {
    const sl_allocator *a;
    float cx, cy, r2;
    sl_u32vec *out;
} within_ctx;

/* Filters one bucket with the selected SIMD kernel and appends matching slots. */
static int within_bucket(void *ud, const sl__bucket *b)
{
    within_ctx *w = ud;
    sl_u32vec *out = w->out;
    uint32_t room = sl_simd_padded(b->n) + SL_SIMD_PAD;
    if (out->cap - out->n < room) {
        int rc = sl__u32vec_reserve(out, w->a, out->n + room);
        if (rc)
            return rc;
    }
    uint32_t *dst = out->v + out->n;
    uint32_t k = sl_simd_within(b->x, b->y, b->n, w->cx, w->cy, w->r2, dst);
    for (uint32_t j = 0; j < k; j++)
        dst[j] = b->slot[dst[j]];
    out->n += k;
    return 0;
}

sl_index *sl_index_new(sl_index_kind kind, float width, float height, float cell,
                       const sl_allocator *alloc)
{
    switch (kind) {
    case SL_INDEX_GRID: return sl__grid_new(width, height, cell, alloc);
    case SL_INDEX_QUADTREE: return sl__quadtree_new(width, height, cell, alloc);
    default: return NULL;
    }
}

void sl_index_free(sl_index *index)
{
    if (index)
        index->vt->free(index);
}

int sl_index_insert(sl_index *index, uint32_t slot, float x, float y)
{
    int rc = sl__index_reserve_slot(index, slot);
    if (rc)
        return rc;
    sl__lane lane = sl__lane_at(slot, x, y);
    return index->vt->insert(index, &lane);
}

void sl_index_remove(sl_index *index, uint32_t slot)
{
    index->vt->remove(index, slot);
}

int sl_index_move(sl_index *index, uint32_t slot, float x, float y)
{
    return index->vt->move(index, slot, x, y);
}

/*
 * The half-side of the search box for the float32 test d2 <= r2. The box must contain every
 * point that passes it; a point just outside sqrt(r2) can still round into it, so the box is
 * widened by a relative 2^-16 and an absolute 2^-10, far more than float rounding can add.
 */
static inline float box_half(float r2)
{
    float half = sqrtf(r2);
    return half + half * (1.0f / 65536.0f) + (1.0f / 1024.0f);
}

int sl__index_box(sl_index *index, float cx, float cy, float r2,
                  int (*fn)(void *ud, const sl__bucket *b), void *ud)
{
    return index->vt->box(index, cx, cy, box_half(r2), fn, ud);
}

typedef struct gather_ctx {
    const sl_lanes **out;
    uint32_t n, max, padded;
} gather_ctx;

static int gather_bucket(void *ud, const sl__bucket *b)
{
    gather_ctx *g = ud;
    if (g->n < g->max) {
        g->out[g->n] = &b->lanes;
        g->padded += sl_simd_padded(b->n);
    }
    g->n++;
    return 0;
}

uint32_t sl__index_gather(sl_index *index, float cx, float cy, float r2, const sl_lanes **out,
                          uint32_t max, uint32_t *padded)
{
    float half = box_half(r2);
    if (index->vt->gather)
        return index->vt->gather(index, cx, cy, half, out, max, padded);
    gather_ctx g = {out, 0, max, 0};
    index->vt->box(index, cx, cy, half, gather_bucket, &g);
    *padded += g.padded;
    return g.n;
}

int sl_index_query(sl_index *index, float cx, float cy, float r2, sl_u32vec *out)
{
    within_ctx w = {index->alloc, cx, cy, r2, out};
    return sl__index_box(index, cx, cy, r2, within_bucket, &w);
}

typedef struct order_ctx {
    uint32_t *out, n;
} order_ctx;

static void order_visit(void *ud, sl__bucket *b, uint32_t id)
{
    order_ctx *c = ud;
    (void)id;
    memcpy(c->out + c->n, b->slot, (size_t)b->n * sizeof(uint32_t));
    c->n += b->n;
}

uint32_t sl_index_order(sl_index *index, uint32_t *out)
{
    order_ctx c = {out, 0};
    index->vt->visit(index, order_visit, &c);
    return c.n;
}

typedef struct renumber_ctx {
    sl_index *index;
    const uint32_t *perm;
    sl__loc *loc;
    char *arena;            /* the new arena (NULL: the blocks stay where they are) */
    size_t used;
} renumber_ctx;

typedef struct count_ctx {
    const sl_index *index;
    size_t total;
} count_ctx;

static void count_block(void *ud, sl__bucket *b, uint32_t id)
{
    count_ctx *c = ud;
    (void)id;
    c->total += sl__bucket_bytes(c->index, b);
}

static void carve_columns(const sl_index *index, sl__bucket *b, char *p, uint32_t cap);
static void release_block(sl_index *index, void *block, size_t bytes);

static void renumber_visit(void *ud, sl__bucket *b, uint32_t id)
{
    renumber_ctx *c = ud;
    for (uint32_t i = 0; i < b->n; i++) {
        uint32_t to = c->perm[b->slot[i]];
        b->slot[i] = to;
        c->loc[to] = (sl__loc){id, i};
    }
    if (c->arena) {
        size_t bytes = sl__bucket_bytes(c->index, b);
        void *old = b->x;
        memcpy(c->arena + c->used, old, bytes);
        carve_columns(c->index, b, c->arena + c->used, b->cap);
        c->used += bytes;
        release_block(c->index, old, bytes);
    }
}

int sl_index_renumber(sl_index *index, const uint32_t *perm, uint32_t nslots)
{
    /* The locations are made anew for the slots the space now has room for. */
    uint32_t cap = nslots;
    sl__loc *loc = NULL;
    if (cap) {
        loc = sl_realloc(index->alloc, NULL, 0, (size_t)cap * sizeof(sl__loc));
        if (!loc)
            return SL_ENOMEM;
    }
    if (index->vt->trim)
        index->vt->trim(index);
    count_ctx cc = {index, 0};
    index->vt->visit(index, count_block, &cc);
    size_t total = cc.total;
    /* Without memory for the arena the blocks just stay where they are. */
    renumber_ctx c = {index, perm, loc, total ? sl_realloc(index->alloc, NULL, 0, total) : NULL,
                      0};
    index->vt->visit(index, renumber_visit, &c);
    if (c.arena) {
        /* visit() reaches every bucket that holds a block (an emptied bucket gives its block
         * back), so every block of the old arena has left it, and the old arena is gone. */
        index->arena = c.arena;
        index->arena_bytes = index->arena_live = total;
    }
    sl_free(index->alloc, index->loc, (size_t)index->loc_cap * sizeof(sl__loc));
    index->loc = loc;
    index->loc_cap = cap;
    return 0;
}

size_t sl_index_memory(const sl_index *index)
{
    /* Arena space whose blocks have left is still held. */
    return index->vt->memory(index) + (size_t)index->loc_cap * sizeof(sl__loc) +
           (index->arena_bytes - index->arena_live);
}

sl_index_kind sl_index_kind_of(const sl_index *index)
{
    return index->kind;
}

float sl_index_cell(const sl_index *index)
{
    return index->cell;
}

static const char *const kind_names[] = {"grid", "quadtree", "auto"};

const char *sl_index_kind_name(sl_index_kind kind)
{
    return (unsigned)kind <= SL_INDEX_AUTO ? kind_names[kind] : "unknown";
}

int sl_index_kind_parse(const char *name, sl_index_kind *kind)
{
    for (unsigned k = 0; k <= SL_INDEX_AUTO; k++) {
        if (name && strcmp(name, kind_names[k]) == 0) {
            *kind = (sl_index_kind)k;
            return 0;
        }
    }
    return SL_EINVAL;
}

void sl__index_base_init(sl_index *index, const struct sl__index_vt *vt, sl_index_kind kind,
                         float width, float height, float cell, const sl_allocator *alloc)
{
    *index = (sl_index){
        .vt = vt, .alloc = alloc, .kind = kind, .ncols = 10, .width = width, .height = height,
        .cell = cell,
    };
}

void sl__index_use_z(sl_index *index)
{
    index->ncols = 12;
}

int sl__index_reserve_slot(sl_index *index, uint32_t slot)
{
    if (slot < index->loc_cap)
        return 0;
    uint64_t cap = index->loc_cap ? (uint64_t)index->loc_cap * 2 : 64;
    while (cap <= slot)
        cap *= 2;
    if (cap > UINT32_MAX)
        return SL_ENOMEM;
    sl__loc *loc = sl_realloc(index->alloc, index->loc, (size_t)index->loc_cap * sizeof(sl__loc),
                               (size_t)cap * sizeof(sl__loc));
    if (!loc)
        return SL_ENOMEM;
    index->loc = loc;
    index->loc_cap = (uint32_t)cap;
    return 0;
}

void sl__index_base_free(sl_index *index)
{
    sl_free(index->alloc, index->loc, (size_t)index->loc_cap * sizeof(sl__loc));
    sl_free(index->alloc, index->arena, index->arena_bytes);    /* NULL once it emptied */
}

/* Gives back a bucket's block: to the heap, or out of the arena (freed with its last block). */
static void release_block(sl_index *index, void *block, size_t bytes)
{
    uintptr_t p = (uintptr_t)block, a = (uintptr_t)index->arena;
    if (!index->arena || p < a || p >= a + index->arena_bytes) {
        sl_free(index->alloc, block, bytes);
        return;
    }
    index->arena_live -= bytes;
    if (index->arena_live == 0) {
        sl_free(index->alloc, index->arena, index->arena_bytes);
        index->arena = NULL;
        index->arena_bytes = 0;
    }
}

/* The columns of a bucket, in sl__lane field order; returns how many it has. */
static unsigned columns(const sl_index *index, sl__bucket *b, char *col[SL__NCOLS])
{
    col[0] = (char *)b->x;
    col[1] = (char *)b->y;
    col[2] = (char *)b->px;
    col[3] = (char *)b->py;
    col[4] = (char *)b->r2;
    col[5] = (char *)b->rh2;
    col[6] = (char *)b->slot;
    col[7] = (char *)b->wmask;
    col[8] = (char *)b->lbit;
    col[9] = (char *)b->flags;
    if (index->ncols == 12 && b->cap) {
        col[10] = (char *)sl__bucket_z(b);
        col[11] = (char *)sl__bucket_pz(b);
    }
    return index->ncols;
}

static inline void *lane_field(const sl__lane *lane, unsigned c)
{
    return (char *)(uintptr_t)lane + 4 * c;
}

/*
 * Points the columns into one block of capacity cap (x first: it is where the block starts).
 * What every judge reads (positions then and now, flags) comes first and what settling reads
 * (slot) next, so that a uniform judge reads one stretch of memory.
 */
static void carve_columns(const sl_index *index, sl__bucket *b, char *p, uint32_t cap)
{
    size_t step = (size_t)cap * 4;
    b->x = (float *)(void *)p;
    b->y = (float *)(void *)(p += step);
    b->px = (float *)(void *)(p += step);
    b->py = (float *)(void *)(p += step);
    if (index->ncols == 12)
        p += 2 * step;      /* the heights (sl__bucket_z): right after py */
    b->flags = (uint32_t *)(void *)(p += step);
    b->slot = (uint32_t *)(void *)(p += step);
    b->r2 = (float *)(void *)(p += step);
    b->rh2 = (float *)(void *)(p += step);
    b->wmask = (uint32_t *)(void *)(p += step);
    b->lbit = (uint32_t *)(void *)(p += step);
    b->cap = cap;
}

/* Resizes a bucket to cap lanes (a multiple of SL_SIMD_PAD, >= b->n); NaN-pads positions. */
static int bucket_resize(sl_index *index, sl__bucket *b, uint32_t cap)
{
    void *block = sl_realloc(index->alloc, NULL, 0, (size_t)cap * index->ncols * 4);
    if (!block)
        return SL_ENOMEM;
    sl__bucket nb = {0};
    carve_columns(index, &nb, block, cap);
    char *from[SL__NCOLS], *to[SL__NCOLS];
    columns(index, b, from);
    unsigned nc = columns(index, &nb, to);
    for (unsigned c = 0; c < nc; c++) {
        if (b->n)
            memcpy(to[c], from[c], (size_t)b->n * 4);
        memset(to[c] + (size_t)b->n * 4, 0, (size_t)(cap - b->n) * 4);
    }
    for (uint32_t i = b->n; i < cap; i++)
        nb.x[i] = nb.y[i] = nb.px[i] = nb.py[i] = NAN;
    nb.n = b->n;
    nb.cap = cap;
    nb.cell = b->cell;
    if (b->cap)
        release_block(index, b->x, sl__bucket_bytes(index, b));   /* x is the start of the block */
    *b = nb;
    return 0;
}

int sl__bucket_put(sl_index *index, sl__bucket *b, uint32_t id, const sl__lane *lane)
{
    if (b->n == b->cap) {
        int rc = bucket_resize(index, b, b->cap ? b->cap * 2 : SL_SIMD_PAD);
        if (rc)
            return rc;
    }
    uint32_t pos = b->n++;
    char *col[SL__NCOLS];
    unsigned nc = columns(index, b, col);
    for (unsigned c = 0; c < nc; c++)
        memcpy(col[c] + (size_t)pos * 4, lane_field(lane, c), 4);
    index->loc[lane->slot].bucket = id;
    index->loc[lane->slot].pos = pos;
    return 0;
}

void sl__bucket_get(const sl_index *index, const sl__bucket *b, uint32_t pos, sl__lane *lane)
{
    char *col[SL__NCOLS];
    unsigned nc = columns(index, (sl__bucket *)(uintptr_t)b, col);
    for (unsigned c = 0; c < nc; c++)
        memcpy(lane_field(lane, c), col[c] + (size_t)pos * 4, 4);
}

void sl__bucket_remove_at(sl_index *index, sl__bucket *b, uint32_t pos)
{
    uint32_t last = --b->n;
    char *col[SL__NCOLS];
    unsigned nc = columns(index, b, col);
    if (pos != last) {
        for (unsigned c = 0; c < nc; c++)
            memcpy(col[c] + (size_t)pos * 4, col[c] + (size_t)last * 4, 4);
        index->loc[b->slot[pos]].pos = pos;
    }
    for (unsigned c = 0; c < nc; c++)
        memset(col[c] + (size_t)last * 4, 0, 4);
    b->x[last] = b->y[last] = b->px[last] = b->py[last] = NAN;
    /* Give memory back when a bucket empties out; a failed shrink just keeps the memory. */
    if (b->n == 0)
        sl__bucket_free(index, b);
    else if (b->cap > SL_SIMD_PAD && b->n <= b->cap / 4)
        (void)bucket_resize(index, b, b->cap / 2);
}

void sl__bucket_free(sl_index *index, sl__bucket *b)
{
    if (b->cap)
        release_block(index, b->x, sl__bucket_bytes(index, b));
    *b = (sl__bucket){.cell = b->cell};
}
