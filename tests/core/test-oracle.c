/*
 * Randomised traces, checked event for event against the brute-force oracle, for every
 * index kind and every SIMD level this CPU has. Each scenario stresses one kind of edge:
 * exact ties, map and cell edges, crowds on one spot, radii of 0 / tiny / wider than the
 * map, hysteresis, layers and masks, removal and re-adding within a tick, ids near 2^64,
 * invalid operations, and index switches in mid-run.
 */
#include "test.h"

#include "base/rng.h"
#include "base/vec.h"
#include "engine/oracle.h"
#include "engine/simd.h"
#include "engine/space.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { POS_UNIFORM, POS_CLUSTER, POS_LATTICE, POS_EDGES, POS_SPOT, POS_SEAMS } pos_mode;
typedef enum { RAD_FIXED, RAD_MIXED, RAD_LATTICE } rad_mode;

typedef struct scenario {
    uint64_t seed;
    uint32_t pool;          /* ids come from [id_base, id_base + pool) */
    uint64_t id_base;
    uint32_t ticks;
    float w, h, cell, hyst, radius, step;
    pos_mode pos;
    rad_mode rad;
    bool layers;            /* random layers and masks */
    bool stay;
    uint32_t churn;         /* per-mille of ops that remove or re-add */
    uint32_t invalid;       /* per-mille of ops that are invalid on purpose */
    bool switch_index;      /* rebuild the index in mid-run */
    bool compacts;          /* the space must have renumbered its slots */
    bool walk;              /* moves are integer steps of -1, 0 or +1 (lattice walks) */
    bool rule;              /* a visibility rule, touches, and rule swaps in mid-run */
    /* 1: every tick must judge moves the uniform way (all entities alike); 2: shape phases,
     * alike, then some odd radii (ticks 16-23), then all alike at a new radius, which the
     * space only notices as uniform again at its periodic recount (tick 64) */
    int uniform;
    bool moves_only;        /* after the first fill only short moves (nothing special) */
    float seam, spread;     /* POS_SEAMS: spots on multiples of seam, entities within spread */
    bool handoff;           /* every few ticks the space is exported and imported into a new
                               one (another index kind), which goes on in its place */
    bool own_hyst;          /* entities get their own hysteresis (and the space's back) */
    bool lod;               /* watchers get LOD bands (and lose them), some invalid */
    uint32_t relate;        /* per-mille of ops that set or clear a pair relation */
    uint32_t always;        /* per-mille of ops that make an entity always relevant or not */
    bool reasons;           /* leaves say why: compared too */
    uint32_t cap;           /* per-mille of ops that set a cap (or lift it) or a priority */
    uint32_t group;         /* per-mille of ops that put an entity in a vision group (1-4) or
                               none */
    uint32_t query;         /* per-mille of ops that are a query, compared at once */
    uint32_t region;        /* per-mille of ops that set, reshape or remove a region */
    float depth;            /* > 0: a 3D space of that depth (heights like x, y: gen_z) */
} scenario;

/*
 * The test rule: a hash of both ids, their touch generations and the rule variant says no
 * to about a quarter of the pairs; variant 2 means no rule at all. It depends only on what
 * touching reports (the generations), as the space's contract asks.
 */
static struct {
    uint64_t base;
    uint32_t *gen;
    unsigned variant;
} rule_ctx;

static bool rule_says(void *ud, uint64_t w, uint64_t t)
{
    (void)ud;
    uint64_t h = w * 0x9E3779B97F4A7C15ULL ^ t * 0xC2B2AE3D27D4EB4FULL ^
                 (uint64_t)rule_ctx.gen[w - rule_ctx.base] << 20 ^
                 (uint64_t)rule_ctx.gen[t - rule_ctx.base] << 40 ^ rule_ctx.variant;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 32;
    return h % 4 != 0;
}

/* The same rule through the space's batch interface. */
static void rule_batch(void *ud, const sl_rule_pair *p, size_t n, uint8_t *verdict)
{
    for (size_t i = 0; i < n; i++)
        verdict[i] = rule_says(ud, p[i].watcher, p[i].target);
}

static float gen_coord(sl_rng *g, const scenario *sc, float side)
{
    switch (sc->pos) {
    case POS_CLUSTER:
        return sl_rng_below(g, 10) < 8 ? side * 0.375f + sl_rng_float(g) * side * 0.25f
                                       : sl_rng_float(g) * side;
    case POS_LATTICE:
        return (float)sl_rng_below(g, (uint32_t)side);
    case POS_EDGES: {
        float c = sc->cell > 0 ? sc->cell : 16;
        uint32_t k = sl_rng_below(g, (uint32_t)(side / c));
        switch (sl_rng_below(g, 6)) {
        case 0: return 0;
        case 1: return nextafterf(side, 0);         /* the last valid coordinate */
        case 2: return (float)k * c;                /* exactly on a cell edge */
        case 3: return k ? nextafterf((float)k * c, 0) : 0;
        default: return sl_rng_float(g) * side;
        }
    }
    case POS_SPOT:
        return sl_rng_below(g, 4) ? side / 2 : sl_rng_float(g) * side;
    case POS_SEAMS: {
        /* Nine spots an axis, from 0 to the far edge, each on a multiple of the seam (the
         * index's tile or page edges): a few entities around each, on both sides of it. */
        float spot = roundf(side * (float)sl_rng_below(g, 9) / 8 / sc->seam) * sc->seam;
        return sl_clamp_to_map(spot + (sl_rng_float(g) * 2 - 1) * sc->spread, side);
    }
    default:
        return sl_rng_float(g) * side;
    }
}

/* A height in a 3D scenario (0 in a flat one): as gen_coord over [0, depth). */
static float gen_z(sl_rng *g, const scenario *sc)
{
    return sc->depth > 0 ? gen_coord(g, sc, sc->depth) : 0.0f;
}

/* A height a step from z (a unit step on walks), kept in [0, depth). */
static float step_z(sl_rng *g, const scenario *sc, float z)
{
    if (!(sc->depth > 0))
        return 0.0f;
    float d = sc->walk ? (float)sl_rng_below(g, 3) - 1 : (sl_rng_float(g) * 2 - 1) * sc->step;
    return sl_clamp_to_map(z + d, sc->depth);
}

static float gen_radius(sl_rng *g, const scenario *sc)
{
    switch (sc->rad) {
    case RAD_MIXED:
        switch (sl_rng_below(g, 8)) {
        case 0: return 0;
        case 1: return 1e-3f;
        case 2: return sc->w * 3;                   /* wider than the whole map */
        case 3: return sc->radius * 6;              /* big, but not whole-map */
        default: return sc->radius * (0.5f + sl_rng_float(g));
        }
    case RAD_LATTICE:
        return (float)sl_rng_below(g, (uint32_t)sc->radius + 1);
    default:
        return sc->radius;
    }
}

typedef struct run {
    sl_space *s;
    sl_oracle *o;
    sl_vec got;             /* the tick's events, gathered over the sink's calls */
    uint64_t events, ticks, uniform_ticks, group_events, query_hits, region_events;
    uint64_t sequence;      /* a hash of every event in the order given (tick order runs) */
    bool tick_order;        /* the space hands out events in the tick order */
    float base;             /* shape phases: the radius everybody has */
    bool odd;               /* shape phases: radius changes and adds may pick another one */
} run;

/* A tick's events may come in several calls: they are gathered in r->got. */
static void sink(void *ud, const sl_event *ev, size_t n)
{
    run *r = ud;
    ASSERT(sl_vec_append(&r->got, ev, sizeof *ev, n) != SIZE_MAX);
}

static int by_pair(const void *a, const void *b)
{
    const sl_event *x = a, *y = b;
    if (x->watcher != y->watcher)
        return x->watcher < y->watcher ? -1 : 1;
    return x->target < y->target ? -1 : x->target > y->target;
}

/* Tick order: the events' sequence goes into r->sequence, then they are sorted for the
 * comparison with the oracle, and no pair may come twice. */
static void sort_tick_order(run *r)
{
    sl_event *ev = r->got.p;
    for (size_t i = 0; i < r->got.n; i++)
        r->sequence = (r->sequence ^ ((ev[i].watcher * 31 + ev[i].target) * 4 + ev[i].kind)) *
                      0x100000001B3ULL;
    qsort(ev, r->got.n, sizeof *ev, by_pair);
    for (size_t i = 1; i < r->got.n; i++)
        if (by_pair(&ev[i - 1], &ev[i]) == 0) {
            fprintf(stderr, "tick order: %llu->%llu twice (kinds %u, %u)\n",
                    (unsigned long long)ev[i].watcher, (unsigned long long)ev[i].target,
                    ev[i - 1].kind, ev[i].kind);
            ASSERT(0);
        }
}

