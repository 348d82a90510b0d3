/* The space's API one piece at a time: configuration, errors, index choice, memory. */
#include "test.h"

#include "engine/oracle.h"
#include "base/pool.h"
#include "base/rng.h"
#include "engine/space.h"

#include <float.h>
#include <math.h>
#include <string.h>

static sl_space *make(float w, float h, sl_index_kind kind, float cell)
{
    sl_space_config cfg = {.width = w, .height = h, .index = kind, .cell = cell};
    sl_space *s = NULL;
    char why[128];
    ASSERT_EQ(sl_space_new(&s, &cfg, why, sizeof why), 0);
    return s;
}

TEST_IMPL(space_bad_config)
{
    static const sl_space_config bad[] = {
        {.width = 10, .height = 10, .order = (sl_event_order)2},
        {.width = 0, .height = 10},
        {.width = 10, .height = NAN},
        {.width = INFINITY, .height = 10},
        {.width = 10, .height = 10, .hysteresis = -1},
        {.width = 10, .height = 10, .cell = -5},
        {.width = 10, .height = 10, .index = (sl_index_kind)7},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sl_space *s = NULL;
        char why[128] = "";
        ASSERT_EQ(sl_space_new(&s, &bad[i], why, sizeof why), SL_EINVAL);
        ASSERT(s == NULL);
        ASSERT(why[0] != '\0');
    }
    return 0;
}

TEST_IMPL(space_errors)
{
    sl_space *s = make(100, 100, SL_INDEX_GRID, 10);
    ASSERT_EQ(sl_space_add(s, 7, 10, 10, 5, 0, ~0u), 0);
    ASSERT_EQ(sl_space_add(s, 7, 20, 20, 5, 0, ~0u), SL_EEXIST);
    ASSERT(strcmp(sl_space_error(s), "add 7: entity already exists") == 0);
    ASSERT_EQ(sl_space_move(s, 8, 1, 1), SL_ENOENT);
    ASSERT(strcmp(sl_space_error(s), "move 8: no such entity") == 0);
    ASSERT_EQ(sl_space_move(s, 7, NAN, 1), SL_EINVAL);
    ASSERT_EQ(sl_space_move(s, 7, 100, 1), SL_ERANGE);
    ASSERT_EQ(sl_space_move(s, 7, -0.001f, 1), SL_ERANGE);
    ASSERT_EQ(sl_space_set_radius(s, 7, -1), SL_EINVAL);
    ASSERT_EQ(sl_space_set_radius(s, 7, INFINITY), SL_EINVAL);
    ASSERT_EQ(sl_space_set_layer(s, 7, 32), SL_EINVAL);
    ASSERT_EQ(sl_space_remove(s, 9), SL_ENOENT);
    ASSERT_EQ(sl_space_set_index(s, (sl_index_kind)9, 0), SL_EINVAL);
    /* None of the failures changed the entity. */
    sl_entity_info info;
    ASSERT_EQ(sl_space_get(s, 7, &info), 0);
    ASSERT(info.x == 10 && info.y == 10 && info.radius == 5 && info.layer == 0);
    ASSERT_EQ(sl_space_get(s, 8, &info), SL_ENOENT);
    float px = -1, py = -1;
    ASSERT_EQ(sl_space_position(s, 7, &px, &py), 0);
    ASSERT(px == 10 && py == 10);
    ASSERT_EQ(sl_space_position(s, 8, &px, &py), SL_ENOENT);
    ASSERT(px == 10 && py == 10);       /* untouched */
    ASSERT(strcmp(sl_strerror(SL_ERANGE), "position outside the map") == 0);
    sl_space_free(s);
    return 0;
}

/* What the failure callback of sl_space_move_many saw. */
typedef struct fails {
    const sl_space *s;
    size_t index[64];
    int code[64];
    char msg[64][96];
    size_t n;
} fails;

static void on_fail(void *ud, size_t i, int code)
{
    fails *f = ud;
    if (f->n < 64) {
        f->index[f->n] = i;
        f->code[f->n] = code;
        snprintf(f->msg[f->n], sizeof f->msg[0], "%s", sl_space_error(f->s));
        f->n++;
    }
}

static void hash_sink(void *ud, const sl_event *ev, size_t n)
{
    uint64_t *h = ud;
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ (ev[i].watcher * 31 + ev[i].target * 7 + ev[i].kind)) * 0x100000001b3ULL;
}

/* Checks that events arrive sorted across the sink's calls, and counts calls and events. */
typedef struct order_check {
    uint64_t last_w, last_t;
    size_t calls, events;
    bool sorted;
} order_check;

static void order_sink(void *ud, const sl_event *ev, size_t n)
{
    order_check *o = ud;
    o->calls++;
    for (size_t i = 0; i < n; i++, o->events++) {
        if (o->events && (ev[i].watcher < o->last_w ||
                          (ev[i].watcher == o->last_w && ev[i].target <= o->last_t)))
            o->sorted = false;
        o->last_w = ev[i].watcher;
        o->last_t = ev[i].target;
    }
}

TEST_IMPL(space_events_in_chunks)
{
    /* 300 entities in one spot: 89,700 enters in one tick, handed over in several calls,
     * in (watcher, target) order across them. */
    sl_space *s = make(100, 100, SL_INDEX_GRID, 10);
    for (uint64_t id = 1; id <= 300; id++)
        ASSERT_EQ(sl_space_add(s, id * 7919 % 1000, 50, 50, 5, 0, ~0u), 0);
    order_check o = {.sorted = true};
    ASSERT_EQ(sl_space_tick(s, order_sink, &o), 0);
    ASSERT_EQ(o.events, 300 * 299);
    ASSERT(o.calls > 1);
    ASSERT(o.sorted);
    sl_space_free(s);
    return 0;
}

