/* space.c: per-slot storage, watchers, validation and the operations of a space. */
#include "space_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sl__space_fail(sl_space *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return code;
}

/* ---- per-slot storage ------------------------------------------------------------------ */

#define PER_SLOT (sizeof(hot) + sizeof(uint64_t) + sizeof(was) + sizeof(sl_u32vec) + \
                  2 * sizeof(uint32_t) + 4 * sizeof(float) + 4 * sizeof(uint32_t) + \
                  2 * sizeof(uint64_t))
/* The tables at the head of the block: the sort histograms, then the radius histogram
 * (rounded up to a cache line, so that the per-slot arrays start on one). */
#define KHIST_BYTES (PK_PASSES * (1u << PK_DIGIT) * sizeof(uint32_t))
#define RADIX_BYTES (16 * 256 * sizeof(uint32_t))
#define HIST_BYTES ((HIST + 1) * sizeof(uint32_t))
#define TABLE_BYTES ((KHIST_BYTES + RADIX_BYTES + HIST_BYTES + 63) & ~(size_t)63)

size_t sl__space_block_bytes(uint32_t cap)
{
    return cap ? TABLE_BYTES + (size_t)cap * PER_SLOT : 0;
}

/* Points the table and array fields into a block of capacity cap (all NULL for none). */
void sl__space_carve(sl_space *s, void *block, uint32_t cap)
{
    char *p = block;
    if (!p) {
        s->khist = NULL;
        s->radix = NULL;
        s->hist = NULL;
        s->hot = NULL;
        s->id = s->keys = s->keys_tmp = NULL;
        s->was = NULL;
        s->exc = NULL;
        s->nsees = s->big_pos = NULL;
        s->r = s->hy = NULL;
        s->prio = NULL;
        s->grp = s->gthen = NULL;
        s->z = s->pz = NULL;
        return;
    }
    s->khist = (uint32_t (*)[1u << PK_DIGIT])(void *)p;     p += KHIST_BYTES;
    s->radix = (uint32_t (*)[256])(void *)p;                p += RADIX_BYTES;
    s->hist = (uint32_t *)(void *)p;
    p = (char *)block + TABLE_BYTES;
    s->hot = (hot *)p;              p += (size_t)cap * sizeof(hot);
    s->id = (uint64_t *)p;          p += (size_t)cap * sizeof(uint64_t);
    s->keys = (uint64_t *)p;        p += (size_t)cap * sizeof(uint64_t);
    s->keys_tmp = (uint64_t *)p;    p += (size_t)cap * sizeof(uint64_t);
    s->was = (was *)p;              p += (size_t)cap * sizeof(was);
    s->exc = (sl_u32vec *)p;        p += (size_t)cap * sizeof(sl_u32vec);
    s->nsees = (uint32_t *)p;       p += (size_t)cap * sizeof(uint32_t);
    s->r = (float *)p;              p += (size_t)cap * sizeof(float);
    s->hy = (float *)p;             p += (size_t)cap * sizeof(float);
    s->prio = (int32_t *)p;         p += (size_t)cap * sizeof(int32_t);
    s->grp = (uint32_t *)p;         p += (size_t)cap * sizeof(uint32_t);
    s->gthen = (uint32_t *)p;       p += (size_t)cap * sizeof(uint32_t);
    s->z = (float *)p;              p += (size_t)cap * sizeof(float);
    s->pz = (float *)p;             p += (size_t)cap * sizeof(float);
    s->big_pos = (uint32_t *)p;
}

static int grow_slots(sl_space *s)
{
    uint64_t cap = s->cap ? (uint64_t)s->cap * 2 : SLOTS_MIN;
    if (cap >= NONE)
        return SL_ENOMEM;
    if (sl__u32vec_reserve(&s->free_slots, s->a, (uint32_t)cap) ||
        sl__u32vec_reserve(&s->dirty, s->a, (uint32_t)cap) ||
        sl__u32vec_reserve(&s->dead, s->a, (uint32_t)cap) ||
        sl__u32vec_reserve(&s->big, s->a, (uint32_t)cap))
        return SL_ENOMEM;
    size_t bytes = sl__space_block_bytes((uint32_t)cap);
    void *block = sl_realloc(s->a, NULL, 0, bytes);
    if (!block)
        return SL_ENOMEM;
    memset(block, 0, bytes);
    sl_space old = *s;
    sl__space_carve(s, block, (uint32_t)cap);
    if (old.cap) {
        uint32_t n = old.top;
        memcpy(s->hist, old.hist, HIST_BYTES);
        memcpy(s->hot, old.hot, n * sizeof(hot));
        memcpy(s->id, old.id, n * sizeof(uint64_t));
        memcpy(s->was, old.was, n * sizeof(was));
        memcpy(s->exc, old.exc, n * sizeof(sl_u32vec));
        memcpy(s->nsees, old.nsees, n * sizeof(uint32_t));
        memcpy(s->r, old.r, n * sizeof(float));
        memcpy(s->hy, old.hy, n * sizeof(float));
        memcpy(s->prio, old.prio, n * sizeof(int32_t));
        memcpy(s->grp, old.grp, n * sizeof(uint32_t));
        memcpy(s->gthen, old.gthen, n * sizeof(uint32_t));
        memcpy(s->z, old.z, n * sizeof(float));
        memcpy(s->pz, old.pz, n * sizeof(float));
        memcpy(s->big_pos, old.big_pos, n * sizeof(uint32_t));
    }
    sl_free(s->a, old.block, old.block_bytes);
    s->block = block;
    s->block_bytes = bytes;
    s->cap = (uint32_t)cap;
    return 0;
}

