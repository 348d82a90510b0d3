/*
 * regions.c: regions (triggers, zones) in a space, and their enter / leave events.
 *
 * A region is a shape (circle, rectangle, polygon) with a layer mask; an entity is in it
 * when present, on a layer of the mask, and inside the shape (sl_region_contains). A tick's
 * region events are the difference, by (region id, entity id), between who was in which
 * region after the previous tick and after this one.
 *
 * Storage: each region keeps its members at the last tick (an id map: ids, so that a
 * compaction's renumbering does not touch them), and is listed in the cells of a coarse
 * grid over the map that its bounding box overlaps (at most CELLS_MAX x CELLS_MAX cells).
 * The tick's pass then costs:
 *  - per entity that changed (the dirty list, and the removed): the regions listed in the
 *    cells of its place now and at the last tick, each judged twice by geometry (was it in,
 *    is it in: the region did not change, so its membership at the last tick is exactly
 *    what the geometry of the entity's last-tick state says), and a member-set update only
 *    for an event;
 *  - per region that changed (added, reshaped, removed): a query over its bounding box
 *    against its member set.
 * Entities that do not change cost nothing, however many regions there are.
 */
#include "space_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CELLS_MAX 64u
/* Cell entries a space may hold in all (20 bytes each: 20 MiB): a region over the whole
 * map takes CELLS_MAX^2 of them, so this bounds what regions may cost. */
#define LISTED_MAX (1u << 20)

typedef struct region {
    uint64_t id;
    sl_region_kind kind;
    uint32_t mask;
    float a, b, c, d;           /* circle: x, y, r, r * r; rectangle: x, y, x1, y1 */
    float bx0, by0, bx1, by1;   /* bounding box */
    float *poly;                /* polygon: nv (x, y) vertices */
    uint32_t nv;
    uint32_t cx0, cy0, cx1, cy1;    /* the cells it is listed in */
    bool live, listed, changed;
    uint32_t mark;              /* pass stamp: already judged for this entity */
    sl_idmap members;           /* ids in it at the last tick (value: unused) */
} region;

/* A cell's entry: a region's slot and its box, so that most tests end in the cell's own
 * array without touching the region. */
typedef struct centry {
    float x0, y0, x1, y1;
    uint32_t slot;
} centry;

typedef struct cell {
    centry *e;
    uint32_t n, cap;
} cell;

struct sl__regions {
    region *r;                  /* slots (a removed region's slot is free after the tick) */
    size_t n, cap;
    uint32_t *free;
    size_t nfree, capfree;
    sl_idmap at;                /* region id -> slot */
    float cell;                 /* cell side */
    uint32_t ncx, ncy;
    cell *cells;                /* per cell: the regions whose box overlaps it */
    uint32_t *changed;          /* slots changed since the last tick */
    size_t nchanged, capchanged;
    size_t listed;              /* cell entries in all (LISTED_MAX at most) */
    uint32_t stamp;
    sl_region_event *ev;
    size_t nev, capev;
    uint32_t *seen;             /* live slots of re-added ids judged with their dead slot */
    size_t nseen, capseen;
};

/* ---- geometry ----------------------------------------------------------------------------- */

/* The orientation of p against edge a -> b: the sign of (bx - ax)(py - ay) - (by - ay)(px - ax)
 * in double precision (the contract's definition). */
static double orient(float ax, float ay, float bx, float by, float px, float py)
{
    double l = ((double)bx - (double)ax) * ((double)py - (double)ay);
    double r = ((double)by - (double)ay) * ((double)px - (double)ax);
    return l - r;
}

bool sl_polygon_contains(const float *xy, uint32_t n, float px, float py)
{
    bool in = false;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t j = i + 1 == n ? 0 : i + 1;
        float ax = xy[2 * i], ay = xy[2 * i + 1], bx = xy[2 * j], by = xy[2 * j + 1];
        double o = orient(ax, ay, bx, by, px, py);
        if (o == 0 && fminf(ax, bx) <= px && px <= fmaxf(ax, bx) && fminf(ay, by) <= py &&
            py <= fmaxf(ay, by))
            return true;                /* on an edge (or a vertex) */
        if (ay <= py) {
            if (by > py && o > 0)       /* an upward crossing, p to its left */
                in = !in;
        } else if (by <= py && o < 0) { /* a downward crossing, p to its right */
            in = !in;
        }
    }
    return in;
}

