/*
 * sightline-bench: the W1 / W2 workloads of shared/WORKLOADS.md and the distance-filter
 * micro-benchmark.
 *
 * A run drives the engine under test and its baselines in lockstep on the same moves: the
 * tuned stateless recompute (recompute.c, the bar of issue 16) and the scalar grid
 * (index=grid, simd=scalar) always, and the brute-force oracle when N <= 10k. Every tick's
 * events are hashed per engine (as a set: the recompute emits them unsorted) and must
 * agree, so a speed figure is never quoted for a wrong answer. Speed is reported as ratios
 * against the baselines measured in the same run, in wall time and in the thread's CPU
 * time, because these machines are shared and noisy.
 */
#include "base/clock.h"
#include "base/hash.h"
#include "base/pool.h"
#include "engine/oracle.h"
#include "engine/simd.h"
#include "engine/space.h"
#include "apply.h"
#include "etcd_w5.h"
#include "parallel.h"
#include "recompute.h"
#include "relevance.h"
#include "util.h"
#include "scripts.h"
#include "workload.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct engine {
    const char *label;
    sl_space *s;            /* NULL for the oracle and the recompute */
    sl_oracle *o;
    recompute *rc;
    sl_simd_level simd;
    double build_ms, first_ms;
    double *tick_ms, *tick_cpu_ms;  /* wall and thread CPU time of each tick */
    uint64_t enters, leaves, tick_hash;
} engine;

#define HASH_START 0

/*
 * A hash of a tick's events as a set, continuing from h (HASH_START for a fresh hash): each
 * event is mixed on its own (murmur3's finaliser) and the mixes are added, so the order does
 * not count (the recompute emits its events unsorted; the others' order is checked by the
 * oracle tests) and the bench's own sink costs about a nanosecond an event. The same mix as
 * recompute.c's.
 */
static uint64_t hash_events(uint64_t h, const sl_event *ev, size_t n, uint64_t *enters,
                            uint64_t *leaves)
{
    uint64_t in = 0, out = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = ev[i].watcher * 0x9E3779B97F4A7C15ULL + ev[i].target;
        v ^= v >> 33;
        v *= 0xff51afd7ed558ccdULL;
        v ^= v >> 33;
        v *= 0xc4ceb9fe1a85ec53ULL;
        v ^= v >> 33;
        h += v ^ ev[i].kind;
        in += ev[i].kind == SL_EVENT_ENTER;
        out += ev[i].kind == SL_EVENT_LEAVE;
    }
    *enters += in;
    *leaves += out;
    return h;
}

static void sink(void *ud, const sl_event *ev, size_t n)
{
    engine *e = ud;
    /* A tick's events may come in several calls: the hash runs on over them. */
    e->tick_hash = hash_events(e->tick_hash, ev, n, &e->enters, &e->leaves);
}

enum { ENGINE_SPACE, ENGINE_ORACLE, ENGINE_RECOMPUTE };

static int engine_init(engine *e, const char *label, sl_index_kind kind, float cell,
                       sl_simd_level simd, sl_event_order order, const workload *w, int what)
{
    memset(e, 0, sizeof *e);
    e->label = label;
    e->simd = simd;
    if (what == ENGINE_RECOMPUTE) {
        e->rc = rc_new(w->width, w->height, w->radius, w->n);
        return e->rc ? 0 : SL_ENOMEM;
    }
    if (what == ENGINE_ORACLE) {
        e->o = sl_oracle_new(w->width, w->height, 0, false);
        return e->o ? 0 : SL_ENOMEM;
    }
    /* (The bench's sink only hashes: in the tick order it may stream.) */
    sl_space_config cfg = {.width = w->width, .height = w->height, .index = kind, .cell = cell,
                           .order = order, .stream = order == SL_ORDER_TICK};
    char why[128];
    return sl_space_new(&e->s, &cfg, why, sizeof why);
}

static void engine_free(engine *e)
{
    sl_space_free(e->s);
    sl_oracle_free(e->o);
    rc_free(e->rc);
    free(e->tick_ms);
    free(e->tick_cpu_ms);
}

static double thread_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Runs one tick (or the initial build and first tick); returns milliseconds, and the
 * thread's CPU milliseconds in *cpu. */