/* ---- watchers: radius histogram and big list ------------------------------------------- */

static inline uint32_t hist_bucket(const sl_space *s, float r)
{
    uint32_t b = (uint32_t)(r / s->big_thr * (float)HIST) + 1;
    return b > HIST ? HIST : b;
}

static void watch_on(sl_space *s, uint32_t e)
{
    if (!(s->r[e] > 0))
        return;
    s->hot[e].flags |= F_WATCH;
    s->watchers++;
    if (s->r[e] > s->big_thr) {
        s->hot[e].flags |= F_BIG;
        s->big_pos[e] = s->big.n;
        s->big.v[s->big.n++] = e;
    } else {
        s->hist[hist_bucket(s, s->r[e])]++;
    }
}

static void watch_off(sl_space *s, uint32_t e)
{
    if (!(s->hot[e].flags & F_WATCH))
        return;
    s->watchers--;
    if (s->hot[e].flags & F_BIG) {
        uint32_t pos = s->big_pos[e], last = s->big.v[--s->big.n];
        s->big.v[pos] = last;
        s->big_pos[last] = pos;
    } else {
        s->hist[hist_bucket(s, s->r[e])]--;
    }
    s->hot[e].flags &= (uint16_t)~(F_WATCH | F_BIG);
}

/* Re-files every watcher after the big threshold changed (a new cell size). */
static void rewatch_all(sl_space *s)
{
    if (s->hist)
        memset(s->hist, 0, HIST_BYTES);
    s->big.n = 0;
    s->watchers = 0;
    for (uint32_t e = 0; e < s->top; e++) {
        s->hot[e].flags &= (uint16_t)~(F_WATCH | F_BIG);
        if (s->hot[e].flags & F_LIVE)
            watch_on(s, e);
    }
}

/* Squared reach of the widest ordinary watcher plus hysteresis, or -1 when there is none. */
float sl__space_small_reach2(const sl_space *s)
{
    for (uint32_t b = s->hist ? HIST : 0; b > 0; b--) {
        if (s->hist[b]) {
            float reach = (float)b * s->big_thr / (float)HIST + s->hmax;
            return reach * reach;
        }
    }
    return -1.0f;
}

/* ---- shapes: is every entity alike? ---------------------------------------------------- */

static inline bool odd_shape(const sl_space *s, uint32_t e)
{
    const hot *h = &s->hot[e];
    return h->r2 != s->ref.r2 || h->mask != s->ref.mask || h->layer != s->ref.layer;
}

/* e's hysteresis: its own, or the space's. */
static inline float hyst_of(const sl_space *s, uint32_t e)
{
    return isnan(s->hy[e]) ? s->h : s->hy[e];
}

/* Counts live e in (after its shape was set) or out (before it changes or e goes). */
static inline void shape_in(sl_space *s, uint32_t e)
{
    s->odd += odd_shape(s, e);
    s->hpos += hyst_of(s, e) > 0;
}

static inline void shape_out(sl_space *s, uint32_t e)
{
    s->odd -= odd_shape(s, e);
    s->hpos -= hyst_of(s, e) > 0;
}

/* Takes the first live entity's shape as the reference and recounts (the entities of the
 * old reference may all be gone). */
static void reshape_ref(sl_space *s)
{
    s->odd = s->hpos = 0;
    bool first = true;
    for (uint32_t e = 0; e < s->top; e++) {
        if (!(s->hot[e].flags & F_LIVE))
            continue;
        if (first)
            s->ref = (struct shape){s->hot[e].r2, s->hot[e].mask, s->hot[e].layer};
        first = false;
        shape_in(s, e);
    }
}

static void set_radius_fields(sl_space *s, uint32_t e, float r)
{
    s->r[e] = r;
    s->hot[e].r2 = r * r;
    float rh = r + hyst_of(s, e);
    s->hot[e].rh2 = rh * rh;
}

/* ---- validation ------------------------------------------------------------------------ */

static int check_pos(sl_space *s, const char *op, uint64_t id, float x, float y)
{
    if (!isfinite(x) || !isfinite(y))
        return sl__space_fail(s, SL_EINVAL, "%s %llu: position (%g, %g) is not finite", op,
                    (unsigned long long)id, (double)x, (double)y);
    if (x < 0 || x >= s->cfg.width || y < 0 || y >= s->cfg.height)
        return sl__space_fail(s, SL_ERANGE, "%s %llu: position (%g, %g) is outside the map [0, %g) x [0, %g)",
                    op, (unsigned long long)id, (double)x, (double)y, (double)s->cfg.width,
                    (double)s->cfg.height);
    return 0;
}