/* The tick's region events, the same as the oracle's (in order). */
static void compare_regions(run *r)
{
    size_t n;
    const sl_region_event *got = sl_space_region_events(r->s, &n), *want;
    long m = sl_oracle_region_events(r->o, &want);
    for (size_t i = 0; i < n && i < (size_t)m; i++) {
        if (got[i].region != want[i].region || got[i].entity != want[i].entity ||
            got[i].kind != want[i].kind) {
            fprintf(stderr, "tick %llu region event %zu: core %u %llu:%llu, oracle %u "
                    "%llu:%llu\n", (unsigned long long)r->ticks, i, got[i].kind,
                    (unsigned long long)got[i].region, (unsigned long long)got[i].entity,
                    want[i].kind, (unsigned long long)want[i].region,
                    (unsigned long long)want[i].entity);
            for (size_t k = 0; getenv("SL_DEBUG") && k < n; k++)
                fprintf(stderr, " core %u %llu:%llu\n", got[k].kind,
                        (unsigned long long)got[k].region, (unsigned long long)got[k].entity);
            for (long k = 0; getenv("SL_DEBUG") && k < m; k++)
                fprintf(stderr, " oracle %u %llu:%llu\n", want[k].kind,
                        (unsigned long long)want[k].region, (unsigned long long)want[k].entity);
            ASSERT(0);
        }
        ASSERT(sl_space_in_region(r->s, got[i].region, got[i].entity) ==
               (got[i].kind == SL_EVENT_ENTER));
    }
    ASSERT_EQ((long)n, m);
    r->region_events += n;
}

/* The tick's group events, the same as the oracle's (in order, with their reasons). */
static void compare_groups(run *r)
{
    size_t n;
    const sl_group_event *got = sl_space_group_events(r->s, &n), *want;
    long m = sl_oracle_group_events(r->o, &want);
    for (size_t i = 0; i < n && i < (size_t)m; i++) {
        if (got[i].group != want[i].group || got[i].target != want[i].target ||
            got[i].kind != want[i].kind || got[i].reason != want[i].reason) {
            fprintf(stderr, "tick %llu group event %zu: core %u %u->%llu (%s), oracle %u "
                    "%u->%llu (%s)\n", (unsigned long long)r->ticks, i, got[i].kind,
                    got[i].group, (unsigned long long)got[i].target,
                    sl_group_leave_reason_name(got[i].reason), want[i].kind, want[i].group,
                    (unsigned long long)want[i].target,
                    sl_group_leave_reason_name(want[i].reason));
            ASSERT(0);
        }
    }
    ASSERT_EQ((long)n, m);
    r->group_events += n;
}

static void compare_tick(run *r)
{
    r->got.n = 0;
    ASSERT_EQ(sl_space_tick(r->s, sink, r), 0);
    if (r->tick_order)
        sort_tick_order(r);
    const sl_event *want, *got = r->got.p;
    size_t ngot = r->got.n;
    long n = sl_oracle_tick(r->o, &want);
    ASSERT(n >= 0);
    if ((size_t)n != ngot)
        fprintf(stderr, "tick %llu: core %zu events, oracle %ld\n",
                (unsigned long long)r->ticks, ngot, n);
    size_t m = ngot < (size_t)n ? ngot : (size_t)n;
    for (size_t i = 0; i < m; i++) {
        if (want[i].watcher != got[i].watcher || want[i].target != got[i].target ||
            want[i].kind != got[i].kind || want[i].reason != got[i].reason) {
            fprintf(stderr, "tick %llu event %zu: core %u %llu->%llu (%s), oracle %u %llu->%llu "
                    "(%s)\n", (unsigned long long)r->ticks, i, got[i].kind,
                    (unsigned long long)got[i].watcher, (unsigned long long)got[i].target,
                    sl_leave_reason_name(got[i].reason), want[i].kind,
                    (unsigned long long)want[i].watcher, (unsigned long long)want[i].target,
                    sl_leave_reason_name(want[i].reason));
            ASSERT(0);
        }
    }
    ASSERT_EQ(ngot, n);
    r->events += ngot;
    compare_groups(r);
    compare_regions(r);
    r->ticks++;
    sl_space_stats st;
    sl_space_get_stats(r->s, &st);
    ASSERT_U64_EQ(st.pairs, sl_oracle_pairs(r->o));
    r->uniform_ticks += st.last_uniform;
}

/* A radius for an add or a radius change: the scenario's, or the shape phase's. */
static float pick_radius(const run *r, sl_rng *g, const scenario *sc)
{
    if (sc->uniform != 2)
        return gen_radius(g, sc);
    if (r->odd && sl_rng_below(g, 3) == 0)
        return sl_rng_below(g, 2) ? r->base * 1.5f : 0;
    return r->base;
}

/* A random query (circle or rectangle, over part of the map or beyond it, sometimes a
 * degenerate or invalid one; layers; limits) asked of both: the same hits, in order. */
static void compare_query(run *r, sl_rng *g, const scenario *sc)
{
    sl_query q = {.x = sl_rng_float(g) * sc->w, .y = sl_rng_float(g) * sc->h,
                  .mask = sl_rng_below(g, 4) ? ~0u : (uint32_t)sl_rng_next(g),
                  .limit = sl_rng_below(g, 3) ? 0 : sl_rng_below(g, 20)};
    if (sc->depth > 0 && sl_rng_below(g, 2)) {
        q.d3 = true;
        q.z = sl_rng_float(g) * sc->depth;
        q.z1 = q.z + sl_rng_float(g) * sc->depth / 2;
        if (sc->pos == POS_LATTICE) {
            q.z = floorf(q.z);
            q.z1 = floorf(q.z1);
        }
    }
    if (sc->pos == POS_LATTICE) {
        q.x = floorf(q.x);
        q.y = floorf(q.y);
    }
    switch (sl_rng_below(g, 6)) {
    case 0:
    case 1:
    case 2:
        q.r = sc->pos == POS_LATTICE ? (float)sl_rng_below(g, 8) : sl_rng_float(g) * sc->w / 4;
        break;
    case 3:
    case 4:
        q.rect = true;
        q.x1 = q.x + (sc->pos == POS_LATTICE ? (float)sl_rng_below(g, 10)
                                             : sl_rng_float(g) * sc->w / 3);
        q.y1 = q.y + (sc->pos == POS_LATTICE ? (float)sl_rng_below(g, 10)
                                             : sl_rng_float(g) * sc->h / 3);
        break;
    default:
        q.r = sl_rng_below(g, 2) ? -1.0f : NAN;      /* refused */
        break;
    }
    const sl_query_hit *a, *b;
    size_t na, nb;
    int ra = sl_space_query(r->s, &q, &a, &na), rb = sl_oracle_query(r->o, &q, &b, &nb);
    ASSERT_EQ(ra, rb);
    ASSERT_U64_EQ(na, nb);
    for (size_t i = 0; i < na; i++) {
        ASSERT_U64_EQ(a[i].id, b[i].id);
        ASSERT(a[i].x == b[i].x && a[i].y == b[i].y && a[i].d2 == b[i].d2);
        ASSERT(a[i].z == b[i].z);
    }
    r->query_hits += na;
}

/* A coordinate for a region: anywhere over the map and a little beyond (whole numbers on a
 * lattice, for exact ties on edges and vertices). */
static float region_coord(sl_rng *g, const scenario *sc, float side)
{
    float v = sl_rng_float(g) * side * 1.2f - side * 0.1f;
    return sc->pos == POS_LATTICE ? floorf(v) : v;
}

/* A random region (circle, rectangle, polygon of 3 to 12 vertices around a centre, now and
 * then self-crossing; a quarter with a random mask; now and then an invalid one) set on
 * both, or a region removed (now and then one that is not there). */