static double engine_step(engine *e, const workload *w, bool build, double *cpu)
{
    if (e->s)
        sl_simd_set(e->simd);
    double t0 = sl_now_ms(), c0 = thread_cpu_ms();
    if (e->rc) {                /* stateless: reads the workload's positions as they are */
        rc_counts k;
        if (build)
            e->build_ms = 0;
        rc_tick(e->rc, w->x, w->y, &k);
        e->enters += k.enters;
        e->leaves += k.leaves;
        e->tick_hash = k.hash;
        *cpu = thread_cpu_ms() - c0;
        return sl_now_ms() - t0;
    }
    if (build) {
        for (uint32_t i = 0; i < w->n; i++) {
            int rc = e->s ? sl_space_add(e->s, i + 1, w->x[i], w->y[i], w->radius, 0, ~0u)
                          : sl_oracle_add(e->o, i + 1, w->x[i], w->y[i], w->radius, 0, ~0u);
            if (rc) {
                fprintf(stderr, "%s: add failed: %s\n", e->label, sl_strerror(rc));
                exit(1);
            }
        }
        e->build_ms = sl_now_ms() - t0;
        t0 = sl_now_ms();
        c0 = thread_cpu_ms();
    } else {
        if (e->s) {
            sl_space_move_many(e->s, w->moves, w->nmoves, NULL, NULL);
        } else {
            for (uint32_t i = 0; i < w->nmoves; i++)
                sl_oracle_move(e->o, w->moves[i].id, w->moves[i].x, w->moves[i].y);
        }
    }
    if (e->s) {
        e->tick_hash = HASH_START;
        if (sl_space_tick(e->s, sink, e)) {
            fprintf(stderr, "%s: tick failed\n", e->label);
            exit(1);
        }
    } else {
        const sl_event *ev;
        long n = sl_oracle_tick(e->o, &ev);
        if (n < 0) {
            fprintf(stderr, "%s: out of memory\n", e->label);
            exit(1);
        }
        e->tick_hash = hash_events(HASH_START, ev, (size_t)n, &e->enters, &e->leaves);
    }
    *cpu = thread_cpu_ms() - c0;
    return sl_now_ms() - t0;
}

static double percentile(const double *v, uint32_t n, double p)
{
    double *s = malloc(n * sizeof(double));
    memcpy(s, v, n * sizeof(double));
    qsort(s, n, sizeof(double), bench_cmp_double);
    uint32_t i = (uint32_t)ceil(p * n) - 1;
    double r = s[i < n ? i : n - 1];
    free(s);
    return r;
}

typedef struct options {
    wl_kind workload;
    uint32_t n, ticks;
    uint64_t seed;
    sl_index_kind index;
    float cell;             /* 0: derived from the radii */
    sl_simd_level simd;
    sl_event_order order;   /* the engine under test's event order (the baselines': id) */
    bool json, markdown, baselines;
    const char *emit;
    const char *scripts;    /* W3 / handlers: the script directory (else the bench's own) */
    uint32_t spaces, threads;   /* --spaces / --threads: parallel ticks (0: not asked) */
} options;

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* What run_workload reports: the engine under test's figures and its baselines'. */
typedef struct figures {
    sl_space_stats st;
    double med, p99;                /* the engine's tick times */
    double cpu_med;                 /* its median thread CPU time a tick */
    double base_med[4], base_cpu[4];    /* the baselines' median tick times (index 1..3) */
    double ratio_recompute, ratio_recompute_cpu;    /* engine / recompute: < 1 beats it */
    double ratio_grid, ratio_brute; /* a baseline's median / the engine's; 0: not run */
    double enters, leaves;          /* per tick */
    double mib;                     /* the space's bytes */
    bool agree;                     /* every engine had the same events every tick */
} figures;

