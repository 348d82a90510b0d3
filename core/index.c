/*
 * index.c: the index front door (dispatch, search box) and the bucket shared by the grid
 * cells and the quadtree leaves.
 */
#include "index_impl.h"

#include <math.h>
#include <string.h>

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
    return rc ? rc : index->vt->insert(index, slot, x, y);
}

void sl_index_remove(sl_index *index, uint32_t slot)
{
    index->vt->remove(index, slot);
}

int sl_index_move(sl_index *index, uint32_t slot, float x, float y)
{
    return index->vt->move(index, slot, x, y);
}

int sl_index_query(sl_index *index, float cx, float cy, float r2, sl_u32vec *out)
{
    /*
     * The search box must contain every point that passes the float32 test d2 <= r2. A
     * point just outside sqrt(r2) can still round into it, so the box is widened by a
     * relative 2^-16 and an absolute 2^-10, far more than float rounding can add.
     */
    float half = sqrtf(r2);
    half = half + half * (1.0f / 65536.0f) + (1.0f / 1024.0f);
    return index->vt->query(index, cx, cy, half, r2, out);
}

uint32_t sl_index_bucket_of(const sl_index *index, uint32_t slot)
{
    return index->loc[slot].bucket;
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
    const uint32_t *perm;
    sl__loc *loc;
} renumber_ctx;

static void renumber_visit(void *ud, sl__bucket *b, uint32_t id)
{
    renumber_ctx *c = ud;
    for (uint32_t i = 0; i < b->n; i++) {
        uint32_t to = c->perm[b->slot[i]];
        b->slot[i] = to;
        c->loc[to] = (sl__loc){id, i};
    }
}

int sl_index_renumber(sl_index *index, const uint32_t *perm, uint32_t nslots)
{
    uint32_t cap = nslots > index->loc_cap ? nslots : index->loc_cap;
    sl__loc *loc = sl__realloc(index->alloc, NULL, 0, (size_t)cap * sizeof(sl__loc));
    if (!loc)
        return SL_ENOMEM;
    renumber_ctx c = {perm, loc};
    index->vt->visit(index, renumber_visit, &c);
    sl__free(index->alloc, index->loc, (size_t)index->loc_cap * sizeof(sl__loc));
    index->loc = loc;
    index->loc_cap = cap;
    return 0;
}

size_t sl_index_memory(const sl_index *index)
{
    return index->vt->memory(index) + (size_t)index->loc_cap * sizeof(sl__loc);
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
        .vt = vt, .alloc = alloc, .kind = kind, .width = width, .height = height, .cell = cell,
    };
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
    sl__loc *loc = sl__realloc(index->alloc, index->loc, (size_t)index->loc_cap * sizeof(sl__loc),
                               (size_t)cap * sizeof(sl__loc));
    if (!loc)
        return SL_ENOMEM;
    index->loc = loc;
    index->loc_cap = (uint32_t)cap;
    return 0;
}

void sl__index_base_free(sl_index *index)
{
    sl__free(index->alloc, index->loc, (size_t)index->loc_cap * sizeof(sl__loc));
}

/* Resizes a bucket's three arrays to cap (a multiple of SL_SIMD_PAD, >= b->n). */
static int bucket_resize(const sl_allocator *a, sl__bucket *b, uint32_t cap)
{
    size_t ou = (size_t)b->cap * sizeof(uint32_t), nu = (size_t)cap * sizeof(uint32_t);
    size_t of = (size_t)b->cap * sizeof(float), nf = (size_t)cap * sizeof(float);
    /* Allocate all three first so that a failure leaves the bucket as it was. */
    uint32_t *slot = sl__realloc(a, NULL, 0, nu);
    float *x = sl__realloc(a, NULL, 0, nf);
    float *y = sl__realloc(a, NULL, 0, nf);
    if (!slot || !x || !y) {
        sl__free(a, slot, nu);
        sl__free(a, x, nf);
        sl__free(a, y, nf);
        return SL_ENOMEM;
    }
    if (b->n) {
        memcpy(slot, b->slot, (size_t)b->n * sizeof(uint32_t));
        memcpy(x, b->x, (size_t)b->n * sizeof(float));
        memcpy(y, b->y, (size_t)b->n * sizeof(float));
    }
    for (uint32_t i = b->n; i < cap; i++)
        x[i] = y[i] = NAN;
    sl__free(a, b->slot, ou);
    sl__free(a, b->x, of);
    sl__free(a, b->y, of);
    b->slot = slot;
    b->x = x;
    b->y = y;
    b->cap = cap;
    return 0;
}

int sl__bucket_add(sl_index *index, sl__bucket *b, uint32_t id, uint32_t slot, float x, float y)
{
    if (b->n == b->cap) {
        uint32_t cap = b->cap ? b->cap * 2 : SL_SIMD_PAD;
        int rc = bucket_resize(index->alloc, b, cap);
        if (rc)
            return rc;
    }
    uint32_t pos = b->n++;
    b->slot[pos] = slot;
    b->x[pos] = x;
    b->y[pos] = y;
    index->loc[slot].bucket = id;
    index->loc[slot].pos = pos;
    return 0;
}

void sl__bucket_remove_at(sl_index *index, sl__bucket *b, uint32_t pos)
{
    uint32_t last = --b->n;
    if (pos != last) {
        uint32_t moved = b->slot[last];
        b->slot[pos] = moved;
        b->x[pos] = b->x[last];
        b->y[pos] = b->y[last];
        index->loc[moved].pos = pos;
    }
    b->x[last] = b->y[last] = NAN;
    /* Give memory back when a bucket empties out; a failed shrink just keeps the memory. */
    if (b->n == 0)
        sl__bucket_free(index->alloc, b);
    else if (b->cap > SL_SIMD_PAD && b->n <= b->cap / 4)
        (void)bucket_resize(index->alloc, b, b->cap / 2);
}

int sl__bucket_query(const sl_allocator *a, const sl__bucket *b, float cx, float cy, float r2,
                     sl_u32vec *out)
{
    if (b->n == 0)
        return 0;
    uint32_t room = sl_simd_padded(b->n) + SL_SIMD_PAD;
    if (out->cap - out->n < room) {
        int rc = sl__u32vec_reserve(out, a, out->n + room);
        if (rc)
            return rc;
    }
    uint32_t *dst = out->v + out->n;
    uint32_t k = sl_simd_within(b->x, b->y, b->n, cx, cy, r2, dst);
    for (uint32_t j = 0; j < k; j++)
        dst[j] = b->slot[dst[j]];
    out->n += k;
    return 0;
}

void sl__bucket_free(const sl_allocator *a, sl__bucket *b)
{
    sl__free(a, b->slot, (size_t)b->cap * sizeof(uint32_t));
    sl__free(a, b->x, (size_t)b->cap * sizeof(float));
    sl__free(a, b->y, (size_t)b->cap * sizeof(float));
    memset(b, 0, sizeof *b);
}
