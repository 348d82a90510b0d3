/*
 * Parallel ticks, below the server: spaces with script hosts (a Lua rule and handlers that
 * emit) and one without, ticked on a pool of threads (core/base/pool.h) as the server ticks
 * its due spaces, give every tick the same events and custom events, byte for byte and in
 * the same order, as the same spaces ticked one after the other on one thread.
 */
#include "test.h"

#include "base/pool.h"
#include "base/vec.h"
#include "engine/space.h"
#include "lua/host.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { SPACES = 5, ENTITIES = 240, TICKS = 40 };

/* One space: its engine space, its host (NULL for the last space: no scripts), and what its
 * last tick gave, serialised. */
typedef struct one {
    sl_space *s;
    sl_lua *h;
    sl_vec out;             /* bytes: the tick's events, then its custom events */
    size_t events, emits;
} one;

static void put(sl_vec *v, const void *p, size_t n)
{
    ASSERT(n == 0 || sl_vec_append(v, p, 1, n) != SIZE_MAX);
}

static void ev_sink(void *ud, const sl_event *ev, size_t n)
{
    one *o = ud;
    for (size_t i = 0; i < n; i++) {
        put(&o->out, &ev[i].watcher, 8);
        put(&o->out, &ev[i].target, 8);
        put(&o->out, &ev[i].kind, 4);
    }
    o->events += n;
}

static void emit_sink(void *ud, const sl_lua_emit *ev, size_t n)
{
    one *o = ud;
    for (size_t i = 0; i < n; i++) {
        put(&o->out, &ev[i].watcher, 8);
        put(&o->out, &ev[i].name_len, sizeof ev[i].name_len);
        put(&o->out, ev[i].name, ev[i].name_len);
        put(&o->out, &ev[i].payload_len, sizeof ev[i].payload_len);
        put(&o->out, ev[i].payload, ev[i].payload_len);
    }
    o->emits += n;
}

/* A job: space i ticks (what the server's fan-out runs on its pool). */
static void tick_job(void *ud, size_t i)
{
    one *o = (one *)ud + i;
    o->out.n = 0;
    if (o->h)
        ASSERT_EQ(sl_lua_tick(o->h, ev_sink, o, emit_sink, o), 0);
    else
        ASSERT_EQ(sl_space_tick(o->s, ev_sink, o), 0);
}

static void open_set(one *set, const char *dir)
{
    memset(set, 0, SPACES * sizeof *set);
    sl_space_config sc = {.width = 300, .height = 300};
    char why[4096];
    for (int k = 0; k < SPACES; k++) {
        ASSERT_EQ(sl_space_new(&set[k].s, &sc, why, sizeof why), 0);
        if (k == SPACES - 1)
            continue;
        sl_lua_config cfg = {.dir = dir};
        if (sl_lua_new(&set[k].h, set[k].s, &cfg, why, sizeof why))
            fprintf(stderr, "load: %s\n", why);
        ASSERT(set[k].h != NULL);
    }
}

static void close_set(one *set)
{
    for (int k = 0; k < SPACES; k++) {
        sl_lua_free(set[k].h);
        sl_space_free(set[k].s);
        sl_vec_free(&set[k].out);
    }
}

static uint32_t next_rand(uint32_t *seed)
{
    *seed = *seed * 1664525u + 1013904223u;
    return *seed >> 8;
}

static float coord(uint32_t *seed)
{
    return (float)(next_rand(seed) % 2990) / 10.0f;
}

TEST_IMPL(lua_parallel_ticks)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/sl-par-XXXXXX");
    ASSERT(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/init.lua", dir);
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    /* A rule that hides some pairs and handlers that emit, with a payload that depends on
     * the script's own state. (Payloads are arrays: two VMs may order the keys of one table
     * differently, whatever thread they run on, as LuaJIT's string hashes are seeded per
     * VM, so a table with two keys need not encode to the same JSON twice.) */
    fputs("local seen = 0\n"
          "function visible(w, t) return (w.id + t.id) % 5 ~= 0 end\n"
          "function on_enter(w, t) seen = seen + 1; emit(w.id, 'in', {t.id, seen}) end\n"
          "function on_leave(w, t) emit(w.id, 'out', {t = t.id}) end\n", f);
    fclose(f);
    static one serial[SPACES], parallel[SPACES];
    open_set(serial, dir);
    open_set(parallel, dir);
    sl_pool *pool = sl_pool_new(3);
    ASSERT(pool != NULL);
    uint32_t seed = 7;
    static float x[SPACES][ENTITIES], y[SPACES][ENTITIES];
    for (int k = 0; k < SPACES; k++)
        for (int i = 0; i < ENTITIES; i++) {
            x[k][i] = coord(&seed);
            y[k][i] = coord(&seed);
            for (int s = 0; s < 2; s++) {
                one *o = s ? &parallel[k] : &serial[k];
                ASSERT_EQ(sl_space_add(o->s, (uint64_t)i + 1, x[k][i], y[k][i], 25, 0, ~0u),
                          0);
            }
        }
    size_t events = 0, emits = 0;
    for (int t = 0; t < TICKS; t++) {
        for (int k = 0; k < SPACES; k++)
            for (int i = 0; i < ENTITIES; i++) {
                if (next_rand(&seed) % 3)
                    continue;
                x[k][i] = coord(&seed);
                y[k][i] = coord(&seed);
                ASSERT_EQ(sl_space_move(serial[k].s, (uint64_t)i + 1, x[k][i], y[k][i]), 0);
                ASSERT_EQ(sl_space_move(parallel[k].s, (uint64_t)i + 1, x[k][i], y[k][i]), 0);
            }
        for (int k = 0; k < SPACES; k++)
            tick_job(serial, (size_t)k);
        sl_pool_run(pool, SPACES, tick_job, parallel);
        for (int k = 0; k < SPACES; k++) {
            ASSERT_EQ(serial[k].out.n, parallel[k].out.n);
            ASSERT(memcmp(serial[k].out.p, parallel[k].out.p, serial[k].out.n) == 0);
        }
    }
    for (int k = 0; k < SPACES; k++) {
        ASSERT_EQ(serial[k].events, parallel[k].events);
        ASSERT_EQ(serial[k].emits, parallel[k].emits);
        events += serial[k].events;
        emits += serial[k].emits;
    }
    ASSERT(events > 5000);
    ASSERT(emits > 2000);
    ASSERT_EQ(serial[SPACES - 1].emits, 0);
    sl_pool_free(pool);
    close_set(serial);
    close_set(parallel);
    unlink(path);
    rmdir(dir);
    return 0;
}