/* A rule that denies pairs whose watcher id is odd. */
static void deny_odd(void *ud, const sl_rule_pair *p, size_t n, uint8_t *verdict)
{
    (void)ud;
    for (size_t i = 0; i < n; i++)
        verdict[i] = (p[i].watcher & 1) == 0;
}

TEST_IMPL(space_sees_last_tick)
{
    /* sl_space_sees answers for the last tick, whatever changed since, including the pairs
     * only the hysteresis holds and the pairs a rule denies (the stored exceptions). */
    sl_space_config cfg = {.width = 100, .height = 100, .index = SL_INDEX_GRID, .cell = 10,
                           .hysteresis = 2};
    sl_space *s = NULL;
    ASSERT_EQ(sl_space_new(&s, &cfg, NULL, 0), 0);
    ASSERT_EQ(sl_space_add(s, 2, 10, 10, 5, 0, ~0u), 0);
    ASSERT_EQ(sl_space_add(s, 4, 14, 10, 5, 0, ~0u), 0);
    ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
    ASSERT(sl_space_sees(s, 2, 4) && sl_space_sees(s, 4, 2));
    ASSERT(!sl_space_sees(s, 2, 2) && !sl_space_sees(s, 2, 99));
    /* Into the band (5 < 6 <= 5 + 2): held. */
    ASSERT_EQ(sl_space_move(s, 4, 16, 10), 0);
    ASSERT(sl_space_sees(s, 2, 4));         /* nothing ticked yet */
    ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
    ASSERT(sl_space_sees(s, 2, 4) && sl_space_sees(s, 4, 2));
    sl_space_stats st;
    sl_space_get_stats(s, &st);
    ASSERT(st.pairs == 2 && st.bytes_pairs > 0);    /* two held pairs are exceptions */
    /* Far away, then a new radius, then removed: still "yes" until the next tick. */
    ASSERT_EQ(sl_space_move(s, 4, 90, 90), 0);
    ASSERT_EQ(sl_space_set_radius(s, 2, 0), 0);
    ASSERT(sl_space_sees(s, 2, 4));
    ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
    ASSERT(!sl_space_sees(s, 2, 4) && !sl_space_sees(s, 4, 2));
    sl_space_get_stats(s, &st);
    ASSERT_EQ(st.pairs, 0);
    /* A band pair entering from outside is not visible (hysteresis only keeps). */
    ASSERT_EQ(sl_space_set_radius(s, 2, 5), 0);
    ASSERT_EQ(sl_space_move(s, 4, 16, 10), 0);
    ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
    ASSERT(!sl_space_sees(s, 2, 4) && !sl_space_sees(s, 4, 2));
    /* A rule denying odd watchers, in range: 3 -> 2 is denied (an exception), 2 -> 3 not. */
    ASSERT_EQ(sl_space_add(s, 3, 12, 10, 5, 0, ~0u), 0);
    sl_space_set_rule(s, deny_odd, NULL);
    ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
    ASSERT(sl_space_sees(s, 2, 3) && !sl_space_sees(s, 3, 2));
    sl_entity_info info;
    ASSERT_EQ(sl_space_get(s, 3, &info), 0);
    ASSERT_EQ(info.sees, 0);
    ASSERT_EQ(sl_space_get(s, 2, &info), 0);
    ASSERT_EQ(info.sees, 1);
    /* Removed and re-added before a tick: a new entity, which saw nothing yet. */
    ASSERT_EQ(sl_space_remove(s, 2), 0);
    ASSERT_EQ(sl_space_add(s, 2, 10, 10, 5, 0, ~0u), 0);
    ASSERT(!sl_space_sees(s, 2, 3));
    sl_space_free(s);
    return 0;
}

/* Ticks both spaces: their events must hash alike. */
static void tick_alike(sl_space *a, sl_space *b)
{
    uint64_t ha = 0, hb = 0;
    ASSERT_EQ(sl_space_tick(a, hash_sink, &ha), 0);
    ASSERT_EQ(sl_space_tick(b, hash_sink, &hb), 0);
    ASSERT_EQ(ha, hb);
}

/* Entities 1..n stand at the same places in both spaces (and, with sees, see as many). */
static void placed_alike(const sl_space *a, const sl_space *b, uint64_t n, bool sees)
{
    for (uint64_t id = 1; id <= n; id++) {
        sl_entity_info ia, ib;
        ASSERT_EQ(sl_space_get(a, id, &ia), 0);
        ASSERT_EQ(sl_space_get(b, id, &ib), 0);
        ASSERT(ia.x == ib.x && ia.y == ib.y && (!sees || ia.sees == ib.sees));
    }
}

/* One batch of 300 random moves (some unknown ids, some outside the map, some NaN) in a,
 * the same moves one at a time in b: the same failures, in order, with the same messages. */