static bool contains(const region *g, float x, float y)
{
    if (x < g->bx0 || x > g->bx1 || y < g->by0 || y > g->by1)
        return false;
    switch (g->kind) {
    case SL_REGION_CIRCLE: {
        float dx = x - g->a, dy = y - g->b;
        return dx * dx + dy * dy <= g->d;
    }
    case SL_REGION_RECT:
        return true;        /* (the bounding box is the rectangle) */
    default:
        return sl_polygon_contains(g->poly, g->nv, x, y);
    }
}

/* Whether an entity on `layer` at (x, y) is in g. */
static bool holds(const region *g, float x, float y, uint32_t layer)
{
    return (g->mask >> layer & 1u) && contains(g, x, y);
}

/* ---- the grid ------------------------------------------------------------------------------ */

static uint32_t cell_of(float v, float cell, uint32_t n)
{
    if (!(v > 0))
        return 0;
    float c = v / cell;
    return c >= (float)n ? n - 1 : (uint32_t)c;
}

static cell *cell_at(struct sl__regions *R, float x, float y)
{
    return &R->cells[(size_t)cell_of(y, R->cell, R->ncy) * R->ncx + cell_of(x, R->cell, R->ncx)];
}

static void unlist(sl_space *s, region *g, uint32_t slot)
{
    struct sl__regions *R = s->regions;
    if (!g->listed)
        return;
    for (uint32_t cy = g->cy0; cy <= g->cy1; cy++) {
        for (uint32_t cx = g->cx0; cx <= g->cx1; cx++) {
            cell *c = &R->cells[(size_t)cy * R->ncx + cx];
            for (uint32_t i = 0; i < c->n; i++) {
                if (c->e[i].slot == slot) {
                    c->e[i] = c->e[--c->n];
                    R->listed--;
                    break;
                }
            }
        }
    }
    g->listed = false;
}

/* How many cells g's box covers. */
static size_t box_cells(const struct sl__regions *R, const region *g)
{
    return (size_t)(cell_of(g->bx1, R->cell, R->ncx) - cell_of(g->bx0, R->cell, R->ncx) + 1) *
           (cell_of(g->by1, R->cell, R->ncy) - cell_of(g->by0, R->cell, R->ncy) + 1);
}

static int list(sl_space *s, region *g, uint32_t slot)
{
    struct sl__regions *R = s->regions;
    g->cx0 = cell_of(g->bx0, R->cell, R->ncx);
    g->cx1 = cell_of(g->bx1, R->cell, R->ncx);
    g->cy0 = cell_of(g->by0, R->cell, R->ncy);
    g->cy1 = cell_of(g->by1, R->cell, R->ncy);
    g->listed = true;
    for (uint32_t cy = g->cy0; cy <= g->cy1; cy++) {
        for (uint32_t cx = g->cx0; cx <= g->cx1; cx++) {
            cell *c = &R->cells[(size_t)cy * R->ncx + cx];
            size_t cap = c->cap;
            if (c->n == cap && sl_grow(s->a, (void **)&c->e, &cap, c->n + 1, sizeof *c->e)) {
                unlist(s, g, slot);     /* (from the cells it made it into) */
                return SL_ENOMEM;
            }
            c->cap = (uint32_t)cap;
            c->e[c->n++] = (centry){g->bx0, g->by0, g->bx1, g->by1, slot};
            R->listed++;
        }
    }
    return 0;
}

/* ---- changes ------------------------------------------------------------------------------- */

static struct sl__regions *regions_of(sl_space *s)
{
    if (s->regions)
        return s->regions;
    struct sl__regions *R = sl_realloc(s->a, NULL, 0, sizeof *R);
    if (!R)
        return NULL;
    memset(R, 0, sizeof *R);
    float side = fmaxf(s->cfg.width, s->cfg.height);
    R->cell = fmaxf(side / (float)CELLS_MAX, 1.0f);
    R->ncx = (uint32_t)fminf(ceilf(s->cfg.width / R->cell), (float)CELLS_MAX);
    R->ncy = (uint32_t)fminf(ceilf(s->cfg.height / R->cell), (float)CELLS_MAX);
    R->ncx += !R->ncx;
    R->ncy += !R->ncy;
    R->cells = sl_realloc(s->a, NULL, 0, (size_t)R->ncx * R->ncy * sizeof *R->cells);
    if (!R->cells) {
        sl_free(s->a, R, sizeof *R);
        return NULL;
    }
    memset(R->cells, 0, (size_t)R->ncx * R->ncy * sizeof *R->cells);
    s->regions = R;
    return R;
}