/* A height: in [0, depth) in a 3D space, 0 in a flat one. */
static int check_z(sl_space *s, const char *op, uint64_t id, float z)
{
    if (!isfinite(z))
        return sl__space_fail(s, SL_EINVAL, "%s %llu: z %g is not finite", op,
                              (unsigned long long)id, (double)z);
    if (!s->d3 && z != 0)
        return sl__space_fail(s, SL_EINVAL, "%s %llu: z %g in a flat space (it has no depth)",
                              op, (unsigned long long)id, (double)z);
    if (s->d3 && (z < 0 || z >= s->cfg.depth))
        return sl__space_fail(s, SL_ERANGE, "%s %llu: z %g is outside the depth [0, %g)", op,
                              (unsigned long long)id, (double)z, (double)s->cfg.depth);
    return 0;
}

static int check_radius(sl_space *s, const char *op, uint64_t id, float r)
{
    if (!isfinite(r) || r < 0)
        return sl__space_fail(s, SL_EINVAL, "%s %llu: radius %g must be finite and >= 0", op,
                    (unsigned long long)id, (double)r);
    return 0;
}

static int check_layer(sl_space *s, const char *op, uint64_t id, uint32_t layer)
{
    if (layer > 31)
        return sl__space_fail(s, SL_EINVAL, "%s %llu: layer %u is not in 0..31", op,
                    (unsigned long long)id, layer);
    return 0;
}

/* Finds a live entity or fails with SL_ENOENT. */
int sl__space_lookup(sl_space *s, const char *op, uint64_t id, uint32_t *slot)
{
    uint32_t e = sl_idmap_get(&s->ids, id);
    if (slot)
        *slot = e;
    if (e == NONE)
        return sl__space_fail(s, SL_ENOENT, "%s %llu: no such entity", op, (unsigned long long)id);
    return 0;
}

/* Copies what the pair judge reads of e (see sl__lane) into e's lane in the index. */
void sl__space_lane_sync(sl_space *s, uint32_t e)
{
    uint32_t pos;
    sl__bucket *b = sl__index_lane(s->index, e, &pos);
    const hot *h = &s->hot[e];
    b->px[pos] = h->px;
    b->py[pos] = h->py;
    if (s->d3) {
        sl__bucket_z(b)[pos] = s->z[e];
        sl__bucket_pz(b)[pos] = s->pz[e];
    }
    b->r2[pos] = h->r2;
    b->rh2[pos] = h->rh2;
    b->wmask[pos] = (h->flags & F_WATCH) ? h->mask : 0;
    b->lbit[pos] = 1u << h->layer;
    b->flags[pos] = ((h->flags & F_DIRTY) ? SL_LANE_DIRTY : 0) |
                    ((h->flags & F_SPECIAL) ? SL_LANE_SPECIAL : 0) |
                    ((h->flags & F_BIG) ? SL_LANE_BIG : 0);
}

/* Marks e changed since the last tick (reshaped: in more than its position). */
static inline void mark_dirty(sl_space *s, uint32_t e, bool reshaped)
{
    if (!(s->hot[e].flags & F_DIRTY)) {
        s->hot[e].flags |= F_DIRTY;
        s->dirty.v[s->dirty.n++] = e;
    }
    s->hot[e].flags &= (uint16_t)~F_QUIET;     /* a real change (sl_space_rejudge sets it) */
    if (reshaped)
        s->hot[e].flags |= F_RESHAPED;
}

void sl__space_mark_moved(sl_space *s, uint32_t e)
{
    mark_dirty(s, e, false);
    sl__space_lane_sync(s, e);
}

/* ---- creation -------------------------------------------------------------------------- */

static float derive_cell(sl_space *s);
static sl_index_kind auto_kind(const sl_space *s, float cell);
static float grid_floor(const sl_space *s, float cell);

int sl_space_new(sl_space **out, const sl_space_config *cfg, char *errbuf, size_t errlen)
{
    const char *why = NULL;
    if (!(cfg->width > 0) || !(cfg->height > 0) || !isfinite(cfg->width) ||
        !isfinite(cfg->height))
        why = "width and height must be finite and > 0";
    else if (!isfinite(cfg->hysteresis) || cfg->hysteresis < 0)
        why = "hysteresis must be finite and >= 0";
    else if (!isfinite(cfg->cell) || cfg->cell < 0)
        why = "cell must be finite and >= 0 (0: derived from radii)";
    else if ((unsigned)cfg->index > SL_INDEX_AUTO)
        why = "index must be grid, quadtree or auto";
    else if ((unsigned)cfg->order > SL_ORDER_TICK)
        why = "order must be id or tick";
    else if (!isfinite(cfg->depth) || cfg->depth < 0)
        why = "depth must be finite and >= 0 (0: a flat space)";
    if (why) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "%s", why);
        return SL_EINVAL;
    }
    sl_space *s = sl_realloc(cfg->alloc, NULL, 0, sizeof *s);
    if (!s)
        return SL_ENOMEM;
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->a = cfg->alloc;
    s->d3 = cfg->depth > 0;
    s->h = s->hmax = cfg->hysteresis;
    s->auto_cell = cfg->cell == 0;
    float cell = s->auto_cell ? derive_cell(s) : cfg->cell;
    sl_index_kind kind = cfg->index == SL_INDEX_AUTO ? auto_kind(s, cell) : cfg->index;
    if (s->auto_cell && kind == SL_INDEX_GRID)
        cell = grid_floor(s, cell);
    /* The slot block comes with the first entity (see space_impl.h: Memory). */
    s->index = sl_index_new(kind, cfg->width, cfg->height, cell, s->a);
    if (!s->index) {
        sl_space_free(s);
        return SL_ENOMEM;
    }
    if (s->d3)
        sl__index_use_z(s->index);
    s->big_thr = BIG_CELLS * sl_index_cell(s->index);
    s->stamp = 2;
    *out = s;
    return 0;
}

