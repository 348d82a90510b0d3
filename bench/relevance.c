/*
 * relevance.c: the relevance controls' cost (see relevance.h). Five spaces tick in lockstep
 * on the same W1 moves with stays on: plain (space hysteresis 2); every entity with its own
 * hysteresis 2 over a space without (the same visible pairs, so the same events: checked
 * every tick); plain with LOD bands on every watcher (30:1, 80:2, beyond: 4); plain with a
 * party of 5 for every 5 entities (each member forced to see the 4 others: 4 relations an
 * entity, anywhere on the map); plain with 4 always-relevant entities (moving as the rest);
 * plain with a cap of 32 on every watcher, and with a cap of 8 (both with a margin of 2, and
 * a priority of 1 on every 10th entity); plain with every entity in one of 4 vision groups
 * (the group events counted too). Reported as median tick times and their ratios to the plain run.
 */
#include "relevance.h"

#include "base/clock.h"
#include "base/hash.h"
#include "engine/oracle.h"
#include "engine/space.h"
#include "util.h"
#include "workload.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rrun {
    sl_space *s;
    double *ms;
    uint64_t hash, events;
} rrun;

static void rsink(void *ud, const sl_event *ev, size_t n)
{
    rrun *r = ud;
    r->hash = bench_hash_events(r->hash, ev, n);
    r->events += n;
}

enum { RUNS = 8 };
static const char *const run_name[RUNS] = {
    "plain", "own hysteresis 2 on every entity", "LOD bands 30:1 80:2 beyond:4 on every watcher",
    "parties of 5 (4 forced pairs an entity)", "4 always-relevant entities",
    "a cap of 32 on every watcher", "a cap of 8 on every watcher",
    "4 vision groups (every entity a member)"};

/* kind 0: plain; 1: own hysteresis; 2: LOD bands; 3: parties; 4: always relevant; 5, 6:
 * caps of 32 and 8 (margin 2; priority 1 on every 10th entity); 7: 4 vision groups. */
static int open_rrun(rrun *r, const workload *w, int kind, uint32_t ticks)
{
    static const sl_lod_band bands[3] = {{30, 1}, {80, 2}, {1e9f, 4}};
    memset(r, 0, sizeof *r);
    sl_space_config cfg = {.width = w->width, .height = w->height, .stay = true,
                           .hysteresis = kind == 1 ? 0 : 2};
    char why[256];
    if (sl_space_new(&r->s, &cfg, why, sizeof why))
        return 1;
    r->ms = calloc(ticks, sizeof(double));
    for (uint32_t i = 0; i < w->n; i++)
        if (sl_space_add(r->s, i + 1, w->x[i], w->y[i], w->radius, 0, ~0u) ||
            (kind == 1 && sl_space_set_hysteresis(r->s, i + 1, 2)) ||
            (kind == 2 && sl_space_set_lod(r->s, i + 1, bands, 3)) ||
            (kind == 4 && i < 4 && sl_space_set_always(r->s, i + 1, true)) ||
            (kind >= 5 && kind <= 6 && sl_space_set_priority(r->s, i + 1, i % 10 == 0)) ||
            (kind == 5 && sl_space_set_cap(r->s, i + 1, 32, 2)) ||
            (kind == 6 && sl_space_set_cap(r->s, i + 1, 8, 2)) ||
            (kind == 7 && sl_space_set_group(r->s, i + 1, i % 4 + 1)))
            return 1;
    for (uint32_t i = 0; kind == 3 && i < w->n; i++)
        for (uint32_t k = i / 5 * 5; k < i / 5 * 5 + 5 && k < w->n; k++)
            if (k != i && sl_space_relate(r->s, i + 1, k + 1, SL_REL_FORCE))
                return 1;
    return r->ms == NULL;
}

static double rstep(rrun *r, const workload *w)
{
    double t0 = sl_now_ms();
    sl_space_move_many(r->s, w->moves, w->nmoves, NULL, NULL);
    r->hash = SL_FNV1A64_BASIS;
    if (sl_space_tick(r->s, rsink, r)) {
        fprintf(stderr, "sightline-bench: tick failed\n");
        exit(1);
    }
    size_t ng;
    sl_space_group_events(r->s, &ng);
    r->events += ng;
    return sl_now_ms() - t0;
}