/* Sets up the engine under test and its baselines (see the top of the file): how many. */
static int open_engines(engine *eng, const options *opt, const workload *w, unsigned *ne)
{
    *ne = 0;
    if (engine_init(&eng[(*ne)++], "sightline", opt->index, opt->cell, opt->simd, opt->order,
                    w, ENGINE_SPACE))
        return 1;
    if (opt->baselines) {
        if (engine_init(&eng[(*ne)++], "recompute", 0, 0, 0, 0, w, ENGINE_RECOMPUTE) ||
            engine_init(&eng[(*ne)++], "scalar-grid", SL_INDEX_GRID, 0, SL_SIMD_SCALAR,
                        SL_ORDER_ID, w, ENGINE_SPACE))
            return 1;
        if (opt->n <= 10000 &&
            engine_init(&eng[(*ne)++], "brute-force", 0, 0, 0, 0, w, ENGINE_ORACLE))
            return 1;
    }
    return 0;
}

static figures summarise(const options *opt, const engine *eng, unsigned ne, bool agree)
{
    figures f = {.agree = agree};
    sl_space_get_stats(eng[0].s, &f.st);
    f.med = percentile(eng[0].tick_ms, opt->ticks, 0.5);
    f.p99 = percentile(eng[0].tick_ms, opt->ticks, 0.99);
    f.cpu_med = percentile(eng[0].tick_cpu_ms, opt->ticks, 0.5);
    for (unsigned i = 1; i < ne; i++) {
        f.base_med[i] = percentile(eng[i].tick_ms, opt->ticks, 0.5);
        f.base_cpu[i] = percentile(eng[i].tick_cpu_ms, opt->ticks, 0.5);
    }
    f.ratio_recompute = ne > 1 ? f.med / f.base_med[1] : 0;
    f.ratio_recompute_cpu = ne > 1 && f.base_cpu[1] > 0 ? f.cpu_med / f.base_cpu[1] : 0;
    f.ratio_grid = ne > 2 ? f.base_med[2] / f.med : 0;
    f.ratio_brute = ne > 3 ? f.base_med[3] / f.med : 0;
    f.enters = (double)eng[0].enters / opt->ticks;
    f.leaves = (double)eng[0].leaves / opt->ticks;
    f.mib = f.st.bytes_total / 1048576.0;
    return f;
}

static void print_json(const options *opt, const engine *eng, const figures *f)
{
    const sl_space_stats *st = &f->st;
    printf("{\"workload\":\"%s\",\"entities\":%u,\"ticks\":%u,\"seed\":%llu,"
           "\"index\":\"%s\",\"cell\":%g,\"simd\":\"%s\",\"build_ms\":%.3f,"
           "\"first_tick_ms\":%.3f,\"tick_median_ms\":%.4f,\"tick_p99_ms\":%.4f,"
           "\"enters_per_tick\":%.1f,\"leaves_per_tick\":%.1f,\"pairs\":%llu,"
           "\"space_bytes\":%zu,\"bytes_per_entity\":%.1f,\"bytes_per_pair\":%.2f,"
           "\"peak_rss_kib\":%ld,\"tick_cpu_median_ms\":%.4f,\"recompute_median_ms\":%.4f,"
           "\"recompute_cpu_median_ms\":%.4f,\"vs_recompute\":%.3f,\"vs_recompute_cpu\":%.3f,"
           "\"scalar_grid_median_ms\":%.4f,\"speedup_vs_scalar_grid\":%.3f,"
           "\"brute_force_median_ms\":%.4f,\"speedup_vs_brute_force\":%.3f,\"agree\":%s}\n",
           wl_name(opt->workload), opt->n, opt->ticks, (unsigned long long)opt->seed,
           sl_index_kind_name(st->index), (double)st->cell, sl_simd_name(opt->simd),
           eng[0].build_ms, eng[0].first_ms, f->med, f->p99, f->enters, f->leaves,
           (unsigned long long)st->pairs, st->bytes_total,
           (double)(st->bytes_entities + st->bytes_index) / opt->n,
           st->pairs ? (double)st->bytes_pairs / (double)st->pairs : 0, peak_rss_kib(),
           f->cpu_med, f->base_med[1], f->base_cpu[1], f->ratio_recompute,
           f->ratio_recompute_cpu, f->base_med[2], f->ratio_grid, f->base_med[3],
           f->ratio_brute, f->agree ? "true" : "false");
}