static void region_op(run *rp, sl_rng *g, const scenario *sc)
{
    run r = *rp;
    uint64_t id = 1 + sl_rng_below(g, 12);
    if (sl_rng_below(g, 5) == 0) {
        int rs = sl_space_remove_region(r.s, id), ro = sl_oracle_remove_region(r.o, id);
        ASSERT_EQ(rs, ro);
        return;
    }
    float xy[2 * 12];
    sl_region reg = {.kind = (sl_region_kind)sl_rng_below(g, 3), .x = region_coord(g, sc, sc->w),
                     .y = region_coord(g, sc, sc->h), .xy = xy,
                     .mask = sl_rng_below(g, 4) ? ~0u : (uint32_t)sl_rng_next(g)};
    float span = sc->pos == POS_LATTICE ? floorf(sl_rng_float(g) * sc->w / 3)
                                        : sl_rng_float(g) * sc->w / 4;
    reg.r = span;
    reg.x1 = reg.x + span;
    reg.y1 = reg.y + (sc->pos == POS_LATTICE ? floorf(sl_rng_float(g) * sc->h / 3)
                                             : sl_rng_float(g) * sc->h / 4);
    reg.n = 3 + sl_rng_below(g, 10);
    for (uint32_t i = 0; i < reg.n; i++) {
        /* Around the centre in order (a star-shaped polygon), or anywhere (self-crossing). */
        float a = 6.2831853f * ((float)i + sl_rng_float(g) * 0.8f) / (float)reg.n;
        float d = span * (0.3f + sl_rng_float(g) * 0.7f);
        bool wild = sl_rng_below(g, 8) == 0;
        xy[2 * i] = wild ? region_coord(g, sc, sc->w) : reg.x + d * cosf(a);
        xy[2 * i + 1] = wild ? region_coord(g, sc, sc->h) : reg.y + d * sinf(a);
        if (sc->pos == POS_LATTICE) {
            xy[2 * i] = floorf(xy[2 * i]);
            xy[2 * i + 1] = floorf(xy[2 * i + 1]);
        }
    }
    if (sl_rng_below(g, 40) == 0) {
        switch (sl_rng_below(g, 3)) {
        case 0: reg.r = -1; reg.kind = SL_REGION_CIRCLE; break;
        case 1: reg.x1 = NAN; reg.kind = SL_REGION_RECT; break;
        default: reg.n = sl_rng_below(g, 2) ? 2 : 65; reg.kind = SL_REGION_POLYGON; break;
        }
    }
    int rs = sl_space_set_region(r.s, id, &reg), ro = sl_oracle_set_region(r.o, id, &reg);
    ASSERT_EQ(rs, ro);
}

/* Applies one operation to both sides; they must agree on success or the error code. */
#define BOTH(call_s, call_o)                                                          \
    do {                                                                              \
        int rs_ = (call_s), ro_ = (call_o);                                           \
        if (rs_ != ro_)                                                               \
            fprintf(stderr, "core %d (%s) vs oracle %d\n", rs_, sl_space_error(r.s),  \
                    ro_);                                                             \
        ASSERT_EQ(rs_, ro_);                                                          \
        if (rs_)                                                                      \
            ASSERT(sl_space_error(r.s)[0] != '\0');                                   \
    } while (0)

static void one_op(run *rp, sl_rng *g, const scenario *sc)
{
    run r = *rp;
    uint32_t k = sl_rng_below(g, sc->pool);
    uint64_t id = sc->id_base + k;
    uint32_t dice = sl_rng_below(g, 1000);
    if (dice < sc->invalid) {
        static const float bad[] = {NAN, INFINITY, -INFINITY, -1.0f, 1e30f};
        float b = bad[sl_rng_below(g, 5)];
        switch (sl_rng_below(g, sc->depth > 0 ? 9 : 7)) {
        case 0: BOTH(sl_space_add(r.s, id, b, 1, 1, 0, ~0u), sl_oracle_add(r.o, id, b, 1, 1, 0, ~0u)); break;
        case 7:
            BOTH(sl_space_add3(r.s, id, 1, 1, b, 1, 0, ~0u),
                 sl_oracle_add3(r.o, id, 1, 1, b, 1, 0, ~0u));
            break;
        case 8:     /* z = depth: just outside */
            BOTH(sl_space_move3(r.s, id, 1, 1, sc->depth),
                 sl_oracle_move3(r.o, id, 1, 1, sc->depth));
            break;
        case 1: BOTH(sl_space_move(r.s, id, 1, b), sl_oracle_move(r.o, id, 1, b)); break;
        case 2: BOTH(sl_space_set_radius(r.s, id, b), sl_oracle_set_radius(r.o, id, b)); break;
        case 3: BOTH(sl_space_set_layer(r.s, id, 32), sl_oracle_set_layer(r.o, id, 32)); break;
        case 4: BOTH(sl_space_add(r.s, id, 1, 1, 1, 40, 1), sl_oracle_add(r.o, id, 1, 1, 1, 40, 1)); break;
        case 5:
            if (sc->own_hyst) {
                BOTH(sl_space_set_hysteresis(r.s, id, b), sl_oracle_set_hysteresis(r.o, id, b));
                break;
            }
            /* fall through */
        default: BOTH(sl_space_move(r.s, id, sc->w, 0), sl_oracle_move(r.o, id, sc->w, 0)); break;
        }
        return;
    }
    sl_entity_info info;
    bool present = sl_space_get(r.s, id, &info) == 0;
    if (sc->moves_only && present) {
        float x = sl_clamp_to_map(info.x + (sl_rng_float(g) * 2 - 1) * sc->step, sc->w);
        float y = sl_clamp_to_map(info.y + (sl_rng_float(g) * 2 - 1) * sc->step, sc->h);
        float z = step_z(g, sc, info.z);
        BOTH(sl_space_move3(r.s, id, x, y, z), sl_oracle_move3(r.o, id, x, y, z));
        return;
    }
    if (!present || dice < sc->invalid + sc->churn) {
        if (present) {
            BOTH(sl_space_remove(r.s, id), sl_oracle_remove(r.o, id));
            if (sl_rng_below(g, 2))
                return;     /* half the time the id comes straight back in this tick */
        }
        float x = gen_coord(g, sc, sc->w), y = gen_coord(g, sc, sc->h);
        uint32_t layer = sc->layers ? sl_rng_below(g, 4) : 0;
        uint32_t mask = sc->layers ? (uint32_t)sl_rng_next(g) : ~0u;
        float rad = pick_radius(rp, g, sc), z = gen_z(g, sc);
        BOTH(sl_space_add3(r.s, id, x, y, z, rad, layer, mask),
             sl_oracle_add3(r.o, id, x, y, z, rad, layer, mask));
        return;
    }
    if (sc->rule && sl_rng_below(g, 8) == 0) {
        rule_ctx.gen[k]++;
        BOTH(sl_space_touch(r.s, id), sl_oracle_touch(r.o, id));
        return;
    }
    if (sl_rng_below(g, 1000) < sc->always) {
        bool on = sl_rng_below(g, 3) != 0;
        BOTH(sl_space_set_always(r.s, id, on), sl_oracle_set_always(r.o, id, on));
        return;
    }
    if (sc->query && sl_rng_below(g, 1000) < sc->query) {
        compare_query(rp, g, sc);
        return;
    }
    if (sc->region && sl_rng_below(g, 1000) < sc->region) {
        region_op(rp, g, sc);
        return;
    }
    if (sc->group && sl_rng_below(g, 1000) < sc->group) {
        uint32_t grp = sl_rng_below(g, 5);
        BOTH(sl_space_set_group(r.s, id, grp), sl_oracle_set_group(r.o, id, grp));
        return;
    }
    if (sc->cap && sl_rng_below(g, 1000) < sc->cap) {
        if (sl_rng_below(g, 3) == 0) {
            int32_t p = (int32_t)sl_rng_below(g, 5) - 2;
            BOTH(sl_space_set_priority(r.s, id, p), sl_oracle_set_priority(r.o, id, p));
            return;
        }
        /* Caps of 0 (lifted) to 5; margins of 0, whole numbers on a lattice (exact ties),
         * or any; now and then a bad one (refused). */
        uint32_t n = sl_rng_below(g, 6);
        float m = sl_rng_below(g, 3) == 0 ? 0
                  : sc->rad == RAD_LATTICE ? (float)sl_rng_below(g, 3)
                                           : sl_rng_float(g) * sc->radius / 2;
        if (sl_rng_below(g, 32) == 0)
            m = sl_rng_below(g, 2) ? NAN : -1;
        BOTH(sl_space_set_cap(r.s, id, n, m), sl_oracle_set_cap(r.o, id, n, m));
        return;
    }
    if (sl_rng_below(g, 1000) < sc->relate) {
        /* A relation with another id of the pool (present or not), a quarter of them
         * cleared; now and then an invalid one (itself, or kind 7). */
        uint64_t t = sc->id_base + sl_rng_below(g, sc->pool);
        uint32_t d = sl_rng_below(g, 16);
        sl_relation k = d < 4 ? SL_REL_NONE : d < 10 ? SL_REL_FORCE : SL_REL_NEVER;
        if (d == 15)
            k = (sl_relation)7;
        BOTH(sl_space_relate(r.s, id, t, k), sl_oracle_relate(r.o, id, t, k));
        return;
    }
    if (sc->lod && sl_rng_below(g, 10) == 0) {
        /* 0 to 3 bands of growing distance (one in eight out of order), periods 1 to 4 (one
         * in sixteen 0: refused). */
        sl_lod_band b[3];
        uint32_t n = sl_rng_below(g, 4);
        float d = 0;
        for (uint32_t i = 0; i < n; i++) {
            d += 1 + sl_rng_float(g) * sc->radius;
            b[i] = (sl_lod_band){sl_rng_below(g, 8) ? d : d / 4, sl_rng_below(g, 16) ? 1 + sl_rng_below(g, 4) : 0};
        }
        BOTH(sl_space_set_lod(r.s, id, b, n), sl_oracle_set_lod(r.o, id, b, n));
        return;
    }
    if (sc->own_hyst && sl_rng_below(g, 10) == 0) {
        /* Its own hysteresis: whole numbers on a lattice (exact ties at r + h), else any;
         * a quarter of the time the space's again. */
        float h = sc->rad == RAD_LATTICE ? (float)sl_rng_below(g, 4)
                                         : sl_rng_float(g) * 2 * (sc->hyst > 4 ? sc->hyst : 4);
        if (sl_rng_below(g, 4) == 0)
            h = -1;
        BOTH(sl_space_set_hysteresis(r.s, id, h), sl_oracle_set_hysteresis(r.o, id, h));
        return;
    }
    uint32_t what = sl_rng_below(g, 20);
    if (what < 15) {
        float x, y, z = info.z;
        if (sc->walk && what != 0) {
            x = sl_clamp_to_map(info.x + (float)sl_rng_below(g, 3) - 1, sc->w);
            y = sl_clamp_to_map(info.y + (float)sl_rng_below(g, 3) - 1, sc->h);
            z = step_z(g, sc, z);
        } else if (sc->pos == POS_LATTICE || sc->pos == POS_EDGES || what == 0) {
            x = gen_coord(g, sc, sc->w);
            y = gen_coord(g, sc, sc->h);
            z = gen_z(g, sc);
        } else {
            x = sl_clamp_to_map(info.x + (sl_rng_float(g) * 2 - 1) * sc->step, sc->w);
            y = sl_clamp_to_map(info.y + (sl_rng_float(g) * 2 - 1) * sc->step, sc->h);
            z = step_z(g, sc, z);
        }
        if (sc->depth > 0 && what == 1) {   /* up or down only, or a plain 2D move */
            BOTH(sl_space_move3(r.s, id, info.x, info.y, z),
                 sl_oracle_move3(r.o, id, info.x, info.y, z));
        } else if (sc->depth > 0 && what == 2) {
            BOTH(sl_space_move(r.s, id, x, y), sl_oracle_move(r.o, id, x, y));
        } else {
            BOTH(sl_space_move3(r.s, id, x, y, z), sl_oracle_move3(r.o, id, x, y, z));
        }
    } else if (what < 17) {
        float rad = pick_radius(rp, g, sc);
        BOTH(sl_space_set_radius(r.s, id, rad), sl_oracle_set_radius(r.o, id, rad));
    } else if (what < 18 && sc->layers) {
        uint32_t layer = sl_rng_below(g, 4);
        BOTH(sl_space_set_layer(r.s, id, layer), sl_oracle_set_layer(r.o, id, layer));
    } else if (what < 19 && sc->layers) {
        uint32_t mask = (uint32_t)sl_rng_next(g);
        BOTH(sl_space_set_mask(r.s, id, mask), sl_oracle_set_mask(r.o, id, mask));
    } else {
        BOTH(sl_space_remove(r.s, id), sl_oracle_remove(r.o, id));
    }
}

