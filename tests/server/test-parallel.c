/*
 * Parallel ticks end to end: the real server with --threads 2 and several spaces, each with
 * the same Lua rule and an emitting handler, driven by real TCP clients that keep sending
 * moves while the spaces tick; an operator drops a space and reloads the scripts meanwhile.
 * Every client's view of every space must equal the brute-force visible set under the rule,
 * each tick frame's custom events must be exactly its enters' (same order), and each
 * client's frames of a space must come in tick order. (That a parallel tick gives the bytes
 * of a serial one is tests/lua/test-parallel.c, below the network.)
 */
#include "test.h"

#include "fixtures/server_fixture.h"

#include "base/clock.h"
#include "proto/client.h"

#include <stdio.h>
#include <string.h>

enum { PAR_SPACES = 4, PAR_N = 240, PAR_C = 3, PAR_ROUNDS = 40 };
#define PAR_R 40.0f
#define PAR_SIZE 400.0f

/* The rule every space runs: watcher w sees target t (in range) unless w + t is a multiple
 * of 5. on_enter emits the target's id to the watcher's owner. */
static const char *const PAR_SCRIPT =
    "function visible(w, t) return (w.id + t.id) % 5 ~= 0 end\n"
    "function on_enter(w, t) emit(w.id, 'in', {t.id}) end\n";

static bool rule(uint64_t w, uint64_t t)
{
    return (w + t) % 5 != 0;
}

typedef struct par_run {
    srv s;
    sl_client *cl[PAR_C];
    view v[PAR_C][PAR_SPACES + 1];      /* [client][space]; the last: the dropped space */
    uint64_t last_n[PAR_C][PAR_SPACES + 1];
    float x[PAR_SPACES + 1][PAR_N], y[PAR_SPACES + 1][PAR_N];
    uint32_t seed;
    bool dropped_told[PAR_C];
    size_t frames, emits;
} par_run;

static const char *space_name(int k)
{
    static const char *const names[PAR_SPACES + 1] = {"p0", "p1", "p2", "p3", "gone"};
    return names[k];
}

/* A tick frame's custom events are its enters', one each, in the same order. */
static void check_emits(const sl_client_frame *f)
{
    const msgpack_object *en = sl_frame_get(f, "enter"), *em = sl_frame_get(f, "emit");
    ASSERT(en && em && em->type == MSGPACK_OBJECT_ARRAY);
    ASSERT_EQ(em->via.array.size * 4, en->via.array.size);
    for (uint32_t i = 0; i < em->via.array.size; i++) {
        const msgpack_object *e = &em->via.array.ptr[i];
        ASSERT(e->type == MSGPACK_OBJECT_ARRAY && e->via.array.size == 3);
        ASSERT_U64_EQ(e->via.array.ptr[0].via.u64, en->via.array.ptr[4 * i].via.u64);
        char want[32];
        snprintf(want, sizeof want, "[%llu]",
                 (unsigned long long)en->via.array.ptr[4 * i + 1].via.u64);
        const msgpack_object_str *p = &e->via.array.ptr[2].via.str;
        ASSERT(p->size == strlen(want) && memcmp(p->ptr, want, p->size) == 0);
    }
}

/* Reads client c's frames for ms milliseconds into its views of the spaces. */
static void par_drain(par_run *r, int c, int ms)
{
    double until = sl_now_ms() + ms;
    sl_client_frame f;
    int rc, left;
    while ((left = (int)(until - sl_now_ms())) > 0 &&
           (rc = sl_client_next(r->cl[c], &f, left)) != 0) {
        ASSERT_EQ(rc, 1);
        char name[64];
        if (sl_frame_is(&f, "space.dropped")) {
            ASSERT(strcmp(sl_frame_str(&f, "space", name, sizeof name), "gone") == 0);
            r->dropped_told[c] = true;
            continue;
        }
        if (sl_frame_is(&f, "error")) {
            /* Only moves sent to the dropped space before its drop reached the client. */
            char code[64], msg[256];
            if (strcmp(sl_frame_str(&f, "code", code, sizeof code), "no_space"))
                fprintf(stderr, "unexpected error %s: %s\n", code,
                        sl_frame_str(&f, "msg", msg, sizeof msg));
            ASSERT(strcmp(code, "no_space") == 0);
            continue;
        }
        if (!sl_frame_is(&f, "tick"))
            continue;
        sl_frame_str(&f, "space", name, sizeof name);
        int k = 0;
        while (k <= PAR_SPACES && strcmp(name, space_name(k)))
            k++;
        ASSERT(k <= PAR_SPACES);
        uint64_t n = sl_frame_u64(&f, "n");
        ASSERT(n > r->last_n[c][k]);        /* a space's frames come in tick order */
        r->last_n[c][k] = n;
        check_emits(&f);
        apply_tick(&r->v[c][k], &f);
        r->frames++;
        r->emits += sl_frame_get(&f, "emit")->via.array.size;
    }
}

