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
 *
 * Memory follows the entities, not the map: nothing is allocated per cell up front (a map
 * of 4096 x 4096 cells of side 1 once cost 400 MB empty). Cells are grouped in tiles of 64,
 * and a tile exists only while one of its cells holds an entity: per cell, it holds an entry
 * saying where the cell's bucket is in the pool and how large it is (0: empty; see entry()).
 * The pool is one array of buckets, one per occupied cell; an emptied cell gives its bucket
 * back to the pool's free list at once, and a tile, page or directory that empties is freed
 * at once, so a grid that lost its last entity holds only its own struct. Each compaction
 * (sl_index_renumber) lays the pool out again in the order of the tiles, so the buckets of
 * a neighbourhood sit together as they did in the old flat array of cells, and gives back
 * the pool's free entries.
 *
 * Cells are numbered row-major with a row stride of the map's width rounded up to a multiple
 * of 64 (or, on a map narrower than 64 cells, to a power of two): cell (cx, cy) has the key
 * cy * stride + cx, and tile key / 64 holds it at place key % 64. A tile is then a strip
 * 64 cells wide and one high (on a narrow map, as wide as the stride and taller), so each
 * row of a neighbourhood is one stretch of one tile (two where it crosses a tile's edge, one
 * row in 32 for a 3 x 3 box): the hot gather costs one directory load a row over the old
 * flat array of cells, not one a cell, and reads the buckets' sizes from the entries, not
 * from the buckets. The directory is a flat array of tile pointers for maps of up to
 * FLAT_TILES tiles (made at the first insert), and beyond that an array of pages of
 * PAGE_TILES consecutive tile numbers (a page is made when a tile in it is). Tiles and
 * pages that do not exist point to one shared, read-only empty tile (and empty page), whose
 * cells are all empty, so lookups never test for NULL. A bucket's number in the pool is what
 * the index's per-slot location records; a bucket also records its cell's key, so that a
 * move can tell whether it left its cell from the bucket it reads anyway.
 */
#include "index_impl.h"

#include <math.h>
#include <string.h>

#define TILE_LOG 6u
#define TILE_CELLS (1u << TILE_LOG)                 /* cells a tile: 64 x 1 when the map allows */
#define TILE_MASK (TILE_CELLS - 1)
#define PAGE_SHIFT 8u
#define PAGE_TILES (1u << PAGE_SHIFT)               /* consecutive tile numbers a page */
#define PAGE_MASK (PAGE_TILES - 1)
#define FLAT_TILES 1024u                            /* larger maps use pages */
#define POOL_MIN 16u

/*
 * A tile's entry for a cell: 0 when empty, else where its bucket is in the pool as a byte
 * offset (a multiple of 32), plus in the low 5 bits the bucket's padded size in blocks of
 * SL_SIMD_PAD lanes, up to SIZE_MASK (the bucket itself says beyond). A gather reads all it
 * needs from the entries, not from the buckets (one dependent load fewer a cell).
 */
#define SIZE_MASK 31u
#define OFF(b) ((b) * (uint32_t)sizeof(sl__bucket))
#define NUM(e) (((e) & ~SIZE_MASK) / (uint32_t)sizeof(sl__bucket))
_Static_assert(sizeof(sl__bucket) % (SIZE_MASK + 1) == 0, "bucket offsets keep 5 bits free");

static inline uint32_t entry(uint32_t b, uint32_t n)
{
    uint32_t blocks = sl_simd_padded(n) / SL_SIMD_PAD;
    return OFF(b) | (blocks < SIZE_MASK ? blocks : SIZE_MASK);
}

typedef struct tile {
    uint32_t b[TILE_CELLS];     /* per cell (row-major): its entry (see entry()) */
    uint32_t n;                 /* cells that are not empty */
} tile;

typedef struct page {
    tile *t[PAGE_TILES];        /* the empty tile where none exists */
    uint32_t n;                 /* tiles that exist */
} page;

/* The tile and the page that stand for those that do not exist; never written. */
static const tile empty_tile;
#define ET (tile *)&empty_tile,
#define ET8 ET ET ET ET ET ET ET ET
#define ET64 ET8 ET8 ET8 ET8 ET8 ET8 ET8 ET8
static const page empty_page = {{ET64 ET64 ET64 ET64}, 0};
_Static_assert(PAGE_TILES == 256, "empty_page lists PAGE_TILES tiles");
#define EMPTY_TILE ((tile *)&empty_tile)
#define EMPTY_PAGE ((page *)&empty_page)