/* Shape phases (uniform == 2): odd radii may come in ticks 16-23; at tick 24 everybody
 * takes one new radius. */
static void shape_phase(run *rp, const scenario *sc, uint32_t t)
{
    rp->odd = t >= 16 && t < 24;
    if (t != 24)
        return;
    rp->base = sc->radius * 1.25f;
    run r = *rp;
    for (uint32_t k = 0; k < sc->pool; k++) {
        sl_entity_info info;
        if (sl_space_get(r.s, sc->id_base + k, &info) == 0)
            BOTH(sl_space_set_radius(r.s, sc->id_base + k, r.base),
                 sl_oracle_set_radius(r.o, sc->id_base + k, r.base));
    }
}

/* The rule changes (a script reload), goes away, or comes back. */
static void next_rule(run *r)
{
    rule_ctx.variant = (rule_ctx.variant + 1) % 3;
    bool on = rule_ctx.variant != 2;
    if (rule_ctx.variant == 1) {
        sl_space_rejudge(r->s);
    } else {
        sl_space_set_rule(r->s, on ? rule_batch : NULL, NULL);
        sl_oracle_set_rule(r->o, on ? rule_says : NULL, NULL);
    }
}

/* Removing every other entity must produce every remaining leave (watchers too); then the
 * scenario's own checks on the run as a whole. */
static void finish(run *rp, const scenario *sc)
{
    run r = *rp;
    for (uint32_t k = 0; k < sc->pool; k += 2) {
        sl_entity_info info;
        if (sl_space_get(r.s, sc->id_base + k, &info) == 0)
            BOTH(sl_space_remove(r.s, sc->id_base + k), sl_oracle_remove(r.o, sc->id_base + k));
    }
    compare_tick(rp);
    r = *rp;
    if (sc->uniform == 1)
        ASSERT_U64_EQ(r.uniform_ticks, r.ticks);
    sl_space_stats st;
    sl_space_get_stats(r.s, &st);
    if (sc->uniform == 2) {
        /* Uniform at first, not once odd radii came, uniform again after the recount. */
        ASSERT(r.uniform_ticks > 16 && r.uniform_ticks < r.ticks - 30);
        ASSERT(st.last_uniform);
    }
    if (sc->compacts)
        ASSERT(st.compactions >= 2);
    if (sc->group)
        ASSERT(r.group_events > 0);
    if (sc->query)
        ASSERT(r.query_hits > 0);
    if (sc->region)
        ASSERT(r.region_events > 0);
    if (sc->rule)
        ASSERT(st.rule_calls > 0);
}

/* What an export hands out, kept to import it and to check the new space against. */
typedef struct exported {
    sl_vec ents;            /* sl_entity_info */
    sl_vec pairs;           /* uint64 watcher, target */
    sl_vec rels;            /* sl_relation_pair */
    sl_vec shown;           /* uint64 watcher, target */
} exported;

static void exp_shown(void *ud, uint64_t w, uint64_t t)
{
    uint64_t p[2] = {w, t};
    ASSERT(sl_vec_append(&((exported *)ud)->shown, p, sizeof p, 1) != SIZE_MAX);
}

static void exp_relation(void *ud, uint64_t w, uint64_t t, sl_relation k)
{
    sl_relation_pair p = {w, t, k};
    ASSERT(sl_vec_append(&((exported *)ud)->rels, &p, sizeof p, 1) != SIZE_MAX);
}

static void exp_entity(void *ud, const sl_entity_info *e)
{
    ASSERT(sl_vec_append(&((exported *)ud)->ents, e, sizeof *e, 1) != SIZE_MAX);
}

static void exp_pair(void *ud, uint64_t w, uint64_t t)
{
    uint64_t p[2] = {w, t};
    ASSERT(sl_vec_append(&((exported *)ud)->pairs, p, sizeof p, 1) != SIZE_MAX);
}

/* The space moves: exported at this tick boundary, imported into a new space (the next
 * index kind round, the current rule installed first), which replaces it. The oracle goes
 * on untouched, so every later tick checks that the move changed nothing. */