static void batch_as_single(sl_space *a, sl_space *b, sl_rng *g)
{
    sl_move mv[300];
    for (int i = 0; i < 300; i++) {
        uint64_t id = 1 + sl_rng_below(g, 520);     /* some unknown */
        float x = sl_rng_float(g) * 1010, y = sl_rng_float(g) * 1000;    /* some outside */
        if (sl_rng_below(g, 50) == 0)
            x = NAN;
        mv[i] = (sl_move){id, x, y, 0};
    }
    fails f = {.s = a, .n = 0};
    size_t nf = sl_space_move_many(a, mv, 300, on_fail, &f);
    ASSERT_EQ(nf, f.n);
    size_t k = 0;
    for (size_t i = 0; i < 300; i++) {
        int rc = sl_space_move(b, mv[i].id, mv[i].x, mv[i].y);
        if (rc) {
            ASSERT(k < f.n && f.index[k] == i && f.code[k] == rc);
            ASSERT(strcmp(f.msg[k], sl_space_error(b)) == 0);
            k++;
        }
    }
    ASSERT_EQ(k, f.n);
    ASSERT(f.n > 0 && f.n < 300);
}

/* A batch far longer than the space has slots (it goes in chunks), each id moved many
 * times: the last move of each id wins, as one at a time. */
static void long_batch(sl_rng *g)
{
    sl_space *a = make(100, 100, SL_INDEX_GRID, 10), *b = make(100, 100, SL_INDEX_GRID, 10);
    for (uint64_t id = 1; id <= 5; id++) {
        ASSERT_EQ(sl_space_add(a, id, 50, 50, 20, 0, ~0u), 0);
        ASSERT_EQ(sl_space_add(b, id, 50, 50, 20, 0, ~0u), 0);
    }
    static sl_move mv[2000];
    size_t unknown = 0;
    for (size_t i = 0; i < 2000; i++) {
        mv[i] = (sl_move){1 + sl_rng_below(g, 6), sl_rng_float(g) * 100, sl_rng_float(g) * 100, 0};
        unknown += mv[i].id == 6;
        (void)sl_space_move(b, mv[i].id, mv[i].x, mv[i].y);
    }
    ASSERT_EQ(sl_space_move_many(a, mv, 2000, NULL, NULL), unknown);
    placed_alike(a, b, 5, false);
    tick_alike(a, b);
    /* One id moved several times in a batch (every key the same slot): the last one wins. */
    sl_move same[3] = {{3, 10, 10, 0}, {3, 20, 20, 0}, {3, 30, 40, 0}};
    ASSERT_EQ(sl_space_move_many(a, same, 3, NULL, NULL), 0);
    sl_entity_info i3;
    ASSERT_EQ(sl_space_get(a, 3, &i3), 0);
    ASSERT(i3.x == 30 && i3.y == 40);
    sl_space_free(a);
    sl_space_free(b);
}

TEST_IMPL(space_move_many)
{
    /* A batch does exactly what the same moves one at a time do, failures included. */
    sl_space *a = make(1000, 1000, SL_INDEX_GRID, 32), *b = make(1000, 1000, SL_INDEX_GRID, 32);
    sl_rng g;
    sl_rng_seed(&g, 5);
    for (uint64_t id = 1; id <= 500; id++) {
        float x = sl_rng_float(&g) * 1000, y = sl_rng_float(&g) * 1000;
        ASSERT_EQ(sl_space_add(a, id, x, y, 40, 0, ~0u), 0);
        ASSERT_EQ(sl_space_add(b, id, x, y, 40, 0, ~0u), 0);
    }
    tick_alike(a, b);
    for (int round = 0; round < 20; round++) {
        batch_as_single(a, b, &g);
        tick_alike(a, b);
    }
    placed_alike(a, b, 500, true);
    /* The callback runs while sl_space_error still describes the failure. */
    sl_move bad[2] = {{7, 1, 1, 0}, {9999, 1, 1, 0}};
    ASSERT_EQ(sl_space_move_many(a, bad, 2, NULL, NULL), 1);
    ASSERT(strcmp(sl_space_error(a), "move 9999: no such entity") == 0);
    sl_space_free(a);
    sl_space_free(b);
    long_batch(&g);
    return 0;
}

TEST_IMPL(space_auto_index)
{
    /* A small map: the grid. A map far too large for cells of the radii: the quadtree. */
    sl_space *s = make(4096, 4096, SL_INDEX_AUTO, 0);
    sl_space_stats st;
    sl_space_get_stats(s, &st);
    ASSERT_EQ(st.index, SL_INDEX_GRID);
    sl_space_free(s);
    s = make(1e7f, 1e7f, SL_INDEX_AUTO, 0);
    for (uint64_t i = 0; i < 100; i++)
        ASSERT_EQ(sl_space_add(s, i, (float)i * 1000, 5e6f, 10, 0, ~0u), 0);
    ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
    sl_space_get_stats(s, &st);
    ASSERT_EQ(st.index, SL_INDEX_QUADTREE);
    ASSERT(st.cell == 10);  /* the median radius */
    ASSERT_EQ(st.pairs, 0);
    sl_space_free(s);
    return 0;
}