/* The server, the clients, and the spaces with their entities (a third each client). */
static void par_start(par_run *r, const char *scripts)
{
    srv_start(&r->s, "--scripts", scripts, "--threads", "2", NULL);
    char buf[4096];
    ASSERT_EQ(ctl(&r->s, buf, sizeof buf, "stats"), 0);
    ASSERT(strstr(buf, "tick_threads 2\n") != NULL);
    for (int c = 0; c < PAR_C; c++)
        r->cl[c] = connect_to(&r->s);
    r->seed = 4242;
    /* (All created before any entity: expect_ok skips the tick frames before its reply.) */
    for (int k = 0; k <= PAR_SPACES; k++) {
        sl_client_create_space(r->cl[0], space_name(k), PAR_SIZE, PAR_SIZE, 100 + (uint64_t)k);
        expect_ok(r->cl[0], 100 + (uint64_t)k);
    }
    for (int k = 0; k <= PAR_SPACES; k++)
        add_scattered(r->cl, PAR_C, space_name(k), PAR_N, PAR_SIZE, PAR_R, r->x[k], r->y[k],
                      &r->seed);
}

/* One round: each client moves about half its entities in every space, in one batch a
 * space, without waiting for anything; then reads what has come. */
static void par_round(par_run *r)
{
    for (int k = 0; k <= PAR_SPACES; k++) {
        if (k == PAR_SPACES && r->dropped_told[0])
            continue;
        for (int c = 0; c < PAR_C; c++) {
            uint64_t ids[PAR_N / PAR_C];
            float xy[2 * (PAR_N / PAR_C)];
            uint32_t n = half_steps(&r->seed, r->x[k], r->y[k], c, PAR_C, PAR_N, PAR_SIZE - 1,
                                    ids, xy);
            ASSERT_EQ(sl_client_moves(r->cl[c], space_name(k), ids, xy, n, 0), 0);
        }
    }
    for (int c = 0; c < PAR_C; c++)
        par_drain(r, c, 6);
}

/* Client c's view of space k equals the brute-force set of its watchers' pairs under the
 * rule (entity i + 1 belongs to client i % PAR_C). */
static size_t par_check(const par_run *r, int k)
{
    size_t total = 0;
    for (int i = 0; i < PAR_N; i++) {
        const view *v = &r->v[i % PAR_C][k];
        for (int j = 0; j < PAR_N; j++) {
            if (i == j)
                continue;
            float dx = r->x[k][j] - r->x[k][i], dy = r->y[k][j] - r->y[k][i];
            bool vis = dx * dx + dy * dy <= PAR_R * PAR_R && rule((uint64_t)i + 1,
                                                                  (uint64_t)j + 1);
            bool seen = find_pair(v, (uint64_t)i + 1, (uint64_t)j + 1) >= 0;
            if (vis != seen)
                fprintf(stderr, "space %s pair %d -> %d: visible %d, client believes %d\n",
                        space_name(k), i + 1, j + 1, vis, seen);
            ASSERT_EQ(vis, seen);
            total += vis;
        }
    }
    return total;
}

TEST_IMPL(server_parallel_spaces)
{
    scratch d;
    scratch_make(&d, "/tmp/sl-par-XXXXXX", PAR_SCRIPT);
    static par_run r;
    memset(&r, 0, sizeof r);
    par_start(&r, d.dir);
    char buf[8192];
    for (int round = 0; round < PAR_ROUNDS; round++) {
        if (round == PAR_ROUNDS / 2) {
            /* The operator drops a space while the others tick... */
            ASSERT_EQ(ctl(&r.s, buf, sizeof buf, "drop gone"), 0);
            for (int tries = 0; tries < 30 && !r.dropped_told[0]; tries++)
                par_drain(&r, 0, 100);
            ASSERT(r.dropped_told[0]);
        }
        if (round == PAR_ROUNDS / 2 + 5)     /* ...and reloads the scripts (the same) */
            ASSERT_EQ(ctl(&r.s, buf, sizeof buf, "reload"), 0);
        par_round(&r);
    }
    for (int c = 0; c < PAR_C; c++) {
        par_drain(&r, c, 300);
        ASSERT(r.dropped_told[c]);
    }
    size_t pairs = 0;
    for (int k = 0; k < PAR_SPACES; k++)
        pairs += par_check(&r, k);
    ASSERT(pairs > 2000);
    ASSERT(r.emits > 1000);
    ASSERT_EQ(ctl(&r.s, buf, sizeof buf, "spaces"), 0);
    ASSERT(strstr(buf, "gone") == NULL);
    for (int c = 0; c < PAR_C; c++)
        sl_client_close(r.cl[c]);
    srv_stop(&r.s, false);
    remove_dir(d.dir);
    return 0;
}