/* Every region of `from`, with its members, restored in `to` (as a handoff carries them). */
static void collect_u64(void *ud, uint64_t v)
{
    ASSERT(sl_vec_append(ud, &v, sizeof v, 1) != SIZE_MAX);
}

static void move_regions(sl_space *from, sl_space *to)
{
    sl_vec ids = {0};
    sl_space_regions_each(from, collect_u64, &ids);
    const uint64_t *id = ids.p;
    for (size_t i = 0; i < ids.n; i++) {
        sl_region g;
        uint32_t n;
        sl_vec members = {0};
        ASSERT_EQ(sl_space_get_region(from, id[i], &g, &n), 0);
        sl_space_region_members(from, id[i], collect_u64, &members);
        ASSERT_EQ(members.n, n);
        ASSERT_EQ(sl_space_restore_region(to, id[i], &g, members.p, members.n), 0);
        sl_vec_free(&members);
    }
    sl_vec_free(&ids);
}

static void handoff(run *r, const sl_space_config *cfg, uint32_t t)
{
    exported x = {0};
    ASSERT_EQ(sl_space_export(r->s, exp_entity, exp_pair, &x), 0);
    sl_space_relations_each(r->s, exp_relation, &x);
    sl_space_shown_each(r->s, exp_shown, &x);
    sl_space_stats before;
    sl_space_get_stats(r->s, &before);
    sl_space_config c2 = *cfg;
    static const sl_index_kind kinds[] = {SL_INDEX_QUADTREE, SL_INDEX_GRID, SL_INDEX_AUTO};
    c2.index = kinds[t % 3];
    sl_space *s2;
    char why[128];
    ASSERT_EQ(sl_space_new(&s2, &c2, why, sizeof why), 0);
    if (rule_ctx.gen && rule_ctx.variant != 2)
        sl_space_set_rule(s2, rule_batch, NULL);
    sl_space_state st = {x.ents.p, x.ents.n, x.rels.p, x.rels.n, x.pairs.p, x.pairs.n,
                         x.shown.p, x.shown.n, before.ticks};
    ASSERT_EQ(sl_space_import(s2, &st), 0);
    move_regions(r->s, s2);
    sl_space_stats after;
    sl_space_get_stats(s2, &after);
    ASSERT_U64_EQ(after.pairs, before.pairs);
    ASSERT_U64_EQ(after.ticks, before.ticks);
    ASSERT_U64_EQ(after.rule_calls, 0);             /* the rule is not asked again */
    ASSERT_EQ(after.entities, before.entities);
    const sl_entity_info *e = x.ents.p;
    for (size_t i = 0; i < x.ents.n; i++) {
        sl_entity_info got;
        ASSERT_EQ(sl_space_get(s2, e[i].id, &got), 0);
        ASSERT_EQ(got.sees, e[i].sees);
        ASSERT_EQ(got.candidates, e[i].candidates);
        ASSERT_EQ(got.cap, e[i].cap);
        ASSERT_EQ(got.priority, e[i].priority);
        ASSERT_EQ(got.group, e[i].group);
        ASSERT(got.z == e[i].z);
    }
    /* An export with a change pending is refused (the old space, going away anyway): a
     * touch, or a new vision group (which marks nothing dirty). */
    if (x.ents.n) {
        ASSERT_EQ(sl_space_set_group(r->s, e[0].id, e[0].group + 1), 0);
        ASSERT_EQ(sl_space_export(r->s, exp_entity, exp_pair, NULL), SL_EINVAL);
        ASSERT_EQ(sl_space_touch(r->s, e[0].id), 0);
        ASSERT_EQ(sl_space_export(r->s, exp_entity, exp_pair, NULL), SL_EINVAL);
    }
    sl_space_free(r->s);
    r->s = s2;
    sl_vec_free(&x.ents);
    sl_vec_free(&x.pairs);
    sl_vec_free(&x.rels);
    sl_vec_free(&x.shown);
}

/* One run of the scenario; the number of events, and in *sequence (when asked: then in the
 * tick order, streaming if asked) the hash of their sequence. */
static uint64_t run_once(const scenario *sc, sl_index_kind kind, sl_simd_level level,
                         uint64_t *sequence, bool stream)
{
    ASSERT_EQ(sl_simd_set(level), 0);
    sl_space_config cfg = {
        .width = sc->w, .height = sc->h, .index = kind, .cell = sc->cell,
        .hysteresis = sc->hyst, .stay = sc->stay,
        .order = sequence ? SL_ORDER_TICK : SL_ORDER_ID, .stream = stream,
        .reasons = sc->reasons, .depth = sc->depth,
    };
    run r = {.base = sc->radius, .tick_order = sequence != NULL};
    char why[128];
    ASSERT_EQ(sl_space_new(&r.s, &cfg, why, sizeof why), 0);
    r.o = sl_oracle_new(sc->w, sc->h, sc->hyst, sc->stay);
    ASSERT(r.o != NULL);
    sl_oracle_set_reasons(r.o, sc->reasons);
    sl_oracle_set_depth(r.o, sc->depth);
    sl_rng g;
    sl_rng_seed(&g, sc->seed);
    if (sc->rule) {
        rule_ctx.base = sc->id_base;
        rule_ctx.gen = calloc(sc->pool, sizeof(uint32_t));
        rule_ctx.variant = 0;
        ASSERT(rule_ctx.gen != NULL);
        sl_space_set_rule(r.s, rule_batch, NULL);
        sl_oracle_set_rule(r.o, rule_says, NULL);
    }
    for (uint32_t i = 0; i < sc->pool * 3 / 4; i++)
        one_op(&r, &g, sc);
    compare_tick(&r);
    for (uint32_t t = 0; t < sc->ticks; t++) {
        if (sc->uniform == 2)
            shape_phase(&r, sc, t);
        uint32_t ops = sc->pool / 5 + 1;
        for (uint32_t i = 0; i < ops; i++)
            one_op(&r, &g, sc);
        if (sc->rule && t % 9 == 5)
            next_rule(&r);
        if (sc->switch_index && t % 7 == 3) {
            sl_index_kind to = t % 2 ? SL_INDEX_QUADTREE : SL_INDEX_GRID;
            ASSERT_EQ(sl_space_set_index(r.s, to, t % 3 ? 0 : sc->cell * 2), 0);
        }
        compare_tick(&r);
        if (sc->handoff && t % 5 == 2)
            handoff(&r, &cfg, t);
    }
    finish(&r, sc);
    free(rule_ctx.gen);
    rule_ctx.gen = NULL;
    uint64_t events = r.events;
    if (sequence)
        *sequence = r.sequence;
    sl_vec_free(&r.got);
    sl_space_free(r.s);
    sl_oracle_free(r.o);
    return events;
}

static void run_all(const scenario *sc)
{
    static const sl_index_kind kinds[] = {SL_INDEX_GRID, SL_INDEX_QUADTREE, SL_INDEX_AUTO};
    uint64_t first = 0;
    for (unsigned k = 0; k < 3; k++) {
        for (int l = 0; l < SL_SIMD_LEVELS; l++) {
            if (!sl_simd_supported((sl_simd_level)l))
                continue;
            uint64_t ev = run_once(sc, kinds[k], (sl_simd_level)l, NULL, false);
            if (!first)
                first = ev;
            /* The same trace gives the same events whatever the index or kernel. */
            ASSERT_U64_EQ(ev, first);
            printf("%-8s %-6s %llu events\n", sl_index_kind_name(kinds[k]),
                   sl_simd_name((sl_simd_level)l), (unsigned long long)ev);
        }
    }
    ASSERT(first > 0);  /* a scenario that produces no event checks nothing */
    /* The tick order: the same events (sorted, checked against the oracle as they come),
     * and the same sequence when the run is repeated, handed over while the tick runs
     * (streaming) or not. */
    uint64_t seq[2];
    sl_simd_level best = sl_simd_best();
    for (int i = 0; i < 2; i++)
        ASSERT_U64_EQ(run_once(sc, kinds[i * 2], best, &seq[i], i == 0), first);
    uint64_t again;
    ASSERT_U64_EQ(run_once(sc, kinds[0], best, &again, false), first);
    ASSERT_U64_EQ(again, seq[0]);
    printf("tick order: %llu events, sequence %016llx\n", (unsigned long long)first,
           (unsigned long long)seq[0]);
}

