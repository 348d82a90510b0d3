/*
 * oracle.c: the brute-force reference (see oracle.h). Written for obviousness, not speed:
 * entities in a plain array found through a chained hash, the visible set as a sorted array
 * of (watcher, target) id pairs, and every tick a full O(N^2) recomputation.
 */
#include "oracle.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct oent {
    uint64_t id;
    float x, y, r;
    uint32_t layer, mask;
    bool dirty;
    size_t next;            /* hash chain */
    float h;                /* its own hysteresis; NaN: the space's */
    uint32_t nlod;          /* its LOD bands */
    sl_lod_band lod[SL_LOD_BANDS];
    bool always;            /* always relevant */
    uint32_t cap;           /* its cap (0: none), margin, and priority */
    float margin;
    int32_t prio;
    uint32_t group, gprev;  /* its vision group, and its group at the last tick */
    float z;                /* its height (0 in a flat space) */
} oent;

typedef struct opair {
    uint64_t w, t;
} opair;

struct sl_oracle {
    float width, height, h;
    float depth;            /* > 0: a 3D space */
    bool stay;
    oent *ents;
    size_t n, cap;
    size_t *heads;          /* NBUCKETS hash chain heads */
    uint64_t *removed;      /* ids removed since the last tick */
    size_t nremoved, capremoved;
    opair *prev, *cur;      /* the visible (shown) pairs at the last tick, and now */
    size_t nprev, capprev, ncur, capcur;
    opair *cprev, *ccur;    /* the candidates (what watchers would see without a cap) */
    size_t ncprev, capcprev, nccur, capccur;
    struct orank { uint64_t t; float d2, dk; int32_t prio; bool fixed, shown; } *rank;
    size_t caprank;
    opair *gprev, *gcur;    /* (group, target) pairs the groups see, at the last tick, now */
    size_t ngprev, capgprev, ngcur, capgcur;
    sl_group_event *gev;
    size_t ngev, capgev;
    sl_query_hit *qhits;
    size_t capq;
    size_t *order;          /* entity indices sorted by id, rebuilt each tick */
    size_t caporder;
    sl_event *ev;
    size_t nev, capev;
    sl_oracle_rule rule;
    void *rule_ud;
    uint64_t ticks;
    bool reasons;
    struct orel { uint64_t w, t; sl_relation k; } *rels;    /* pair relations, any order */
    size_t nrels, caprels;
    struct oregion { uint64_t id; sl_region g; float poly[2 * SL_REGION_VERTICES]; } *regs;
    size_t nregs, capregs;
    opair *rprev, *rcur;    /* (region, entity) pairs in, at the last tick and now */
    size_t nrprev, caprprev, nrcur, caprcur;
    sl_region_event *rev;
    size_t nrev, caprev;
};

#define NBUCKETS 65536u
#define NIL SIZE_MAX

static size_t bucket(uint64_t id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15ULL) >> 48);
}

/* Grows *p (elements of `size` bytes) to hold `need`; false on OOM. */
static bool reserve(void *pp, size_t *cap, size_t need, size_t size)
{
    void **p = pp;
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap * 2 : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * size);
    if (!q)
        return false;
    *p = q;
    *cap = c;
    return true;
}

sl_oracle *sl_oracle_new(float width, float height, float hysteresis, bool stay)
{
    sl_oracle *o = calloc(1, sizeof *o);
    if (!o || !(o->heads = malloc(NBUCKETS * sizeof(size_t)))) {
        free(o);
        return NULL;
    }
    for (size_t i = 0; i < NBUCKETS; i++)
        o->heads[i] = NIL;
    o->width = width;
    o->height = height;
    o->h = hysteresis;
    o->stay = stay;
    return o;
}

void sl_oracle_free(sl_oracle *o)
{
    if (!o)
        return;
    free(o->ents);
    free(o->heads);
    free(o->removed);
    free(o->prev);
    free(o->cur);
    free(o->cprev);
    free(o->ccur);
    free(o->rank);
    free(o->gprev);
    free(o->gcur);
    free(o->regs);
    free(o->rprev);
    free(o->rcur);
    free(o->rev);
    free(o->gev);
    free(o->qhits);
    free(o->order);
    free(o->ev);
    free(o->rels);
    free(o);
}