typedef struct grid {
    sl_index base;              /* must stay first */
    uint32_t nx, ny;            /* cells across and down */
    double inv;                 /* 1 / the cell size */
    uint32_t stride;            /* cell keys a row: nx rounded up (see the top) */
    uint32_t ndir;              /* entries of the directory: tiles (flat) or pages */
    bool paged;
    union {
        tile **tiles;           /* flat: every tile by number */
        page **pages;           /* paged: page k holds tiles k * PAGE_TILES + [0, PAGE_TILES) */
        void *dir;              /* NULL while the grid is empty */
    };
    uint32_t ntiles, npages;    /* that exist */
    sl__bucket *pool;           /* [0] is never used: OFF 0 means "empty cell" */
    uint32_t pool_cap, pool_top;    /* entries allocated; entries [1, pool_top) ever used */
    uint32_t free_head;         /* freed entries, chained through .cell (0 ends it) */
    uint32_t nbuckets;          /* cells that are not empty */
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

/* The key of cell (cx, cy): its tile is key >> TILE_LOG, its place there key & TILE_MASK. */
static inline uint32_t cell_key(const grid *g, uint32_t cx, uint32_t cy)
{
    return cy * g->stride + cx;
}

/* Tile number t, or the empty tile; only while the directory exists. */
static inline const tile *tile_at(const grid *g, uint32_t t, bool paged)
{
    return paged ? g->pages[t >> PAGE_SHIFT]->t[t & PAGE_MASK] : g->tiles[t];
}

/* The tile entry of the cell whose key is k (the cell's tile exists). */
static inline uint32_t *entry_at(const grid *g, uint32_t k)
{
    return (uint32_t *)(uintptr_t)&tile_at(g, k >> TILE_LOG, g->paged)->b[k & TILE_MASK];
}

/* ---- making and freeing tiles, pages, the directory and pool entries -------------------- */

static int make_dir(grid *g)
{
    void **dir = sl_realloc(g->base.alloc, NULL, 0, (size_t)g->ndir * sizeof(void *));
    if (!dir)
        return SL_ENOMEM;
    for (uint32_t i = 0; i < g->ndir; i++)
        dir[i] = g->paged ? (void *)EMPTY_PAGE : (void *)EMPTY_TILE;
    g->dir = dir;
    return 0;
}

/* Frees the pool and the directory of a grid whose last bucket and tile are gone. */
static void drop_empty(grid *g)
{
    const sl_allocator *a = g->base.alloc;
    if (g->ntiles == 0 && g->dir) {
        sl_free(a, g->dir, (size_t)g->ndir * sizeof(void *));
        g->dir = NULL;
    }
    if (g->nbuckets == 0 && g->pool) {
        sl_free(a, g->pool, (size_t)g->pool_cap * sizeof(sl__bucket));
        g->pool = NULL;
        g->pool_cap = g->pool_top = g->free_head = 0;
    }
}

/*
 * Where the directory keeps tile number t: a slot of the flat directory, or of its page,
 * which is made if it did not exist (*pg: the page, or NULL when flat). NULL on OOM.
 */
static tile **tile_slot(grid *g, uint32_t t, page **pg)
{
    *pg = NULL;
    if (!g->paged)
        return &g->tiles[t];
    page **pp = &g->pages[t >> PAGE_SHIFT];
    if (*pp == EMPTY_PAGE) {
        page *p = sl_realloc(g->base.alloc, NULL, 0, sizeof *p);
        if (!p)
            return NULL;
        *p = empty_page;
        *pp = p;
        g->npages++;
    }
    *pg = *pp;
    return &(*pp)->t[t & PAGE_MASK];
}

/* Frees tile number t if it holds nothing, its page likewise, then whatever emptied. */
static void drop_tile_if_empty(grid *g, uint32_t t)
{
    const sl_allocator *a = g->base.alloc;
    if (g->dir) {
        page *p = NULL, **pp = NULL;
        tile **ts;
        if (g->paged) {
            pp = &g->pages[t >> PAGE_SHIFT];
            p = *pp;
            ts = &p->t[t & PAGE_MASK];
        } else {
            ts = &g->tiles[t];
        }
        if (*ts != EMPTY_TILE && (*ts)->n == 0) {
            sl_free(a, *ts, sizeof(tile));
            *ts = EMPTY_TILE;
            g->ntiles--;
            if (p)
                p->n--;
        }
        if (p && p != EMPTY_PAGE && p->n == 0) {
            sl_free(a, p, sizeof *p);
            *pp = EMPTY_PAGE;
            g->npages--;
        }
    }
    drop_empty(g);
}

/* Takes a pool entry for a bucket; 0 on OOM. (The pool may move.) */
static uint32_t pool_take(grid *g)
{
    if (g->free_head) {
        uint32_t b = g->free_head;
        g->free_head = g->pool[b].cell;
        return b;
    }
    if (g->pool_top == g->pool_cap) {
        uint64_t cap = g->pool_cap ? (uint64_t)g->pool_cap + g->pool_cap / 2 : POOL_MIN;
        if (cap * sizeof(sl__bucket) > UINT32_MAX)
            return 0;       /* (cannot happen below SL_GRID_MAX_CELLS cells) */
        sl__bucket *pool = sl_realloc(g->base.alloc, g->pool, (size_t)g->pool_cap *
                                      sizeof(sl__bucket), (size_t)cap * sizeof(sl__bucket));
        if (!pool)
            return 0;
        if (!g->pool) {
            pool[0] = (sl__bucket){0};
            g->pool_top = 1;
        }
        g->pool = pool;
        g->pool_cap = (uint32_t)cap;
    }
    return g->pool_top++;
}

/*
 * The bucket of cell (cx, cy), made (with its tile, page and directory) if the cell was
 * empty: its number in *out and its tile entry in *ent, 0, or SL_ENOMEM with nothing made.
 */
static int cell_bucket(grid *g, uint32_t cx, uint32_t cy, uint32_t *out, uint32_t **ent)
{
    uint32_t key = cell_key(g, cx, cy), tn = key >> TILE_LOG, i = key & TILE_MASK;
    if (!g->dir && make_dir(g))
        return SL_ENOMEM;
    page *p;
    tile **ts = tile_slot(g, tn, &p);
    if (!ts)
        goto fail;
    if (*ts == EMPTY_TILE) {
        tile *t = sl_realloc(g->base.alloc, NULL, 0, sizeof *t);
        if (!t)
            goto fail;
        memset(t, 0, sizeof *t);
        *ts = t;
        g->ntiles++;
        if (p)
            p->n++;
    }
    tile *t = *ts;
    if (!t->b[i]) {
        uint32_t b = pool_take(g);
        if (!b)
            goto fail;
        g->pool[b] = (sl__bucket){.cell = key};
        t->b[i] = entry(b, 0);
        t->n++;
        g->nbuckets++;
    }
    *out = NUM(t->b[i]);
    *ent = &t->b[i];
    return 0;
fail:
    drop_tile_if_empty(g, tn);
    return SL_ENOMEM;
}

/* Gives back the (empty) bucket b: its cell becomes empty, and what emptied with it goes. */
static void release_bucket(grid *g, uint32_t b)
{
    uint32_t k = g->pool[b].cell, tn = k >> TILE_LOG;
    tile *t = (tile *)(uintptr_t)tile_at(g, tn, g->paged);
    t->b[k & TILE_MASK] = 0;
    t->n--;
    g->nbuckets--;
    g->pool[b] = (sl__bucket){.cell = g->free_head};
    g->free_head = b;
    drop_tile_if_empty(g, tn);
}

/* Removes the lane at pos of bucket b, giving the bucket back if it empties. */
static void remove_at(grid *g, uint32_t b, uint32_t pos)
{
    sl__bucket *h = &g->pool[b];
    uint32_t was = sl_simd_padded(h->n);
    sl__bucket_remove_at(&g->base, h, pos);
    if (!h->n)
        release_bucket(g, b);
    else if (sl_simd_padded(h->n) != was)
        *entry_at(g, h->cell) = entry(b, h->n);
}

/* ---- operations ------------------------------------------------------------------------ */

static int grid_insert(sl_index *index, const sl__lane *lane)
{
    grid *g = (grid *)index;
    uint32_t b, *ent;
    int rc = cell_bucket(g, coord(lane->x, g->inv, g->nx), coord(lane->y, g->inv, g->ny), &b,
                         &ent);
    if (rc)
        return rc;
    rc = sl__bucket_put(index, &g->pool[b], b, lane);
    if (rc && !g->pool[b].n)
        release_bucket(g, b);
    else if (!rc)
        *ent = entry(b, g->pool[b].n);
    return rc;
}

static void grid_remove(sl_index *index, uint32_t slot)
{
    sl__loc loc = index->loc[slot];
    remove_at((grid *)index, loc.bucket, loc.pos);
}

static int grid_move(sl_index *index, uint32_t slot, float x, float y)
{
    grid *g = (grid *)index;
    sl__loc loc = index->loc[slot];
    uint32_t cx = coord(x, g->inv, g->nx), cy = coord(y, g->inv, g->ny);
    sl__bucket *old = &g->pool[loc.bucket];
    if (old->cell == cell_key(g, cx, cy)) {
        old->x[loc.pos] = x;
        old->y[loc.pos] = y;
        return 0;
    }
    /* Add to the new cell first, so that a failed allocation leaves the entity in place. */
    sl__lane lane;
    /* (the pool may move: `old` is not used again) */
    sl__bucket_get(index, old, loc.pos, &lane);
    lane.x = x;
    lane.y = y;
    uint32_t b, *ent;
    int rc = cell_bucket(g, cx, cy, &b, &ent);
    if (rc)
        return rc;
    rc = sl__bucket_put(index, &g->pool[b], b, &lane);
    if (rc) {
        if (!g->pool[b].n)
            release_bucket(g, b);
        index->loc[slot] = loc;
        return rc;
    }
    *ent = entry(b, g->pool[b].n);
    remove_at(g, loc.bucket, loc.pos);
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

/* Takes the non-empty cells row[k0..k1] of a tile into a gather. */
static inline __attribute__((always_inline)) void
take_row(const uint32_t *row, uint32_t k0, uint32_t k1, const char *pool, const sl_lanes **out,
         uint32_t max, uint32_t *n, uint32_t *sum)
{
    for (uint32_t k = k0; k <= k1; k++) {
        uint32_t e = row[k];
        if (!e)
            continue;
        const sl__bucket *b = (const sl__bucket *)(const void *)(pool + (e & ~SIZE_MASK));
        if (*n < max) {
            out[*n] = &b->lanes;
            uint32_t blocks = e & SIZE_MASK;
            *sum += blocks < SIZE_MASK ? blocks * SL_SIMD_PAD : sl_simd_padded(b->n);
        }
        (*n)++;
    }
}

/*
 * The gather, for a flat or a paged directory: row by row, each row the stretch of cell keys
 * [y * stride + x0, y * stride + x1], in one tile (or a few, where it crosses a tile's edge),
 * in the order grid_box visits.
 */
static inline __attribute__((always_inline)) uint32_t
gather(const grid *g, float cx, float cy, float half, const sl_lanes **out, uint32_t max,
       uint32_t *padded, bool paged)
{
    if (!g->dir)
        return 0;
    uint32_t x0, x1, y0, y1;
    box_cells(g, cx, cy, half, &x0, &x1, &y0, &y1);
    const char *pool = (const char *)g->pool;
    const uint32_t stride = g->stride, w = x1 - x0, last = y1 * stride + x0;
    uint32_t n = 0, sum = 0, k0 = y0 * stride + x0;
    if (k0 >> TILE_LOG == (k0 + w) >> TILE_LOG) {
        /* The first row's stretch is in one tile, so is every row's (the stride is a
         * multiple of 64, or divides it): 31 boxes of 32 for 3 x 3 cells. */
        for (; k0 <= last; k0 += stride) {
            uint32_t a = k0 & TILE_MASK;
            take_row(tile_at(g, k0 >> TILE_LOG, paged)->b, a, a + w, pool, out, max, &n, &sum);
        }
        *padded += sum;
        return n;
    }
    for (; k0 <= last; k0 += stride) {
        for (uint32_t k = k0;;) {
            uint32_t end = (k | TILE_MASK) < k0 + w ? (k | TILE_MASK) : k0 + w;
            take_row(tile_at(g, k >> TILE_LOG, paged)->b, k & TILE_MASK, end & TILE_MASK, pool,
                     out, max, &n, &sum);
            if (end == k0 + w)
                break;
            k = end + 1;
        }
    }
    *padded += sum;
    return n;
}

/* Calls fn for the non-empty cells row[k0..k1] of a tile; stops at a non-zero result. */
static inline int box_row(const grid *g, const uint32_t *row, uint32_t k0, uint32_t k1,
                          int (*fn)(void *ud, const sl__bucket *b), void *ud)
{
    for (uint32_t k = k0; k <= k1; k++) {
        uint32_t e = row[k];
        if (!e)
            continue;
        int rc = fn(ud, &g->pool[NUM(e)]);
        if (rc)
            return rc;
    }
    return 0;
}

/* The walk of the gather, with a callback a bucket (queries, and boxes too large for it). */
static int grid_box(sl_index *index, float cx, float cy, float half,
                    int (*fn)(void *ud, const sl__bucket *b), void *ud)
{
    grid *g = (grid *)index;
    if (!g->dir)
        return 0;
    uint32_t x0, x1, y0, y1;
    box_cells(g, cx, cy, half, &x0, &x1, &y0, &y1);
    const uint32_t stride = g->stride, w = x1 - x0, last = y1 * stride + x0;
    int rc = 0;
    for (uint32_t k0 = y0 * stride + x0; k0 <= last && !rc; k0 += stride) {
        for (uint32_t k = k0; !rc;) {
            uint32_t end = (k | TILE_MASK) < k0 + w ? (k | TILE_MASK) : k0 + w;
            const tile *t = tile_at(g, k >> TILE_LOG, g->paged);
            if (t != EMPTY_TILE)
                rc = box_row(g, t->b, k & TILE_MASK, end & TILE_MASK, fn, ud);
            if (end == k0 + w)
                break;
            k = end + 1;
        }
    }
    return rc;
}

/* The gather's two instances, by directory kind (see grid_vts). */
#define GATHER(name, paged)                                                                  \
    static uint32_t name(sl_index *index, float cx, float cy, float half,                    \
                         const sl_lanes **out, uint32_t max, uint32_t *padded)               \
    {                                                                                        \
        return gather((const grid *)index, cx, cy, half, out, max, padded, paged);           \
    }
GATHER(gather_flat, false)
GATHER(gather_paged, true)

static sl__bucket *grid_bucket(sl_index *index, uint32_t id)
{
    return &((grid *)index)->pool[id];
}

static size_t grid_memory(const sl_index *index)
{
    const grid *g = (const grid *)index;
    size_t bytes = sizeof *g + (g->dir ? (size_t)g->ndir * sizeof(void *) : 0) +
                   (size_t)g->npages * sizeof(page) + (size_t)g->ntiles * sizeof(tile) +
                   (size_t)g->pool_cap * sizeof(sl__bucket);
    for (uint32_t b = 1; b < g->pool_top; b++)
        bytes += sl__bucket_bytes(index, &g->pool[b]);     /* a free entry has no block */
    return bytes;
}

/* Calls fn for every tile that exists, by number. */
static void each_tile(grid *g, void (*fn)(void *ud, tile *t), void *ud)
{
    if (!g->dir)
        return;
    if (!g->paged) {
        for (uint32_t i = 0; i < g->ndir; i++)
            if (g->tiles[i] != EMPTY_TILE)
                fn(ud, g->tiles[i]);
        return;
    }
    for (uint32_t i = 0; i < g->ndir; i++) {
        page *p = g->pages[i];
        for (uint32_t k = 0; p != EMPTY_PAGE && k < PAGE_TILES; k++)
            if (p->t[k] != EMPTY_TILE)
                fn(ud, p->t[k]);
    }
}

static void free_tile(void *ud, tile *t)
{
    sl_free(((grid *)ud)->base.alloc, t, sizeof *t);
}

static void grid_free(sl_index *index)
{
    grid *g = (grid *)index;
    const sl_allocator *a = index->alloc;
    for (uint32_t b = 1; b < g->pool_top; b++)
        sl__bucket_free(index, &g->pool[b]);
    each_tile(g, free_tile, g);
    if (g->paged && g->dir)
        for (uint32_t i = 0; i < g->ndir; i++)
            if (g->pages[i] != EMPTY_PAGE)
                sl_free(a, g->pages[i], sizeof(page));
    g->ntiles = g->npages = g->nbuckets = 0;
    drop_empty(g);
    sl__index_base_free(index);
    sl_free(a, g, sizeof *g);
}

typedef struct visit_ctx {
    grid *g;
    void (*visit)(void *, sl__bucket *, uint32_t);
    void *ud;
} visit_ctx;

static void visit_tile(void *ud, tile *t)
{
    visit_ctx *v = ud;
    for (uint32_t i = 0; i < TILE_CELLS; i++)
        if (t->b[i])
            v->visit(v->ud, &v->g->pool[NUM(t->b[i])], NUM(t->b[i]));
}

/* Spatial order: tile by tile, each tile's cells row by row (for a map up to 64 cells wide,
 * the cells row-major). */
static void grid_visit(sl_index *index, void (*visit)(void *, sl__bucket *, uint32_t), void *ud)
{
    visit_ctx v = {(grid *)index, visit, ud};
    each_tile((grid *)index, visit_tile, &v);
}

typedef struct repack_ctx {
    grid *g;
    sl__bucket *pool;
    uint32_t n;
} repack_ctx;

static void repack_tile(void *ud, tile *t)
{
    repack_ctx *r = ud;
    for (uint32_t i = 0; i < TILE_CELLS; i++) {
        if (t->b[i]) {
            r->pool[r->n] = r->g->pool[NUM(t->b[i])];
            t->b[i] = entry(r->n, r->pool[r->n].n);
            r->n++;
        }
    }
}

/*
 * Lays the pool out again in visit order, with a little room and no free entries (the index
 * keeps locations by pool entry: sl_index_renumber, the caller, rewrites them all). Without
 * memory it stays as it is.
 */
static void grid_trim(sl_index *index)
{
    grid *g = (grid *)index;
    if (!g->pool)
        return;
    /* Room for a few more cells than are occupied: entities walk into empty cells. */
    uint32_t cap = g->nbuckets + 1 + g->nbuckets / 16 + POOL_MIN;
    sl__bucket *pool = sl_realloc(index->alloc, NULL, 0, (size_t)cap * sizeof(sl__bucket));
    if (!pool)
        return;
    pool[0] = (sl__bucket){0};
    repack_ctx r = {g, pool, 1};
    each_tile(g, repack_tile, &r);
    sl_free(index->alloc, g->pool, (size_t)g->pool_cap * sizeof(sl__bucket));
    g->pool = pool;
    g->pool_cap = cap;
    g->pool_top = r.n;
    g->free_head = 0;
}

#define GRID_VT(gather)                                                                      \
    {grid_insert, grid_remove, grid_move, grid_box, gather, grid_bucket, grid_memory,       \
     grid_free, grid_visit, grid_trim}
/* By [paged]. */
static const struct sl__index_vt grid_vts[2] = {GRID_VT(gather_flat), GRID_VT(gather_paged)};

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
    g->inv = 1.0 / (double)cell;
    g->nx = (uint32_t)nx;
    g->ny = (uint32_t)ny;
    /* Rows of keys a multiple of 64 wide, or as wide as the map rounds up to (a power of
     * two), so that every tile of 64 keys lies in one row or holds whole rows. */
    g->stride = TILE_CELLS;
    while (g->stride / 2 >= g->nx)
        g->stride /= 2;
    if (g->nx > TILE_CELLS)
        g->stride = (g->nx + TILE_MASK) & ~TILE_MASK;
    uint64_t tiles = ((uint64_t)g->ny * g->stride + TILE_MASK) >> TILE_LOG;
    g->paged = tiles > FLAT_TILES;
    g->ndir = (uint32_t)(g->paged ? (tiles + PAGE_MASK) >> PAGE_SHIFT : tiles);
    sl__index_base_init(&g->base, &grid_vts[g->paged], SL_INDEX_GRID,
                        width, height, cell, alloc);
    return &g->base;
}