/* A test of one scenario (the fields of a `scenario`), under every index and SIMD level. */
#define SCENARIO_TEST(name, ...)                                                             \
    TEST_IMPL(name)                                                                          \
    {                                                                                        \
        scenario sc_ = {__VA_ARGS__};                                                        \
        run_all(&sc_);                                                                       \
        return 0;                                                                            \
    }

TEST_IMPL(oracle_uniform)
{
    scenario sc = {.seed = 11, .pool = 1200, .ticks = 30, .w = 1000, .h = 800, .radius = 50,
                   .step = 5, .pos = POS_UNIFORM, .rad = RAD_FIXED, .churn = 20, .uniform = 1};
    run_all(&sc);
    /* Ids too wide for packed event keys: the uniform judge with the general settling. */
    sc.id_base = UINT64_MAX - sc.pool + 1;
    sc.ticks = 10;
    run_all(&sc);
    /* Ticks of short moves only: every entity takes the moved pass, none the full one. */
    sc.id_base = 0;
    sc.ticks = 20;
    sc.moves_only = true;
    run_all(&sc);
    return 0;
}

/* All alike, then odd radii (0 and larger) among them, then all alike again at another
 * radius: the uniform judging must stop and start at the right ticks. */
SCENARIO_TEST(oracle_shape_phases, .seed = 27, .pool = 700, .ticks = 72, .w = 600, .h = 600,
              .radius = 30, .step = 6, .pos = POS_CLUSTER, .rad = RAD_FIXED, .churn = 20,
              .uniform = 2)

SCENARIO_TEST(oracle_clustered, .seed = 12, .pool = 1000, .ticks = 25, .w = 1000, .h = 1000,
              .radius = 30, .step = 8, .pos = POS_CLUSTER, .rad = RAD_FIXED, .churn = 20)

/* Integer positions and radii: d2 == r2 exactly, all the time. */
SCENARIO_TEST(oracle_lattice_ties, .seed = 13, .pool = 500, .ticks = 30, .w = 40, .h = 40,
              .cell = 4, .radius = 6, .pos = POS_LATTICE, .rad = RAD_LATTICE, .churn = 30)

SCENARIO_TEST(oracle_edges, .seed = 14, .pool = 600, .ticks = 30, .w = 256, .h = 128, .cell = 16,
              .radius = 16, .pos = POS_EDGES, .rad = RAD_FIXED, .churn = 20)

/* 0, tiny, ordinary, big (6x) and wider-than-the-map radii together. */
SCENARIO_TEST(oracle_radii, .seed = 15, .pool = 500, .ticks = 30, .w = 600, .h = 600, .cell = 20,
              .radius = 20, .step = 10, .pos = POS_UNIFORM, .rad = RAD_MIXED, .churn = 30)

/* Three quarters of all coordinates on one spot: crowds in one cell and one leaf. */
SCENARIO_TEST(oracle_spot, .seed = 16, .pool = 400, .ticks = 25, .w = 500, .h = 500, .radius = 10,
              .step = 3, .pos = POS_SPOT, .rad = RAD_MIXED, .churn = 30)

SCENARIO_TEST(oracle_hysteresis, .seed = 17, .pool = 800, .ticks = 40, .w = 500, .h = 500,
              .hyst = 7.5f, .radius = 25, .step = 6, .pos = POS_UNIFORM, .rad = RAD_FIXED,
              .churn = 40, .stay = true)

SCENARIO_TEST(oracle_layers, .seed = 18, .pool = 800, .ticks = 30, .w = 500, .h = 500,
              .radius = 40, .step = 6, .pos = POS_UNIFORM, .rad = RAD_FIXED, .layers = true,
              .churn = 20, .hyst = 3)

/* Ids just below 2^64, heavy remove / re-add in the same tick, invalid operations. */
SCENARIO_TEST(oracle_churn_high_ids, .seed = 19, .pool = 600, .id_base = UINT64_MAX - 599,
              .ticks = 40, .w = 400, .h = 400, .radius = 30, .step = 5, .pos = POS_UNIFORM,
              .rad = RAD_MIXED, .churn = 250, .invalid = 100, .hyst = 4, .stay = true)

SCENARIO_TEST(oracle_switch_index, .seed = 20, .pool = 700, .ticks = 30, .w = 700, .h = 500,
              .cell = 25, .radius = 25, .step = 6, .pos = POS_CLUSTER, .rad = RAD_MIXED,
              .churn = 30, .hyst = 2, .switch_index = true, .layers = true)

/* Integer positions, radii and hysteresis: d2 == (r + h)^2 exactly, all the time. */
SCENARIO_TEST(oracle_lattice_hysteresis, .seed = 21, .pool = 500, .ticks = 40, .w = 40, .h = 40,
              .cell = 4, .radius = 6, .hyst = 2, .pos = POS_LATTICE, .rad = RAD_LATTICE,
              .churn = 30, .stay = true, .layers = true)

/* Enough entities to be compacted (renumbered in spatial order), and enough churn to be
 * compacted again and again, with big watchers, hysteresis and re-added ids. */
SCENARIO_TEST(oracle_compaction, .seed = 22, .pool = 2400, .ticks = 20, .w = 1200, .h = 1200,
              .radius = 30, .step = 20, .pos = POS_CLUSTER, .rad = RAD_MIXED, .churn = 300,
              .hyst = 3, .stay = true, .layers = true, .compacts = true)

/* Entities with their own hysteresis (the space's back now and then) over a space with one
 * and over a space without: held pairs follow their watcher's; big watchers, layers, stays,
 * churn, invalid values, and the uniform paths given up and taken again. */
SCENARIO_TEST(oracle_entity_hysteresis, .seed = 31, .pool = 700, .ticks = 40, .w = 500,
              .h = 500, .hyst = 5, .radius = 25, .step = 6, .pos = POS_UNIFORM,
              .rad = RAD_MIXED, .churn = 40, .invalid = 30, .stay = true, .layers = true,
              .own_hyst = true)
SCENARIO_TEST(oracle_entity_hysteresis_only, .seed = 32, .pool = 700, .ticks = 40, .w = 500,
              .h = 500, .radius = 25, .step = 6, .pos = POS_UNIFORM, .rad = RAD_FIXED,
              .churn = 20, .own_hyst = true)
/* On a lattice (exact ties at r + h), compacted, and carried across exports and imports. */
SCENARIO_TEST(oracle_entity_hysteresis_lattice, .seed = 33, .pool = 500, .ticks = 40, .w = 40,
              .h = 40, .cell = 4, .radius = 6, .hyst = 1, .pos = POS_LATTICE,
              .rad = RAD_LATTICE, .churn = 30, .stay = true, .own_hyst = true, .handoff = true)
SCENARIO_TEST(oracle_entity_hysteresis_compaction, .seed = 34, .pool = 2400, .ticks = 14,
              .w = 1200, .h = 1200, .radius = 30, .step = 20, .pos = POS_CLUSTER,
              .rad = RAD_MIXED, .churn = 300, .compacts = true, .own_hyst = true)

/* Watchers with LOD bands: stays only on their due ticks, over hysteresis, layers, churn (a
 * removed entity loses its bands), big radii, compaction, exports and imports. */
SCENARIO_TEST(oracle_lod, .seed = 35, .pool = 700, .ticks = 40, .w = 500, .h = 500,
              .hyst = 3, .radius = 25, .step = 6, .pos = POS_UNIFORM, .rad = RAD_MIXED,
              .churn = 40, .stay = true, .layers = true, .lod = true, .own_hyst = true)
/* Ids just below 2^64: events as 24-byte records (no packed keys), w + t wrapping. */
SCENARIO_TEST(oracle_lod_high_ids, .seed = 37, .pool = 500, .id_base = UINT64_MAX - 499,
              .ticks = 30, .w = 400, .h = 400, .radius = 30, .step = 5, .pos = POS_UNIFORM,
              .rad = RAD_MIXED, .churn = 100, .stay = true, .lod = true)
SCENARIO_TEST(oracle_lod_lattice, .seed = 36, .pool = 500, .ticks = 40, .w = 40, .h = 40,
              .cell = 4, .radius = 6, .pos = POS_LATTICE, .rad = RAD_LATTICE, .churn = 30,
              .stay = true, .lod = true, .handoff = true)