void sl_space_free(sl_space *s)
{
    if (!s)
        return;
    const sl_allocator *a = s->a;
    for (uint32_t e = 0; e < s->top; e++) {
        sl__u32vec_free(&s->exc[e], a);
    }
    sl_index_free(s->ghost);
    sl__u32vec_free(&s->ghosts, a);
    sl_idmap_free(&s->lod_at, a);
    sl__rel_free(s);
    sl__cap_free(s);
    sl__group_free(s);
    sl__regions_free(s);
    sl__u32vec_free(&s->qcand, a);
    sl_free(a, s->qhits, s->qcap * sizeof *s->qhits);
    sl_free(a, s->lods, s->caplods * sizeof *s->lods);
    sl_free(a, s->block, s->block_bytes);
    sl_index_free(s->index);
    sl_idmap_free(&s->ids, a);
    sl__u32vec_free(&s->free_slots, a);
    sl__u32vec_free(&s->dirty, a);
    sl__u32vec_free(&s->dead, a);
    sl__u32vec_free(&s->big, a);
    sl__u32vec_free(&s->cand, a);
    sl__u32vec_free(&s->tag, a);
    sl_free(a, s->pend, s->pendcap * sizeof *s->pend);
    sl__space_drop_events(s);
    sl__space_free_parts(s);
    sl_free(a, s, sizeof *s);
}

const char *sl_space_error(const sl_space *s)
{
    return s->err;
}

/* ---- operations ------------------------------------------------------------------------ */

int sl_space_add(sl_space *s, uint64_t id, float x, float y, float radius, uint32_t layer,
                 uint32_t mask)
{
    return sl_space_add3(s, id, x, y, 0.0f, radius, layer, mask);
}

int sl_space_add3(sl_space *s, uint64_t id, float x, float y, float z, float radius,
                  uint32_t layer, uint32_t mask)
{
    int rc;
    if ((rc = check_pos(s, "add", id, x, y)) || (rc = check_z(s, "add", id, z)) ||
        (rc = check_radius(s, "add", id, radius)) ||
        (rc = check_layer(s, "add", id, layer)))
        return rc;
    if (sl_idmap_get(&s->ids, id) != NONE)
        return sl__space_fail(s, SL_EEXIST, "add %llu: entity already exists", (unsigned long long)id);
    if (!s->free_slots.n && s->top == s->cap && grow_slots(s))
        return sl__space_fail(s, SL_ENOMEM, "add %llu: out of memory", (unsigned long long)id);
    uint32_t e = s->free_slots.n ? s->free_slots.v[s->free_slots.n - 1] : s->top;
    if (sl_index_insert(s->index, e, x, y))
        return sl__space_fail(s, SL_ENOMEM, "add %llu: out of memory", (unsigned long long)id);
    if (sl_idmap_put(&s->ids, s->a, id, e)) {
        sl_index_remove(s->index, e);
        return sl__space_fail(s, SL_ENOMEM, "add %llu: out of memory", (unsigned long long)id);
    }
    if (s->free_slots.n)
        s->free_slots.n--;
    else
        s->top++;
    s->id[e] = id;
    s->id_or |= id;
    s->hot[e].x = s->hot[e].px = x;
    s->hot[e].y = s->hot[e].py = y;
    s->z[e] = s->pz[e] = z;
    s->hy[e] = NAN;
    s->prio[e] = 0;
    s->grp[e] = s->gthen[e] = 0;
    set_radius_fields(s, e, radius);
    s->hot[e].layer = (uint8_t)layer;
    s->hot[e].mask = mask;
    s->exc[e] = (sl_u32vec){0};
    s->nsees[e] = 0;
    s->was[e] = (was){0};           /* absent at the last tick */
    s->hot[e].mark = 0;
    s->hot[e].flags = F_LIVE;
    sl__rel_added(s, e);
    if (s->live == 0)
        s->ref = (struct shape){s->hot[e].r2, mask, (uint8_t)layer};
    shape_in(s, e);
    watch_on(s, e);
    mark_dirty(s, e, true);
    sl__space_lane_sync(s, e);
    s->live++;
    s->adds_since_compact++;
    return 0;
}

/* Moves live slot e to a checked position (z NaN: keeps its z); 0 or SL_ENOMEM (nothing
 * changed). */