/* One row of the suite's table (its header is in run_suite). */
static void print_markdown(const options *opt, const engine *eng, unsigned ne,
                           const figures *f)
{
    char rec[48] = "-", grid[32] = "-", brute[32] = "-";
    if (ne > 1)
        snprintf(rec, sizeof rec, "%.2fx / %.2fx", f->ratio_recompute, f->ratio_recompute_cpu);
    if (ne > 2)
        snprintf(grid, sizeof grid, "%.2fx", f->ratio_grid);
    if (ne > 3)
        snprintf(brute, sizeof brute, "%.0fx", f->ratio_brute);
    printf("| %s | %u | %s/%g | %s | %.1f | %.1f | %.2f | %.2f | %.0f / %.0f | %s | %s | %s | %s "
           "| %.1f | %.0f |\n",
           wl_name(opt->workload), opt->n, sl_index_kind_name(f->st.index), (double)f->st.cell,
           sl_simd_name(opt->simd), eng[0].build_ms, eng[0].first_ms, f->med, f->p99, f->enters,
           f->leaves, rec, grid, brute, f->agree ? "yes" : "NO", f->mib,
           peak_rss_kib() / 1024.0);
}

static void print_text(const options *opt, const engine *eng, unsigned ne, const figures *f)
{
    const sl_space_stats *st = &f->st;
    printf("%s N=%u ticks=%u seed=%llu index=%s cell=%g simd=%s order=%s\n",
           wl_name(opt->workload), opt->n, opt->ticks, (unsigned long long)opt->seed,
           sl_index_kind_name(st->index), (double)st->cell, sl_simd_name(opt->simd),
           sl_event_order_name(opt->order));
    printf("  build %.1f ms, first tick %.1f ms, %llu visible pairs\n", eng[0].build_ms,
           eng[0].first_ms, (unsigned long long)st->pairs);
    printf("  tick median %.3f ms, p99 %.3f ms; %.1f enters and %.1f leaves per tick\n",
           f->med, f->p99, f->enters, f->leaves);
    printf("  memory %.1f MiB: %.0f B/entity (store+index), %.1f B/visible pair; "
           "peak RSS %.0f MiB (all engines)\n", f->mib,
           (double)(st->bytes_entities + st->bytes_index) / opt->n,
           st->pairs ? (double)st->bytes_pairs / (double)st->pairs : 0, peak_rss_kib() / 1024.0);
    printf("  thread CPU a tick: median %.3f ms\n", f->cpu_med);
    if (ne > 1)
        printf("  vs the stateless recompute: median %.3f ms (CPU %.3f ms): sightline takes "
               "%.2fx its wall time, %.2fx its CPU time\n", f->base_med[1], f->base_cpu[1],
               f->ratio_recompute, f->ratio_recompute_cpu);
    for (unsigned i = 2; i < ne; i++)
        printf("  baseline %-12s median %.3f ms -> sightline is %.2fx faster\n", eng[i].label,
               f->base_med[i], f->base_med[i] / f->med);
    printf("  agreement with baselines: %s\n", f->agree ? "every tick identical" : "NO");
}

static int run_workload(const options *opt)
{
    workload w;
    if (!wl_init(&w, opt->workload, opt->n, opt->seed)) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    engine eng[4];
    unsigned ne;
    if (open_engines(eng, opt, &w, &ne))
        return 1;
    for (unsigned i = 0; i < ne; i++) {
        double cpu;
        eng[i].tick_ms = calloc(opt->ticks ? opt->ticks : 1, sizeof(double));
        eng[i].tick_cpu_ms = calloc(opt->ticks ? opt->ticks : 1, sizeof(double));
        eng[i].first_ms = engine_step(&eng[i], &w, true, &cpu);
    }
    eng[0].enters = eng[0].leaves = 0;
    bool agree = true;
    for (uint32_t t = 0; t < opt->ticks; t++) {
        wl_next_tick(&w);
        for (unsigned i = 0; i < ne; i++) {
            eng[i].tick_ms[t] = engine_step(&eng[i], &w, false, &eng[i].tick_cpu_ms[t]);
            if (eng[i].tick_hash != eng[0].tick_hash) {
                if (agree)
                    fprintf(stderr, "DISAGREEMENT at tick %u: %s vs %s\n", t + 1, eng[i].label,
                            eng[0].label);
                agree = false;
            }
        }
    }
    figures f = summarise(opt, eng, ne, agree);
    if (opt->json)
        print_json(opt, eng, &f);
    else if (opt->markdown)
        print_markdown(opt, eng, ne, &f);
    else
        print_text(opt, eng, ne, &f);
    for (unsigned i = 0; i < ne; i++)
        engine_free(&eng[i]);
    wl_free(&w);
    return agree ? 0 : 1;
}