/* Pair relations (forced and never) over the whole map: forced pairs seen from anywhere,
 * their stays as ends move, relations cleared (held by hysteresis after), dropped with an
 * entity (and its id re-added), with layers, big radii, a rule, compaction, and exports and
 * imports. */
SCENARIO_TEST(oracle_relations, .seed = 38, .pool = 600, .ticks = 40, .w = 600, .h = 600,
              .hyst = 3, .radius = 25, .step = 8, .pos = POS_UNIFORM, .rad = RAD_MIXED,
              .churn = 40, .invalid = 10, .stay = true, .layers = true, .relate = 60)
SCENARIO_TEST(oracle_relations_rule, .seed = 39, .pool = 500, .ticks = 40, .w = 400,
              .h = 400, .radius = 30, .step = 6, .pos = POS_CLUSTER, .rad = RAD_FIXED,
              .churn = 30, .rule = true, .relate = 60, .own_hyst = true)
SCENARIO_TEST(oracle_relations_lattice, .seed = 40, .pool = 400, .ticks = 40, .w = 40,
              .h = 40, .cell = 4, .radius = 6, .hyst = 1, .pos = POS_LATTICE,
              .rad = RAD_LATTICE, .churn = 30, .stay = true, .relate = 80, .handoff = true)
SCENARIO_TEST(oracle_relations_compaction, .seed = 41, .pool = 2400, .ticks = 10, .w = 1200,
              .h = 1200, .radius = 30, .step = 20, .pos = POS_CLUSTER, .rad = RAD_MIXED,
              .churn = 300, .compacts = true, .relate = 30)

/* Always-relevant entities (a few at a time) seen from anywhere, with relations (a never
 * hides one), stays, layers, hysteresis, churn (removed and re-added), big radii, a rule,
 * compaction, and exports and imports. */
SCENARIO_TEST(oracle_always, .seed = 42, .pool = 600, .ticks = 40, .w = 600, .h = 600,
              .hyst = 3, .radius = 25, .step = 8, .pos = POS_UNIFORM, .rad = RAD_MIXED,
              .churn = 40, .stay = true, .layers = true, .always = 8, .relate = 30)
SCENARIO_TEST(oracle_always_rule, .seed = 43, .pool = 500, .ticks = 40, .w = 400, .h = 400,
              .radius = 30, .step = 6, .pos = POS_CLUSTER, .rad = RAD_FIXED, .churn = 30,
              .rule = true, .always = 8)
SCENARIO_TEST(oracle_always_lattice, .seed = 44, .pool = 400, .ticks = 40, .w = 40, .h = 40,
              .cell = 4, .radius = 6, .hyst = 1, .pos = POS_LATTICE, .rad = RAD_LATTICE,
              .churn = 30, .stay = true, .always = 10, .handoff = true)

/* Leaves say why: removed (also when the id comes back), never, layer, range (radius 0,
 * past the hysteresis band, a re-added watcher inside it), rule; with stays, big radii,
 * own hysteresis, always-relevant entities, and exports and imports; on a lattice too
 * (exact ties at r and at r + h). */
SCENARIO_TEST(oracle_reasons, .seed = 45, .pool = 600, .ticks = 40, .w = 500, .h = 500,
              .hyst = 4, .radius = 25, .step = 8, .pos = POS_UNIFORM, .rad = RAD_MIXED,
              .churn = 60, .invalid = 10, .stay = true, .layers = true, .rule = true,
              .relate = 30, .always = 5, .own_hyst = true, .reasons = true)
SCENARIO_TEST(oracle_reasons_lattice, .seed = 46, .pool = 400, .ticks = 40, .w = 40, .h = 40,
              .cell = 4, .radius = 6, .hyst = 1, .pos = POS_LATTICE, .rad = RAD_LATTICE,
              .churn = 40, .layers = true, .relate = 30, .handoff = true, .reasons = true)

/* Nearest-N with priority: caps (lifted and set again, with margins) and priorities on
 * watchers among forced, never and always-relevant pairs, hysteresis (own and the space's),
 * a rule, churn (a capped watcher or a shown target removed and re-added in one tick), stays
 * with LOD bands, and leave reasons; on a lattice too (exact ties in distance, at the margin
 * and at r + h). */
SCENARIO_TEST(oracle_caps, .seed = 47, .pool = 600, .ticks = 40, .w = 400, .h = 400,
              .hyst = 3, .radius = 30, .step = 8, .pos = POS_UNIFORM, .rad = RAD_MIXED,
              .churn = 40, .invalid = 10, .stay = true, .layers = true, .cap = 120,
              .handoff = true)
SCENARIO_TEST(oracle_caps_relevance, .seed = 48, .pool = 500, .ticks = 40, .w = 400,
              .h = 400, .hyst = 3, .radius = 30, .step = 8, .pos = POS_CLUSTER,
              .rad = RAD_MIXED, .churn = 40, .stay = true, .layers = true, .rule = true,
              .relate = 40, .always = 6, .own_hyst = true, .lod = true, .cap = 120,
              .reasons = true)
/* A moved watcher's far always-relevant or forced target once got two stays in the tick
 * order (the kernel reported the lane for the other role, and always_stays judged it too). */
SCENARIO_TEST(oracle_always_far_stays, .seed = 48, .pool = 500, .ticks = 40, .w = 400,
              .h = 400, .hyst = 3, .radius = 30, .step = 8, .pos = POS_CLUSTER,
              .rad = RAD_MIXED, .churn = 40, .stay = true, .layers = true, .rule = true,
              .relate = 40, .always = 6, .own_hyst = true, .lod = true, .reasons = true)
SCENARIO_TEST(oracle_caps_lattice, .seed = 49, .pool = 400, .ticks = 40, .w = 40, .h = 40,
              .cell = 4, .radius = 6, .hyst = 1, .pos = POS_LATTICE, .rad = RAD_LATTICE,
              .churn = 30, .relate = 20, .always = 5, .cap = 150, .reasons = true,
              .handoff = true)
SCENARIO_TEST(oracle_caps_compaction, .seed = 50, .pool = 2400, .ticks = 12, .w = 1200,
              .h = 1200, .radius = 40, .step = 10, .pos = POS_CLUSTER, .rad = RAD_MIXED,
              .churn = 300, .compacts = true, .cap = 60)

/* Vision groups: members joining, leaving and changing groups, removed and re-added (also in
 * the tick that moves them), among caps, relations, always-relevant entities, hysteresis and
 * a rule, with leave reasons; exports and imports; on a lattice; through compactions. */
SCENARIO_TEST(oracle_groups, .seed = 51, .pool = 600, .ticks = 40, .w = 400, .h = 400,
              .hyst = 3, .radius = 30, .step = 8, .pos = POS_CLUSTER, .rad = RAD_MIXED,
              .churn = 40, .invalid = 10, .stay = true, .layers = true, .rule = true,
              .relate = 30, .always = 5, .cap = 60, .group = 150, .reasons = true,
              .handoff = true)
SCENARIO_TEST(oracle_groups_lattice, .seed = 52, .pool = 400, .ticks = 40, .w = 40, .h = 40,
              .cell = 4, .radius = 6, .hyst = 1, .pos = POS_LATTICE, .rad = RAD_LATTICE,
              .churn = 30, .cap = 60, .group = 200, .reasons = true, .handoff = true)
SCENARIO_TEST(oracle_groups_compaction, .seed = 53, .pool = 2400, .ticks = 10, .w = 1200,
              .h = 1200, .radius = 40, .step = 10, .pos = POS_CLUSTER, .rad = RAD_MIXED,
              .churn = 300, .compacts = true, .group = 100)

/* Regions: circles, rectangles and polygons (self-crossing ones too) set, reshaped and
 * removed among moves, far jumps, removed and re-added ids and layer changes; exact ties on
 * a lattice (entities on edges and vertices); exports and imports (regions restored with
 * their members); a compacting space and index switches. */
SCENARIO_TEST(oracle_regions, .seed = 57, .pool = 700, .ticks = 40, .w = 500, .h = 500,
              .radius = 25, .step = 8, .pos = POS_CLUSTER, .rad = RAD_MIXED, .churn = 40,
              .invalid = 10, .layers = true, .switch_index = true, .region = 30,
              .handoff = true)
SCENARIO_TEST(oracle_regions_lattice, .seed = 58, .pool = 400, .ticks = 40, .w = 40, .h = 40,
              .cell = 4, .radius = 6, .pos = POS_LATTICE, .rad = RAD_LATTICE, .churn = 30,
              .walk = true, .layers = true, .region = 40)