static int apply_move(sl_space *s, uint32_t e, uint64_t id, float x, float y, float z)
{
    if (sl_index_move(s->index, e, x, y))
        return sl__space_fail(s, SL_ENOMEM, "move %llu: out of memory", (unsigned long long)id);
    s->hot[e].x = x;
    s->hot[e].y = y;
    mark_dirty(s, e, false);
    /* The index wrote the lane's position; of the rest only the dirty flag (and z)
     * changes. */
    uint32_t pos;
    sl__bucket *b = sl__index_lane(s->index, e, &pos);
    b->flags[pos] |= SL_LANE_DIRTY;
    if (s->d3 && !isnan(z))
        s->z[e] = sl__bucket_z(b)[pos] = z;
    return 0;
}

/* Checks a move of slot e (NONE: no such entity) for id (z NaN: kept); 0 or the error. */
static int check_move(sl_space *s, uint32_t e, uint64_t id, float x, float y, float z)
{
    if (e == NONE)
        return sl__space_fail(s, SL_ENOENT, "move %llu: no such entity", (unsigned long long)id);
    int rc = check_pos(s, "move", id, x, y);
    return rc || isnan(z) ? rc : check_z(s, "move", id, z);
}

int sl_space_move(sl_space *s, uint64_t id, float x, float y)
{
    return sl_space_move3(s, id, x, y, NAN);
}

int sl_space_move3(sl_space *s, uint64_t id, float x, float y, float z)
{
    uint32_t e = sl_idmap_get(&s->ids, id);
    int rc = check_move(s, e, id, x, y, z);
    return rc ? rc : apply_move(s, e, id, x, y, z);
}

/*
 * Moves in a batch arrive in no useful order: applied one by one, each one's hot record,
 * index location, bucket and lane would be a cache miss. A batch is therefore done in chunks
 * of up to `cap` moves, in two rounds: the ids are looked up (the id map loaded AHEAD moves
 * early) and the moves checked, failures reported at once; then the good ones are sorted by
 * slot (stably: moves of one id keep their order) and applied in slot order, which after
 * compaction is spatial order, so that neighbours' records and buckets are met together.
 * The result is that of the moves in their order; only an out-of-memory failure, found in
 * the second round, is reported after the first round's.
 */
size_t sl_space_move_many(sl_space *s, const sl_move *moves, size_t n, sl_move_fail_fn fail,
                          void *ud)
{
    enum { AHEAD = 16 };
    size_t failed = 0, chunk = s->cap ? s->cap : 1;
    for (size_t base = 0; base < n; base += chunk) {
        size_t end = n - base < chunk ? n : base + chunk, m = 0;
        uint64_t *k = s->keys;
        uint32_t s_or = 0, s_and = ~0u;
        for (size_t i = base; i < end; i++) {
            if (i + AHEAD < end)
                sl_idmap_prefetch(&s->ids, moves[i + AHEAD].id);
            uint32_t e = sl_idmap_get(&s->ids, moves[i].id);
            int rc = check_move(s, e, moves[i].id, moves[i].x, moves[i].y, moves[i].z);
            if (rc) {
                failed++;
                if (fail)
                    fail(ud, i, rc);
                continue;
            }
            k[m++] = (uint64_t)e << 32 | (uint32_t)(i - base);
            s_or |= e;
            s_and &= e;
        }
        if (m > 1 && s_or != s_and)     /* slots all equal (one id moved m times): in order */
            k = sl__radix64(s->khist, k, s->keys_tmp, m, (uint64_t)(s_or ^ s_and) << 32);
        for (size_t q = 0; q < m; q++) {
            if (q + AHEAD < m) {
                /* The lane a few moves on: its bucket's lines are rarely still cached. */
                uint32_t pos, a = (uint32_t)(k[q + AHEAD] >> 32);
                sl__bucket *b = sl__index_lane(s->index, a, &pos);
                __builtin_prefetch(&b->x[pos], 1);
                __builtin_prefetch(&b->y[pos], 1);
                __builtin_prefetch(&b->flags[pos], 1);
                __builtin_prefetch(&moves[base + (uint32_t)k[q + AHEAD]]);
            }
            uint32_t e = (uint32_t)(k[q] >> 32);
            const sl_move *mv = &moves[base + (uint32_t)k[q]];
            if (apply_move(s, e, mv->id, mv->x, mv->y, mv->z)) {
                failed++;
                if (fail)
                    fail(ud, base + (uint32_t)k[q], SL_ENOMEM);
            }
        }
    }
    return failed;
}

int sl_space_set_radius(sl_space *s, uint64_t id, float radius)
{
    uint32_t e;
    int rc;
    if ((rc = sl__space_lookup(s, "radius", id, &e)) ||
        (rc = check_radius(s, "radius", id, radius)))
        return rc;
    watch_off(s, e);
    shape_out(s, e);
    set_radius_fields(s, e, radius);
    shape_in(s, e);
    watch_on(s, e);
    mark_dirty(s, e, true);
    sl__space_lane_sync(s, e);
    return 0;
}

int sl_space_set_layer(sl_space *s, uint64_t id, uint32_t layer)
{
    uint32_t e;
    int rc;
    if ((rc = sl__space_lookup(s, "layer", id, &e)) || (rc = check_layer(s, "layer", id, layer)))
        return rc;
    shape_out(s, e);
    s->hot[e].layer = (uint8_t)layer;
    shape_in(s, e);
    mark_dirty(s, e, true);
    sl__space_lane_sync(s, e);
    return 0;
}