/* Writes the workload as a replay trace instead of timing it. */
static int emit_trace(const options *opt)
{
    FILE *f = strcmp(opt->emit, "-") ? fopen(opt->emit, "w") : stdout;
    workload w;
    if (!f || !wl_init(&w, opt->workload, opt->n, opt->seed)) {
        perror(opt->emit);
        return 1;
    }
    fprintf(f, "# %s N=%u ticks=%u seed=%llu (sightline-bench --emit-trace)\n",
            wl_name(opt->workload), opt->n, opt->ticks, (unsigned long long)opt->seed);
    fprintf(f, "space %.9g %.9g\n", (double)w.width, (double)w.height);
    for (uint32_t i = 0; i < w.n; i++)
        fprintf(f, "add %u %.9g %.9g %.9g\n", i + 1, (double)w.x[i], (double)w.y[i],
                (double)w.radius);
    fprintf(f, "tick\n");
    for (uint32_t t = 0; t < opt->ticks; t++) {
        wl_next_tick(&w);
        for (uint32_t i = 0; i < w.nmoves; i++)
            fprintf(f, "move %llu %.9g %.9g\n", (unsigned long long)w.moves[i].id,
                    (double)w.moves[i].x, (double)w.moves[i].y);
        fprintf(f, "tick\n");
    }
    wl_free(&w);
    if (f != stdout)
        fclose(f);
    return 0;
}

/* Receives a value from every filter call, so the calls cannot be optimised away. */
static volatile uint32_t filter_sink;

/* The distance filter alone: ns per point for every level, and the ratio to scalar. */
static int run_filter(const options *opt)
{
    enum { N = 4096 };
    static float xs[N + SL_SIMD_PAD], ys[N + SL_SIMD_PAD];
    static uint32_t out[N + 2 * SL_SIMD_PAD];
    sl_rng rng;
    sl_rng_seed(&rng, opt->seed);
    for (uint32_t i = 0; i < N; i++) {
        xs[i] = sl_rng_float(&rng) * 1000;
        ys[i] = sl_rng_float(&rng) * 1000;
    }
    const uint32_t reps = 20000;
    double scalar_ns = 0;
    for (int l = 0; l < SL_SIMD_LEVELS; l++) {
        sl_within_fn fn = sl_simd_kernel((sl_simd_level)l);
        if (!fn)
            continue;
        double best = 1e30;
        uint64_t hits = 0;
        for (int round = 0; round < 5; round++) {
            double t0 = sl_now_ms();
            hits = 0;
            for (uint32_t r = 0; r < reps; r++) {
                float cx = (float)(r % 97) * 10, cy = (float)(r % 89) * 11;
                hits += fn(xs, ys, N, cx, cy, 300.0f * 300.0f, out);
                filter_sink = out[0];
            }
            double dt = sl_now_ms() - t0;
            if (dt < best)
                best = dt;
        }
        double ns = best * 1e6 / ((double)reps * N);
        if (l == 0)
            scalar_ns = ns;
        if (opt->json)
            printf("{\"workload\":\"filter\",\"simd\":\"%s\",\"ns_per_point\":%.4f,"
                   "\"speedup_vs_scalar\":%.2f,\"hit_rate\":%.3f}\n",
                   sl_simd_name((sl_simd_level)l), ns, scalar_ns / ns,
                   (double)hits / ((double)reps * N));
        else
            printf("filter %-7s %.3f ns/point  %.2fx scalar  (hit rate %.0f %%)\n",
                   sl_simd_name((sl_simd_level)l), ns, scalar_ns / ns,
                   100.0 * (double)hits / ((double)reps * N));
    }
    return 0;
}