static bool finite4(float a, float b, float c, float d)
{
    return isfinite(a) && isfinite(b) && isfinite(c) && isfinite(d);
}

/* Checks g and fills the shape of *out (its polygon copied into *poly, malloc'd). */
static int shape_of(sl_space *s, uint64_t id, const sl_region *g, region *out, float **poly)
{
    *poly = NULL;
    out->kind = g->kind;
    out->mask = g->mask;
    if (g->kind == SL_REGION_CIRCLE) {
        if (!finite4(g->x, g->y, g->r, 0) || g->r < 0)
            return sl__space_fail(s, SL_EINVAL, "region %llu: a circle needs a finite centre "
                                  "and a radius >= 0", (unsigned long long)id);
        out->a = g->x, out->b = g->y, out->c = g->r, out->d = g->r * g->r;
        /* The box only screens: widened by a few float32 steps, it holds every point the
         * float32 test takes in, whatever its rounding. */
        float pad = fmaxf(fmaxf(fabsf(g->x), fabsf(g->y)), g->r) * 1e-6f + 1e-30f;
        out->bx0 = g->x - g->r - pad, out->bx1 = g->x + g->r + pad;
        out->by0 = g->y - g->r - pad, out->by1 = g->y + g->r + pad;
        if (!finite4(out->bx0, out->bx1, out->by0, out->by1))
            return sl__space_fail(s, SL_EINVAL, "region %llu: a circle reaching past the "
                                  "float range", (unsigned long long)id);
        return 0;
    }
    if (g->kind == SL_REGION_RECT) {
        if (!finite4(g->x, g->y, g->x1, g->y1) || g->x1 < g->x || g->y1 < g->y)
            return sl__space_fail(s, SL_EINVAL, "region %llu: a rectangle needs finite "
                                  "corners with x <= x1 and y <= y1", (unsigned long long)id);
        out->a = out->bx0 = g->x, out->b = out->by0 = g->y;
        out->c = out->bx1 = g->x1, out->d = out->by1 = g->y1;
        return 0;
    }
    if (g->kind != SL_REGION_POLYGON || g->n < 3 || g->n > SL_REGION_VERTICES || !g->xy)
        return sl__space_fail(s, SL_EINVAL, "region %llu: a polygon has 3 to %d vertices",
                              (unsigned long long)id, SL_REGION_VERTICES);
    out->bx0 = out->by0 = INFINITY;
    out->bx1 = out->by1 = -INFINITY;
    for (uint32_t i = 0; i < g->n; i++) {
        float x = g->xy[2 * i], y = g->xy[2 * i + 1];
        if (!isfinite(x) || !isfinite(y))
            return sl__space_fail(s, SL_EINVAL, "region %llu: vertex %u is not finite",
                                  (unsigned long long)id, i);
        out->bx0 = fminf(out->bx0, x), out->bx1 = fmaxf(out->bx1, x);
        out->by0 = fminf(out->by0, y), out->by1 = fmaxf(out->by1, y);
    }
    *poly = sl_realloc(s->a, NULL, 0, (size_t)g->n * 2 * sizeof(float));
    if (!*poly)
        return sl__space_fail(s, SL_ENOMEM, "region %llu: out of memory",
                              (unsigned long long)id);
    memcpy(*poly, g->xy, (size_t)g->n * 2 * sizeof(float));
    out->nv = g->n;
    return 0;
}

static int mark_changed(sl_space *s, region *g, uint32_t slot)
{
    struct sl__regions *R = s->regions;
    if (g->changed)
        return 0;
    if (sl_grow(s->a, (void **)&R->changed, &R->capchanged, R->nchanged + 1, 4))
        return SL_ENOMEM;
    R->changed[R->nchanged++] = slot;
    g->changed = true;
    return 0;
}