static oent *find(const sl_oracle *o, uint64_t id)
{
    for (size_t i = o->heads[bucket(id)]; i != NIL; i = o->ents[i].next)
        if (o->ents[i].id == id)
            return &o->ents[i];
    return NULL;
}

static int check_pos(const sl_oracle *o, float x, float y)
{
    if (isnan(x) || isnan(y) || isinf(x) || isinf(y))
        return SL_EINVAL;
    if (!(x >= 0 && x < o->width && y >= 0 && y < o->height))
        return SL_ERANGE;
    return 0;
}

static int check_z(const sl_oracle *o, float z)
{
    if (isnan(z) || isinf(z) || (o->depth == 0 && z != 0))
        return SL_EINVAL;
    return o->depth > 0 && !(z >= 0 && z < o->depth) ? SL_ERANGE : 0;
}

/* The contract's squared distance from w to t: dz*dz added last, in a 3D space. */
static float dist2(const sl_oracle *o, const oent *w, const oent *t)
{
    float dx = t->x - w->x, dy = t->y - w->y;
    float d2 = dx * dx + dy * dy;
    if (o->depth > 0) {
        float dz = t->z - w->z;
        d2 = d2 + dz * dz;
    }
    return d2;
}

void sl_oracle_set_depth(sl_oracle *o, float depth)
{
    o->depth = depth;
}

static int check_radius(float r)
{
    return isnan(r) || isinf(r) || r < 0 ? SL_EINVAL : 0;
}

int sl_oracle_add(sl_oracle *o, uint64_t id, float x, float y, float r, uint32_t layer,
                  uint32_t mask)
{
    return sl_oracle_add3(o, id, x, y, 0, r, layer, mask);
}

int sl_oracle_add3(sl_oracle *o, uint64_t id, float x, float y, float z, float r,
                   uint32_t layer, uint32_t mask)
{
    int rc = check_pos(o, x, y);
    if (rc || (rc = check_z(o, z)) || (rc = check_radius(r)))
        return rc;
    if (layer > 31)
        return SL_EINVAL;
    if (find(o, id))
        return SL_EEXIST;
    if (!reserve(&o->ents, &o->cap, o->n + 1, sizeof(oent)))
        return SL_ENOMEM;
    size_t b = bucket(id);
    o->ents[o->n] = (oent){id, x, y, r, layer, mask, true, o->heads[b], NAN, 0, {{0, 0}}, false,
                           0, 0, 0, 0, 0, z};
    o->heads[b] = o->n++;
    return 0;
}

int sl_oracle_move(sl_oracle *o, uint64_t id, float x, float y)
{
    oent *e = find(o, id);
    return sl_oracle_move3(o, id, x, y, e ? e->z : 0);
}

int sl_oracle_move3(sl_oracle *o, uint64_t id, float x, float y, float z)
{
    oent *e = find(o, id);
    if (!e)
        return SL_ENOENT;
    int rc = check_pos(o, x, y);
    if (rc || (rc = check_z(o, z)))
        return rc;
    e->x = x;
    e->y = y;
    e->z = z;
    e->dirty = true;
    return 0;
}

void sl_oracle_set_rule(sl_oracle *o, sl_oracle_rule fn, void *ud)
{
    o->rule = fn;
    o->rule_ud = ud;
}

int sl_oracle_touch(sl_oracle *o, uint64_t id)
{
    oent *e = find(o, id);
    if (!e)
        return SL_ENOENT;
    e->dirty = true;
    return 0;
}

int sl_oracle_set_radius(sl_oracle *o, uint64_t id, float r)
{
    oent *e = find(o, id);
    if (!e)
        return SL_ENOENT;
    if (check_radius(r))
        return SL_EINVAL;
    e->r = r;
    e->dirty = true;
    return 0;
}

int sl_oracle_set_hysteresis(sl_oracle *o, uint64_t id, float h)
{
    oent *e = find(o, id);
    if (!e)
        return SL_ENOENT;
    if (!isfinite(h))
        return SL_EINVAL;
    e->h = h < 0 ? NAN : h;
    e->dirty = true;
    return 0;
}