TEST_IMPL(space_memory)
{
    /* Memory is reported, and a burst of events does not pin its buffers for ever. */
    sl_space *s = make(1000, 1000, SL_INDEX_GRID, 0);
    for (uint64_t i = 0; i < 3000; i++)
        ASSERT_EQ(sl_space_add(s, i, (float)(i % 100) * 10, (float)(i / 100) * 10, 60, 0, ~0u), 0);
    ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
    sl_space_stats st;
    sl_space_get_stats(s, &st);
    ASSERT(st.pairs > 100000);
    size_t burst = st.bytes_total;
    ASSERT_EQ(st.bytes_pairs, 0);   /* pairs are implicit: no hysteresis, no rule, no lists */
    ASSERT(st.bytes_entities > 3000 * 50 && st.bytes_index > 3000 * 12);
    ASSERT_EQ(sl_space_move(s, 1, 5, 5), 0);
    ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
    sl_space_get_stats(s, &st);
    ASSERT(st.bytes_total + (1u << 20) < burst);
    ASSERT_EQ(st.entities, 3000);
    ASSERT_EQ(st.watchers, 3000);
    sl_space_free(s);
    return 0;
}

/* An allocator that refuses every allocation while `failing` is set. */
typedef struct flaky {
    bool failing;
    uint64_t refused;
} flaky;

static void *flaky_realloc(void *ud, void *p, size_t old, size_t size)
{
    flaky *f = ud;
    (void)old;
    if (size == 0) {
        free(p);
        return NULL;
    }
    if (f->failing && size > old) {
        f->refused++;
        return NULL;
    }
    return realloc(p, size);
}

static const sl_event *got;
static size_t ngot;

static void keep(void *ud, const sl_event *ev, size_t n)
{
    (void)ud;
    got = ev;
    ngot = n;
}

TEST_IMPL(space_out_of_memory)
{
    /* Operations run while allocations fail must either succeed or fail with SL_ENOMEM and
     * change nothing: the oracle gets only the operations that succeeded, and the next
     * ticks (allocations allowed again) must match it exactly. */
    flaky f = {0};
    sl_allocator alloc = {flaky_realloc, &f};
    sl_space_config cfg = {.width = 500, .height = 500, .index = SL_INDEX_QUADTREE,
                           .hysteresis = 2, .alloc = &alloc};
    sl_space *s;
    char why[128];
    ASSERT_EQ(sl_space_new(&s, &cfg, why, sizeof why), 0);
    sl_oracle *o = sl_oracle_new(500, 500, 2, false);
    sl_rng g;
    sl_rng_seed(&g, 99);
    uint64_t ok = 0, nomem = 0;
    for (int tick = 0; tick < 60; tick++) {
        f.failing = tick % 2 == 1;
        for (int i = 0; i < 150; i++) {
            uint64_t id = sl_rng_below(&g, 400);
            float x = sl_rng_float(&g) * 500, y = sl_rng_float(&g) * 500;
            int rc, want;
            switch (sl_rng_below(&g, 4)) {
            case 0:
                rc = sl_space_remove(s, id);
                want = rc ? rc : sl_oracle_remove(o, id);
                break;
            case 1:
                rc = sl_space_move(s, id, x, y);
                want = rc ? rc : sl_oracle_move(o, id, x, y);
                break;
            default:
                rc = sl_space_add(s, id, x, y, 40, 0, ~0u);
                want = rc ? rc : sl_oracle_add(o, id, x, y, 40, 0, ~0u);
                break;
            }
            ASSERT(rc == 0 || rc == SL_ENOMEM || rc == SL_EEXIST || rc == SL_ENOENT);
            if (rc == 0)
                ASSERT_EQ(want, 0);
            ok += rc == 0;
            nomem += rc == SL_ENOMEM;
        }
        f.failing = false;
        ASSERT_EQ(sl_space_tick(s, keep, NULL), 0);
        const sl_event *ev;
        long n = sl_oracle_tick(o, &ev);
        ASSERT_EQ(ngot, n);
        for (long i = 0; i < n; i++)
            ASSERT(ev[i].watcher == got[i].watcher && ev[i].target == got[i].target &&
                   ev[i].kind == got[i].kind);
        ngot = 0;
    }
    printf("%llu operations succeeded, %llu refused for memory, %llu allocations refused\n",
           (unsigned long long)ok, (unsigned long long)nomem, (unsigned long long)f.refused);
    ASSERT(nomem > 0 && ok > 0);
    sl_space_free(s);
    sl_oracle_free(o);
    return 0;
}

/* An allocator that keeps the balance of the sizes it is told (a wrong size shows). */
/* (Atomic: a split tick allocates on the pool's threads at once.) */
static void *counting_realloc(void *ud, void *p, size_t old, size_t size)
{
    __atomic_fetch_add((int64_t *)ud, (int64_t)size - (int64_t)old, __ATOMIC_RELAXED);
    if (size == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, size);
}