int bench_relevance(uint32_t n, uint32_t ticks, uint64_t seed, bool json)
{
    workload w;
    if (!wl_init(&w, WL_W1, n, seed))
        return 1;
    rrun r[RUNS];
    for (int k = 0; k < RUNS; k++)
        if (open_rrun(&r[k], &w, k, ticks))
            return 1;
    for (int k = 0; k < RUNS; k++)
        rstep(&r[k], &w);
    bool agree = r[0].hash == r[1].hash;
    uint64_t ev0[RUNS];
    for (int k = 0; k < RUNS; k++)
        ev0[k] = r[k].events;
    for (uint32_t t = 0; t < ticks; t++) {
        wl_next_tick(&w);
        for (int k = 0; k < RUNS; k++)
            r[k].ms[t] = rstep(&r[k], &w);
        agree &= r[0].hash == r[1].hash;
    }
    double med[RUNS], ev[RUNS];
    for (int k = 0; k < RUNS; k++) {
        med[k] = bench_median(r[k].ms, ticks);
        ev[k] = (double)(r[k].events - ev0[k]) / ticks;
    }
    if (json) {
        printf("{\"workload\":\"relevance\",\"entities\":%u,\"ticks\":%u,\"runs\":[", n,
               ticks);
        for (int k = 0; k < RUNS; k++)
            printf("%s{\"run\":\"%s\",\"median_ms\":%.4f,\"ratio\":%.3f,\"events_per_tick\":%.0f}",
                   k ? "," : "", run_name[k], med[k], med[k] / med[0], ev[k]);
        printf("],\"own_hysteresis_agrees\":%s}\n", agree ? "true" : "false");
    } else {
        printf("relevance N=%u ticks=%u seed=%llu (W1 with stays, space hysteresis 2)\n", n,
               ticks, (unsigned long long)seed);
        for (int k = 0; k < RUNS; k++)
            printf("  %-48s %8.3f ms  %.2fx  %9.0f events a tick\n", run_name[k], med[k],
                   med[k] / med[0], ev[k]);
        printf("  own hysteresis: the same events as plain: %s\n", agree ? "yes" : "NO");
    }
    for (int k = 0; k < RUNS; k++) {
        sl_space_free(r[k].s);
        free(r[k].ms);
    }
    wl_free(&w);
    return agree ? 0 : 1;
}

/* The next number of a xorshift64 generator (the queries' and regions' places). */
static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/*
 * Queries (issue 18): W1 ticks, and after each, 10,000 circle queries of r = 50 and 10,000
 * rectangles of 100 x 100 at random points (xorshift from the seed), timed per query; the
 * first 20 of each tick are checked against the brute-force oracle (same hits, same order).
 */