int sl_space_set_region(sl_space *s, uint64_t id, const sl_region *g)
{
    struct sl__regions *R = regions_of(s);
    if (!R)
        return sl__space_fail(s, SL_ENOMEM, "region %llu: out of memory",
                              (unsigned long long)id);
    region shape = {0};
    float *poly;
    int rc = shape_of(s, id, g, &shape, &poly);
    if (rc)
        return rc;
    uint32_t slot = sl_idmap_get(&R->at, id);
    bool fresh = slot == UINT32_MAX;
    /* The limit is checked first, so that a refused region changes nothing. */
    size_t now = box_cells(R, &shape), was = 0;
    if (!fresh && R->r[slot].listed)
        was = box_cells(R, &R->r[slot]);
    if (R->listed - was + now > LISTED_MAX) {
        sl_free(s->a, poly, (size_t)shape.nv * 2 * sizeof(float));
        return sl__space_fail(s, SL_ELIMIT, "region %llu: the space's regions would cover "
                              "too much of its map (at most %u cell entries in all; a region "
                              "over the whole map takes %u)", (unsigned long long)id,
                              LISTED_MAX, R->ncx * R->ncy);
    }
    if (fresh) {
        if (sl_grow(s->a, (void **)&R->r, &R->cap, R->n + 1, sizeof *R->r) ||
            sl_grow(s->a, (void **)&R->changed, &R->capchanged, R->nchanged + 1, 4))
            goto oom;
        slot = R->nfree ? R->free[R->nfree - 1] : (uint32_t)R->n;
        if (sl_idmap_put(&R->at, s->a, id, slot))
            goto oom;
        if (R->nfree)
            R->nfree--;
        else
            R->n++;
        memset(&R->r[slot], 0, sizeof R->r[slot]);
        R->r[slot].id = id;
    }
    region *r = &R->r[slot];
    unlist(s, r, slot);
    sl_free(s->a, r->poly, (size_t)r->nv * 2 * sizeof(float));
    sl_idmap members = r->members;
    bool changed = r->changed;
    uint32_t mark = r->mark;
    *r = shape;
    r->id = id;
    r->poly = poly;
    r->members = members;
    r->changed = changed;
    r->mark = mark;
    r->live = true;
    if (list(s, r, slot) || mark_changed(s, r, slot)) {
        r->live = false;            /* (listed nowhere: as good as removed at the tick) */
        unlist(s, r, slot);
        (void)mark_changed(s, r, slot);    /* (room was made for it above, when fresh) */
        return sl__space_fail(s, SL_ENOMEM, "region %llu: out of memory",
                              (unsigned long long)id);
    }
    return 0;
oom:
    sl_free(s->a, poly, (size_t)g->n * 2 * sizeof(float));
    return sl__space_fail(s, SL_ENOMEM, "region %llu: out of memory", (unsigned long long)id);
}

int sl_space_remove_region(sl_space *s, uint64_t id)
{
    struct sl__regions *R = s->regions;
    uint32_t slot = R ? sl_idmap_get(&R->at, id) : UINT32_MAX;
    if (slot == UINT32_MAX || !R->r[slot].live)
        return sl__space_fail(s, SL_ENOENT, "no region %llu", (unsigned long long)id);
    region *g = &R->r[slot];
    if (mark_changed(s, g, slot))
        return sl__space_fail(s, SL_ENOMEM, "region %llu: out of memory",
                              (unsigned long long)id);
    unlist(s, g, slot);
    g->live = false;
    return 0;
}

/* ---- the tick's pass ------------------------------------------------------------------------ */

static void event(sl_space *s, region *g, uint64_t e, bool in)
{
    struct sl__regions *R = s->regions;
    int rc = in ? sl_idmap_put(&g->members, s->a, e, 0) : 0;
    if (!in)
        sl_idmap_del(&g->members, e);
    if (rc || sl_grow(s->a, (void **)&R->ev, &R->capev, R->nev + 1, sizeof *R->ev)) {
        s->ev_failed = true;
        return;
    }
    R->ev[R->nev++] = (sl_region_event){g->id, e, in ? SL_EVENT_ENTER : SL_EVENT_LEAVE};
}

/* Judges the entity of slot e (its id: s->id[e], read only for an event) against the
 * unchanged live regions listed at (x0, y0) (its last-tick place, if was0) and at (x1, y1)
 * (now, if now1): in at the last tick with layer l0, in now with layer l1. */