TEST_IMPL(space_compact)
{
    /* Compaction keeps every pair: a tick after it reports nothing new, and moves still
     * give the same events as in a space that was never compacted, through a second
     * compaction too (bucket blocks move into a new arena while some have left the old). */
    int64_t balance = 0;
    sl_allocator counting = {counting_realloc, &balance};
    sl_space_config cfg = {.width = 2000, .height = 2000, .index = SL_INDEX_GRID,
                           .alloc = &counting};
    sl_space *a, *b = make(2000, 2000, SL_INDEX_GRID, 0);
    char why[128];
    ASSERT_EQ(sl_space_new(&a, &cfg, why, sizeof why), 0);
    sl_rng g;
    sl_rng_seed(&g, 5);
    for (uint64_t i = 0; i < 3000; i++) {
        float x = sl_rng_float(&g) * 2000, y = sl_rng_float(&g) * 2000;
        ASSERT_EQ(sl_space_add(a, i * 7919, x, y, 40, 0, ~0u), 0);
        ASSERT_EQ(sl_space_add(b, i * 7919, x, y, 40, 0, ~0u), 0);
    }
    ASSERT_EQ(sl_space_move(a, 0, 1, 1), 0);
    ASSERT_EQ(sl_space_move(b, 0, 1, 1), 0);
    ASSERT_EQ(sl_space_compact(a), SL_EINVAL);  /* changes pending */
    ASSERT_EQ(sl_space_tick(a, NULL, NULL), 0);
    ASSERT_EQ(sl_space_tick(b, NULL, NULL), 0);
    sl_space_stats sa, sb;
    sl_space_get_stats(a, &sa);
    uint64_t before = sa.compactions;
    ASSERT_EQ(sl_space_compact(a), 0);
    sl_space_get_stats(a, &sa);
    ASSERT_EQ(sa.compactions, before + 1);
    ngot = 0;
    ASSERT_EQ(sl_space_tick(a, keep, NULL), 0);
    ASSERT_EQ(ngot, 0);
    for (int t = 0; t < 10; t++) {
        if (t == 5)
            ASSERT_EQ(sl_space_compact(a), 0);
        for (int k = 0; k < 300; k++) {
            uint64_t id = sl_rng_below(&g, 3000) * 7919;
            float x = sl_rng_float(&g) * 2000, y = sl_rng_float(&g) * 2000;
            ASSERT_EQ(sl_space_move(a, id, x, y), 0);
            ASSERT_EQ(sl_space_move(b, id, x, y), 0);
        }
        ngot = 0;
        ASSERT_EQ(sl_space_tick(a, keep, NULL), 0);
        size_t na = ngot;
        sl_event *copy = malloc(na * sizeof *copy);
        memcpy(copy, got, na * sizeof *copy);
        ngot = 0;
        ASSERT_EQ(sl_space_tick(b, keep, NULL), 0);
        ASSERT_EQ(na, ngot);
        for (size_t i = 0; i < na; i++)
            ASSERT(copy[i].watcher == got[i].watcher && copy[i].target == got[i].target &&
                   copy[i].kind == got[i].kind);
        free(copy);
    }
    sl_space_get_stats(a, &sa);
    sl_space_get_stats(b, &sb);
    ASSERT_U64_EQ(sa.pairs, sb.pairs);
    ASSERT_U64_EQ(sa.compactions, before + 2);
    sl_space_free(a);
    sl_space_free(b);
    ASSERT_EQ(balance, 0);      /* everything given back, each block at the size it had */
    return 0;
}

/* ---- memory follows entities, not the map -------------------------------------------- */

/* The most an empty space may hold, whatever its map and cell. */
#define EMPTY_SPACE_BYTES 4096

/* Maps from tiny to the largest a config accepts, cells from the smallest float up. */
static const struct mem_shape {
    float w, h, cell;
    sl_index_kind kind;
    float hyst;
} mem_shapes[] = {
    {4096, 4096, 1, SL_INDEX_GRID, 0},
    {4096, 4096, 1, SL_INDEX_QUADTREE, 0},
    {4096, 4096, 1, SL_INDEX_AUTO, 0},
    {4096, 4096, 0, SL_INDEX_AUTO, 2},
    {64, 64, 1, SL_INDEX_GRID, 0},
    {2048, 2048, 1, SL_INDEX_GRID, 3},         /* exactly SL_GRID_MAX_CELLS cells */
    {1e6f, 1e6f, 1, SL_INDEX_GRID, 0},
    {4096, 4096, FLT_TRUE_MIN, SL_INDEX_GRID, 0},
    {FLT_MAX, FLT_MAX, FLT_TRUE_MIN, SL_INDEX_GRID, 0},
    {FLT_MAX, FLT_MAX, 1, SL_INDEX_AUTO, 0},
    {FLT_MAX, 1, 1, SL_INDEX_GRID, 0},
    {1, FLT_MAX, 1, SL_INDEX_GRID, 0},
    {1, FLT_MAX, 1, SL_INDEX_QUADTREE, 0},
};
#define NSHAPES (sizeof mem_shapes / sizeof mem_shapes[0])

static sl_space *make_counted(const struct mem_shape *m, sl_allocator *alloc, bool stay)
{
    sl_space_config cfg = {.width = m->w, .height = m->h, .index = m->kind, .cell = m->cell,
                           .hysteresis = m->hyst, .stay = stay, .alloc = alloc};
    sl_space *s = NULL;
    char why[128];
    ASSERT_EQ(sl_space_new(&s, &cfg, why, sizeof why), 0);
    return s;
}

/* The space's own figure must be the allocator's, to the byte. */
static size_t check_stats_exact(const sl_space *s, int64_t balance)
{
    sl_space_stats st;
    sl_space_get_stats(s, &st);
    ASSERT_EQ((int64_t)st.bytes_total, balance);
    return st.bytes_total;
}