static sl_relation relation(const sl_oracle *o, uint64_t w, uint64_t t)
{
    for (size_t i = 0; i < o->nrels; i++)
        if (o->rels[i].w == w && o->rels[i].t == t)
            return o->rels[i].k;
    return SL_REL_NONE;
}

/* Drops the relations of pairs with id in them (or only the pair w, t when t != id). */
static void unrelate(sl_oracle *o, uint64_t w, uint64_t t)
{
    for (size_t i = o->nrels; i-- > 0;) {
        const struct orel *r = &o->rels[i];
        if (w == t ? (r->w == w || r->t == w) : (r->w == w && r->t == t))
            o->rels[i] = o->rels[--o->nrels];
    }
}

int sl_oracle_relate(sl_oracle *o, uint64_t w, uint64_t t, sl_relation k)
{
    oent *a = find(o, w), *b = find(o, t);
    if (!a || !b)
        return SL_ENOENT;
    if (w == t || (k != SL_REL_NONE && k != SL_REL_FORCE && k != SL_REL_NEVER))
        return SL_EINVAL;
    if (relation(o, w, t) == k)
        return 0;
    unrelate(o, w, t);
    if (k != SL_REL_NONE) {
        if (!reserve(&o->rels, &o->caprels, o->nrels + 1, sizeof *o->rels))
            return SL_ENOMEM;
        o->rels[o->nrels++] = (struct orel){w, t, k};
    }
    a->dirty = true;        /* (as the space: its pairs are judged again, which stays show) */
    return 0;
}

int sl_oracle_set_always(sl_oracle *o, uint64_t id, bool on)
{
    oent *e = find(o, id);
    if (!e)
        return SL_ENOENT;
    if (e->always != on)
        e->dirty = true;
    e->always = on;
    return 0;
}

int sl_oracle_set_cap(sl_oracle *o, uint64_t id, uint32_t n, float margin)
{
    oent *e = find(o, id);
    if (!e)
        return SL_ENOENT;
    if (!isfinite(margin) || margin < 0)
        return SL_EINVAL;
    if (e->cap != n || (n && e->margin != margin))
        e->dirty = true;
    e->cap = n;
    if (n)
        e->margin = margin;
    return 0;
}

int sl_oracle_set_group(sl_oracle *o, uint64_t id, uint32_t group)
{
    oent *e = find(o, id);
    if (!e)
        return SL_ENOENT;
    e->group = group;
    return 0;
}

int sl_oracle_set_priority(sl_oracle *o, uint64_t id, int32_t priority)
{
    oent *e = find(o, id);
    if (!e)
        return SL_ENOENT;
    if (e->prio != priority)
        e->dirty = true;
    e->prio = priority;
    return 0;
}

int sl_oracle_set_lod(sl_oracle *o, uint64_t id, const sl_lod_band *bands, uint32_t n)
{
    oent *e = find(o, id);
    if (!e)
        return SL_ENOENT;
    if (n > SL_LOD_BANDS)
        return SL_EINVAL;
    for (uint32_t i = 0; i < n; i++)
        if (!isfinite(bands[i].distance) || bands[i].distance < 0 ||
            (i && !(bands[i].distance > bands[i - 1].distance)) || bands[i].period < 1 ||
            bands[i].period > 65535)
            return SL_EINVAL;
    e->nlod = n;
    memcpy(e->lod, bands, n * sizeof *bands);
    return 0;
}

int sl_oracle_set_layer(sl_oracle *o, uint64_t id, uint32_t layer)
{
    oent *e = find(o, id);
    if (!e)
        return SL_ENOENT;
    if (layer > 31)
        return SL_EINVAL;
    e->layer = layer;
    e->dirty = true;
    return 0;
}

int sl_oracle_set_mask(sl_oracle *o, uint64_t id, uint32_t mask)
{
    oent *e = find(o, id);
    if (!e)
        return SL_ENOENT;
    e->mask = mask;
    e->dirty = true;
    return 0;
}

