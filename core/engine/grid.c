/*
 * grid.c: the uniform grid index. The map is cut into square cells, each a bucket; an entity
 * lives in the cell holding its position. A move that stays inside its cell rewrites two
 * floats and touches nothing else; a query visits the cells overlapping its search box and
 * runs the SIMD filter over each.
 *
 * Cell coordinates are computed in double as floor(p * (1 / cell)), the same formula for
 * inserts and queries, so a point is always found in the cell a query expects (the formula
 * is monotone in p, whatever its rounding; a multiply instead of a divide, which the box of
 * every moved entity computes four times).
 */
#include "index_impl.h"

#include <math.h>

typedef struct grid {
    sl_index base;          /* must stay first */
    uint32_t nx, ny;
    double inv;             /* 1 / the cell size */
    sl__bucket *cells;
    uint32_t ncells;
} grid;

static inline uint32_t coord(double p, double inv, uint32_t n)
{
    double c = p * inv;
    if (!(c >= 0))
        return 0;
    if (c >= (double)n)
        return n - 1;
    return (uint32_t)c;     /* truncation is floor() for c >= 0 */
}

static inline uint32_t cell_of(const grid *g, float x, float y)
{
    return coord(x, g->inv, g->nx) + coord(y, g->inv, g->ny) * g->nx;
}

static int grid_insert(sl_index *index, const sl__lane *lane)
{
    grid *g = (grid *)index;
    uint32_t c = cell_of(g, lane->x, lane->y);
    return sl__bucket_put(index, &g->cells[c], c, lane);
}

static void grid_remove(sl_index *index, uint32_t slot)
{
    grid *g = (grid *)index;
    sl__loc loc = index->loc[slot];
    sl__bucket_remove_at(index, &g->cells[loc.bucket], loc.pos);
}

static int grid_move(sl_index *index, uint32_t slot, float x, float y)
{
    grid *g = (grid *)index;
    sl__loc loc = index->loc[slot];
    uint32_t c = cell_of(g, x, y);
    if (c == loc.bucket) {
        g->cells[c].x[loc.pos] = x;
        g->cells[c].y[loc.pos] = y;
        return 0;
    }
    /* Add to the new cell first, so that a failed allocation leaves the entity in place. */
    sl__lane lane;
    sl__bucket_get(&g->cells[loc.bucket], loc.pos, &lane);
    lane.x = x;
    lane.y = y;
    int rc = sl__bucket_put(index, &g->cells[c], c, &lane);
    if (rc) {
        index->loc[slot] = loc;
        return rc;
    }
    sl__bucket_remove_at(index, &g->cells[loc.bucket], loc.pos);
    return 0;
}

/* The cells a square of half-side `half` around (cx, cy) overlaps: [x0, x1] x [y0, y1]. */
static inline void box_cells(const grid *g, float cx, float cy, float half, uint32_t *x0,
                             uint32_t *x1, uint32_t *y0, uint32_t *y1)
{
    *x0 = coord((double)cx - half, g->inv, g->nx);
    *x1 = coord((double)cx + half, g->inv, g->nx);
    *y0 = coord((double)cy - half, g->inv, g->ny);
    *y1 = coord((double)cy + half, g->inv, g->ny);
}

static int grid_box(sl_index *index, float cx, float cy, float half,
                    int (*fn)(void *ud, const sl__bucket *b), void *ud)
{
    grid *g = (grid *)index;
    uint32_t x0, x1, y0, y1;
    box_cells(g, cx, cy, half, &x0, &x1, &y0, &y1);
    for (uint32_t y = y0; y <= y1; y++) {
        const sl__bucket *row = g->cells + (size_t)y * g->nx;
        for (uint32_t x = x0; x <= x1; x++) {
            if (!row[x].n)
                continue;
            int rc = fn(ud, &row[x]);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static uint32_t grid_gather(sl_index *index, float cx, float cy, float half,
                            const sl_lanes **out, uint32_t max, uint32_t *padded)
{
    grid *g = (grid *)index;
    uint32_t x0, x1, y0, y1;
    box_cells(g, cx, cy, half, &x0, &x1, &y0, &y1);
    uint32_t n = 0, sum = 0;
    for (uint32_t y = y0; y <= y1; y++) {
        const sl__bucket *row = g->cells + (size_t)y * g->nx;
        for (uint32_t x = x0; x <= x1; x++) {
            if (!row[x].n)
                continue;
            if (n < max) {
                out[n] = &row[x].lanes;
                sum += sl_simd_padded(row[x].n);
            }
            n++;
        }
    }
    *padded += sum;
    return n;
}

static sl__bucket *grid_bucket(sl_index *index, uint32_t id)
{
    return &((grid *)index)->cells[id];
}

static size_t grid_memory(const sl_index *index)
{
    const grid *g = (const grid *)index;
    size_t bytes = sizeof *g + (size_t)g->ncells * sizeof(sl__bucket);
    for (uint32_t i = 0; i < g->ncells; i++)
        bytes += sl__bucket_bytes(&g->cells[i]);
    return bytes;
}

static void grid_free(sl_index *index)
{
    grid *g = (grid *)index;
    const sl_allocator *a = index->alloc;
    for (uint32_t i = 0; i < g->ncells; i++)
        sl__bucket_free(index, &g->cells[i]);
    sl_free(a, g->cells, (size_t)g->ncells * sizeof(sl__bucket));
    sl__index_base_free(index);
    sl_free(a, g, sizeof *g);
}

static void grid_visit(sl_index *index, void (*visit)(void *, sl__bucket *, uint32_t), void *ud)
{
    grid *g = (grid *)index;
    for (uint32_t i = 0; i < g->ncells; i++)
        if (g->cells[i].n)
            visit(ud, &g->cells[i], i);
}

static const struct sl__index_vt grid_vt = {
    grid_insert, grid_remove, grid_move, grid_box, grid_gather, grid_bucket, grid_memory,
    grid_free, grid_visit,
};

sl_index *sl__grid_new(float width, float height, float cell, const sl_allocator *alloc)
{
    if (!(cell > 0) || !isfinite(cell))
        cell = 64.0f;
    /* Coarsen the cell until the map fits in SL_GRID_MAX_CELLS cells. */
    double nx, ny;
    for (;;) {
        nx = ceil((double)width / cell);
        ny = ceil((double)height / cell);
        if (nx < 1)
            nx = 1;
        if (ny < 1)
            ny = 1;
        if (nx * ny <= SL_GRID_MAX_CELLS)
            break;
        cell *= 2.0f;
    }
    grid *g = sl_realloc(alloc, NULL, 0, sizeof *g);
    if (!g)
        return NULL;
    *g = (grid){0};
    sl__index_base_init(&g->base, &grid_vt, SL_INDEX_GRID, width, height, cell, alloc);
    g->inv = 1.0 / (double)cell;
    g->nx = (uint32_t)nx;
    g->ny = (uint32_t)ny;
    g->ncells = g->nx * g->ny;
    g->cells = sl_realloc(alloc, NULL, 0, (size_t)g->ncells * sizeof(sl__bucket));
    if (!g->cells) {
        sl_free(alloc, g, sizeof *g);
        return NULL;
    }
    for (uint32_t i = 0; i < g->ncells; i++)
        g->cells[i] = (sl__bucket){0};
    return &g->base;
}