TEST_IMPL(space_empty_memory)
{
    /* An empty space holds at most EMPTY_SPACE_BYTES of engine memory, whatever its map
     * and cell, before and after an empty tick, and again once its only entity is gone
     * and it compacted; and its stats say exactly how much. */
    for (size_t i = 0; i < NSHAPES; i++) {
        const struct mem_shape *m = &mem_shapes[i];
        int64_t balance = 0;
        sl_allocator counting = {counting_realloc, &balance};
        sl_space *s = make_counted(m, &counting, i % 2 == 1);
        sl_space_stats st;
        sl_space_get_stats(s, &st);
        printf("%g x %g, cell %g, %s (in use: %s, cell %g): %lld bytes empty\n", (double)m->w,
               (double)m->h, (double)m->cell, sl_index_kind_name(m->kind),
               sl_index_kind_name(st.index), (double)st.cell, (long long)balance);
        ASSERT_LE(balance, EMPTY_SPACE_BYTES);
        check_stats_exact(s, balance);
        ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
        ASSERT_LE(balance, EMPTY_SPACE_BYTES);
        check_stats_exact(s, balance);
        /* One entity at the far corner of the map, then none. */
        float x = nextafterf(m->w, 0), y = nextafterf(m->h, 0);
        ASSERT_EQ(sl_space_add(s, 1, x, y, 5, 0, ~0u), 0);
        ASSERT_EQ(sl_space_add(s, 2, 0, 0, 5, 0, ~0u), 0);
        ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
        size_t two = check_stats_exact(s, balance);
        /* Regions are counted too, and give their memory back when the last goes. */
        float tri[6] = {0, 0, 10, 0, 0, 10};
        sl_region circle = {.kind = SL_REGION_CIRCLE, .r = 3, .mask = ~0u};
        sl_region poly = {.kind = SL_REGION_POLYGON, .xy = tri, .n = 3, .mask = ~0u};
        ASSERT_EQ(sl_space_set_region(s, 7, &circle), 0);
        ASSERT_EQ(sl_space_set_region(s, 8, &poly), 0);
        ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
        ASSERT(sl_space_in_region(s, 7, 2) && sl_space_in_region(s, 8, 2));
        check_stats_exact(s, balance);
        ASSERT_EQ(sl_space_remove_region(s, 7), 0);
        ASSERT_EQ(sl_space_remove_region(s, 8), 0);
        ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
        check_stats_exact(s, balance);
        ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
        /* (what stays is the query scratch their first judgement grew) */
        ASSERT(check_stats_exact(s, balance) < two + 2048);
        ASSERT_EQ(sl_space_remove(s, 1), 0);
        ASSERT_EQ(sl_space_remove(s, 2), 0);
        ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
        check_stats_exact(s, balance);
        ASSERT_EQ(sl_space_compact(s), 0);
        printf("    two entities: %zu bytes; both gone and compacted: %lld bytes\n", two,
               (long long)balance);
        ASSERT_LE(balance, EMPTY_SPACE_BYTES);
        check_stats_exact(s, balance);
        sl_space_free(s);
        ASSERT_EQ(balance, 0);
    }
    return 0;
}

TEST_IMPL(space_memory_drains)
{
    /* 100k entities scattered over a big map, moving, then all removed: the memory they
     * took goes back once the space compacts, however fine its cells; the stats agree with
     * the allocator at every step. */
    static const struct mem_shape drain[] = {
        {4096, 4096, 1, SL_INDEX_GRID, 0},
        {4096, 4096, 64, SL_INDEX_GRID, 0},
        {4096, 4096, 0, SL_INDEX_AUTO, 0},
        {4096, 4096, 1, SL_INDEX_QUADTREE, 2},
        {1e6f, 1e6f, 1, SL_INDEX_GRID, 0},      /* a paged directory */
    };
    enum { N = 100000 };
    for (size_t i = 0; i < sizeof drain / sizeof drain[0]; i++) {
        const struct mem_shape *m = &drain[i];
        int64_t balance = 0;
        sl_allocator counting = {counting_realloc, &balance};
        sl_space *s = make_counted(m, &counting, false);
        sl_rng g;
        sl_rng_seed(&g, 40 + i);
        float w = m->w;
        for (uint64_t id = 0; id < N; id++)
            ASSERT_EQ(sl_space_add(s, id * 3, sl_clamp_to_map(sl_rng_float(&g) * w, w),
                                   sl_clamp_to_map(sl_rng_float(&g) * w, w), 3, 0, ~0u), 0);
        ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
        size_t full = check_stats_exact(s, balance);
        sl_space_stats st;
        sl_space_get_stats(s, &st);
        ASSERT_EQ(st.big_watchers, 0);  /* (a radius over 4 cells would make all of them big) */
        for (int t = 0; t < 3; t++) {
            for (uint64_t k = 0; k < N / 5; k++) {
                uint64_t id = sl_rng_below(&g, N) * 3;
                float x, y;
                ASSERT_EQ(sl_space_position(s, id, &x, &y), 0);
                x = sl_clamp_to_map(x + sl_rng_float(&g) * 10 - 5, w);
                y = sl_clamp_to_map(y + sl_rng_float(&g) * 10 - 5, w);
                ASSERT_EQ(sl_space_move(s, id, x, y), 0);
            }
            ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
            check_stats_exact(s, balance);
        }
        for (uint64_t id = 0; id < N; id++)
            ASSERT_EQ(sl_space_remove(s, id * 3), 0);
        ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
        check_stats_exact(s, balance);
        ASSERT_EQ(sl_space_compact(s), 0);
        sl_space_get_stats(s, &st);
        printf("%g x %g, cell %g, %s: %.1f MiB (%.0f B/entity) with %d entities, "
               "%lld bytes once drained and compacted\n", (double)m->w, (double)m->h,
               (double)st.cell, sl_index_kind_name(st.index), full / 1048576.0,
               (double)full / N, N, (long long)balance);
        fflush(stdout);
        ASSERT_LE(balance, EMPTY_SPACE_BYTES);
        check_stats_exact(s, balance);
        sl_space_free(s);
        ASSERT_EQ(balance, 0);
    }
    return 0;
}