/* Unlinks entity i from its hash chain. */
static void unlink_ent(sl_oracle *o, size_t i)
{
    size_t *p = &o->heads[bucket(o->ents[i].id)];
    while (*p != i)
        p = &o->ents[*p].next;
    *p = o->ents[i].next;
}

int sl_oracle_remove(sl_oracle *o, uint64_t id)
{
    oent *e = find(o, id);
    if (!e)
        return SL_ENOENT;
    if (!reserve(&o->removed, &o->capremoved, o->nremoved + 1, sizeof(uint64_t)))
        return SL_ENOMEM;
    o->removed[o->nremoved++] = id;
    unrelate(o, id, id);
    size_t i = (size_t)(e - o->ents), last = o->n - 1;
    unlink_ent(o, i);
    if (i != last) {
        unlink_ent(o, last);
        o->ents[i] = o->ents[last];
        size_t b = bucket(o->ents[i].id);
        o->ents[i].next = o->heads[b];
        o->heads[b] = i;
    }
    o->n--;
    return 0;
}

static bool was_removed(const sl_oracle *o, uint64_t id)
{
    for (size_t i = 0; i < o->nremoved; i++)
        if (o->removed[i] == id)
            return true;
    return false;
}

static int cmp_pair(const opair *a, const opair *b)
{
    if (a->w != b->w)
        return a->w < b->w ? -1 : 1;
    return (a->t > b->t) - (a->t < b->t);
}