int bench_queries(uint32_t n, uint32_t ticks, uint64_t seed, bool json)
{
    enum { Q = 10000, CHECKED = 20 };
    workload w;
    if (!wl_init(&w, WL_W1, n, seed))
        return 1;
    sl_space_config cfg = {.width = w.width, .height = w.height};
    sl_space *s;
    char why[256];
    sl_oracle *o = sl_oracle_new(w.width, w.height, 0, false);
    if (!o || sl_space_new(&s, &cfg, why, sizeof why))
        return 1;
    for (uint32_t i = 0; i < w.n; i++)
        if (sl_space_add(s, i + 1, w.x[i], w.y[i], w.radius, 0, ~0u) ||
            sl_oracle_add(o, i + 1, w.x[i], w.y[i], w.radius, 0, ~0u))
            return 1;
    double *ms[2] = {calloc(ticks, sizeof(double)), calloc(ticks, sizeof(double))};
    static sl_query qs[Q];
    uint64_t hits[2] = {0, 0}, rng = seed * 0x9E3779B97F4A7C15ULL | 1;
    bool agree = ms[0] && ms[1];
    for (uint32_t t = 0; agree && t < ticks; t++) {
        wl_next_tick(&w);
        sl_space_move_many(s, w.moves, w.nmoves, NULL, NULL);
        for (size_t i = 0; i < w.nmoves; i++)
            sl_oracle_move(o, w.moves[i].id, w.moves[i].x, w.moves[i].y);
        sl_space_tick(s, NULL, NULL);
        for (int k = 0; k < 2; k++) {
            for (uint32_t q = 0; q < Q; q++) {
                xorshift(&rng);
                float x = (float)(rng & 0xffff) / 65536.0f * w.width;
                float y = (float)((rng >> 16) & 0xffff) / 65536.0f * w.height;
                qs[q] = (sl_query){.x = x, .y = y, .r = 50, .x1 = x + 100, .y1 = y + 100,
                                   .rect = k == 1, .mask = ~0u};
            }
            const sl_query_hit *a, *b;
            size_t na, nb;
            double t0 = sl_now_ms();
            for (uint32_t q = 0; q < Q; q++) {
                sl_space_query(s, &qs[q], &a, &na);
                hits[k] += na;
            }
            ms[k][t] = sl_now_ms() - t0;
            for (uint32_t q = 0; q < CHECKED; q++) {
                sl_space_query(s, &qs[q], &a, &na);
                sl_oracle_query(o, &qs[q], &b, &nb);
                agree &= na == nb;
                for (size_t i = 0; agree && i < na; i++)
                    agree &= a[i].id == b[i].id;
            }
        }
    }
    double ns[2] = {bench_median(ms[0], ticks) * 1e6 / Q, bench_median(ms[1], ticks) * 1e6 / Q};
    double per[2] = {(double)hits[0] / ((double)ticks * Q), (double)hits[1] / ((double)ticks * Q)};
    if (json)
        printf("{\"workload\":\"queries\",\"entities\":%u,\"ticks\":%u,\"circle_ns\":%.1f,"
               "\"circle_hits\":%.2f,\"rect_ns\":%.1f,\"rect_hits\":%.2f,\"agree\":%s}\n", n,
               ticks, ns[0], per[0], ns[1], per[1], agree ? "true" : "false");
    else
        printf("queries N=%u ticks=%u seed=%llu (W1; %d a tick of each, after the tick)\n"
               "  circle r = 50:     %8.1f ns a query, %.2f hits\n"
               "  rectangle 100x100: %8.1f ns a query, %.2f hits\n"
               "  the oracle agrees (20 of each a tick): %s\n", n, ticks,
               (unsigned long long)seed, Q, ns[0], per[0], ns[1], per[1], agree ? "yes" : "NO");
    free(ms[0]);
    free(ms[1]);
    sl_space_free(s);
    sl_oracle_free(o);
    wl_free(&w);
    return agree ? 0 : 1;
}

/*
 * Regions (issue 18): W1 ticks on two spaces in lockstep, plain and with 1,000 regions
 * (a third circles of radius 20-60, a third rectangles up to 120 x 120, a third octagons of
 * radius 20-60; at random places, xorshift from the seed), timed per tick; the first
 * CHECKED ticks' region events are checked against the brute-force oracle (each of those
 * ticks costs it 50 M containment tests at 50k).
 */