static int run_suite(options opt)
{
    static const struct { wl_kind k; uint32_t n; } runs[] = {
        {WL_W1, 1000}, {WL_W1, 10000}, {WL_W1, 50000}, {WL_W1, 200000},
        {WL_W2, 1000}, {WL_W2, 10000}, {WL_W2, 50000},
    };
    int rc = 0;
    if (!opt.json) {
        printf("| workload | N | index/cell | simd | build ms | first tick ms | median tick ms "
               "| p99 tick ms | enter / leave per tick | time / recompute's (wall / CPU) "
               "| vs scalar grid | vs brute force | agree | space MiB | peak RSS MiB |\n");
        printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        opt.markdown = true;
    }
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        opt.workload = runs[i].k;
        opt.n = runs[i].n;
        rc |= run_workload(&opt);
        fflush(stdout);
    }
    printf("\n");
    rc |= run_filter(&opt);
    printf("\n");
    rc |= bench_w3(50000, opt.ticks, opt.seed, SL_BENCH_DIR "/w3", opt.json);
    rc |= bench_handlers(50000, opt.seed, SL_BENCH_DIR "/handlers", opt.json);
    return rc;
}

static int usage(FILE *f)
{
    fprintf(f,
            "usage: sightline-bench --workload W1|W2|W3|W5|apply|filter|handlers|relevance|\n"
            "                                  queries|regions|3d\n"
            "                       [--entities N] [--ticks T]\n"
            "                       [--seed S] [--index grid|quadtree|auto] [--cell C] [--simd LEVEL]\n"
            "                       [--order id|tick] [--json] [--no-baselines] [--emit-trace FILE]\n"
            "                       [--scripts DIR] [--spaces K] [--threads N]\n"
            "       sightline-bench --suite [--json] [--seed S] [--ticks T] [--order id|tick]\n"
            "Defaults: 10000 entities, 100 ticks, seed 1, index auto, the best SIMD level, the\n"
            "id order of events (tick: the order the tick finds them, unsorted).\n"
            "W5 runs a real etcd-server for 30 s (--ticks S: S seconds). apply feeds etcd's\n"
            "static-entity documents to the server's apply path alone (--entities N).\n"
            "relevance: W1 with stays against the same with the relevance controls of issue 17\n"
            "(own hysteresis, LOD bands, forced pairs, always-relevant entities, caps, groups).\n"
            "queries: W1, then 10,000 circle and 10,000 rectangle queries a tick (ns a query).\n"
            "regions: W1's tick with 1,000 regions (circles, rectangles, octagons) against none.\n"
            "3d: W1's tick in a 3D space (the same x, y in a 4096 x 4096 x 256 box) against flat.\n"
            "Baselines run in the same process on the same moves: the tuned stateless recompute\n"
            "and the scalar grid always, the brute-force O(N^2) oracle when N <= 10000; every\n"
            "tick's events must agree. --spaces K (W1 / W2): K spaces (seeds S, S + 1, ...) ticked\n"
            "a round at a time on N threads (default: the online CPUs) against 1 thread, in the\n"
            "same run on the same moves.\n");
    return 2;
}

/* The runs other than a W1 / W2 workload that the command line asks for. */
typedef struct runs {
    bool suite, filter, w3, handlers, w5, apply, relevance, queries, regions, d3;
} runs;

/* --workload NAME: one of the named runs, or W1 / W2 into opt; false when unknown. */
static bool parse_workload(const char *v, options *opt, runs *run)
{
    if (strcmp(v, "filter") == 0)
        run->filter = true;
    else if (strcmp(v, "W3") == 0)
        run->w3 = true;
    else if (strcmp(v, "handlers") == 0)
        run->handlers = true;
    else if (strcmp(v, "W5") == 0)
        run->w5 = true;
    else if (strcmp(v, "apply") == 0)
        run->apply = true;
    else if (strcmp(v, "relevance") == 0)
        run->relevance = true;
    else if (strcmp(v, "queries") == 0)
        run->queries = true;
    else if (strcmp(v, "regions") == 0)
        run->regions = true;
    else if (strcmp(v, "3d") == 0)
        run->d3 = true;
    else
        return wl_parse(v, &opt->workload);
    return true;
}

