/*
 * relevance.c: the relevance controls' cost (see relevance.h). Three spaces tick in lockstep
 * on the same W1 moves with stays on: plain (space hysteresis 2), every entity with its own
 * hysteresis 2 over a space without (the same visible pairs, so the same events: checked
 * every tick), and plain with LOD bands on every watcher (30:1, 80:2, beyond: 4). Reported as
 * median tick times and their ratios to the plain run.
 */
#include "relevance.h"

#include "base/clock.h"
#include "base/hash.h"
#include "engine/space.h"
#include "util.h"
#include "workload.h"

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

/* kind 0: plain; 1: own hysteresis; 2: LOD bands. */
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
            (kind == 2 && sl_space_set_lod(r->s, i + 1, bands, 3)))
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
    return sl_now_ms() - t0;
}

int bench_relevance(uint32_t n, uint32_t ticks, uint64_t seed, bool json)
{
    workload w;
    if (!wl_init(&w, WL_W1, n, seed))
        return 1;
    rrun r[3];
    for (int k = 0; k < 3; k++)
        if (open_rrun(&r[k], &w, k, ticks))
            return 1;
    for (int k = 0; k < 3; k++)
        rstep(&r[k], &w);
    bool agree = r[0].hash == r[1].hash;
    uint64_t ev0[3];
    for (int k = 0; k < 3; k++)
        ev0[k] = r[k].events;
    for (uint32_t t = 0; t < ticks; t++) {
        wl_next_tick(&w);
        for (int k = 0; k < 3; k++)
            r[k].ms[t] = rstep(&r[k], &w);
        agree &= r[0].hash == r[1].hash;
    }
    double med[3];
    for (int k = 0; k < 3; k++)
        med[k] = bench_median(r[k].ms, ticks);
    double ev[3];
    for (int k = 0; k < 3; k++)
        ev[k] = (double)(r[k].events - ev0[k]) / ticks;
    if (json)
        printf("{\"workload\":\"relevance\",\"entities\":%u,\"ticks\":%u,\"plain_ms\":%.4f,"
               "\"own_hysteresis_ms\":%.4f,\"lod_ms\":%.4f,\"own_hysteresis_ratio\":%.3f,"
               "\"lod_ratio\":%.3f,\"events_per_tick\":[%.0f,%.0f,%.0f],\"agree\":%s}\n",
               n, ticks, med[0], med[1], med[2], med[1] / med[0], med[2] / med[0], ev[0], ev[1],
               ev[2], agree ? "true" : "false");
    else
        printf("relevance N=%u ticks=%u seed=%llu (W1 with stays, space hysteresis 2)\n"
               "  tick median: plain %.3f ms; own hysteresis 2 on every entity %.3f ms (%.2fx, "
               "same events: %s); LOD bands 30:1 80:2 beyond:4 on every watcher %.3f ms "
               "(%.2fx)\n  events a tick: %.0f, %.0f, %.0f\n",
               n, ticks, (unsigned long long)seed, med[0], med[1], med[1] / med[0],
               agree ? "yes" : "NO", med[2], med[2] / med[0], ev[0], ev[1], ev[2]);
    for (int k = 0; k < 3; k++) {
        sl_space_free(r[k].s);
        free(r[k].ms);
    }
    wl_free(&w);
    return agree ? 0 : 1;
}