int bench_regions(uint32_t n, uint32_t ticks, uint64_t seed, bool json)
{
    enum { REGIONS = 1000, CHECKED = 2 };
    workload w;
    if (!wl_init(&w, WL_W1, n, seed))
        return 1;
    sl_space_config cfg = {.width = w.width, .height = w.height};
    sl_space *s[2];
    char why[256];
    sl_oracle *o = sl_oracle_new(w.width, w.height, 0, false);
    if (!o || sl_space_new(&s[0], &cfg, why, sizeof why) ||
        sl_space_new(&s[1], &cfg, why, sizeof why))
        return 1;
    for (uint32_t i = 0; i < w.n; i++)
        for (int k = 0; k < 3; k++)
            if (k < 2 ? sl_space_add(s[k], i + 1, w.x[i], w.y[i], w.radius, 0, ~0u)
                      : sl_oracle_add(o, i + 1, w.x[i], w.y[i], 0, 0, ~0u))  /* (no pairs) */
                return 1;
    uint64_t rng = seed * 0x9E3779B97F4A7C15ULL | 1;
    for (uint32_t g = 0; g < REGIONS; g++) {
        float v[4];
        for (int k = 0; k < 4; k++)
            v[k] = (float)(xorshift(&rng) & 0xffffff) / 16777216.0f;
        float x = v[0] * w.width, y = v[1] * w.height, r = 20 + 40 * v[2], xy[16];
        for (int k = 0; k < 8; k++) {
            xy[2 * k] = x + r * cosf(0.7853982f * (float)k);
            xy[2 * k + 1] = y + r * sinf(0.7853982f * (float)k);
        }
        sl_region reg = {.kind = (sl_region_kind)(g % 3), .x = x, .y = y, .r = r,
                         .x1 = x + 120 * v[2], .y1 = y + 120 * v[3], .xy = xy, .n = 8,
                         .mask = ~0u};
        if (sl_space_set_region(s[1], g + 1, &reg) || sl_oracle_set_region(o, g + 1, &reg))
            return 1;
    }
    double *ms[2] = {calloc(ticks + 1, sizeof(double)), calloc(ticks + 1, sizeof(double))};
    uint64_t revents = 0, members = 0;
    bool agree = ms[0] && ms[1];
    for (uint32_t t = 0; agree && t <= ticks; t++) {      /* (tick 0: the bulk add) */
        if (t) {
            wl_next_tick(&w);
            for (size_t i = 0; i < w.nmoves && t <= CHECKED; i++)
                sl_oracle_move(o, w.moves[i].id, w.moves[i].x, w.moves[i].y);
        }
        for (int k = 0; k < 2; k++) {
            double t0 = sl_now_ms();
            if (t)
                sl_space_move_many(s[k], w.moves, w.nmoves, NULL, NULL);
            sl_space_tick(s[k], NULL, NULL);
            ms[k][t] = sl_now_ms() - t0;
        }
        size_t ne;
        const sl_region_event *ev = sl_space_region_events(s[1], &ne);
        if (t)
            revents += ne;
        else
            members = ne;
        if (t <= CHECKED) {
            const sl_event *pe;
            const sl_region_event *want;
            sl_oracle_tick(o, &pe);
            long m = sl_oracle_region_events(o, &want);
            agree &= m == (long)ne;
            for (size_t i = 0; agree && i < ne; i++)
                agree &= ev[i].region == want[i].region && ev[i].entity == want[i].entity &&
                         ev[i].kind == want[i].kind;
        }
    }
    double med[2] = {bench_median(ms[0] + 1, ticks), bench_median(ms[1] + 1, ticks)};
    if (json)
        printf("{\"workload\":\"regions\",\"entities\":%u,\"ticks\":%u,\"regions\":%d,"
               "\"plain_ms\":%.4f,\"regions_ms\":%.4f,\"ratio\":%.3f,"
               "\"region_events_per_tick\":%.1f,\"members\":%llu,\"agree\":%s}\n", n, ticks,
               REGIONS, med[0], med[1], med[1] / med[0], (double)revents / ticks,
               (unsigned long long)members, agree ? "true" : "false");
    else
        printf("regions N=%u ticks=%u seed=%llu (W1; %d regions: circles, rectangles, "
               "octagons)\n"
               "  plain:          %8.3f ms a tick\n"
               "  with regions:   %8.3f ms a tick  %.2fx  %.1f region events a tick "
               "(%llu in regions at the start)\n"
               "  the oracle agrees (the first %d ticks): %s\n", n, ticks,
               (unsigned long long)seed, REGIONS, med[0], med[1], med[1] / med[0],
               (double)revents / ticks, (unsigned long long)members, CHECKED,
               agree ? "yes" : "NO");
    free(ms[0]);
    free(ms[1]);
    sl_space_free(s[0]);
    sl_space_free(s[1]);
    sl_oracle_free(o);
    wl_free(&w);
    return agree ? 0 : 1;
}

typedef struct count3 {
    uint64_t hash, events;
} count3;

static void sink3(void *ud, const sl_event *ev, size_t n)
{
    count3 *c = ud;
    c->hash = bench_hash_events(c->hash, ev, n);
    c->events += n;
}

/*
 * 3D spaces (issue 18): W1 on two spaces in lockstep, the flat 4096 x 4096 one and a 3D one
 * 256 deep with the same N, x and y (the same density per area; each z uniform in
 * [0, 256), and every move also moves z by dz uniform in [-5, 5], clamped), timed per tick
 * (moves and tick); the 3D space's events of the first CHECKED ticks (the bulk add's among
 * them) are checked against the brute-force oracle when N <= 50,000.
 */