/* Reads the command line into opt and run; returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, options *opt, runs *run)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--workload") == 0 && v) {
            i++;
            if (!parse_workload(v, opt, run))
                return usage(stderr);
        } else if (strcmp(a, "--entities") == 0 && v) {
            opt->n = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(a, "--ticks") == 0 && v) {
            opt->ticks = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(a, "--seed") == 0 && v) {
            opt->seed = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(a, "--index") == 0 && v) {
            if (sl_index_kind_parse(argv[++i], &opt->index))
                return usage(stderr);
        } else if (strcmp(a, "--cell") == 0 && v) {
            opt->cell = strtof(argv[++i], NULL);
        } else if (strcmp(a, "--simd") == 0 && v) {
            if (sl_simd_parse(argv[++i], &opt->simd) || !sl_simd_supported(opt->simd)) {
                fprintf(stderr, "sightline-bench: SIMD level %s unknown or unsupported\n", v);
                return 2;
            }
        } else if (strcmp(a, "--order") == 0 && v) {
            if (sl_event_order_parse(argv[++i], &opt->order)) {
                fprintf(stderr, "--order: id or tick\n");
                return 2;
            }
        } else if (strcmp(a, "--json") == 0) {
            opt->json = true;
        } else if (strcmp(a, "--no-baselines") == 0) {
            opt->baselines = false;
        } else if (strcmp(a, "--emit-trace") == 0 && v) {
            opt->emit = argv[++i];
        } else if (strcmp(a, "--scripts") == 0 && v) {
            opt->scripts = argv[++i];
        } else if (strcmp(a, "--spaces") == 0 && v) {
            opt->spaces = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(a, "--threads") == 0 && v) {
            opt->threads = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(a, "--suite") == 0) {
            run->suite = true;
        } else {
            return usage(strcmp(a, "--help") == 0 ? stdout : stderr);
        }
    }
    return opt->n == 0 || opt->ticks == 0 ? usage(stderr) : -1;
}

int main(int argc, char **argv)
{
    options opt = {.workload = WL_W1, .n = 10000, .ticks = 100, .seed = 1,
                   .index = SL_INDEX_AUTO, .baselines = true};
    opt.simd = sl_simd_best();
    const char *why;
    if (sl_simd_from_env(&why) == 0)
        opt.simd = sl_simd_get();
    runs run = {0};
    int rc = parse_args(argc, argv, &opt, &run);
    if (rc >= 0)
        return rc;
    if (opt.emit)
        return emit_trace(&opt);
    if (run.suite)
        return run_suite(opt);
    if (run.filter)
        return run_filter(&opt);
    if (run.w3)
        return bench_w3(opt.n, opt.ticks, opt.seed, opt.scripts ? opt.scripts : SL_BENCH_DIR "/w3",
                        opt.json);
    if (run.w5)
        return bench_w5(opt.ticks == 100 ? 30 : opt.ticks, opt.json);
    if (run.apply)
        return bench_apply(opt.n, opt.seed, opt.json);
    if (run.relevance)
        return bench_relevance(opt.n, opt.ticks, opt.seed, opt.json);
    if (run.queries)
        return bench_queries(opt.n, opt.ticks, opt.seed, opt.json);
    if (run.regions)
        return bench_regions(opt.n, opt.ticks, opt.seed, opt.json);
    if (run.d3)
        return bench_3d(opt.n, opt.ticks, opt.seed, opt.json);
    if (run.handlers)
        return bench_handlers(opt.n, opt.seed,
                              opt.scripts ? opt.scripts : SL_BENCH_DIR "/handlers", opt.json);
    if (opt.spaces || opt.threads) {
        par_options po = {.kind = opt.workload, .n = opt.n, .ticks = opt.ticks,
                          .spaces = opt.spaces ? opt.spaces : 1,
                          .threads = opt.threads ? opt.threads : sl_pool_cpus(),
                          .seed = opt.seed, .index = opt.index, .cell = opt.cell,
                          .order = opt.order, .json = opt.json};
        sl_simd_set(opt.simd);
        return bench_parallel(&po);
    }
    return run_workload(&opt);
}