/* A rule that denies about a third of the pairs, by their ids. */
static void deny_some(void *ud, const sl_rule_pair *p, size_t n, uint8_t *verdict)
{
    (void)ud;
    for (size_t i = 0; i < n; i++)
        verdict[i] = (p[i].watcher * 31 + p[i].target * 17) % 3 != 0;
}

TEST_IMPL(space_memory_exact)
{
    /* Every kind of memory a space holds (exception lists from hysteresis and a rule, the
     * rule's queue, ghosts, events, both index kinds and an index switch) is in its stats:
     * bytes_total equals the allocator's balance after every tick. */
    for (int kind = 0; kind < 3; kind++) {
        int64_t balance = 0;
        sl_allocator counting = {counting_realloc, &balance};
        struct mem_shape m = {1000, 1000, kind == 2 ? 0 : 10, (sl_index_kind)kind, 4};
        sl_space *s = make_counted(&m, &counting, true);
        sl_space_set_rule(s, deny_some, NULL);
        sl_rng g;
        sl_rng_seed(&g, 77 + kind);
        for (int t = 0; t < 40; t++) {
            for (int k = 0; k < 400; k++) {
                uint64_t id = sl_rng_below(&g, 3000);
                float x = sl_rng_float(&g) * 1000, y = sl_rng_float(&g) * 1000;
                switch (sl_rng_below(&g, 6)) {
                case 0: (void)sl_space_remove(s, id); break;
                case 1: (void)sl_space_set_radius(s, id, 20 + sl_rng_float(&g) * 40); break;
                case 2: (void)sl_space_touch(s, id); break;
                default:
                    if (sl_space_move(s, id, x, y) == SL_ENOENT)
                        ASSERT_EQ(sl_space_add(s, id, x, y, 40, 0, ~0u), 0);
                    break;
                }
            }
            if (t == 20)
                ASSERT_EQ(sl_space_set_index(s, kind == 1 ? SL_INDEX_GRID : SL_INDEX_QUADTREE,
                                             0), 0);
            ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
            check_stats_exact(s, balance);
            if (t % 10 == 9) {
                ASSERT_EQ(sl_space_compact(s), 0);
                check_stats_exact(s, balance);
            }
        }
        sl_space_stats st;
        sl_space_get_stats(s, &st);
        ASSERT(st.bytes_pairs > 0 && st.rule_calls > 0);
        sl_space_free(s);
        ASSERT_EQ(balance, 0);
    }
    return 0;
}

/* A tick's events as one sequence hash (order counts) and their number. */
typedef struct seq_sink {
    uint64_t hash, n;
} seq_sink;

static void seq_events(void *ud, const sl_event *ev, size_t n)
{
    seq_sink *q = ud;
    for (size_t i = 0; i < n; i++)
        q->hash = (q->hash ^ ((ev[i].watcher * 1000003 + ev[i].target) * 4 + ev[i].kind)) *
                  0x100000001B3ULL;
    q->n += n;
}

/*
 * A space that lends its moved passes to a pool of 2 or 3 threads gives, tick after tick,
 * exactly the sequence of events of the same space on one thread, in both orders (and in
 * the tick order also when it streams its events while the tick runs): 24,000
 * entities of one radius on a grid, a fifth moving each tick (enough to split), with a few
 * removals, re-adds, additions and a far jump among them (special passes), then a tick in
 * which a radius differs (not uniform: not split). With depth > 0 the same in a 3D space,
 * the moves going up and down too.
 */