SCENARIO_TEST(oracle_regions_compaction, .seed = 59, .pool = 2400, .ticks = 10, .w = 1200,
              .h = 1200, .radius = 40, .step = 10, .pos = POS_CLUSTER, .rad = RAD_MIXED,
              .churn = 300, .compacts = true, .region = 5)

/* Queries between changes, against brute force: circles and rectangles, layers, limits,
 * over churn (removed and re-added ids), far jumps, exact ties on a lattice, a compacting
 * space and index switches. */
SCENARIO_TEST(oracle_queries, .seed = 54, .pool = 700, .ticks = 30, .w = 500, .h = 500,
              .radius = 25, .step = 8, .pos = POS_CLUSTER, .rad = RAD_MIXED, .churn = 40,
              .invalid = 10, .layers = true, .switch_index = true, .query = 40)
SCENARIO_TEST(oracle_queries_lattice, .seed = 55, .pool = 400, .ticks = 30, .w = 40, .h = 40,
              .cell = 4, .radius = 6, .pos = POS_LATTICE, .rad = RAD_LATTICE, .churn = 30,
              .query = 40)
SCENARIO_TEST(oracle_queries_compaction, .seed = 56, .pool = 2400, .ticks = 10, .w = 1200,
              .h = 1200, .radius = 40, .step = 10, .pos = POS_CLUSTER, .rad = RAD_MIXED,
              .churn = 300, .compacts = true, .query = 5)

TEST_IMPL(oracle_sparse_seams)
{
    /* Huge sparse maps at fine cells, where the grid's memory follows its entities: a few
     * clusters on the edges of its tiles and of the directory's pages, walking across them
     * in unit steps (and jumping between clusters), with hysteresis and churn, so that
     * tiles, pages and pool entries are made and freed all the time. */
    scenario sc = {.seed = 31, .pool = 900, .ticks = 40, .w = 2048, .h = 2048, .cell = 1,
                   .radius = 4, .hyst = 1, .pos = POS_SEAMS, .rad = RAD_FIXED, .churn = 20,
                   .walk = true, .seam = 64, .spread = 6};
    run_all(&sc);           /* 2048 x 2048 cells: 64 x 1 tiles, pages of 8 rows */
    sc.seed = 32;
    sc.w = sc.h = 8192;
    sc.cell = 4;
    sc.radius = 12;
    sc.seam = 256;
    sc.spread = 20;
    run_all(&sc);           /* the same cells at side 4 */
    sc.seed = 33;
    sc.w = 20;
    sc.h = 100000;
    sc.cell = 1;
    sc.radius = 4;
    sc.seam = 512;
    sc.spread = 8;
    run_all(&sc);           /* a corridor: tiles 32 x 2, pages of 512 rows */
    return 0;
}

TEST_IMPL(oracle_lattice_walk)
{
    /* Integer positions, radii and hysteresis, moved by integer steps: the moved-entity
     * judge meets exact ties at r and r + h, before and after, in both roles. */
    scenario sc = {.seed = 23, .pool = 600, .ticks = 60, .w = 48, .h = 48, .cell = 8,
                   .radius = 7, .hyst = 2, .pos = POS_LATTICE, .rad = RAD_LATTICE,
                   .churn = 10, .walk = true, .layers = true};
    run_all(&sc);
    sc.stay = true;
    sc.seed = 24;
    run_all(&sc);
    return 0;
}

/* Dense, small cells, and moves up to just under the quarter-cell bound of the moved
 * pass: partners leave the search box of a pass unless it allows for their moves. */
SCENARIO_TEST(oracle_fast_walkers, .seed = 25, .pool = 2400, .ticks = 40, .w = 200, .h = 200,
              .cell = 10, .radius = 10, .hyst = 1, .step = 1.76f, .pos = POS_UNIFORM,
              .rad = RAD_FIXED, .churn = 5)

/* A rule on top of distance, with hysteresis, stays, layers and churn. */
SCENARIO_TEST(oracle_rule, .seed = 25, .pool = 900, .ticks = 40, .w = 600, .h = 600, .radius = 40,
              .hyst = 6, .step = 6, .pos = POS_UNIFORM, .rad = RAD_MIXED, .layers = true,
              .stay = true, .churn = 30, .rule = true)

/* A space exported and imported into a new one every five ticks, with every kind of pair
 * state a tick leaves behind: hysteresis-held pairs (exact ties at r + h among them),
 * rule-denied pairs, layers, stays, churn and ids near 2^64. */
TEST_IMPL(oracle_handoff)
{
    scenario sc = {.seed = 41, .pool = 900, .ticks = 40, .w = 600, .h = 600, .radius = 40,
                   .hyst = 6, .step = 6, .pos = POS_UNIFORM, .rad = RAD_MIXED, .layers = true,
                   .stay = true, .churn = 30, .rule = true, .handoff = true};
    run_all(&sc);
    scenario ties = {.seed = 42, .pool = 500, .ticks = 40, .w = 40, .h = 40, .cell = 4,
                     .radius = 6, .hyst = 2, .pos = POS_LATTICE, .rad = RAD_LATTICE,
                     .churn = 10, .walk = true, .stay = true, .layers = true, .handoff = true};
    run_all(&ties);
    scenario high = {.seed = 43, .pool = 600, .id_base = UINT64_MAX - 599, .ticks = 30,
                     .w = 400, .h = 400, .radius = 30, .step = 5, .pos = POS_UNIFORM,
                     .rad = RAD_MIXED, .churn = 250, .invalid = 100, .hyst = 4, .stay = true,
                     .rule = true, .handoff = true};
    run_all(&high);
    return 0;
}

/* A rule in a crowd on one spot, with far jumps, compaction and index switches. */
/* All alike, short moves, a rule (with touches and swaps): the kernels judge the uniform
 * way, the settling asks the rule. */
SCENARIO_TEST(oracle_rule_uniform, .seed = 28, .pool = 1500, .ticks = 40, .w = 800, .h = 800,
              .radius = 40, .step = 5, .pos = POS_UNIFORM, .rad = RAD_FIXED, .churn = 10,
              .rule = true)

SCENARIO_TEST(oracle_rule_crowd, .seed = 26, .pool = 700, .ticks = 30, .w = 512, .h = 512,
              .radius = 30, .step = 40, .pos = POS_SPOT, .rad = RAD_FIXED, .churn = 40,
              .switch_index = true, .rule = true)

/* 3D spaces (spheres): heights like x and y, moves up and down only, moves that keep the
 * height, invalid heights; every index and SIMD level, the uniform judge (all alike) and
 * the general one (mixed radii, layers, hysteresis, stays, a rule), exact ties on a lattice,
 * caps, LOD bands, relations, always, reasons, queries (spheres and boxes), handoffs and
 * compaction. */
SCENARIO_TEST(oracle_3d_uniform, .seed = 71, .pool = 1200, .ticks = 30, .w = 1000, .h = 800,
              .depth = 120, .radius = 50, .step = 5, .pos = POS_UNIFORM, .rad = RAD_FIXED,
              .churn = 20, .uniform = 1)
SCENARIO_TEST(oracle_3d, .seed = 72, .pool = 900, .ticks = 40, .w = 600, .h = 600, .depth = 80,
              .radius = 40, .hyst = 6, .step = 6, .pos = POS_UNIFORM, .rad = RAD_MIXED,
              .layers = true, .stay = true, .churn = 30, .invalid = 20, .rule = true,
              .switch_index = true, .query = 20, .region = 10)
SCENARIO_TEST(oracle_3d_lattice, .seed = 73, .pool = 500, .ticks = 50, .w = 40, .h = 40,
              .depth = 16, .cell = 4, .radius = 6, .hyst = 2, .pos = POS_LATTICE,
              .rad = RAD_LATTICE, .churn = 10, .walk = true, .stay = true, .layers = true,
              .handoff = true, .query = 20, .cap = 20, .lod = true, .relate = 20,
              .always = 10, .reasons = true)
SCENARIO_TEST(oracle_3d_compaction, .seed = 74, .pool = 2400, .ticks = 10, .w = 1200,
              .h = 1200, .depth = 200, .radius = 40, .step = 10, .pos = POS_CLUSTER,
              .rad = RAD_MIXED, .churn = 300, .compacts = true, .group = 10, .query = 5)
