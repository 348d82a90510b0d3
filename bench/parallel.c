/*
 * parallel.c: parallel ticks, `sightline-bench --workload W1 --entities 25000 --spaces 8
 * --threads 2`. Two sets of K spaces, the same K workloads (seeds seed .. seed + K - 1):
 * one set ticked a round at a time on a pool of 1 (the caller alone, one space after the
 * other), the other on a pool of N, as the server ticks its due spaces. Each round both
 * sets get the same moves, the set that goes first alternates (so that neither always finds
 * the caches warm), and each space's events must hash the same in both sets, in order: a
 * parallel tick is the serial tick, event for event.
 *
 * A round's time is the pool's batch: every space applies its moves and ticks; choosing the
 * moves is not timed. The figures: rounds per second of each set and their ratio (the
 * speed-up), and the CPU time of the rounds summed over the threads (each job reads its
 * thread's CPU clock), whose ratio says whether a tick costs more when others run beside it
 * (memory bandwidth, shared caches, allocator locks).
 *
 * With one space (`--spaces 1`, or `--threads N` alone) the space's own tick is split over
 * the pool (sl_space_set_pool: its moved passes), and the CPU figure is the calling
 * thread's only.
 */
#include "parallel.h"
#include "util.h"

#include "base/clock.h"
#include "base/pool.h"
#include "engine/simd.h"
#include "engine/space.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One space of a set: its engine space and its last tick's figures. */
typedef struct par_space {
    sl_space *s;
    const workload *w;      /* its moves (shared by the two sets) */
    uint64_t hash, events;  /* the last tick's events, hashed in order */
    double cpu_ms;          /* the thread CPU time of its last round */
    bool built;
    int rc;
} par_space;

/* A set of K spaces and the pool they tick on. */
typedef struct par_set {
    sl_pool *pool;
    par_space *sp;
    double *round_ms;       /* wall time of each round */
    double wall_ms, cpu_ms; /* summed over the rounds */
} par_set;

static double thread_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The events in order (a change of order changes the hash). */
static void sink(void *ud, const sl_event *ev, size_t n)
{
    par_space *p = ud;
    uint64_t h = p->hash;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = (ev[i].watcher * 0x9E3779B97F4A7C15ULL + ev[i].target) ^ ev[i].kind;
        v ^= v >> 33;
        v *= 0xff51afd7ed558ccdULL;
        v ^= v >> 33;
        h = (h ^ v) * 0x100000001b3ULL;
    }
    p->hash = h;
    p->events += n;
}

/* A job: space i of the set applies its workload's moves (or, the first time, adds its
 * entities) and ticks. */
static void tick_job(void *ud, size_t i)
{
    par_space *p = (par_space *)ud + i;
    double c0 = thread_cpu_ms();
    const workload *w = p->w;
    if (!p->built) {
        for (uint32_t k = 0; k < w->n && !p->rc; k++)
            p->rc = sl_space_add(p->s, k + 1, w->x[k], w->y[k], w->radius, 0, ~0u);
        p->built = true;
    } else {
        sl_space_move_many(p->s, w->moves, w->nmoves, NULL, NULL);
    }
    p->hash = 0;
    p->events = 0;
    if (!p->rc)
        p->rc = sl_space_tick(p->s, sink, p);
    p->cpu_ms = thread_cpu_ms() - c0;
}

static int set_open(par_set *set, const par_options *o, uint32_t threads, const workload *w)
{
    memset(set, 0, sizeof *set);
    set->pool = sl_pool_new(threads);
    set->sp = calloc(o->spaces, sizeof *set->sp);
    set->round_ms = calloc(o->ticks, sizeof *set->round_ms);
    if (!set->pool || !set->sp || !set->round_ms)
        return SL_ENOMEM;
    sl_space_config cfg = {.width = w[0].width, .height = w[0].height, .index = o->index,
                           .cell = o->cell, .order = o->order,
                           .stream = o->order == SL_ORDER_TICK};
    char why[128];
    for (uint32_t k = 0; k < o->spaces; k++) {
        set->sp[k].w = &w[k];
        if (sl_space_new(&set->sp[k].s, &cfg, why, sizeof why)) {
            fprintf(stderr, "sightline-bench: %s\n", why);
            return SL_EINVAL;
        }
    }
    if (o->spaces == 1)     /* one space: its own tick is split over the pool */
        sl_space_set_pool(set->sp[0].s, set->pool);
    return 0;
}

static void set_free(par_set *set, uint32_t spaces)
{
    for (uint32_t k = 0; set->sp && k < spaces; k++)
        sl_space_free(set->sp[k].s);
    free(set->sp);
    free(set->round_ms);
    sl_pool_free(set->pool);
}

/* One round of the set (t < 0: the build, not counted); false when a space failed. */
static bool set_round(par_set *set, const par_options *o, int t)
{
    double t0 = sl_now_ms();
    if (o->spaces == 1)
        tick_job(set->sp, 0);   /* (the tick runs the pool itself; CPU: this thread's) */
    else
        sl_pool_run(set->pool, o->spaces, tick_job, set->sp);
    double ms = sl_now_ms() - t0;
    double cpu = 0;
    for (uint32_t k = 0; k < o->spaces; k++) {
        if (set->sp[k].rc) {
            fprintf(stderr, "sightline-bench: space %u: %s\n", k, sl_strerror(set->sp[k].rc));
            return false;
        }
        cpu += set->sp[k].cpu_ms;
    }
    if (t >= 0) {
        set->round_ms[t] = ms;
        set->wall_ms += ms;
        set->cpu_ms += cpu;
    }
    return true;
}