int sl_space_set_mask(sl_space *s, uint64_t id, uint32_t mask)
{
    uint32_t e;
    int rc = sl__space_lookup(s, "mask", id, &e);
    if (rc)
        return rc;
    shape_out(s, e);
    s->hot[e].mask = mask;
    shape_in(s, e);
    mark_dirty(s, e, true);
    sl__space_lane_sync(s, e);
    return 0;
}

int sl_space_set_hysteresis(sl_space *s, uint64_t id, float h)
{
    uint32_t e;
    int rc = sl__space_lookup(s, "hysteresis", id, &e);
    if (rc)
        return rc;
    if (!isfinite(h))
        return sl__space_fail(s, SL_EINVAL, "hysteresis %llu: %g is not a number >= 0 (nor a "
                              "negative one, for the space's)", (unsigned long long)id,
                              (double)h);
    shape_out(s, e);
    s->hy[e] = h < 0 ? NAN : h;
    if (h > s->hmax)
        s->hmax = h;
    set_radius_fields(s, e, s->r[e]);
    shape_in(s, e);
    mark_dirty(s, e, true);
    sl__space_lane_sync(s, e);
    return 0;
}

int sl_space_remove(sl_space *s, uint64_t id)
{
    uint32_t e;
    int rc = sl__space_lookup(s, "remove", id, &e);
    if (rc)
        return rc;
    sl_index_remove(s->index, e);
    sl_idmap_del(&s->ids, id);
    sl__lod_drop(s, id);
    sl__rel_drop(s, id, e);
    if (s->hot[e].flags & F_ALWAYS)
        sl__always_set(s, id, false, e);
    watch_off(s, e);
    shape_out(s, e);
    s->hot[e].flags = (uint16_t)((s->hot[e].flags & (F_DIRTY | F_REL | F_CAP)) | F_DEAD);
    mark_dirty(s, e, true);
    s->live--;
    s->removed++;
    return 0;
}

int sl_space_touch(sl_space *s, uint64_t id)
{
    uint32_t e;
    int rc = sl__space_lookup(s, "touch", id, &e);
    if (rc)
        return rc;
    mark_dirty(s, e, true);
    sl__space_lane_sync(s, e);
    return 0;
}

void sl_space_rejudge(sl_space *s)
{
    for (uint32_t e = 0; e < s->top; e++) {
        if (s->hot[e].flags & F_LIVE) {
            bool was_dirty = s->hot[e].flags & F_DIRTY;
            mark_dirty(s, e, true);
            if (!was_dirty)
                s->hot[e].flags |= F_QUIET;
            sl__space_lane_sync(s, e);
        }
    }
}

void sl_space_set_rule(sl_space *s, sl_rule_fn fn, void *ud)
{
    s->rule = fn;
    s->rule_ud = ud;
    sl_space_rejudge(s);
}

bool sl__space_grow(sl_space *s, void **p, uint32_t *cap, uint32_t n, size_t size)
{
    if (n < *cap)
        return true;
    uint32_t c = *cap ? *cap * 2 : 4;
    void *q = sl_realloc(s->a, *p, (size_t)*cap * size, (size_t)c * size);
    if (!q)
        return false;
    *p = q;
    *cap = c;
    return true;
}

sl_entity_info sl__space_info(const sl_space *s, uint32_t e)
{
    sl_entity_info info = {
        .id = s->id[e], .x = s->hot[e].x, .y = s->hot[e].y, .z = s->d3 ? s->z[e] : 0.0f,
        .radius = s->r[e],
        .layer = s->hot[e].layer, .mask = s->hot[e].mask, .sees = s->nsees[e],
        .hysteresis = hyst_of(s, e), .own_hysteresis = !isnan(s->hy[e]),
        .always = (s->hot[e].flags & F_ALWAYS) != 0, .priority = s->prio[e],
        .candidates = s->nsees[e], .group = s->grp[e],
    };
    const cap_rec *c = sl__cap_of(s, e);
    if (c && !c->lift) {
        info.cap = c->n;
        info.cap_margin = c->margin;
    }
    if (c && !c->fresh)
        info.sees = c->ncand - c->cut;
    sl__lod_get(s, s->id[e], &info);
    return info;
}

int sl_space_get(const sl_space *s, uint64_t id, sl_entity_info *info)
{
    uint32_t e = sl_idmap_get(&s->ids, id);
    if (e == NONE)
        return SL_ENOENT;
    *info = sl__space_info(s, e);
    return 0;
}

int sl_space_position(const sl_space *s, uint64_t id, float *x, float *y)
{
    return sl_space_position3(s, id, x, y, NULL);
}

int sl_space_position3(const sl_space *s, uint64_t id, float *x, float *y, float *z)
{
    uint32_t e = sl_idmap_get(&s->ids, id);
    if (e == NONE)
        return SL_ENOENT;
    *x = s->hot[e].x;
    *y = s->hot[e].y;
    if (z)
        *z = s->d3 ? s->z[e] : 0.0f;
    return 0;
}