static bool in_set(const opair *set, size_t n, uint64_t w, uint64_t t)
{
    opair key = {w, t};
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_pair(&set[mid], &key);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* qsort's comparison has no context argument: the oracle being sorted, one a thread (two
 * oracles may tick at once on two threads, as the benchmarks' spaces do). */
static _Thread_local const sl_oracle *sort_ctx;

static int cmp_order(const void *a, const void *b)
{
    uint64_t x = sort_ctx->ents[*(const size_t *)a].id, y = sort_ctx->ents[*(const size_t *)b].id;
    return (x > y) - (x < y);
}

static int cmp_rank(const void *a, const void *b)
{
    const struct orank *x = a, *y = b;
    if (x->prio != y->prio)
        return x->prio > y->prio ? -1 : 1;
    if (x->dk != y->dk)
        return x->dk < y->dk ? -1 : 1;
    return (x->t > y->t) - (x->t < y->t);
}

static int cmp_t(const void *a, const void *b)
{
    const struct orank *x = a, *y = b;
    return (x->t > y->t) - (x->t < y->t);
}

/* Watcher w's candidates rank[0..n) (ascending ids): marks those it shows (space.h:
 * sl_space_set_cap), leaving them in id order. */
static void apply_cap(const sl_oracle *o, const oent *w, struct orank *rank, size_t n)
{
    size_t others = 0;
    for (size_t i = 0; i < n; i++) {
        struct orank *c = &rank[i];
        c->shown = c->fixed || !w->cap;
        others += !c->fixed;
        c->dk = sqrtf(c->d2);
        if (w->margin > 0 && !was_removed(o, w->id) && !was_removed(o, c->t) &&
            in_set(o->prev, o->nprev, w->id, c->t))
            c->dk -= w->margin;
    }
    if (!w->cap || others <= w->cap) {
        for (size_t i = 0; i < n; i++)
            rank[i].shown = 1;
        return;
    }
    qsort(rank, n, sizeof *rank, cmp_rank);
    for (size_t i = 0, kept = 0; i < n; i++)
        if (!rank[i].fixed && kept < w->cap) {
            rank[i].shown = 1;
            kept++;
        }
    qsort(rank, n, sizeof *rank, cmp_t);
}

static bool push_event(sl_oracle *o, uint64_t w, uint64_t t, sl_event_kind kind)
{
    if (!reserve(&o->ev, &o->capev, o->nev + 1, sizeof(sl_event)))
        return false;
    o->ev[o->nev++] = (sl_event){w, t, (uint32_t)kind, SL_LEAVE_NONE};
    return true;
}

/* Why visible pair (w, t) is not any more: the contract's reasons, in their order. */
static uint32_t leave_reason(const sl_oracle *o, uint64_t wid, uint64_t tid)
{
    const oent *w = find(o, wid), *t = find(o, tid);
    if (!t || was_removed(o, tid))
        return SL_LEAVE_REMOVED;
    if (in_set(o->ccur, o->nccur, wid, tid))
        return SL_LEAVE_CAP;        /* (still a candidate: nothing else holds) */
    if (relation(o, wid, tid) == SL_REL_NEVER)
        return SL_LEAVE_NEVER;
    if (!((w->mask >> t->layer) & 1u))
        return SL_LEAVE_LAYER;
    float d2 = dist2(o, w, t), rh = w->r + (isnan(w->h) ? o->h : w->h);
    if (!(w->r > 0) || (!(d2 <= w->r * w->r) && (was_removed(o, wid) || !(d2 <= rh * rh))))
        return SL_LEAVE_RANGE;
    return SL_LEAVE_RULE;
}

void sl_oracle_set_reasons(sl_oracle *o, bool on)
{
    o->reasons = on;
}

static int cmp_pair_v(const void *a, const void *b)
{
    return cmp_pair(a, b);
}

/* Why group g no longer sees t (space.h: sl_space_set_group). */
static uint32_t group_leave_reason(const sl_oracle *o, uint32_t g, uint64_t t)
{
    if (!find(o, t) || was_removed(o, t))
        return SL_GLEAVE_REMOVED;
    for (size_t i = 0; i < o->nprev; i++) {
        const oent *m = o->prev[i].t == t ? find(o, o->prev[i].w) : NULL;
        if (m && !was_removed(o, m->id) && m->gprev == g && m->group == g)
            return SL_GLEAVE_UNSEEN;        /* (a member then and now saw it) */
    }
    return SL_GLEAVE_LEFT;
}

/* The groups' view now (from cur: the pairs now, and each member's group now) and its
 * difference with the last tick's. Nonzero on OOM. */
static int group_tick(sl_oracle *o)
{
    o->ngcur = o->ngev = 0;
    for (size_t i = 0; i < o->ncur; i++) {
        const oent *w = find(o, o->cur[i].w);
        if (!w->group)
            continue;
        if (!reserve(&o->gcur, &o->capgcur, o->ngcur + 1, sizeof(opair)))
            return -1;
        o->gcur[o->ngcur++] = (opair){w->group, o->cur[i].t};
    }
    if (o->ngcur > 1)
        qsort(o->gcur, o->ngcur, sizeof(opair), cmp_pair_v);
    size_t k = 0;
    for (size_t i = 0; i < o->ngcur; i++)
        if (!k || cmp_pair(&o->gcur[k - 1], &o->gcur[i]))
            o->gcur[k++] = o->gcur[i];
    o->ngcur = k;
    size_t i = 0, j = 0;
    while (i < o->ngprev || j < o->ngcur) {
        int c = i == o->ngprev ? 1 : j == o->ngcur ? -1 : cmp_pair(&o->gprev[i], &o->gcur[j]);
        if (c == 0) {
            i++;
            j++;
            continue;
        }
        if (!reserve(&o->gev, &o->capgev, o->ngev + 1, sizeof *o->gev))
            return -1;
        const opair *p = c < 0 ? &o->gprev[i++] : &o->gcur[j++];
        o->gev[o->ngev++] = (sl_group_event){
            (uint32_t)p->w, c < 0 ? SL_EVENT_LEAVE : SL_EVENT_ENTER, p->t,
            c < 0 && o->reasons ? group_leave_reason(o, (uint32_t)p->w, p->t) : SL_GLEAVE_NONE};
    }
    return 0;
}

static int cmp_hit(const void *a, const void *b)
{
    const sl_query_hit *x = a, *y = b;
    if (x->d2 != y->d2)
        return x->d2 < y->d2 ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

int sl_oracle_query(sl_oracle *o, const sl_query *q, const sl_query_hit **hits, size_t *n)
{
    *hits = NULL;
    *n = 0;
    if (!isfinite(q->x) || !isfinite(q->y) ||
        (q->rect ? !isfinite(q->x1) || !isfinite(q->y1) || q->x1 < q->x || q->y1 < q->y
                 : !isfinite(q->r) || q->r < 0) ||
        (q->d3 && (!(o->depth > 0) || !isfinite(q->z) ||
                   (q->rect && (!isfinite(q->z1) || q->z1 < q->z)))))
        return SL_EINVAL;
    float cx = q->rect ? q->x + (q->x1 - q->x) * 0.5f : q->x;
    float cy = q->rect ? q->y + (q->y1 - q->y) * 0.5f : q->y;
    float cz = q->rect ? q->z + (q->z1 - q->z) * 0.5f : q->z;
    size_t k = 0;
    for (size_t i = 0; i < o->n; i++) {
        const oent *e = &o->ents[i];
        float dx = e->x - cx, dy = e->y - cy, d2 = dx * dx + dy * dy;
        if (q->d3) {
            float dz = e->z - cz;
            d2 = d2 + dz * dz;
        }
        bool in = q->rect ? e->x >= q->x && e->x <= q->x1 && e->y >= q->y && e->y <= q->y1 &&
                                (!q->d3 || (e->z >= q->z && e->z <= q->z1))
                          : d2 <= q->r * q->r;
        if (!in || !((q->mask >> e->layer) & 1u))
            continue;
        if (!reserve(&o->qhits, &o->capq, k + 1, sizeof *o->qhits))
            return SL_ENOMEM;
        o->qhits[k++] = (sl_query_hit){e->id, e->x, e->y, d2, e->z};
    }
    if (k > 1)
        qsort(o->qhits, k, sizeof *o->qhits, cmp_hit);
    *hits = o->qhits;
    *n = q->limit && k > q->limit ? q->limit : k;
    return 0;
}

long sl_oracle_group_events(const sl_oracle *o, const sl_group_event **events)
{
    *events = o->gev;
    return (long)o->ngev;
}

/* ---- regions ---- */

/* The crossing rule of space.h, written afresh: walk the edges (prev -> cur). */
static bool poly_in(const float *v, uint32_t n, float px, float py)
{
    bool odd = false;
    for (uint32_t cur = 0, prev = n - 1; cur < n; prev = cur++) {
        double ax = v[2 * prev], ay = v[2 * prev + 1], bx = v[2 * cur], by = v[2 * cur + 1];
        double o = (bx - ax) * ((double)py - ay) - (by - ay) * ((double)px - ax);
        bool within = px >= fmin(ax, bx) && px <= fmax(ax, bx) && py >= fmin(ay, by) &&
                      py <= fmax(ay, by);
        if (o == 0 && within)
            return true;
        if ((ay <= py && by > py && o > 0) || (ay > py && by <= py && o < 0))
            odd = !odd;
    }
    return odd;
}

static bool region_has(const struct oregion *r, const oent *e)
{
    const sl_region *g = &r->g;
    if (!(g->mask >> e->layer & 1u))
        return false;
    if (g->kind == SL_REGION_CIRCLE) {
        float dx = e->x - g->x, dy = e->y - g->y;
        return dx * dx + dy * dy <= g->r * g->r;
    }
    if (g->kind == SL_REGION_RECT)
        return e->x >= g->x && e->x <= g->x1 && e->y >= g->y && e->y <= g->y1;
    float x0 = INFINITY, y0 = INFINITY, x1 = -INFINITY, y1 = -INFINITY;
    for (uint32_t i = 0; i < g->n; i++) {
        x0 = fminf(x0, r->poly[2 * i]), x1 = fmaxf(x1, r->poly[2 * i]);
        y0 = fminf(y0, r->poly[2 * i + 1]), y1 = fmaxf(y1, r->poly[2 * i + 1]);
    }
    return e->x >= x0 && e->x <= x1 && e->y >= y0 && e->y <= y1 &&
           poly_in(r->poly, g->n, e->x, e->y);
}

static struct oregion *find_region(sl_oracle *o, uint64_t id)
{
    for (size_t i = 0; i < o->nregs; i++)
        if (o->regs[i].id == id)
            return &o->regs[i];
    return NULL;
}

int sl_oracle_set_region(sl_oracle *o, uint64_t id, const sl_region *g)
{
    bool ok = g->kind == SL_REGION_CIRCLE ? isfinite(g->x) && isfinite(g->y) &&
                                             isfinite(g->r) && g->r >= 0
            : g->kind == SL_REGION_RECT ? isfinite(g->x) && isfinite(g->y) && isfinite(g->x1) &&
                                          isfinite(g->y1) && g->x <= g->x1 && g->y <= g->y1
            : g->kind == SL_REGION_POLYGON && g->xy && g->n >= 3 &&
              g->n <= SL_REGION_VERTICES;
    for (uint32_t i = 0; ok && g->kind == SL_REGION_POLYGON && i < 2 * g->n; i++)
        ok = isfinite(g->xy[i]);
    if (!ok)
        return SL_EINVAL;
    struct oregion *r = find_region(o, id);
    if (!r) {
        if (!reserve(&o->regs, &o->capregs, o->nregs + 1, sizeof *o->regs))
            return SL_ENOMEM;
        r = &o->regs[o->nregs++];
    }
    r->id = id;
    r->g = *g;
    if (g->kind == SL_REGION_POLYGON)
        memcpy(r->poly, g->xy, (size_t)g->n * 2 * sizeof(float));
    r->g.xy = NULL;
    return 0;
}

int sl_oracle_remove_region(sl_oracle *o, uint64_t id)
{
    struct oregion *r = find_region(o, id);
    if (!r)
        return SL_ENOENT;
    *r = o->regs[--o->nregs];
    return 0;
}

long sl_oracle_region_events(const sl_oracle *o, const sl_region_event **events)
{
    *events = o->rev;
    return (long)o->nrev;
}

/* Who is in which region now, against the last tick: the region events. */
static int region_tick(sl_oracle *o)
{
    o->nrcur = o->nrev = 0;
    for (size_t i = 0; i < o->nregs; i++) {
        for (size_t k = 0; k < o->n; k++) {
            if (!region_has(&o->regs[i], &o->ents[k]))
                continue;
            if (!reserve(&o->rcur, &o->caprcur, o->nrcur + 1, sizeof(opair)))
                return -1;
            o->rcur[o->nrcur++] = (opair){o->regs[i].id, o->ents[k].id};
        }
    }
    if (o->nrcur > 1)
        qsort(o->rcur, o->nrcur, sizeof(opair), cmp_pair_v);
    size_t i = 0, j = 0;
    while (i < o->nrprev || j < o->nrcur) {
        int c = i == o->nrprev ? 1 : j == o->nrcur ? -1 : cmp_pair(&o->rprev[i], &o->rcur[j]);
        if (c == 0) {
            i++, j++;
            continue;
        }
        const opair *p = c < 0 ? &o->rprev[i++] : &o->rcur[j++];
        if (c < 0 && !find_region(o, p->w))
            continue;           /* (a removed region gets no events) */
        if (!reserve(&o->rev, &o->caprev, o->nrev + 1, sizeof *o->rev))
            return -1;
        o->rev[o->nrev++] = (sl_region_event){p->w, p->t, c < 0 ? SL_EVENT_LEAVE
                                                                 : SL_EVENT_ENTER};
    }
    return 0;
}

/* A set of this tick becomes the last tick's (the buffers swap; the new one is empty). */
static void roll(opair **prev, size_t *capprev, size_t *nprev, opair **cur, size_t *capcur,
                 size_t *ncur)
{
    opair *p = *prev;
    size_t c = *capprev;
    *prev = *cur;
    *capprev = *capcur;
    *nprev = *ncur;
    *cur = p;
    *capcur = c;
    *ncur = 0;
}

long sl_oracle_tick(sl_oracle *o, const sl_event **events)
{
    o->ticks++;
    /* Entities in id order, so the new visible set comes out sorted. */
    if (!reserve(&o->order, &o->caporder, o->n, sizeof(size_t)))
        return -1;
    for (size_t i = 0; i < o->n; i++)
        o->order[i] = i;
    sort_ctx = o;
    qsort(o->order, o->n, sizeof(size_t), cmp_order);

    o->ncur = o->nccur = 0;
    for (size_t a = 0; a < o->n; a++) {
        const oent *w = &o->ents[o->order[a]];
        if (!(w->r > 0))
            continue;
        size_t nrank = 0;
        float r2 = w->r * w->r, rh = w->r + (isnan(w->h) ? o->h : w->h), rh2 = rh * rh;
        bool w_fresh = was_removed(o, w->id);
        for (size_t b = 0; b < o->n; b++) {
            const oent *t = &o->ents[o->order[b]];
            if (t == w || !((w->mask >> t->layer) & 1u))
                continue;
            float d2 = dist2(o, w, t);
            sl_relation k = o->nrels ? relation(o, w->id, t->id) : SL_REL_NONE;
            bool vis = d2 <= r2;
            if (!vis && d2 <= rh2 && !w_fresh && !was_removed(o, t->id))
                vis = in_set(o->cprev, o->ncprev, w->id, t->id);
            if (vis && o->rule && k == SL_REL_NONE && !t->always)
                vis = o->rule(o->rule_ud, w->id, t->id);
            if (k != SL_REL_NONE)
                vis = k == SL_REL_FORCE;
            else if (t->always)
                vis = true;
            if (vis) {
                if (!reserve(&o->ccur, &o->capccur, o->nccur + 1, sizeof(opair)) ||
                    !reserve(&o->rank, &o->caprank, nrank + 1, sizeof *o->rank))
                    return -1;
                o->ccur[o->nccur++] = (opair){w->id, t->id};
                o->rank[nrank++] = (struct orank){t->id, d2, 0, t->prio,
                                                  k == SL_REL_FORCE || t->always, false};
            }
        }
        apply_cap(o, w, o->rank, nrank);
        for (size_t i = 0; i < nrank; i++) {
            if (!o->rank[i].shown)
                continue;
            if (!reserve(&o->cur, &o->capcur, o->ncur + 1, sizeof(opair)))
                return -1;
            o->cur[o->ncur++] = (opair){w->id, o->rank[i].t};
        }
    }

    /* Diff prev against cur (both sorted). */
    o->nev = 0;
    size_t i = 0, j = 0;
    while (i < o->nprev || j < o->ncur) {
        int c = i == o->nprev ? 1 : j == o->ncur ? -1 : cmp_pair(&o->prev[i], &o->cur[j]);
        bool ok = true;
        if (c < 0) {
            /* Gone: a leave, unless the watcher itself is gone. */
            if (find(o, o->prev[i].w)) {
                ok = push_event(o, o->prev[i].w, o->prev[i].t, SL_EVENT_LEAVE);
                if (ok && o->reasons)
                    o->ev[o->nev - 1].reason = leave_reason(o, o->prev[i].w, o->prev[i].t);
            }
            i++;
        } else if (c > 0) {
            ok = push_event(o, o->cur[j].w, o->cur[j].t, SL_EVENT_ENTER);
            j++;
        } else {
            if (o->stay) {
                const oent *w = find(o, o->cur[j].w), *t = find(o, o->cur[j].t);
                if ((w->dirty || t->dirty || was_removed(o, w->id) || was_removed(o, t->id)) &&
                    (!w->nlod || sl_lod_due(w->lod, w->nlod, w->id, t->id, dist2(o, w, t),
                                            o->ticks)))
                    ok = push_event(o, w->id, t->id, SL_EVENT_STAY);
            }
            i++;
            j++;
        }
        if (!ok)
            return -1;
    }

    if (group_tick(o) || region_tick(o))
        return -1;

    /* cur becomes prev; forget this tick's changes. */
    roll(&o->prev, &o->capprev, &o->nprev, &o->cur, &o->capcur, &o->ncur);
    roll(&o->cprev, &o->capcprev, &o->ncprev, &o->ccur, &o->capccur, &o->nccur);
    roll(&o->gprev, &o->capgprev, &o->ngprev, &o->gcur, &o->capgcur, &o->ngcur);
    roll(&o->rprev, &o->caprprev, &o->nrprev, &o->rcur, &o->caprcur, &o->nrcur);
    for (size_t k = 0; k < o->n; k++) {
        o->ents[k].dirty = false;
        o->ents[k].gprev = o->ents[k].group;
    }
    o->nremoved = 0;
    *events = o->ev;
    return (long)o->nev;
}

size_t sl_oracle_pairs(const sl_oracle *o)
{
    return o->nprev;
}