int bench_3d(uint32_t n, uint32_t ticks, uint64_t seed, bool json)
{
    enum { CHECKED = 2 };
    const float depth = 256;
    workload w;
    if (!wl_init(&w, WL_W1, n, seed))
        return 1;
    sl_space_config cfg = {.width = w.width, .height = w.height};
    sl_space *s[2];
    char why[256];
    if (sl_space_new(&s[0], &cfg, why, sizeof why))
        return 1;
    cfg.depth = depth;
    if (sl_space_new(&s[1], &cfg, why, sizeof why))
        return 1;
    const bool check = n <= 50000;
    sl_oracle *o = check ? sl_oracle_new(w.width, w.height, 0, false) : NULL;
    if (o)
        sl_oracle_set_depth(o, depth);
    float *z = malloc((size_t)n * sizeof(float));
    sl_move *m3 = malloc((size_t)n * sizeof(sl_move));
    double *ms[2] = {calloc(ticks + 1, sizeof(double)), calloc(ticks + 1, sizeof(double))};
    if ((check && !o) || !z || !m3 || !ms[0] || !ms[1])
        return 1;
    uint64_t rng = seed * 0x9E3779B97F4A7C15ULL | 1;
    for (uint32_t i = 0; i < n; i++) {
        z[i] = (float)(xorshift(&rng) & 0xffffff) / 16777216.0f * depth;
        if (sl_space_add(s[0], i + 1, w.x[i], w.y[i], w.radius, 0, ~0u) ||
            sl_space_add3(s[1], i + 1, w.x[i], w.y[i], z[i], w.radius, 0, ~0u) ||
            (o && sl_oracle_add3(o, i + 1, w.x[i], w.y[i], z[i], w.radius, 0, ~0u)))
            return 1;
    }
    count3 c[2] = {{0, 0}, {0, 0}}, first[2];
    bool agree = true;
    for (uint32_t t = 0; t <= ticks; t++) {      /* (tick 0: the bulk add) */
        if (t) {
            wl_next_tick(&w);
            for (uint32_t i = 0; i < w.nmoves; i++) {
                uint32_t e = (uint32_t)w.moves[i].id - 1;
                float dz = ((float)(xorshift(&rng) & 0xffffff) / 16777216.0f * 2 - 1) * 5;
                z[e] = sl_clamp_to_map(z[e] + dz, depth);
                m3[i] = w.moves[i];
                m3[i].z = z[e];
                if (o && t <= CHECKED)
                    sl_oracle_move3(o, m3[i].id, m3[i].x, m3[i].y, m3[i].z);
            }
        }
        for (int k = 0; k < 2; k++) {
            c[k].hash = 0;
            double t0 = sl_now_ms();
            if (t)
                sl_space_move_many(s[k], k ? m3 : w.moves, w.nmoves, NULL, NULL);
            sl_space_tick(s[k], sink3, &c[k]);
            ms[k][t] = sl_now_ms() - t0;
        }
        if (t == 0) {
            first[0] = c[0];
            first[1] = c[1];
        }
        if (o && t <= CHECKED) {
            const sl_event *ev;
            long m = sl_oracle_tick(o, &ev);
            agree &= m >= 0 && bench_hash_events(0, ev, (size_t)m) == c[1].hash;
        }
    }
    double med[2] = {bench_median(ms[0] + 1, ticks), bench_median(ms[1] + 1, ticks)};
    double ev[2] = {(double)(c[0].events - first[0].events) / ticks,
                    (double)(c[1].events - first[1].events) / ticks};
    if (json)
        printf("{\"workload\":\"3d\",\"entities\":%u,\"ticks\":%u,\"flat_ms\":%.4f,"
               "\"d3_ms\":%.4f,\"ratio\":%.3f,\"flat_events_per_tick\":%.0f,"
               "\"d3_events_per_tick\":%.0f,\"checked\":%s,\"agree\":%s}\n", n, ticks, med[0],
               med[1], med[1] / med[0], ev[0], ev[1], check ? "true" : "false",
               agree ? "true" : "false");
    else
        printf("3d N=%u ticks=%u seed=%llu (W1; the same x, y in a 4096 x 4096 x 256 box)\n"
               "  flat:  %8.3f ms a tick  %9.0f events a tick (%llu at the bulk add)\n"
               "  3D:    %8.3f ms a tick  %9.0f events a tick (%llu at the bulk add)  %.2fx\n"
               "  the oracle agrees (3D, the first %d ticks): %s\n", n, ticks,
               (unsigned long long)seed, med[0], ev[0], (unsigned long long)first[0].events,
               med[1], ev[1], (unsigned long long)first[1].events, med[1] / med[0], CHECKED,
               check ? (agree ? "yes" : "NO") : "not checked (N > 50,000)");
    free(ms[0]);
    free(ms[1]);
    free(z);
    free(m3);
    sl_space_free(s[0]);
    sl_space_free(s[1]);
    sl_oracle_free(o);
    wl_free(&w);
    return agree ? 0 : 1;
}