/* Whether every space had the same events in both sets this round. */
static bool agree(const par_set *a, const par_set *b, uint32_t spaces, uint64_t *events)
{
    bool same = true;
    for (uint32_t k = 0; k < spaces; k++) {
        same &= a->sp[k].hash == b->sp[k].hash && a->sp[k].events == b->sp[k].events;
        *events += a->sp[k].events;
    }
    return same;
}

int bench_parallel(const par_options *o)
{
    workload *w = calloc(o->spaces, sizeof *w);
    par_set one = {0}, many = {0};
    int rc = w ? 0 : SL_ENOMEM;
    for (uint32_t k = 0; k < o->spaces && !rc; k++)
        if (!wl_init(&w[k], o->kind, o->n, o->seed + k))
            rc = SL_ENOMEM;
    /* Nothing may pick the SIMD kernels lazily from two threads at once. */
    sl_simd_get();
    if (!rc)
        rc = set_open(&one, o, 1, w);
    if (!rc)
        rc = set_open(&many, o, o->threads, w);
    bool same = !rc, ok = !rc;
    uint64_t events = 0;
    if (ok) {
        ok = set_round(&one, o, -1) && set_round(&many, o, -1);
        same = ok && agree(&one, &many, o->spaces, &events);
    }
    events = 0;
    for (uint32_t t = 0; t < o->ticks && ok; t++) {
        for (uint32_t k = 0; k < o->spaces; k++)
            wl_next_tick(&w[k]);
        par_set *first = t % 2 ? &many : &one, *second = t % 2 ? &one : &many;
        ok = set_round(first, o, (int)t) && set_round(second, o, (int)t);
        if (ok && !agree(&one, &many, o->spaces, &events)) {
            if (same)
                fprintf(stderr, "DISAGREEMENT at round %u: 1 thread vs %u\n", t + 1,
                        o->threads);
            same = false;
        }
    }
    if (ok) {
        double rps1 = 1e3 * o->ticks / one.wall_ms, rpsn = 1e3 * o->ticks / many.wall_ms;
        double cpu1 = one.cpu_ms / o->ticks, cpun = many.cpu_ms / o->ticks;
        double med1 = bench_median(one.round_ms, o->ticks);
        double medn = bench_median(many.round_ms, o->ticks);
        sl_space_stats st;      /* the first space's bytes: what one tick walks over */
        sl_space_get_stats(one.sp[0].s, &st);
        double mib = st.bytes_total / 1048576.0;
        if (o->json) {
            printf("{\"workload\":\"%s\",\"entities\":%u,\"spaces\":%u,\"threads\":%u,"
                   "\"rounds\":%u,\"seed\":%llu,\"simd\":\"%s\",\"round_median_ms_1\":%.3f,"
                   "\"round_median_ms_n\":%.3f,\"rounds_per_s_1\":%.2f,\"rounds_per_s_n\":%.2f,"
                   "\"speedup\":%.3f,\"cpu_ms_per_round_1\":%.3f,\"cpu_ms_per_round_n\":%.3f,"
                   "\"cpu_ratio\":%.3f,\"events_per_round\":%.0f,\"space_mib\":%.2f,"
                   "\"agree\":%s}\n",
                   wl_name(o->kind), o->n, o->spaces, o->threads, o->ticks,
                   (unsigned long long)o->seed, sl_simd_name(sl_simd_get()), med1, medn, rps1,
                   rpsn, rpsn / rps1, cpu1, cpun, cpun / cpu1,
                   (double)events / o->ticks, mib, same ? "true" : "false");
        } else {
            printf("%s N=%u x %u spaces (%.1f MiB each), %u rounds, seed %llu.., simd=%s\n",
                   wl_name(o->kind), o->n, o->spaces, mib, o->ticks,
                   (unsigned long long)o->seed, sl_simd_name(sl_simd_get()));
            printf("  1 thread:  round median %.3f ms, %.2f rounds/s, CPU %.3f ms a round\n",
                   med1, rps1, cpu1);
            printf("  %u threads: round median %.3f ms, %.2f rounds/s, CPU %.3f ms a round "
                   "(summed over the threads)\n", o->threads, medn, rpsn, cpun);
            printf("  speed-up %.2fx (rounds/s, %u threads over 1); CPU a round %.2fx; "
                   "%.0f events a round\n", rpsn / rps1, o->threads, cpun / cpu1,
                   (double)events / o->ticks);
            printf("  agreement: %s\n", same ? "every space's events identical every round"
                                             : "NO");
        }
    }
    set_free(&one, o->spaces);
    set_free(&many, o->spaces);
    if (w) {
        for (uint32_t k = 0; k < o->spaces; k++)
            wl_free(&w[k]);
    }
    free(w);
    return ok && same ? 0 : 1;
}
