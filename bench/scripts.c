/*
 * scripts.c: W3-rules and the handler path (see scripts.h).
 *
 * W3 runs three engines in lockstep on the same moves: no script (the baseline), the rule in
 * Lua through the script host, and the same rule in C through the space's rule hook. The Lua
 * and C engines must produce the same events every tick, so the Lua figure is never quoted
 * for a wrong answer; the ratio Lua / no script is the target's figure.
 */
#include "scripts.h"

#include "base/clock.h"
#include "base/hash.h"
#include "engine/space.h"
#include "lua/host.h"
#include "util.h"
#include "workload.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* W3 props: team 0..3, stealth for 10 %; drawn once per entity from their own stream. */
typedef struct props {
    uint8_t *team;
    bool *stealth;
    uint32_t n;
} props;

static void rule_c(void *ud, const sl_rule_pair *p, size_t n, uint8_t *verdict)
{
    const props *pr = ud;
    for (size_t i = 0; i < n; i++) {
        uint64_t w = p[i].watcher - 1, t = p[i].target - 1;
        verdict[i] = !pr->stealth[t] || pr->team[w] == pr->team[t];
    }
}

typedef struct run {
    sl_space *s;
    sl_lua *h;
    double *ms;
    uint64_t hash, events;
} run;

static void hash_sink(void *ud, const sl_event *ev, size_t n)
{
    run *r = ud;
    r->hash = bench_hash_events(r->hash, ev, n);    /* (a tick's events may come in parts) */
    r->events += n;
}

static void log_quiet(void *ud, const char *msg)
{
    (void)ud;
    fprintf(stderr, "bench scripts: %s\n", msg);
}

static int open_run(run *r, const workload *w, const char *dir, uint32_t ticks)
{
    memset(r, 0, sizeof *r);
    sl_space_config cfg = {.width = w->width, .height = w->height};
    char why[4096];
    if (sl_space_new(&r->s, &cfg, why, sizeof why))
        return 1;
    r->ms = calloc(ticks, sizeof(double));
    for (uint32_t i = 0; i < w->n; i++)
        if (sl_space_add(r->s, i + 1, w->x[i], w->y[i], w->radius, 0, ~0u))
            return 1;
    if (dir) {
        sl_lua_config lc = {.dir = dir, .log = log_quiet};
        if (sl_lua_new(&r->h, r->s, &lc, why, sizeof why)) {
            fprintf(stderr, "sightline-bench: scripts %s: %s\n", dir, why);
            return 1;
        }
    }
    return 0;
}

static double step(run *r, const workload *w)
{
    double t0 = sl_now_ms();
    sl_space_move_many(r->s, w->moves, w->nmoves, NULL, NULL);
    r->hash = SL_FNV1A64_BASIS;
    int rc = r->h ? sl_lua_tick(r->h, hash_sink, r, NULL, NULL) : sl_space_tick(r->s, hash_sink, r);
    if (rc) {
        fprintf(stderr, "sightline-bench: tick failed\n");
        exit(1);
    }
    return sl_now_ms() - t0;
}