static void judge_entity(sl_space *s, uint32_t e, bool was0, float x0, float y0, uint32_t l0,
                         bool now1, float x1, float y1, uint32_t l1)
{
    struct sl__regions *R = s->regions;
    const cell *c0 = was0 ? cell_at(R, x0, y0) : NULL;
    const cell *c1 = now1 ? cell_at(R, x1, y1) : NULL;
    if ((!c0 || !c0->n) && (!c1 || !c1->n))
        return;                 /* (no region near: the common case) */
    uint32_t stamp = ++R->stamp;
    if (!stamp) {               /* (wrapped: no old mark may equal a new stamp) */
        for (size_t i = 0; i < R->n; i++)
            R->r[i].mark = 0;
        stamp = R->stamp = 1;
    }
    for (int k = 0; k < 2; k++) {
        const cell *c = k == 0 ? c0 : c1;
        if (!c || (k == 1 && c == c0))
            continue;
        for (uint32_t i = 0; i < c->n; i++) {
            const centry *b = &c->e[i];
            bool box0 = was0 && x0 >= b->x0 && x0 <= b->x1 && y0 >= b->y0 && y0 <= b->y1;
            bool box1 = now1 && x1 >= b->x0 && x1 <= b->x1 && y1 >= b->y0 && y1 <= b->y1;
            if (!box0 && !box1)
                continue;       /* (in neither box: out of it then and now) */
            region *g = &R->r[b->slot];
            if (g->mark == stamp || g->changed)
                continue;
            g->mark = stamp;
            bool was = was0 && holds(g, x0, y0, l0), now = now1 && holds(g, x1, y1, l1);
            if (was != now)
                event(s, g, s->id[e], now);
        }
    }
}

/* A changed region: who is in it now (from the index) against its members. */
static void judge_region(sl_space *s, region *g)
{
    /* Who is in it now goes into `found`: members not found leave. */
    sl_idmap found = {0};
    if (g->live) {
        sl_query q = {.x = g->bx0, .y = g->by0, .x1 = g->bx1, .y1 = g->by1, .rect = true,
                      .mask = g->mask};
        const sl_query_hit *h;
        size_t n = 0;
        if (sl_space_query(s, &q, &h, &n)) {
            s->ev_failed = true;    /* (out of memory: its members stay as they were) */
            return;
        }
        for (size_t i = 0; i < n; i++) {
            if (!contains(g, h[i].x, h[i].y))
                continue;
            if (sl_idmap_put(&found, s->a, h[i].id, 0)) {
                s->ev_failed = true;
                break;
            }
            if (sl_idmap_get(&g->members, h[i].id) == UINT32_MAX)
                event(s, g, h[i].id, true);
        }
    }
    /* Members gone: a walk of the member map (both parts). */
    sl_idmap *m = &g->members;
    uint64_t *gone = NULL;
    size_t ngone = 0, capgone = 0;
    for (uint32_t i = 0; i < m->ndense; i++) {
        if (m->dense[i] != UINT32_MAX && sl_idmap_get(&found, i) == UINT32_MAX &&
            !sl_grow(s->a, (void **)&gone, &capgone, ngone + 1, 8))
            gone[ngone++] = i;
    }
    for (uint32_t i = 0; m->slots && i <= m->mask; i++) {
        uint64_t id = m->slots[i].key;
        if (m->slots[i].val != UINT32_MAX && sl_idmap_get(&found, id) == UINT32_MAX &&
            !sl_grow(s->a, (void **)&gone, &capgone, ngone + 1, 8))
            gone[ngone++] = id;
    }
    for (size_t i = 0; i < ngone; i++) {
        if (g->live)
            event(s, g, gone[i], false);
        else
            sl_idmap_del(m, gone[i]);
    }
    sl_free(s->a, gone, capgone * 8);
    sl_idmap_free(&found, s->a);
}

static int by_event(const void *a, const void *b)
{
    const sl_region_event *x = a, *y = b;
    if (x->region != y->region)
        return x->region < y->region ? -1 : 1;
    return (x->entity > y->entity) - (x->entity < y->entity);
}

static int by_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static bool seen_before(const struct sl__regions *R, uint32_t slot)
{
    return R->nseen && bsearch(&slot, R->seen, R->nseen, 4, by_u32);
}