bool sl_space_sees(const sl_space *s, uint64_t w, uint64_t t)
{
    uint32_t a = sl_idmap_get(&s->ids, w), b = sl_idmap_get(&s->ids, t);
    if (a == NONE || b == NONE || a == b)
        return false;
    const cap_rec *c = sl__cap_of(s, a);
    if (c && !c->fresh)         /* (a capped watcher: what it showed) */
        return sl__cap_shows(c, b) && s->was[b].present;
    return sl_space_candidate(s, w, t);
}

bool sl_space_candidate(const sl_space *s, uint64_t w, uint64_t t)
{
    uint32_t a = sl_idmap_get(&s->ids, w), b = sl_idmap_get(&s->ids, t);
    if (a == NONE || b == NONE || a == b)
        return false;
    /* The pair as it stood at the last tick (see space_impl.h: Pairs). */
    const was *oa = &s->was[a], *ob = &s->was[b];
    if (!oa->present || !ob->present || !oa->watch || !((oa->mask >> ob->layer) & 1u))
        return false;
    float d2 = sl__d2_then(s, a, b);
    bool far = !(d2 <= oa->rh2);   /* (only a forced or always-relevant pair is seen there) */
    if (far && !(s->hot[a].flags & F_REL) && !ob->always)
        return false;
    bool exc = s->nx && sl_simd_find(s->exc[a].v, s->exc[a].n, b) < s->exc[a].n;
    return far ? exc : (d2 <= oa->r2) != exc;
}

void sl_space_each(const sl_space *s, void (*fn)(void *ud, const sl_entity_info *e), void *ud)
{
    for (uint32_t e = 0; e < s->top; e++) {
        if (!(s->hot[e].flags & F_LIVE))
            continue;
        sl_entity_info info = sl__space_info(s, e);
        fn(ud, &info);
    }
}

void sl_space_set_pool(sl_space *s, sl_pool *pool)
{
    s->pool = pool;
}

static const char *const reason_names[] = {"", "removed", "never", "layer", "range", "rule",
                                           "cap"};

const char *sl_group_leave_reason_name(sl_group_leave_reason r)
{
    static const char *const names[] = {"", "removed", "left", "unseen"};
    return (unsigned)r <= SL_GLEAVE_UNSEEN ? names[r] : "?";
}

const char *sl_leave_reason_name(sl_leave_reason r)
{
    return (unsigned)r <= SL_LEAVE_CAP ? reason_names[r] : "?";
}

static const char *const order_names[] = {"id", "tick"};

int sl_event_order_parse(const char *name, sl_event_order *out)
{
    for (unsigned k = 0; k <= SL_ORDER_TICK; k++) {
        if (name && strcmp(name, order_names[k]) == 0) {
            *out = (sl_event_order)k;
            return 0;
        }
    }
    return SL_EINVAL;
}

const char *sl_event_order_name(sl_event_order order)
{
    return (unsigned)order <= SL_ORDER_TICK ? order_names[order] : "?";
}

const sl_space_config *sl_space_config_of(const sl_space *s)
{
    return &s->cfg;
}

int sl_space_compact(sl_space *s)
{
    if (s->dirty.n)
        return sl__space_fail(s, SL_EINVAL, "compact: only between a tick and the next change");
    if (!sl__space_compact(s))
        return sl__space_fail(s, SL_ENOMEM, "compact: out of memory");
    sl__space_drop_events(s);   /* between ticks they hold nothing */
    return 0;
}

/* ---- index choice ---------------------------------------------------------------------- */

static int cmp_float(const void *pa, const void *pb)
{
    float a = *(const float *)pa, b = *(const float *)pb;
    return (a > b) - (a < b);
}

/* The median radius of up to 1023 watchers sampled evenly over the slots, or a default. */
static float derive_cell(sl_space *s)
{
    enum { SAMPLE = 1023 };
    float r[SAMPLE];
    uint32_t n = 0, step = s->top / SAMPLE + 1;
    for (uint32_t e = 0; e < s->top && n < SAMPLE; e += step)
        if ((s->hot[e].flags & F_LIVE) && s->r[e] > 0)
            r[n++] = s->r[e];
    if (n == 0) {
        float side = s->cfg.width < s->cfg.height ? s->cfg.width : s->cfg.height;
        return side / 64 < DEFAULT_CELL ? side / 64 : DEFAULT_CELL;
    }
    qsort(r, n, sizeof(float), cmp_float);
    return r[n / 2];
}

int sl_space_set_index(sl_space *s, sl_index_kind kind, float cell)
{
    if ((unsigned)kind > SL_INDEX_AUTO || !isfinite(cell) || cell < 0)
        return sl__space_fail(s, SL_EINVAL, "set_index: kind must be grid, quadtree or auto, cell >= 0");
    bool derived = cell == 0;
    if (derived)
        cell = derive_cell(s);
    if (kind == SL_INDEX_AUTO)
        kind = auto_kind(s, cell);
    if (derived && kind == SL_INDEX_GRID)
        cell = grid_floor(s, cell);
    sl_index *idx = sl_index_new(kind, s->cfg.width, s->cfg.height, cell, s->a);
    if (!idx)
        return sl__space_fail(s, SL_ENOMEM, "set_index: out of memory");
    if (s->d3)
        sl__index_use_z(idx);
    for (uint32_t e = 0; e < s->top; e++) {
        if ((s->hot[e].flags & F_LIVE) && sl_index_insert(idx, e, s->hot[e].x, s->hot[e].y)) {
            sl_index_free(idx);
            return sl__space_fail(s, SL_ENOMEM, "set_index: out of memory");
        }
    }
    sl_index_free(s->index);
    s->index = idx;
    s->big_thr = BIG_CELLS * sl_index_cell(idx);
    rewatch_all(s);
    for (uint32_t e = 0; e < s->top; e++)
        if (s->hot[e].flags & F_LIVE)
            sl__space_lane_sync(s, e);
    return 0;
}