int bench_w3(uint32_t n, uint32_t ticks, uint64_t seed, const char *dir, bool json)
{
    workload w;
    if (!wl_init(&w, WL_W1, n, seed))
        return 1;
    props pr = {calloc(n, 1), calloc(n, sizeof(bool)), n};
    sl_rng g;
    sl_rng_seed(&g, seed ^ 0x5157ULL);
    for (uint32_t i = 0; i < n; i++) {
        pr.team[i] = (uint8_t)sl_rng_below(&g, 4);
        pr.stealth[i] = sl_rng_below(&g, 10) == 0;
    }
    run plain, lua, c;
    if (open_run(&plain, &w, NULL, ticks) || open_run(&lua, &w, dir, ticks) ||
        open_run(&c, &w, NULL, ticks))
        return 1;
    sl_space_set_rule(c.s, rule_c, &pr);
    for (uint32_t i = 0; i < n; i++) {
        sl_value team = {.type = SL_VALUE_NUMBER, .n = pr.team[i]};
        sl_value st = {.type = SL_VALUE_BOOL, .b = true};
        sl_lua_set_prop(lua.h, i + 1, "team", &team);
        if (pr.stealth[i])
            sl_lua_set_prop(lua.h, i + 1, "stealth", &st);
    }
    double first[3] = {step(&plain, &w), step(&lua, &w), step(&c, &w)};
    bool agree = lua.hash == c.hash;
    for (uint32_t t = 0; t < ticks; t++) {
        wl_next_tick(&w);
        plain.ms[t] = step(&plain, &w);
        lua.ms[t] = step(&lua, &w);
        c.ms[t] = step(&c, &w);
        agree &= lua.hash == c.hash;
    }
    double mp = bench_median(plain.ms, ticks), ml = bench_median(lua.ms, ticks);
    double mc = bench_median(c.ms, ticks);
    sl_lua_stats st;
    sl_lua_get_stats(lua.h, &st);
    sl_space_stats ss;
    sl_space_get_stats(lua.s, &ss);
    if (json) {
        printf("{\"workload\":\"W3\",\"entities\":%u,\"ticks\":%u,\"seed\":%llu,"
               "\"no_script_median_ms\":%.4f,\"lua_median_ms\":%.4f,\"c_rule_median_ms\":%.4f,"
               "\"lua_vs_no_script\":%.3f,\"first_tick_ms\":[%.1f,%.1f,%.1f],"
               "\"rule_pairs_per_tick\":%.0f,\"agree\":%s}\n",
               n, ticks, (unsigned long long)seed, mp, ml, mc, ml / mp, first[0], first[1],
               first[2], (double)ss.rule_calls / (ticks + 1), agree ? "true" : "false");
    } else {
        printf("W3 N=%u ticks=%u seed=%llu (teams and stealth; the rule from %s)\n", n, ticks,
               (unsigned long long)seed, dir);
        printf("  tick median: no script %.3f ms, Lua rule %.3f ms, same rule in C %.3f ms\n",
               mp, ml, mc);
        printf("  Lua rule / no script = %.2fx (target <= 1.5x); first tick %.0f / %.0f / %.0f ms\n",
               ml / mp, first[0], first[1], first[2]);
        printf("  %.0f pairs asked of the rule per tick (all ticks: %llu); script errors %llu\n",
               (double)ss.rule_calls / (ticks + 1), (unsigned long long)ss.rule_calls,
               (unsigned long long)st.errors[SL_FN_VISIBLE]);
        printf("  Lua and C rules agree on every tick: %s\n", agree ? "yes" : "NO");
    }
    sl_lua_free(lua.h);
    sl_space_free(plain.s);
    sl_space_free(lua.s);
    sl_space_free(c.s);
    free(plain.ms);
    free(lua.ms);
    free(c.ms);
    free(pr.team);
    free(pr.stealth);
    wl_free(&w);
    return agree ? 0 : 1;
}

int bench_handlers(uint32_t n, uint64_t seed, const char *dir, bool json)
{
    /* n entities so the views are real; 2 M events alternating enter and leave. */
    enum { EVENTS = 1 << 21, ROUNDS = 5 };
    sl_space_config cfg = {.width = 4096, .height = 4096};
    sl_space *s;
    char why[4096];
    if (sl_space_new(&s, &cfg, why, sizeof why))
        return 1;
    sl_rng g;
    sl_rng_seed(&g, seed);
    for (uint32_t i = 0; i < n; i++)
        sl_space_add(s, i + 1, sl_rng_float(&g) * 4095, sl_rng_float(&g) * 4095, 50, 0, ~0u);
    sl_lua *h;
    sl_lua_config lc = {.dir = dir, .log = log_quiet};
    if (sl_lua_new(&h, s, &lc, why, sizeof why)) {
        fprintf(stderr, "sightline-bench: scripts %s: %s\n", dir, why);
        return 1;
    }
    sl_event *ev = malloc(EVENTS * sizeof *ev);
    for (uint32_t i = 0; i < EVENTS; i++)
        ev[i] = (sl_event){1 + sl_rng_below(&g, n), 1 + sl_rng_below(&g, n), i & 1, 0};
    double best = INFINITY;
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = sl_now_ms();
        sl_lua_dispatch(h, ev, EVENTS);
        double ms = sl_now_ms() - t0;
        if (ms < best)
            best = ms;
    }
    sl_lua_stats st;
    sl_lua_get_stats(h, &st);
    double per_s = EVENTS / (best / 1e3), ns = best * 1e6 / EVENTS;
    if (json)
        printf("{\"workload\":\"handlers\",\"events\":%d,\"calls_per_s\":%.0f,\"ns_per_call\":%.2f,"
               "\"errors\":%llu}\n", EVENTS, per_s, ns,
               (unsigned long long)(st.errors[SL_FN_ON_ENTER] + st.errors[SL_FN_ON_LEAVE]));
    else
        printf("handlers: %.1f M enter/leave handler calls/s (%.2f ns each, empty handlers, "
               "best of %d rounds of %d events; target >= 20 M/s)\n", per_s / 1e6, ns, ROUNDS,
               EVENTS);
    free(ev);
    sl_lua_free(h);
    sl_space_free(s);
    return st.errors[SL_FN_ON_ENTER] + st.errors[SL_FN_ON_LEAVE] ? 1 : 0;
}