static int split_tick(float depth)
{
    enum { N = 24000, TICKS = 12, SPACES = 6 };
    sl_pool *pools[2] = {sl_pool_new(2), sl_pool_new(3)};
    ASSERT(pools[0] && pools[1]);
    sl_space *sp[SPACES];
    int64_t balance = 0;        /* space 2's memory, which its stats must count exactly */
    sl_allocator counting = {counting_realloc, &balance};
    for (int k = 0; k < SPACES; k++) {
        sl_space_config cfg = {.width = 2000, .height = 2000, .index = SL_INDEX_GRID,
                               .order = k < 3 ? SL_ORDER_TICK : SL_ORDER_ID,
                               .stream = k == 1, .alloc = k == 2 ? &counting : NULL,
                               .depth = depth};
        char why[128];
        ASSERT_EQ(sl_space_new(&sp[k], &cfg, why, sizeof why), 0);
        if (k % 3)
            sl_space_set_pool(sp[k], pools[k % 3 - 1]);
    }
    static float x[N], y[N], z[N];
    static bool live[N];
    sl_rng g;
    sl_rng_seed(&g, 5);
    for (uint32_t i = 0; i < N; i++) {
        x[i] = sl_rng_float(&g) * 2000;
        y[i] = sl_rng_float(&g) * 2000;
        z[i] = sl_rng_float(&g) * depth;
        live[i] = true;
        for (int k = 0; k < SPACES; k++)
            ASSERT_EQ(sl_space_add3(sp[k], i + 1, x[i], y[i], z[i], 30, 0, ~0u), 0);
    }
    uint64_t split_ticks = 0;
    for (int t = 0; t <= TICKS; t++) {
        for (uint32_t m = 0; t && m < N / 5; m++) {
            uint32_t i = sl_rng_below(&g, N);
            uint32_t what = sl_rng_below(&g, 400);
            if (what == 1 && t % 3)
                what = 3;   /* re-adds (which make the tick order sort) in every third tick */
            float step = what == 2 ? 900 : 4;       /* a far jump, or a step */
            float nx = sl_clamp_to_map(x[i] + (sl_rng_float(&g) * 2 - 1) * step, 2000);
            float ny = sl_clamp_to_map(y[i] + (sl_rng_float(&g) * 2 - 1) * step, 2000);
            float nz = depth > 0 ? sl_clamp_to_map(z[i] + (sl_rng_float(&g) * 2 - 1) * 4, depth)
                                 : 0;
            for (int k = 0; k < SPACES; k++) {
                if (!live[i]) {
                    ASSERT_EQ(sl_space_add3(sp[k], i + 1, x[i], y[i], z[i], 30, 0, ~0u), 0);
                } else if (what == 0) {
                    ASSERT_EQ(sl_space_remove(sp[k], i + 1), 0);
                } else if (what == 1) {     /* removed and added again in the same tick */
                    ASSERT_EQ(sl_space_remove(sp[k], i + 1), 0);
                    ASSERT_EQ(sl_space_add3(sp[k], i + 1, x[i], y[i], z[i], 30, 0, ~0u), 0);
                } else {
                    ASSERT_EQ(sl_space_move3(sp[k], i + 1, nx, ny, nz), 0);
                }
            }
            if (live[i] && what > 1) {
                x[i] = nx;
                y[i] = ny;
                z[i] = nz;
            }
            live[i] = live[i] ? what != 0 : true;
        }
        if (t == TICKS)     /* one odd radius: the tick is not uniform */
            for (int k = 0; k < SPACES; k++)
                ASSERT_EQ(sl_space_set_radius(sp[k], 1, 45), 0);
        seq_sink q[SPACES] = {{0}};
        for (int k = 0; k < SPACES; k++)
            ASSERT_EQ(sl_space_tick(sp[k], seq_events, &q[k]), 0);
        sl_space_stats st[SPACES];
        for (int k = 0; k < SPACES; k++) {
            sl_space_get_stats(sp[k], &st[k]);
            ASSERT_U64_EQ(st[k].pairs, st[0].pairs);
            ASSERT_U64_EQ(q[k].n, q[0].n);
            ASSERT_U64_EQ(q[k].hash, q[k < 3 ? 0 : 3].hash);   /* per order */
        }
        split_ticks += st[0].last_uniform && t < TICKS;
        check_stats_exact(sp[2], balance);
        ASSERT(q[0].n > 0);
    }
    ASSERT(split_ticks >= TICKS - 1);
    /* The see counts, changed from several threads at once, agree too. */
    for (uint32_t i = 0; i < N; i++) {
        sl_entity_info a, b;
        if (sl_space_get(sp[0], i + 1, &a))
            continue;
        for (int k = 1; k < SPACES; k++) {
            ASSERT_EQ(sl_space_get(sp[k], i + 1, &b), 0);
            ASSERT_EQ(b.sees, a.sees);
        }
    }
    for (int k = 0; k < SPACES; k++)
        sl_space_free(sp[k]);
    sl_pool_free(pools[0]);
    sl_pool_free(pools[1]);
    return 0;
}

TEST_IMPL(space_split_tick)
{
    return split_tick(0) || split_tick(60);
}

/* Regions cost bounded memory: boxes over the whole map take the region grid's 64 x 64
 * cells each, and past 2^20 cell entries a region is refused (SL_ELIMIT) and nothing
 * changes; reshaping a region counts it once. */
TEST_IMPL(space_regions_bounded)
{
    sl_space_config cfg = {.width = 4096, .height = 4096};
    sl_space *s;
    char why[256];
    ASSERT_EQ(sl_space_new(&s, &cfg, why, sizeof why), 0);
    sl_region all = {.kind = SL_REGION_RECT, .x = 0, .y = 0, .x1 = 4096, .y1 = 4096,
                     .mask = ~0u};
    for (uint64_t id = 1; id <= 256; id++)
        ASSERT_EQ(sl_space_set_region(s, id, &all), 0);
    ASSERT_EQ(sl_space_set_region(s, 257, &all), SL_ELIMIT);
    ASSERT(strstr(sl_space_error(s), "too much of its map") != NULL);
    sl_region got;
    ASSERT_EQ(sl_space_get_region(s, 257, &got, NULL), SL_ENOENT);
    ASSERT_EQ(sl_space_set_region(s, 5, &all), 0);     /* (reshaped: counted once) */
    sl_region small = {.kind = SL_REGION_CIRCLE, .x = 10, .y = 10, .r = 1, .mask = ~0u};
    ASSERT_EQ(sl_space_set_region(s, 257, &small), SL_ELIMIT);
    ASSERT_EQ(sl_space_set_region(s, 5, &small), 0);   /* (a whole map's worth freed) */
    ASSERT_EQ(sl_space_set_region(s, 257, &small), 0);
    ASSERT_EQ(sl_space_add(s, 1, 10, 10, 0, 0, ~0u), 0);
    ASSERT_EQ(sl_space_tick(s, NULL, NULL), 0);
    size_t n;
    sl_space_region_events(s, &n);
    ASSERT_EQ(n, 257);          /* (in the 255 whole-map ones and both circles) */
    sl_space_free(s);
    return 0;
}