void sl__region_pass(sl_space *s)
{
    struct sl__regions *R = s->regions;
    R->nev = 0;
    if (!R->nchanged && R->n == R->nfree) {
        sl__regions_free(s);    /* (no region any more: the space gives their memory back) */
        return;
    }
    /* Changed regions first, against everyone's place now. */
    for (size_t i = 0; i < R->nchanged; i++)
        judge_region(s, &R->r[R->changed[i]]);
    /* The removed entities (a re-added id: its dead slot's last tick, its live slot now). */
    R->nseen = 0;
    for (uint32_t i = 0; i < s->dead.n; i++) {
        uint32_t d = s->dead.v[i];
        if (!s->was[d].present)
            continue;           /* (added since the last tick: never in a region) */
        const hot *h = &s->hot[d];
        uint64_t id = s->id[d];
        uint32_t now = sl_idmap_get(&s->ids, id);
        const hot *n = now != UINT32_MAX ? &s->hot[now] : NULL;
        judge_entity(s, d, true, h->px, h->py, s->was[d].layer, n != NULL, n ? n->x : 0,
                     n ? n->y : 0, n ? n->layer : 0);
        if (n && !sl_grow(s->a, (void **)&R->seen, &R->capseen, R->nseen + 1, 4))
            R->seen[R->nseen++] = now;
    }
    if (R->nseen > 1)
        qsort(R->seen, R->nseen, 4, by_u32);
    const uint32_t *d = s->dirty.v;
    for (uint32_t i = 0; i < s->dirty.n; i++) {
        if (i + 8 < s->dirty.n)     /* (sparse slots: each record is a first touch) */
            __builtin_prefetch(&s->hot[d[i + 8]]);
        uint32_t e = d[i];
        const hot *h = &s->hot[e];
        if (!(h->flags & F_LIVE) || seen_before(R, e))
            continue;
        /* An entity that only moved was present at the last tick, on the layer it has
         * (a layer change, an add, makes it reshaped: its `was` says). */
        bool plain = !(h->flags & F_RESHAPED);
        judge_entity(s, e, plain || s->was[e].present, h->px, h->py,
                     plain ? h->layer : s->was[e].layer, true, h->x, h->y, h->layer);
    }
    /* The changed regions are settled; the removed ones go. */
    for (size_t i = 0; i < R->nchanged; i++) {
        uint32_t slot = R->changed[i];
        region *g = &R->r[slot];
        g->changed = false;
        if (g->live)
            continue;
        sl_idmap_free(&g->members, s->a);
        sl_free(s->a, g->poly, (size_t)g->nv * 2 * sizeof(float));
        sl_idmap_del(&R->at, g->id);
        memset(g, 0, sizeof *g);
        if (!sl_grow(s->a, (void **)&R->free, &R->capfree, R->nfree + 1, 4))
            R->free[R->nfree++] = slot;
    }
    R->nchanged = 0;
    if (R->nev > 1)
        qsort(R->ev, R->nev, sizeof *R->ev, by_event);
}

/* ---- reading -------------------------------------------------------------------------------- */

const sl_region_event *sl_space_region_events(const sl_space *s, size_t *n)
{
    *n = s->regions ? s->regions->nev : 0;
    return s->regions ? s->regions->ev : NULL;
}

bool sl__regions_pending(const sl_space *s)
{
    return s->regions && s->regions->nchanged;
}

void sl_space_region_members(const sl_space *s, uint64_t id, void (*fn)(void *ud, uint64_t e),
                             void *ud)
{
    const struct sl__regions *R = s->regions;
    uint32_t slot = R ? sl_idmap_get(&R->at, id) : UINT32_MAX;
    if (slot == UINT32_MAX || !R->r[slot].live)
        return;
    const sl_idmap *m = &R->r[slot].members;
    for (uint32_t i = 0; i < m->ndense; i++)
        if (m->dense[i] != UINT32_MAX)
            fn(ud, i);
    for (uint32_t i = 0; m->slots && i <= m->mask; i++)
        if (m->slots[i].val != UINT32_MAX)
            fn(ud, m->slots[i].key);
}

int sl_space_restore_region(sl_space *s, uint64_t id, const sl_region *g, const uint64_t *members,
                            size_t n)
{
    int rc = sl_space_set_region(s, id, g);
    if (rc)
        return rc;
    region *r = &s->regions->r[sl_idmap_get(&s->regions->at, id)];
    sl_idmap_free(&r->members, s->a);
    for (size_t i = 0; i < n; i++)
        if (sl_idmap_get(&r->members, members[i]) == UINT32_MAX &&
            sl_idmap_put(&r->members, s->a, members[i], 0))
            return sl__space_fail(s, SL_ENOMEM, "region %llu: out of memory",
                                  (unsigned long long)id);
    return 0;
}