/*
 * The index `auto` wants for a cell size: the grid, unless the map is too large for cells
 * that small (the grid would have to coarsen them past twice the wanted size), where the
 * quadtree adapts its resolution to where the entities are. Measured on W2 (80 % of the
 * entities in 1/16 of the map) the two kinds tick within noise of each other: the pair
 * work dominates, so the choice is about memory and resolution, not density alone.
 */
/*
 * The finest derived grid cell: a grid much finer than its entities need (a few small radii
 * on a big map) would cost a million empty cells to build and to scan. A cell the caller
 * chose is kept as it is.
 */
static float grid_floor(const sl_space *s, float cell)
{
    float floor = (float)sqrt((double)s->cfg.width * s->cfg.height / (16.0 * s->live + 65536));
    return cell > floor ? cell : floor;
}

static sl_index_kind auto_kind(const sl_space *s, float cell)
{
    /* The grid, unless its cells would far outnumber the entities (a few small radii on a
     * big map must not cost a million empty cells to build and to scan) or the limit. */
    double cells = ceil(s->cfg.width / (double)cell) * ceil(s->cfg.height / (double)cell);
    return cells > 4.0 * SL_GRID_MAX_CELLS || cells > 16.0 * s->live + 65536
               ? SL_INDEX_QUADTREE : SL_INDEX_GRID;
}

/*
 * With a derived cell size, follows the radii when they drift by more than 2x; with an
 * `auto` index, re-decides the kind at the same time.
 */
void sl__space_retune(sl_space *s)
{
    if (s->ticks % RETUNE_EVERY != 0 || s->watchers == 0)
        return;
    if (s->odd)
        reshape_ref(s);
    if (!s->auto_cell && s->cfg.index != SL_INDEX_AUTO)
        return;
    float have = sl_index_cell(s->index);
    float want = s->auto_cell ? derive_cell(s) : s->cfg.cell;
    sl_index_kind kind = s->cfg.index == SL_INDEX_AUTO ? auto_kind(s, want)
                                                         : sl_index_kind_of(s->index);
    if (s->auto_cell && kind == SL_INDEX_GRID)
        want = grid_floor(s, want);
    if (kind != sl_index_kind_of(s->index) || want > 2 * have || want < have / 2)
        (void)sl_space_set_index(s, kind, want);
}

/*
 * Every byte the space holds through its allocator, counted from what each container
 * records (the tests hold this to a counting allocator's balance, to the byte).
 */
void sl_space_get_stats(const sl_space *s, sl_space_stats *st)
{
    size_t pair_bytes = sl_idmap_bytes(&s->lod_at) + s->caplods * sizeof *s->lods +
                        sl__rel_bytes(s) + sl__cap_bytes(s) + sl__group_bytes(s) +
                        sl__regions_bytes(s);
    for (uint32_t e = 0; e < s->top; e++)
        pair_bytes += sl__u32vec_bytes(&s->exc[e]);
    *st = (sl_space_stats){
        .entities = s->live,
        .watchers = s->watchers,
        .big_watchers = s->big.n,
        .pairs = s->pairs - s->capcut,
        .ticks = s->ticks,
        .last_dirty = s->last_dirty,
        .compactions = s->compactions,
        .last_special = s->last_special,
        .rule_calls = s->rule_calls,
        .last_uniform = s->uniform,
        .index = sl_index_kind_of(s->index),
        .cell = sl_index_cell(s->index),
        .bytes_entities = s->block_bytes + sl_idmap_bytes(&s->ids) +
                          sl__u32vec_bytes(&s->free_slots) + sl__u32vec_bytes(&s->dirty) +
                          sl__u32vec_bytes(&s->dead) + sl__u32vec_bytes(&s->big),
        .bytes_index = sl_index_memory(s->index),
        .bytes_pairs = pair_bytes,
    };
    /* The rest is tick scratch: candidates, ghosts, the rule's queue, events. */
    st->bytes_total = sizeof *s + st->bytes_entities + st->bytes_index + st->bytes_pairs +
                      sl__u32vec_bytes(&s->cand) + sl__u32vec_bytes(&s->tag) +
                      sl__u32vec_bytes(&s->ghosts) +
                      (s->ghost ? sl_index_memory(s->ghost) : 0) +
                      s->pendcap * sizeof *s->pend +
                      s->evcap * 2 * sizeof(sl_event) + (s->pkcap + s->pk_tmpcap) * 8 +
                      s->capcev * sizeof *s->cev + sl__u32vec_bytes(&s->qcand) +
                      s->qcap * sizeof *s->qhits +
                      sl__space_parts_bytes(s);
}