int sl_space_region_forget(sl_space *s, uint64_t id)
{
    struct sl__regions *R = s->regions;
    uint32_t slot = R ? sl_idmap_get(&R->at, id) : UINT32_MAX;
    if (slot == UINT32_MAX || !R->r[slot].live)
        return sl__space_fail(s, SL_ENOENT, "no region %llu", (unsigned long long)id);
    if (mark_changed(s, &R->r[slot], slot))
        return sl__space_fail(s, SL_ENOMEM, "region %llu: out of memory",
                              (unsigned long long)id);
    sl_idmap_free(&R->r[slot].members, s->a);
    return 0;
}

bool sl_space_in_region(const sl_space *s, uint64_t region, uint64_t id)
{
    const struct sl__regions *R = s->regions;
    uint32_t slot = R ? sl_idmap_get(&R->at, region) : UINT32_MAX;
    return slot != UINT32_MAX && sl_idmap_get(&R->r[slot].members, id) != UINT32_MAX;
}

int sl_space_get_region(const sl_space *s, uint64_t id, sl_region *out, uint32_t *members)
{
    const struct sl__regions *R = s->regions;
    uint32_t slot = R ? sl_idmap_get(&R->at, id) : UINT32_MAX;
    if (slot == UINT32_MAX || !R->r[slot].live)
        return SL_ENOENT;
    const region *g = &R->r[slot];
    *out = (sl_region){.kind = g->kind, .mask = g->mask};
    if (g->kind == SL_REGION_CIRCLE) {
        out->x = g->a, out->y = g->b, out->r = g->c;
    } else if (g->kind == SL_REGION_RECT) {
        out->x = g->a, out->y = g->b, out->x1 = g->c, out->y1 = g->d;
    } else {
        out->xy = g->poly;
        out->n = g->nv;
    }
    if (members)
        *members = g->members.n;
    return 0;
}

void sl_space_regions_each(const sl_space *s, void (*fn)(void *ud, uint64_t id), void *ud)
{
    const struct sl__regions *R = s->regions;
    for (size_t i = 0; R && i < R->n; i++)
        if (R->r[i].live)
            fn(ud, R->r[i].id);
}

size_t sl__regions_bytes(const sl_space *s)
{
    const struct sl__regions *R = s->regions;
    if (!R)
        return 0;
    size_t b = sizeof *R + R->cap * sizeof *R->r + (R->capfree + R->capchanged + R->capseen) * 4 +
               R->capev * sizeof *R->ev + sl_idmap_bytes(&R->at);
    for (size_t i = 0; i < (size_t)R->ncx * R->ncy; i++)
        b += sizeof R->cells[i] + R->cells[i].cap * sizeof(centry);
    for (size_t i = 0; i < R->n; i++)
        b += sl_idmap_bytes(&R->r[i].members) + (size_t)R->r[i].nv * 2 * sizeof(float);
    return b;
}

void sl__regions_free(sl_space *s)
{
    struct sl__regions *R = s->regions;
    if (!R)
        return;
    for (size_t i = 0; i < R->n; i++) {
        sl_idmap_free(&R->r[i].members, s->a);
        sl_free(s->a, R->r[i].poly, (size_t)R->r[i].nv * 2 * sizeof(float));
    }
    for (size_t i = 0; i < (size_t)R->ncx * R->ncy; i++)
        sl_free(s->a, R->cells[i].e, (size_t)R->cells[i].cap * sizeof(centry));
    sl_free(s->a, R->cells, (size_t)R->ncx * R->ncy * sizeof *R->cells);
    sl_free(s->a, R->r, R->cap * sizeof *R->r);
    sl_free(s->a, R->free, R->capfree * 4);
    sl_free(s->a, R->changed, R->capchanged * 4);
    sl_free(s->a, R->ev, R->capev * sizeof *R->ev);
    sl_free(s->a, R->seen, R->capseen * 4);
    sl_idmap_free(&R->at, s->a);
    sl_free(s->a, R, sizeof *R);
    s->regions = NULL;
}
