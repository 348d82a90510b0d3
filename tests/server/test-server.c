/*
 * The server end to end: the real `sightline` binary in a child process, real TCP clients
 * (the C client library), the real admin socket through `sightctl`, traces replayed by
 * `sightline-replay`, and, in the last part, a real etcd-server (tests/fixtures/etcd_fixture.h)
 * that the server reads space definitions and static entities from. Events that clients
 * receive are checked against a brute-force computation of who sees whom.
 *
 * The server's process, clients and the oracle are tests/fixtures/server_fixture.h. Here:
 * the tests, each with the helpers for its phases just above it; last the server on etcd,
 * with its own helpers. A helper's ASSERT fails the test like one in the test's body: it
 * prints where and aborts the process.
 */
#include "test.h"

#include "base/clock.h"

#include "fixtures/server_fixture.h"

#include "proto/client.h"
#include "proto/codec.h"

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Two clients each hear only about their own watchers' pairs, enter and leave; one cannot
 * move or remove the other's entity. */
TEST_IMPL(server_two_clients)
{
    srv s;
    srv_start(&s, NULL);
    sl_client *a = connect_to(&s), *b = connect_to(&s);
    ASSERT(strlen(sl_client_session(a)) == 32);
    ASSERT(strcmp(sl_client_session(a), sl_client_session(b)) != 0);
    sl_client_create_space(a, "arena", 1000, 1000, 1);
    expect_ok(a, 1);
    sl_client_add(a, "arena", 1, 100, 100, 50, 2);
    expect_ok(a, 2);
    sl_client_add(b, "arena", 2, 120, 100, 30, 3);
    expect_ok(b, 3);
    static view va, vb;
    drain(a, &va, 150);
    drain(b, &vb, 150);
    /* Each client hears only about its own watchers, with the target's position. */
    ASSERT_EQ(va.n, 1);
    ASSERT(va.w[0] == 1 && va.t[0] == 2 && va.x[0] == 120 && va.y[0] == 100);
    ASSERT_EQ(vb.n, 1);
    ASSERT(vb.w[0] == 2 && vb.t[0] == 1);
    /* b's entity walks away: both leave. */
    sl_client_move(b, "arena", 2, 500, 500, 4);
    expect_ok(b, 4);
    drain(a, &va, 150);
    drain(b, &vb, 150);
    ASSERT_EQ(va.n, 0);
    ASSERT_EQ(vb.n, 0);
    /* Ownership: a cannot move or remove b's entity. */
    sl_client_move(a, "arena", 2, 1, 1, 5);
    expect_error(a, 5, "foreign");
    sl_client_remove(a, "arena", 2, 6);
    expect_error(a, 6, "foreign");
    sl_client_ping(a, 7);
    sl_client_frame f;
    ASSERT_EQ(sl_client_wait(a, "pong", 7, &f, 2000), 1);
    sl_client_close(a);
    sl_client_close(b);
    srv_stop(&s, false);
    return 0;
}

/* server_batch_oracle: 600 entities over 3 clients in space "w" (800 x 800), radius 40. */
enum { BATCH_N = 600, BATCH_C = 3 };

typedef struct batch_run {
    srv s;
    sl_client *cl[BATCH_C];
    view v[BATCH_C];
    float x[BATCH_N], y[BATCH_N];      /* where the entities are */
    uint32_t seed;
} batch_run;

/* The server (with metrics) and the clients; each adds its third of the entities. The
 * space's events come in `order` (NULL: the default). */
static void batch_start(batch_run *b, const char *order)
{
    srv_start(&b->s, "--metrics", "127.0.0.1:0", NULL);
    ASSERT(b->s.metrics_port > 0);
    for (int k = 0; k < BATCH_C; k++) {
        b->cl[k] = connect_to(&b->s);
        memset(&b->v[k], 0, sizeof b->v[k]);
    }
    sl_client_create_space_with(b->cl[0], "w", 800, 800,
                                &(sl_client_space_opts){.order = order}, 1);
    expect_ok(b->cl[0], 1);
    b->seed = 99;
    add_scattered(b->cl, BATCH_C, "w", BATCH_N, 800, 40, b->x, b->y, &b->seed);
}

/* One round: each client moves about half of its entities a random step, in one batch;
 * then every client reads for a moment. */
static void batch_round(batch_run *b)
{
    for (int k = 0; k < BATCH_C; k++) {
        uint64_t ids[BATCH_N / BATCH_C];
        float xy[2 * (BATCH_N / BATCH_C)];
        uint32_t n = half_steps(&b->seed, b->x, b->y, k, BATCH_C, BATCH_N, 799, ids, xy);
        ASSERT_EQ(sl_client_moves(b->cl[k], "w", ids, xy, n, 0), 0);
    }
    for (int k = 0; k < BATCH_C; k++)
        drain(b->cl[k], &b->v[k], 8);
}

/* sightctl stats, and the metrics for Prometheus, give the same figures. */
static void batch_figures(const srv *s)
{
    char buf[4096];
    ASSERT_EQ(ctl(s, buf, sizeof buf, "stats"), 0);
    ASSERT(strstr(buf, "entities 600\n") != NULL);
    ASSERT(strstr(buf, "clients 3\n") != NULL);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "curl -sf http://127.0.0.1:%d/metrics", s->metrics_port);
    FILE *p = popen(cmd, "r");
    ASSERT(p != NULL);
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = '\0';
    ASSERT_EQ(pclose(p), 0);
    ASSERT(strstr(buf, "# TYPE sightline_entities gauge\nsightline_entities 600\n") != NULL);
    ASSERT(strstr(buf, "# TYPE sightline_moves counter\n") != NULL);
}

/* 600 entities over 3 clients, batched random moves for 40 ticks' worth: at the end every
 * client's view equals the brute-force visible set of its watchers. */
static void batch_oracle(const char *order)
{
    static batch_run b;
    batch_start(&b, order);
    for (int round = 0; round < 40; round++)
        batch_round(&b);
    for (int k = 0; k < BATCH_C; k++)
        drain(b.cl[k], &b.v[k], 250);
    size_t total = check_oracle(b.x, b.y, BATCH_N, 40, b.v, BATCH_C);
    ASSERT(total > 1000);
    batch_figures(&b.s);
    for (int k = 0; k < BATCH_C; k++)
        sl_client_close(b.cl[k]);
    srv_stop(&b.s, true);
}

TEST_IMPL(server_batch_oracle)
{
    batch_oracle(NULL);
    return 0;
}

/* The same in a space whose events come in the tick order (unsorted); an unknown order is
 * refused; the operator's ways to ask for it: --space options, `create`, `spaces`. */
TEST_IMPL(server_batch_oracle_tick_order)
{
    batch_oracle("tick");
    srv s;
    srv_start(&s, "--space", "q:100x100,order=tick", NULL);
    char buf[4096];
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "create r 100 100 order=ids"), 1);
    ASSERT(strstr(buf, "unknown option order=ids") != NULL);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "create r 100 100 order=id"), 0);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "spaces"), 0);
    char *q = strstr(buf, "q entities 0 "), *r = strstr(buf, "r entities 0 ");
    ASSERT(q != NULL && r != NULL);
    *strchr(q, '\n') = '\0';
    *strchr(r, '\n') = '\0';
    ASSERT(strstr(q, " order tick") != NULL && strstr(r, "order") == NULL);
    sl_client *c = connect_to(&s);
    sl_client_create_space_with(c, "x", 100, 100, &(sl_client_space_opts){.order = "ids"}, 1);
    expect_error(c, 1, "bad_value");
    sl_client_create_space_with(c, "x", 100, 100, &(sl_client_space_opts){.order = "id"}, 2);
    expect_ok(c, 2);
    sl_client_close(c);
    srv_stop(&s, false);
    return 0;
}

/*
 * One space with 4,800 entities, all moved in one frame a tick, on --threads 2: with a single
 * space due, the server lends it the pool, and its uniform ticks judge the moved entities,
 * age them and sort the events (id order) or unpack them (tick order) on both threads. The
 * client's view equals brute force.
 */
static void split_oracle(const char *order)
{
    enum { N = 4800, SIDE = 1500 };
    static float x[N], y[N], xy[2 * N];
    static uint64_t ids[N];
    static view v;
    memset(&v, 0, sizeof v);
    srv s;
    srv_start(&s, "--threads", "2", NULL);
    sl_client *c = connect_to(&s);
    sl_client_create_space_with(c, "big", SIDE, SIDE, &(sl_client_space_opts){.order = order},
                                1);
    expect_ok(c, 1);
    uint32_t seed = 7;
    static sl_client_entity add[N];
    for (int i = 0; i < N; i++) {
        x[i] = (float)(next_rand(&seed) >> 8 & 0xffff) / 65536.0f * (SIDE - 1);
        y[i] = (float)(next_rand(&seed) >> 8 & 0xffff) / 65536.0f * (SIDE - 1);
        add[i] = (sl_client_entity){(uint64_t)i + 1, x[i], y[i], 20, 0, ~0u};
    }
    for (int i = 0; i < N; i += 1200)   /* (adds frames, under the frame rate limit) */
        ASSERT_EQ(sl_client_adds(c, "big", add + i, 1200, 0), 0);
    drain(c, &v, 300);
    for (int round = 0; round < 12; round++) {
        for (int i = 0; i < N; i++) {
            random_step(&x[i], &y[i], next_rand(&seed), SIDE - 1);
            ids[i] = (uint64_t)i + 1;
            xy[2 * i] = x[i];
            xy[2 * i + 1] = y[i];
        }
        ASSERT_EQ(sl_client_moves(c, "big", ids, xy, N, 0), 0);
        drain(c, &v, 70);   /* (a tick apart: each frame's 4,800 moves in one tick) */
    }
    drain(c, &v, 300);
    /* Brute force, watcher by watcher: as many pairs in the view, each of them visible. */
    static uint32_t seen[N];
    memset(seen, 0, sizeof seen);
    for (size_t k = 0; k < v.n; k++) {
        uint64_t w = v.w[k] - 1, t = v.t[k] - 1;
        float dx = x[t] - x[w], dy = y[t] - y[w];
        ASSERT(dx * dx + dy * dy <= 20.0f * 20.0f);
        seen[w]++;
    }
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        uint32_t vis = 0;
        for (int j = 0; j < N; j++) {
            float dx = x[j] - x[i], dy = y[j] - y[i];
            vis += i != j && dx * dx + dy * dy <= 20.0f * 20.0f;
        }
        ASSERT_EQ(seen[i], vis);
        total += vis;
    }
    ASSERT(total > 5000);
    sl_client_close(c);
    srv_stop(&s, true);
}

TEST_IMPL(server_split_tick_oracle)
{
    split_oracle("id");
    split_oracle("tick");
    return 0;
}

/* Requests the server refuses with an error reply (bad values, an entity that exists or does
 * not, a space that does not): the connection stays. Request ids 10-15 are used. */
static void refused_requests(sl_client *c)
{
    sl_client_add(c, "m", 3, NAN, 10, 5, 10);
    expect_error(c, 10, "bad_value");
    sl_client_add(c, "m", 3, 500, 10, 5, 11);
    expect_error(c, 11, "bad_value");
    sl_client_add(c, "m", 2, 10, 10, 5, 12);
    expect_error(c, 12, "exists");
    sl_client_move(c, "m", 99, 10, 10, 13);
    expect_error(c, 13, "no_entity");
    sl_client_move(c, "nowhere", 2, 10, 10, 14);
    expect_error(c, 14, "no_space");
    sl_client_add(c, "m", 3, 10, 10, -1, 15);
    expect_error(c, 15, "bad_value");
}

/* Hand-made frames: an unknown type, a missing field, a wrong type; each gets an error and
 * the connection stays. Request ids 20-22 are used. */
static void refused_frames(sl_client *c)
{
    static const unsigned char unknown[] = {0x82, 0xa1, 't', 0xa4, 'f', 'l', 'y', '!',
                                            0xa3, 'r', 'i', 'd', 0x14};
    send_body(c, unknown, sizeof unknown);
    expect_error(c, 20, "unknown_type");
    static const unsigned char missing[] = {0x82, 0xa1, 't', 0xa4, 'm', 'o', 'v', 'e',
                                            0xa3, 'r', 'i', 'd', 0x15};
    send_body(c, missing, sizeof missing);
    expect_error(c, 21, "bad_message");
    static const unsigned char not_map[] = {0x93, 1, 2, 3};
    send_body(c, not_map, sizeof not_map);
    sl_client_frame f;
    ASSERT_EQ(sl_client_wait(c, "error", 0, &f, 2000), 1);
    sl_client_ping(c, 22);
    ASSERT_EQ(sl_client_wait(c, "pong", 22, &f, 2000), 1);
}

/* The server answers with an error frame of code want and closes the connection; c is
 * closed. */
static void expect_cut_off(sl_client *c, const char *want)
{
    sl_client_frame f;
    ASSERT_EQ(sl_client_wait(c, "error", 0, &f, 2000), 1);
    char code[64];
    ASSERT(strcmp(sl_frame_str(&f, "code", code, sizeof code), want) == 0);
    ASSERT_EQ(sl_client_next(c, &f, 2000), SL_EIO);
    sl_client_close(c);
}

/* The good client saw nothing odd: it still works, and its pair with the dropped client's
 * entity is still there (the grace period has not run out). */
static void good_client_unharmed(const srv *s, sl_client *good)
{
    sl_client_frame f;
    sl_client_ping(good, 30);
    ASSERT_EQ(sl_client_wait(good, "pong", 30, &f, 2000), 1);
    sleep_ms(100);
    char buf[4096];
    ASSERT_EQ(ctl(s, buf, sizeof buf, "entity m 1"), 0);
    ASSERT(strstr(buf, "sees 1") != NULL);
    ASSERT_EQ(ctl(s, buf, sizeof buf, "entity m 2"), 0);
    if (!strstr(buf, "sees 1"))
        fprintf(stderr, "entity m 2: %s\n", buf);
    ASSERT(strstr(buf, "sees 1") != NULL);
    ASSERT(ctl(s, buf, sizeof buf, "stats") == 0 && strstr(buf, "clients 1\n"));
}

/* Bad requests and frames are refused without harm to anyone else; broken or oversized
 * frames cut their connection off. */
TEST_IMPL(server_bad_input)
{
    srv s;
    srv_start(&s, "--max-frame", "4096", NULL);
    sl_client *good = connect_to(&s), *c = connect_to(&s);
    two_neighbours(good, c);
    refused_requests(c);
    refused_frames(c);

    /* Broken msgpack: an error frame, then the connection closes. */
    static const unsigned char broken[] = {0, 0, 0, 3, 0xc1, 0xc1, 0xc1};
    ASSERT_EQ(sl_client_send_raw(c, broken, sizeof broken), 0);
    expect_cut_off(c, "bad_frame");

    /* A tiny frame claiming an array of 2^31 elements (found by the fuzz target): refused
     * as malformed before anything is allocated for it. */
    c = connect_to(&s);
    static const unsigned char claim[] = {0x82, 0xa1, 't', 0xa5, 'm', 'o', 'v', 'e', 's', 0xa1,
                                          'e', 0xdd, 0x7f, 0xff, 0xff, 0xff, 1, 2};
    send_body(c, claim, sizeof claim);
    expect_cut_off(c, "bad_frame");

    /* Over the frame limit: frame_too_large, then closed. */
    c = connect_to(&s);
    static const unsigned char huge[] = {0, 0x10, 0, 0};
    ASSERT_EQ(sl_client_send_raw(c, huge, sizeof huge), 0);
    expect_cut_off(c, "frame_too_large");

    good_client_unharmed(&s, good);
    sl_client_close(good);
    srv_stop(&s, false);
    return 0;
}

/* The hello handshake: a wrong or missing token, or an unknown session, is refused. */
TEST_IMPL(server_hello_rules)
{
    srv s;
    srv_start(&s, "--token", "sesame", NULL);
    sl_client *c;
    char err[256];
    ASSERT_EQ(sl_client_connect(&c, "127.0.0.1", s.port, NULL, NULL, err, sizeof err), SL_EIO);
    ASSERT(strstr(err, "bad_token") != NULL);
    ASSERT_EQ(sl_client_connect(&c, "127.0.0.1", s.port, "wrong", NULL, err, sizeof err), SL_EIO);
    ASSERT_EQ(sl_client_connect(&c, "127.0.0.1", s.port, "sesame", NULL, err, sizeof err), 0);
    sl_client_close(c);
    ASSERT_EQ(sl_client_connect(&c, "127.0.0.1", s.port, "sesame", "nosuchsession", err,
                                sizeof err), SL_EIO);
    ASSERT(strstr(err, "no_session") != NULL);
    srv_stop(&s, true);
    return 0;
}

/* A client that comes back with its session within the grace period finds its entities as
 * it left them; one that does not come back loses them when the grace period runs out. */
TEST_IMPL(server_resume_and_grace)
{
    srv s;
    srv_start(&s, "--grace-ms", "300", NULL);
    sl_client *a = connect_to(&s), *b = connect_to(&s);
    two_neighbours(a, b);
    static view va;
    drain(a, &va, 100);
    ASSERT_EQ(va.n, 1);
    /* b drops and comes back within the grace period with its session: nothing left. */
    char session[64];
    snprintf(session, sizeof session, "%s", sl_client_session(b));
    sl_client_close(b);
    sleep_ms(100);
    char err[256];
    ASSERT_EQ(sl_client_connect(&b, "127.0.0.1", s.port, NULL, session, err, sizeof err), 0);
    sl_client_move(b, "m", 2, 16, 10, 4);
    expect_ok(b, 4);
    drain(a, &va, 500);
    ASSERT_EQ(va.n, 1);
    /* Now it drops for good: after the grace period its entity leaves a's view. */
    sl_client_close(b);
    drain(a, &va, 800);
    ASSERT_EQ(va.n, 0);
    char buf[4096];
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "entity m 2"), 1);
    sl_client_close(a);
    srv_stop(&s, false);
    return 0;
}

/* A client that never reads, with a small output cap, is cut off; the others go on. */
TEST_IMPL(server_slow_consumer)
{
    srv s;
    srv_start(&s, "--out-cap", "65536", NULL);
    sl_client *slow = connect_to(&s), *good = connect_to(&s);
    sl_client_create_space(good, "m", 100, 100, 1);
    expect_ok(good, 1);
    flip_flood(slow, "m", 30);
    char buf[4096];
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "stats"), 0);
    ASSERT(strstr(buf, "clients 1\n") != NULL);
    sl_client_frame f;
    sl_client_ping(good, 2);
    ASSERT_EQ(sl_client_wait(good, "pong", 2, &f, 2000), 1);
    sl_client_close(slow);
    sl_client_close(good);
    srv_stop(&s, true);
    return 0;
}

/* Space "m" with client c's entities 1 and 2 in range of each other; 2 gets prop hidden = 0.
 * Request ids 1-4 are used. */
static void scripted_pair(sl_client *c)
{
    sl_client_create_space(c, "m", 100, 100, 1);
    expect_ok(c, 1);
    sl_client_add(c, "m", 1, 10, 10, 20, 2);
    sl_client_add(c, "m", 2, 15, 10, 20, 3);
    sl_client_prop(c, "m", 2, "hidden", 0, NULL, 4);
    expect_ok(c, 4);
}

/* The script's custom events (on_enter's emit) come in the same tick frame as the enters
 * that caused them. */
static void emits_with_enters(sl_client *c, view *v)
{
    sl_client_frame f;
    ASSERT_EQ(sl_client_wait(c, "tick", 0, &f, 2000), 1);
    const msgpack_object *ev = sl_frame_get(&f, "emit"), *en = sl_frame_get(&f, "enter");
    ASSERT(ev && ev->type == MSGPACK_OBJECT_ARRAY && ev->via.array.size == 2);
    ASSERT(en && en->via.array.size == 8);
    const msgpack_object *e0 = &ev->via.array.ptr[0];
    ASSERT(e0->type == MSGPACK_OBJECT_ARRAY && e0->via.array.size == 3);
    ASSERT(e0->via.array.ptr[0].via.u64 == 1);
    ASSERT(e0->via.array.ptr[1].via.str.size == 2 && !memcmp(e0->via.array.ptr[1].via.str.ptr, "hi", 2));
    ASSERT(e0->via.array.ptr[2].via.str.size == 7 && !memcmp(e0->via.array.ptr[2].via.str.ptr, "{\"t\":2}", 7));
    apply_tick(v, &f);
    ASSERT_EQ(v->n, 2);
}

/* sightctl why explains pair 1 -> 2: in range, and the rule says yes. */
static void why_visible(const srv *s)
{
    char buf[8192];
    ASSERT_EQ(ctl(s, buf, sizeof buf, "why m 1 2"), 0);
    ASSERT(strstr(buf, "in range") != NULL);
    ASSERT(strstr(buf, "visible(w, t) says true") != NULL);
    ASSERT(strstr(buf, "at the last tick: VISIBLE") != NULL);
}

/* sightctl reload refuses a broken init.lua (exit 1, file:line), then applies a good one whose
 * rule hides everything. */
static void reload_broken_then_good(const srv *s, const char *init)
{
    char buf[8192];
    put_file(init, "function visible(w, t)\n  return ==\nend\n");
    ASSERT_EQ(ctl(s, buf, sizeof buf, "reload"), 1);
    ASSERT(strstr(buf, "init.lua:2:") != NULL);
    put_file(init, "function visible(w, t) return false end\n");
    ASSERT_EQ(ctl(s, buf, sizeof buf, "reload"), 0);
    ASSERT(strstr(buf, "version 2") != NULL);
}

/* Under the new rule both pairs leave, and why says the rule said no; sightctl spaces agrees,
 * and an unknown command fails. */
static void hidden_after_reload(const srv *s, sl_client *c, view *v)
{
    char buf[8192];
    drain(c, v, 200);
    ASSERT_EQ(v->n, 0);     /* the new rule hides everything: both pairs left */
    ASSERT_EQ(ctl(s, buf, sizeof buf, "why m 1 2"), 0);
    ASSERT(strstr(buf, "visible(w, t) says false") != NULL);
    ASSERT(strstr(buf, "at the last tick: not visible") != NULL);
    ASSERT_EQ(ctl(s, buf, sizeof buf, "spaces"), 0);
    ASSERT(strstr(buf, "m entities 2 pairs 0") != NULL);
    const char *mem = strstr(buf, " memory ");
    ASSERT(mem != NULL && atol(mem + 8) > 0);   /* the space's memory, scripts included */
    ASSERT_EQ(ctl(s, buf, sizeof buf, "nonsense"), 1);
}

/* Scripts in a space: a rule and an emit reach the client; sightctl reload refuses a broken
 * script (exit 1, file:line) and applies a good one; why explains a pair. */
TEST_IMPL(server_admin_scripts)
{
    scratch d;
    scratch_make(&d, "/tmp/sl-scr-XXXXXX",
                 "function visible(w, t) return t.props.hidden ~= 1 end\n"
                 "function on_enter(w, t) emit(w.id, 'hi', {t = t.id}) end\n");
    srv s;
    srv_start(&s, "--scripts", d.dir, NULL);
    sl_client *c = connect_to(&s);
    scripted_pair(c);
    static view v;
    emits_with_enters(c, &v);
    why_visible(&s);
    reload_broken_then_good(&s, d.init);
    hidden_after_reload(&s, c, &v);
    sl_client_close(c);
    srv_stop(&s, false);
    remove_dir(d.dir);
    return 0;
}

/* sightctl spaces lists the spaces the config declared, with their options. */
static void config_spaces_listed(const srv *s)
{
    char buf[4096];
    ASSERT_EQ(ctl(s, buf, sizeof buf, "spaces"), 0);
    ASSERT(strstr(buf, "ground entities 0 pairs 0 index grid cell 32") != NULL);
    ASSERT(strstr(buf, "sky entities 0 pairs 0 index quadtree") != NULL);
    ASSERT(strstr(buf, "v1") != NULL);
}

/* A change to init.lua is picked up with no reload command (scripts version 2), within 4 s. */
static void reloaded_on_change(const srv *s, const char *init)
{
    char buf[4096];
    put_file(init, "function visible() return true end\n");
    bool reloaded = false;
    for (int i = 0; i < 40 && !reloaded; i++) {
        sleep_ms(100);
        ASSERT_EQ(ctl(s, buf, sizeof buf, "spaces"), 0);
        reloaded = strstr(buf, "ground") && strstr(buf, " v2");
    }
    ASSERT(reloaded);
}

/* A bad config line stops the server from starting, with file:line. */
static void bad_config_refused(const scratch *d, const char *conf)
{
    put_file(conf, "space ok 100 100\nspace bad 100 100 colour=blue\n");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s --listen 127.0.0.1:0 --admin %s/a.sock --scripts %s --config %s "
             ">/dev/null 2>%s/err", SL_SERVER_BIN, d->dir, d->dir, conf, d->dir);
    ASSERT(system(cmd) != 0);
    snprintf(cmd, sizeof cmd, "grep -q 'sightline.conf:2: error: create: unknown option colour=blue' "
             "%s/err", d->dir);
    ASSERT_EQ(system(cmd), 0);
}

/* --config declares spaces; --watch-scripts reloads when a script file changes. */
TEST_IMPL(server_config_watch)
{
    scratch d;
    scratch_make(&d, "/tmp/sl-cfg-XXXXXX", "return {}\n");
    char conf[128];
    snprintf(conf, sizeof conf, "%s/sightline.conf", d.dir);
    put_file(conf, "# two spaces\nspace ground 2048 1024 cell=32 index=grid hysteresis=2\n"
          "space sky 512 512 index=quadtree stay   # comment\n");
    srv s;
    srv_start(&s, "--scripts", d.dir, "--config", conf, "--watch-scripts", NULL);
    config_spaces_listed(&s);
    reloaded_on_change(&s, d.init);
    srv_stop(&s, false);
    bad_config_refused(&d, conf);
    remove_dir(d.dir);
    return 0;
}

/* A client's workload in space "r", view in v: 120 entities (every 7th hidden), then 15
 * rounds of batched moves of a growing number of them, with a removal (of an entity never
 * in a batch) and a prop change half-way. */
static void recorded_workload(sl_client *c, view *v)
{
    uint32_t seed = 5;
    for (uint64_t id = 1; id <= 120; id++) {
        uint32_t rnd = next_rand(&seed);
        sl_client_add(c, "r", id, (float)(rnd >> 8 & 255), (float)(rnd >> 16 & 255), 30, 0);
        if (id % 7 == 0)
            sl_client_prop(c, "r", id, "hidden", 1, NULL, 0);
    }
    for (int round = 0; round < 15; round++) {
        uint64_t ids[120];
        float xy[240];
        for (uint32_t i = 0; i < 120; i++) {
            uint32_t rnd = next_rand(&seed);
            ids[i] = i + 1;
            xy[2 * i] = (float)(rnd >> 8 & 255) + 0.25f;
            xy[2 * i + 1] = (float)(rnd >> 16 & 255) + 0.5f;
        }
        sl_client_moves(c, "r", ids, xy, 40 + (uint32_t)round * 5, 0);
        if (round == 7) {
            sl_client_remove(c, "r", 120, 0);   /* never in a moves batch */
            sl_client_prop(c, "r", 14, "hidden", 0, NULL, 0);
        }
        drain(c, v, 30);
    }
    drain(c, v, 200);
}

/* Runs sightline-replay (with the scripts in dir) on the trace: r gets the pairs that its
 * enter and leave lines leave in the end. */
static void replayed_pairs(const char *dir, const char *trace, view *r)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s --scripts %s %s", SL_REPLAY_BIN, dir, trace);
    FILE *p = popen(cmd, "r");
    ASSERT(p != NULL);
    char line[256];
    while (fgets(line, sizeof line, p)) {
        unsigned long long tk, w, t;
        char kind[16];
        if (sscanf(line, "%llu %15s %llu %llu", &tk, kind, &w, &t) != 4)
            continue;
        long k = find_pair(r, w, t);
        if (!strcmp(kind, "enter")) {
            ASSERT(k < 0);
            r->w[r->n] = w;
            r->t[r->n++] = t;
        } else if (!strcmp(kind, "leave")) {
            ASSERT(k >= 0);
            r->n--;
            r->w[k] = r->w[r->n];
            r->t[k] = r->t[r->n];
        }
    }
    ASSERT_EQ(pclose(p), 0);
}

/* `record start` writes a trace that sightline-replay turns into the same visible pairs the
 * client was told about (scripts and props included). */
TEST_IMPL(server_record_replay)
{
    scratch d;
    scratch_make(&d, "/tmp/sl-rec-XXXXXX",
                 "function visible(w, t) return t.props.hidden ~= 1 end\n");
    char trace[128];
    snprintf(trace, sizeof trace, "%s/run.trace", d.dir);
    srv s;
    srv_start(&s, "--scripts", d.dir, "--space", "r:300x300", NULL);
    char buf[8192], cmd[512];
    snprintf(cmd, sizeof cmd, "record start %s", trace);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, cmd), 0);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "record start /tmp/other r"), 1);   /* one at a time */
    sl_client *c = connect_to(&s);
    static view v;
    recorded_workload(c, &v);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "record stop"), 0);
    ASSERT(v.n > 100);
    /* Replay: the final set of pairs must be the client's. */
    static view r;
    replayed_pairs(d.dir, trace, &r);
    if (r.n != v.n)
        fprintf(stderr, "replay %zu pairs, client %zu\n", r.n, v.n);
    ASSERT_EQ(r.n, v.n);
    for (size_t i = 0; i < v.n; i++)
        ASSERT(find_pair(&r, v.w[i], v.t[i]) >= 0);
    sl_client_close(c);
    srv_stop(&s, false);
    remove_dir(d.dir);
    return 0;
}

/* Starts recording s's space into run.trace in d (its path into trace). */
static void record_into(const srv *s, const scratch *d, char *trace, size_t len)
{
    char buf[1024], cmd[512];
    snprintf(trace, len, "%s/run.trace", d->dir);
    snprintf(cmd, sizeof cmd, "record start %s", trace);
    ASSERT_EQ(ctl(s, buf, sizeof buf, cmd), 0);
}

/* Stops the recording and reads the trace into buf. */
static void record_read(const srv *s, const char *trace, char *buf, size_t len)
{
    ASSERT_EQ(ctl(s, buf, len, "record stop"), 0);
    FILE *f = fopen(trace, "r");
    ASSERT(f != NULL);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = 0;
    fclose(f);
}

/* Scripts see which session owns an entity (sightline.owner, a view's `owner`): a cloaked
 * entity (prop cloaked = 1) is seen only by its own client's entities, also once that client
 * is detached, and a recording (started after the first entities came, so its snapshot
 * carries owners too) replays to the clients' pairs. */
TEST_IMPL(server_script_owners)
{
    scratch d;
    scratch_make(&d, "/tmp/sl-own-XXXXXX",
                 "function visible(w, t)\n"
                 "  if t.props.cloaked == 1 then return w.owner ~= nil and w.owner == t.owner end\n"
                 "  return true\n"
                 "end\n");
    char trace[128], buf[8192];
    srv s;
    srv_start(&s, "--scripts", d.dir, "--space", "r:300x300", NULL);
    sl_client *a = connect_to(&s), *b = connect_to(&s);
    static view va, vb;
    sl_client_add(a, "r", 1, 100, 100, 50, 0);
    sl_client_add(b, "r", 3, 120, 100, 50, 0);
    drain(a, &va, 100);
    record_into(&s, &d, trace, sizeof trace);
    sl_client_add(a, "r", 2, 110, 100, 50, 0);
    sl_client_prop(a, "r", 2, "cloaked", 1, NULL, 0);
    drain(a, &va, 200);
    drain(b, &vb, 200);
    ASSERT(find_pair(&va, 1, 2) >= 0);          /* its own */
    ASSERT(find_pair(&vb, 3, 2) < 0);           /* another client's */
    ASSERT(find_pair(&vb, 3, 1) >= 0 && find_pair(&va, 2, 3) >= 0);
    /* b's entity walks away and back: still not seen; a detached owner still owns. */
    sl_client_move(b, "r", 3, 250, 250, 0);
    drain(b, &vb, 200);
    sl_client_move(b, "r", 3, 115, 100, 0);
    drain(b, &vb, 200);
    ASSERT(find_pair(&vb, 3, 2) < 0 && find_pair(&vb, 3, 1) >= 0);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "why r 3 2"), 0);
    ASSERT(strstr(buf, "owners (sightline.owner): watcher ") != NULL);
    ASSERT(strstr(buf, "visible(w, t) says false") && !strstr(buf, "the same session"));
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "why r 1 2"), 0);
    ASSERT(strstr(buf, "(the same session)") && strstr(buf, "visible(w, t) says true"));
    drain(a, &va, 50);
    sl_client_close(a);
    sl_client_add(b, "r", 4, 105, 100, 50, 0);
    drain(b, &vb, 200);
    ASSERT(find_pair(&vb, 4, 1) >= 0 && find_pair(&vb, 4, 2) < 0);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "record stop"), 0);
    /* The replay ends with the pairs of both clients, and those of a's entities seeing 4,
     * which came after a left. */
    static view r;
    replayed_pairs(d.dir, trace, &r);
    size_t found = 0;
    for (size_t i = 0; i < va.n; i++)
        found += find_pair(&r, va.w[i], va.t[i]) >= 0;
    for (size_t i = 0; i < vb.n; i++)
        found += find_pair(&r, vb.w[i], vb.t[i]) >= 0;
    if (found != va.n + vb.n || r.n != va.n + vb.n + 2)
        fprintf(stderr, "replay %zu pairs, %zu of the clients' %zu + %zu\n", r.n, found, va.n,
                vb.n);
    ASSERT_EQ(found, va.n + vb.n);
    ASSERT_EQ(r.n, va.n + vb.n + 2);
    ASSERT(find_pair(&r, 1, 4) >= 0 && find_pair(&r, 2, 4) >= 0);
    sl_client_close(b);
    srv_stop(&s, false);
    remove_dir(d.dir);
    return 0;
}

/* The `hysteresis` message gives one of the session's entities its own hysteresis: the
 * pairs it watches are held that far beyond its radius (those others watch are not), the
 * space's comes back with a negative value, bad values and others' entities are refused,
 * `sightctl entity` shows it, and a recording carries it. */
TEST_IMPL(server_entity_hysteresis)
{
    scratch d;
    scratch_make(&d, "/tmp/sl-hys-XXXXXX", "");
    char trace[128], buf[8192];
    srv s;
    srv_start(&s, "--space", "h:300x300", NULL);
    record_into(&s, &d, trace, sizeof trace);
    sl_client *c = connect_to(&s), *other = connect_to(&s);
    static view v;
    track(c, &v);       /* (the enters may come before a reply) */
    sl_client_add(c, "h", 1, 100, 100, 50, 0);
    sl_client_add(c, "h", 2, 140, 100, 50, 0);
    sl_client_hysteresis(c, "h", 1, 20, 1);
    expect_ok(c, 1);
    sl_client_hysteresis(c, "h", 1, NAN, 2);
    expect_error(c, 2, "bad_value");
    sl_client_hysteresis(c, "h", 9, 1, 3);
    expect_error(c, 3, "no_entity");
    sl_client_hysteresis(other, "h", 1, 1, 4);
    expect_error(other, 4, "foreign");
    drain(c, &v, 150);
    ASSERT(find_pair(&v, 1, 2) >= 0 && find_pair(&v, 2, 1) >= 0);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "entity h 1"), 0);
    ASSERT(strstr(buf, "hysteresis 20 (its own)") != NULL);
    /* 65 apart: 1 holds 2 (65 <= 50 + 20); 2 (the space's: none) lets 1 go. */
    sl_client_move(c, "h", 2, 165, 100, 0);
    drain(c, &v, 150);
    ASSERT(find_pair(&v, 1, 2) >= 0 && find_pair(&v, 2, 1) < 0);
    sl_client_hysteresis(c, "h", 1, -1, 5);
    expect_ok(c, 5);
    drain(c, &v, 150);
    ASSERT(find_pair(&v, 1, 2) < 0);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "entity h 1"), 0);
    ASSERT(strstr(buf, "hysteresis 0 owner") != NULL);
    record_read(&s, trace, buf, sizeof buf);
    ASSERT(strstr(buf, "hysteresis 1 20\n") && strstr(buf, "hysteresis 1 -1\n"));
    track(c, NULL);
    sl_client_close(c);
    sl_client_close(other);
    srv_stop(&s, false);
    remove_dir(d.dir);
    return 0;
}

/* Whether tick frame f has a stay of (w, t). */
static bool frame_stays(const sl_client_frame *f, uint64_t w, uint64_t t)
{
    const msgpack_object *a = sl_frame_get(f, "stay");
    for (uint32_t i = 0; a && a->type == MSGPACK_OBJECT_ARRAY && i + 1 < a->via.array.size;
         i += 2)
        if (a->via.array.ptr[i].via.u64 == w && a->via.array.ptr[i + 1].via.u64 == t)
            return true;
    return false;
}

/* The `lod` message: a watcher's far pairs' stays come only every period-th tick (its near
 * ones every tick), until it clears its bands; bad bands and others' entities are refused;
 * a recording carries the bands. */
TEST_IMPL(server_lod)
{
    scratch d;
    scratch_make(&d, "/tmp/sl-lod-XXXXXX", "");
    char trace[128], buf[8192];
    srv s;
    srv_start(&s, "--space", "l:300x300,stay", NULL);
    record_into(&s, &d, trace, sizeof trace);
    sl_client *c = connect_to(&s), *other = connect_to(&s);
    sl_client_add(c, "l", 1, 100, 100, 100, 0);
    sl_client_add(c, "l", 2, 110, 100, 100, 0);
    sl_client_add(c, "l", 3, 160, 100, 100, 0);
    static view v;
    drain(c, &v, 200);                  /* (the enters, before replies to wait for) */
    ASSERT(find_pair(&v, 1, 3) >= 0);
    sl_client_band bands[2] = {{20, 1}, {100, 2}}, bad[2] = {{50, 1}, {40, 2}};
    sl_client_lod(c, "l", 1, bands, 2, 1);
    expect_ok(c, 1);
    sl_client_lod(c, "l", 1, bad, 2, 2);
    expect_error(c, 2, "bad_value");
    sl_client_lod(c, "l", 9, bands, 2, 3);
    expect_error(c, 3, "no_entity");
    sl_client_lod(other, "l", 1, bands, 2, 4);
    expect_error(other, 4, "foreign");
    /* 1 moves every round: (1, 2), 10 apart, stays every tick; (1, 3), 60 apart, every
     * other tick. */
    int near = 0, far = 0, far_in_a_row = 0;
    bool last_far = false;
    for (int round = 0; round < 8; round++) {
        sl_client_move(c, "l", 1, 100, round % 2 ? 100.0f : 101.0f, 10 + (uint64_t)round);
        sl_client_frame f;
        bool got = false;
        while (!got) {
            ASSERT_EQ(sl_client_next(c, &f, 2000), 1);
            if (sl_frame_is(&f, "tick") && frame_stays(&f, 1, 2)) {
                got = true;
                near++;
                bool is_far = frame_stays(&f, 1, 3);
                far += is_far;
                far_in_a_row += is_far && last_far;
                last_far = is_far;
            }
        }
    }
    ASSERT_EQ(near, 8);
    ASSERT_EQ(far, 4);
    ASSERT_EQ(far_in_a_row, 0);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "entity l 1"), 0);
    ASSERT(strstr(buf, "lod 20:1 100:2\n") != NULL);
    sl_client_lod(c, "l", 1, NULL, 0, 20);
    expect_ok(c, 20);
    record_read(&s, trace, buf, sizeof buf);
    ASSERT(strstr(buf, "lod 1 20:1 100:2\n") && strstr(buf, "lod 1\n"));
    sl_client_close(c);
    sl_client_close(other);
    srv_stop(&s, false);
    remove_dir(d.dir);
    return 0;
}

/* The `relate` message: a forced pair is seen from across the map, a never pair is not seen
 * up close, clearing restores distance; the target may be anyone's but the watcher must be
 * the session's; bad kinds and unknown ids are refused; `why` tells; removing the target
 * ends the forced pair. The `always` message: an entity seen from anywhere (but by a never
 * pair). A recording (started with a relation set) replays to the same pairs. */
TEST_IMPL(server_relations)
{
    scratch d;
    scratch_make(&d, "/tmp/sl-rel-XXXXXX", "");
    char trace[128], buf[8192];
    srv s;
    srv_start(&s, "--space", "m:300x300", NULL);
    sl_client *c = connect_to(&s), *other = connect_to(&s);
    static view v;
    track(c, &v);       /* (a tick may come before a reply) */
    sl_client_add(c, "m", 1, 10, 10, 20, 0);
    sl_client_add(c, "m", 3, 15, 10, 20, 0);
    sl_client_add(other, "m", 2, 290, 290, 20, 0);
    sl_client_relate(c, "m", 1, 2, "force", 1);
    expect_ok(c, 1);
    drain(c, &v, 150);
    ASSERT(find_pair(&v, 1, 2) >= 0 && find_pair(&v, 1, 3) >= 0);
    record_into(&s, &d, trace, sizeof trace);
    sl_client_relate(c, "m", 1, 3, "never", 2);
    expect_ok(c, 2);
    sl_client_relate(c, "m", 1, 3, "sometimes", 3);
    expect_error(c, 3, "bad_value");
    sl_client_relate(c, "m", 1, 77, "force", 4);
    expect_error(c, 4, "no_entity");
    sl_client_relate(other, "m", 1, 2, "none", 5);
    expect_error(other, 5, "foreign");
    sl_client_relate(c, "m", 1, 1, "force", 6);
    expect_error(c, 6, "bad_value");
    drain(c, &v, 150);
    ASSERT(find_pair(&v, 1, 3) < 0 && find_pair(&v, 3, 1) >= 0);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "why m 1 2"), 0);
    ASSERT(strstr(buf, "relation: force") && strstr(buf, "VISIBLE"));
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "why m 1 3"), 0);
    ASSERT(strstr(buf, "relation: never") && strstr(buf, "not visible"));
    sl_client_relate(c, "m", 1, 3, "none", 7);
    expect_ok(c, 7);
    sl_client_move(c, "m", 1, 12, 10, 0);       /* (1 moves: the forced pair's stays go on) */
    drain(c, &v, 150);
    ASSERT(find_pair(&v, 1, 3) >= 0 && find_pair(&v, 1, 2) >= 0);
    sl_client_remove(other, "m", 2, 8);
    expect_ok(other, 8);
    drain(c, &v, 150);
    ASSERT(find_pair(&v, 1, 2) < 0);
    /* Always relevant: the other client's flag, far from everyone, is seen by 1 and 3; a
     * never relation still hides it from 3; off again, it is gone. */
    sl_client_add(other, "m", 5, 280, 280, 0, 0);
    sl_client_always(other, "m", 5, true, 9);
    expect_ok(other, 9);
    sl_client_relate(c, "m", 3, 5, "never", 10);
    expect_ok(c, 10);
    drain(c, &v, 150);
    ASSERT(find_pair(&v, 1, 5) >= 0 && find_pair(&v, 3, 5) < 0);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "entity m 5"), 0);
    ASSERT(strstr(buf, " always-relevant ") != NULL);
    sl_client_always(other, "m", 5, false, 11);
    expect_ok(other, 11);
    sl_client_always(c, "m", 5, true, 12);
    expect_error(c, 12, "foreign");
    drain(c, &v, 150);
    ASSERT(find_pair(&v, 1, 5) < 0);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "record stop"), 0);
    ASSERT(v.n == 2);
    static view r;
    replayed_pairs(d.dir, trace, &r);
    ASSERT_EQ(r.n, 2);
    ASSERT(find_pair(&r, 1, 3) >= 0 && find_pair(&r, 3, 1) >= 0);
    track(c, NULL);
    sl_client_close(c);
    sl_client_close(other);
    srv_stop(&s, false);
    remove_dir(d.dir);
    return 0;
}

/* A tick frame's emit payloads (JSON strings), a line each, appended to out. */
static void note_emits(const sl_client_frame *f, char *out, size_t len)
{
    const msgpack_object *ev = sl_frame_get(f, "emit");
    for (uint32_t i = 0; ev && ev->type == MSGPACK_OBJECT_ARRAY && i < ev->via.array.size; i++) {
        const msgpack_object *p = &ev->via.array.ptr[i].via.array.ptr[2];
        size_t n = strlen(out);
        snprintf(out + n, len - n, "%.*s\n", (int)p->via.str.size, p->via.str.ptr);
    }
}

/* A tick frame's region events, "enter G E" / "leave G E" lines, appended to out. */
static void note_regions(const sl_client_frame *f, char *out, size_t len)
{
    static const char *const keys[2] = {"region_enter", "region_leave"};
    for (int k = 0; k < 2; k++) {
        const msgpack_object *a = sl_frame_get(f, keys[k]);
        for (uint32_t i = 0; a && i + 1 < a->via.array.size; i += 2) {
            size_t n = strlen(out);
            snprintf(out + n, len - n, "%s %llu %llu\n", k ? "leave" : "enter",
                     (unsigned long long)a->via.array.ptr[i].via.u64,
                     (unsigned long long)a->via.array.ptr[i + 1].via.u64);
        }
    }
}

/* Reads c's tick frames for up to 3 s, appending what `note` takes of each to out, until out
 * contains `until`. */
static void ticks_until(sl_client *c, char *out, size_t len, const char *until,
                        void (*note)(const sl_client_frame *f, char *out, size_t len))
{
    out[0] = '\0';
    for (double end = sl_now_ms() + 3000; !strstr(out, until) && sl_now_ms() < end;) {
        sl_client_frame f;
        if (sl_client_next(c, &f, 100) == 1 && sl_frame_is(&f, "tick"))
            note(&f, out, len);
    }
}

static void emits_until(sl_client *c, char *out, size_t len, const char *until)
{
    ticks_until(c, out, len, until, note_emits);
}

/* Sends {t: add, space, e, x, y, r, props: {key: str}} (no reply asked). */
static void add_with_prop(sl_client *c, const char *space, uint64_t e, float x, float y,
                          float r, const char *key, const char *str)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    const char *keys[] = {"t", "space", "e", "x", "y", "r", "props"};
    msgpack_pack_map(&pk, 7);
    for (int i = 0; i < 7; i++) {
        msgpack_pack_str_with_body(&pk, keys[i], strlen(keys[i]));
        switch (i) {
        case 0: msgpack_pack_str_with_body(&pk, "add", 3); break;
        case 1: msgpack_pack_str_with_body(&pk, space, strlen(space)); break;
        case 2: msgpack_pack_uint64(&pk, e); break;
        case 3: msgpack_pack_float(&pk, x); break;
        case 4: msgpack_pack_float(&pk, y); break;
        case 5: msgpack_pack_float(&pk, r); break;
        default:
            msgpack_pack_map(&pk, 1);
            msgpack_pack_str_with_body(&pk, key, strlen(key));
            msgpack_pack_str_with_body(&pk, str, strlen(str));
        }
    }
    send_body(c, (const unsigned char *)sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* Lifecycle hooks in the server: on_add for a client's entities (the props sent with the
 * add show in it, not as on_prop), on_prop for a later change, on_remove with the
 * removed entity's last view and its owner (a session's), in the order they happened. */
TEST_IMPL(server_lifecycle_hooks)
{
    scratch d;
    scratch_make(&d, "/tmp/sl-life-XXXXXX",
                 "local function say(...) emit(1, 'life', table.concat({...}, ' ')) end\n"
                 "function on_add(e) say('add', e.id, tostring(e.props.team)) end\n"
                 "function on_prop(e, k, old, new)\n"
                 "  say('prop', e.id, k, tostring(old), tostring(new)) end\n"
                 "function on_remove(e)\n"
                 "  say('remove', e.id, e.x, tostring(e.props.team),\n"
                 "      tostring(e.owner ~= nil and e.owner == sightline.owner(3))) end\n");
    srv s;
    srv_start(&s, "--scripts", d.dir, "--space", "m:300x300", NULL);
    sl_client *a = connect_to(&s), *b = connect_to(&s);
    char got[4096];
    sl_client_add(a, "m", 1, 10, 10, 20, 0);
    emits_until(a, got, sizeof got, "add 1 nil");
    add_with_prop(b, "m", 2, 200, 200, 20, "team", "red");
    sl_client_add(b, "m", 3, 250, 250, 20, 0);
    emits_until(a, got, sizeof got, "add 3 nil");
    ASSERT_STR_EQ(got, "\"add 2 red\"\n\"add 3 nil\"\n");
    sl_client_prop(b, "m", 2, "team", 0, "blue", 0);
    sl_client_remove(b, "m", 2, 0);
    emits_until(a, got, sizeof got, "remove");
    ASSERT_STR_EQ(got, "\"prop 2 team red blue\"\n\"remove 2 200 blue true\"\n");
    sl_client_close(a);
    sl_client_close(b);
    srv_stop(&s, false);
    remove_dir(d.dir);
    return 0;
}

static void region_events_until(sl_client *c, char *out, size_t len, const char *until)
{
    ticks_until(c, out, len, until, note_regions);
}

/* Regions over the protocol: a session's region reports entities of anyone walking in and
 * out (in its own tick frames only), a polygon with a layer mask, a reshape; another
 * session can neither change nor remove it; bad shapes are refused; unregion ends it. */
TEST_IMPL(server_regions)
{
    srv s;
    srv_start(&s, "--space", "m:300x300", "--max-session-regions", "4", NULL);
    sl_client *a = connect_to(&s), *b = connect_to(&s);
    char got[4096];
    sl_client_add(a, "m", 1, 10, 10, 0, 0);
    sl_client_add(a, "m", 2, 100, 100, 0, 0);
    sl_client_add_ex(a, "m", 3, 205, 205, 0, 2, ~0u, 0);    /* (layer 2) */
    float circle[3] = {50, 50, 10}, square[8] = {200, 200, 210, 200, 210, 210, 200, 210};
    sl_client_region(b, "m", 7, "circle", circle, 3, ~0u, 1);
    expect_ok(b, 1);
    sl_client_region(b, "m", 8, "poly", square, 8, 1u << 2, 2);
    expect_ok(b, 2);
    region_events_until(b, got, sizeof got, "enter 8 3");
    ASSERT_STR_EQ(got, "enter 8 3\n");
    sl_client_move(a, "m", 1, 50, 60, 0);           /* onto the circle's edge */
    region_events_until(b, got, sizeof got, "enter 7 1");
    ASSERT_STR_EQ(got, "enter 7 1\n");
    sl_client_move(a, "m", 1, 50, 61, 0);
    region_events_until(b, got, sizeof got, "leave 7 1");
    ASSERT_STR_EQ(got, "leave 7 1\n");
    float wide[3] = {100, 100, 100};                /* reshaped: takes in 1 and 2 */
    sl_client_region(b, "m", 7, "circle", wide, 3, ~0u, 3);
    expect_ok(b, 3);
    region_events_until(b, got, sizeof got, "enter 7 2");
    ASSERT_STR_EQ(got, "enter 7 1\nenter 7 2\n");
    /* A recording started now begins with the regions there are; a reshape is recorded. */
    scratch d;
    scratch_make(&d, "/tmp/sl-rgrec-XXXXXX", "");
    char trace[128], rec[8192];
    record_into(&s, &d, trace, sizeof trace);
    sl_client_region(b, "m", 7, "circle", circle, 3, ~0u, 30);
    expect_ok(b, 30);
    record_read(&s, trace, rec, sizeof rec);
    ASSERT(strstr(rec, "region 7 circle 100 100 100 0xffffffff\n") &&
           strstr(rec, "region 8 poly 4 200 200 210 200 210 210 200 210 0x4\n") &&
           strstr(rec, "region 7 circle 50 50 10 0xffffffff\n"));
    remove_dir(d.dir);
    region_events_until(b, got, sizeof got, "leave 7 2");
    ASSERT_STR_EQ(got, "leave 7 1\nleave 7 2\n");
    /* Another session's attempts, and bad shapes. */
    sl_client_region(a, "m", 7, "circle", circle, 3, ~0u, 4);
    expect_error(a, 4, "foreign");
    sl_client_unregion(a, "m", 7, 5);
    expect_error(a, 5, "foreign");
    float bad[3] = {50, 50, -1};
    sl_client_region(a, "m", 9, "circle", bad, 3, ~0u, 6);
    expect_error(a, 6, "bad_value");
    sl_client_region(a, "m", 9, "circle", bad, 2, ~0u, 7);     /* (no r) */
    expect_error(a, 7, "bad_message");
    sl_client_region(a, "m", 9, "poly", square, 4, ~0u, 8);    /* (two vertices) */
    expect_error(a, 8, "bad_value");
    sl_client_region(a, "m", 9, "blob", square, 4, ~0u, 9);
    expect_error(a, 9, "bad_value");
    /* Removed: no events for it; removing it again is no_region. */
    sl_client_unregion(b, "m", 7, 10);
    expect_ok(b, 10);
    sl_client_unregion(b, "m", 7, 11);
    expect_error(b, 11, "no_region");
    sl_client_remove(a, "m", 3, 12);                /* leaves 8 */
    expect_ok(a, 12);
    region_events_until(b, got, sizeof got, "leave 8 3");
    ASSERT_STR_EQ(got, "leave 8 3\n");
    /* A session owns at most --max-session-regions regions (4 here); reshaping one of its
     * own is not a new one. */
    for (uint64_t id = 20; id < 23; id++) {
        sl_client_region(b, "m", id, "circle", circle, 3, ~0u, id);
        expect_ok(b, id);
    }
    sl_client_region(b, "m", 23, "circle", circle, 3, ~0u, 23);
    expect_error(b, 23, "limit");
    sl_client_region(b, "m", 20, "circle", wide, 3, ~0u, 24);
    expect_ok(b, 24);
    sl_client_close(a);
    sl_client_close(b);
    srv_stop(&s, false);
    return 0;
}

/* The reason of leave (w, t) in tick frame f ("" when not a leave of it, or no reason). */
static const char *frame_why(const sl_client_frame *f, uint64_t w, uint64_t t)
{
    static char why[16];
    const msgpack_object *l = sl_frame_get(f, "leave"), *r = sl_frame_get(f, "leave_why");
    why[0] = '\0';
    for (uint32_t i = 0; l && r && i + 1 < l->via.array.size && i / 2 < r->via.array.size;
         i += 2)
        if (l->via.array.ptr[i].via.u64 == w && l->via.array.ptr[i + 1].via.u64 == t) {
            const msgpack_object *s = &r->via.array.ptr[i / 2];
            snprintf(why, sizeof why, "%.*s", (int)s->via.str.size, s->via.str.ptr);
        }
    return why;
}

/* A space created with reasons (--space NAME:WxH,reasons, and space.create `reasons`) sends
 * each leave's reason in the tick frame's leave_why, in the order of leave: removed, never,
 * layer, range; a space without sends none. */
TEST_IMPL(server_leave_reasons)
{
    srv s;
    srv_start(&s, "--space", "w:300x300,reasons", NULL);
    char buf[4096];
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "spaces"), 0);
    ASSERT(strstr(buf, " reasons") != NULL);
    sl_client *c = connect_to(&s);
    static view v;
    sl_client_add(c, "w", 1, 100, 100, 30, 0);
    sl_client_add(c, "w", 2, 110, 100, 0, 0);
    sl_client_add(c, "w", 3, 120, 100, 0, 0);
    sl_client_add_ex(c, "w", 4, 100, 110, 0, 1, ~0u, 0);
    sl_client_add(c, "w", 5, 100, 120, 0, 0);
    drain(c, &v, 150);
    ASSERT_EQ(v.n, 4);
    sl_client_remove(c, "w", 2, 0);
    sl_client_relate(c, "w", 1, 3, "never", 0);
    sl_client_move(c, "w", 5, 200, 200, 0);
    uint8_t mask[] = {0x84, 0xa1, 't', 0xa4, 'm', 'a', 's', 'k', 0xa5, 's', 'p', 'a', 'c', 'e',
                      0xa1, 'w', 0xa1, 'e', 0x01, 0xa4, 'm', 'a', 's', 'k', 0x01};
    uint8_t hdr[4] = {0, 0, 0, sizeof mask};
    ASSERT_EQ(sl_client_send_raw(c, hdr, 4), 0);
    ASSERT_EQ(sl_client_send_raw(c, mask, sizeof mask), 0);
    int seen = 0;
    for (int k = 0; k < 20 && seen < 4; k++) {
        sl_client_frame f;
        ASSERT_EQ(sl_client_next(c, &f, 2000), 1);
        if (!sl_frame_is(&f, "tick"))
            continue;
        seen += !strcmp(frame_why(&f, 1, 2), "removed") + !strcmp(frame_why(&f, 1, 3), "never") +
                !strcmp(frame_why(&f, 1, 4), "layer") + !strcmp(frame_why(&f, 1, 5), "range");
    }
    ASSERT_EQ(seen, 4);
    sl_client_close(c);
    srv_stop(&s, false);
    return 0;
}

/* The hits of c's `query` reply rid (ids into ids, their count), skipping other frames. */
static size_t query_hits(sl_client *c, uint64_t rid, uint64_t *ids, size_t max, bool *more)
{
    for (int k = 0; k < 50; k++) {
        sl_client_frame f;
        ASSERT_EQ(sl_client_next(c, &f, 2000), 1);
        if (!sl_frame_is(&f, "query") || sl_frame_u64(&f, "rid") != rid)
            continue;
        const msgpack_object *h = sl_frame_get(&f, "hits"), *m = sl_frame_get(&f, "more");
        ASSERT(h && h->type == MSGPACK_OBJECT_ARRAY && h->via.array.size % 3 == 0);
        ASSERT(m && m->type == MSGPACK_OBJECT_BOOLEAN);
        *more = m->via.boolean;
        size_t n = h->via.array.size / 3;
        for (size_t i = 0; i < n && i < max; i++)
            ids[i] = h->via.array.ptr[3 * i].via.u64;
        return n;
    }
    ASSERT(0);
    return 0;
}

/* The `query` message: a circle and a rectangle answered from the positions now (a move
 * just made counts, before any tick), nearest first, on the layers asked, within a limit;
 * bad shapes refused; sightctl query lists the same. */
TEST_IMPL(server_query)
{
    srv s;
    srv_start(&s, "--space", "w:300x300", NULL);
    char buf[4096];
    sl_client *c = connect_to(&s);
    sl_client_add(c, "w", 1, 100, 100, 0, 0);
    sl_client_add(c, "w", 2, 110, 100, 0, 0);
    sl_client_add_ex(c, "w", 3, 150, 100, 0, 1, ~0u, 0);
    uint64_t ids[8];
    bool more;
    sl_client_query(c, "w", 100, 100, 20, NAN, NAN, ~0u, 0, 1);
    ASSERT_EQ(query_hits(c, 1, ids, 8, &more), 2);
    ASSERT(ids[0] == 1 && ids[1] == 2 && !more);
    sl_client_move(c, "w", 2, 99, 100, 0);
    sl_client_move(c, "w", 1, 140, 100, 0);
    sl_client_query(c, "w", 100, 100, 20, NAN, NAN, ~0u, 0, 2);     /* (no tick needed) */
    ASSERT_EQ(query_hits(c, 2, ids, 8, &more), 1);
    ASSERT_EQ(ids[0], 2);
    sl_client_query(c, "w", 95, 95, 0, 155, 105, 1u << 1, 0, 3);    /* layer 1 only */
    ASSERT_EQ(query_hits(c, 3, ids, 8, &more), 1);
    ASSERT_EQ(ids[0], 3);
    sl_client_query(c, "w", 95, 95, 0, 155, 105, ~0u, 2, 4);
    ASSERT_EQ(query_hits(c, 4, ids, 8, &more), 2);
    ASSERT(ids[0] == 1 && ids[1] == 3);         /* (from the centre (125, 100): 15, 25) */
    sl_client_query(c, "w", 100, 100, -1, NAN, NAN, ~0u, 0, 5);
    expect_error(c, 5, "bad_value");
    uint8_t both[] = {0x86, 0xa1, 't', 0xa5, 'q', 'u', 'e', 'r', 'y', 0xa5, 's', 'p', 'a', 'c',
                      'e', 0xa1, 'w', 0xa1, 'x', 0x01, 0xa1, 'y', 0x01, 0xa1, 'r', 0x01, 0xa2,
                      'x', '1', 0x02};
    uint8_t hdr[4] = {0, 0, 0, sizeof both};
    ASSERT_EQ(sl_client_send_raw(c, hdr, 4), 0);
    ASSERT_EQ(sl_client_send_raw(c, both, sizeof both), 0);
    bool refused = false;
    for (int k = 0; k < 20 && !refused; k++) {
        sl_client_frame f;
        char code[32];
        ASSERT_EQ(sl_client_next(c, &f, 2000), 1);
        refused = sl_frame_is(&f, "error") &&
                  !strcmp(sl_frame_str(&f, "code", code, sizeof code), "bad_message");
    }
    ASSERT(refused);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "query w 100 100 45"), 0);
    ASSERT(strstr(buf, "2 entities within 45") && strstr(buf, "2 at (99, 100) distance 1\n") &&
           strstr(buf, "1 at (140, 100) distance 40\n"));
    sl_client_close(c);
    srv_stop(&s, false);
    return 0;
}

/* Group g's event for target t in tick frame f: "enter", "leave REASON", or "". */
static const char *group_event(const sl_client_frame *f, uint64_t g, uint64_t t)
{
    static char out[32];
    const msgpack_object *en = sl_frame_get(f, "group_enter"), *l = sl_frame_get(f, "group_leave"),
                         *r = sl_frame_get(f, "group_leave_why");
    out[0] = '\0';
    for (uint32_t i = 0; en && i + 3 < en->via.array.size; i += 4)
        if (en->via.array.ptr[i].via.u64 == g && en->via.array.ptr[i + 1].via.u64 == t)
            snprintf(out, sizeof out, "enter");
    for (uint32_t i = 0; l && r && i + 1 < l->via.array.size; i += 2)
        if (l->via.array.ptr[i].via.u64 == g && l->via.array.ptr[i + 1].via.u64 == t) {
            const msgpack_object *w = &r->via.array.ptr[i / 2];
            snprintf(out, sizeof out, "leave %.*s", (int)w->via.str.size, w->via.str.ptr);
        }
    return out;
}

/* Waits (up to 20 frames) for group g's event on t in c's tick frames; ASSERTs it is want. */
static void expect_group_event(sl_client *c, uint64_t g, uint64_t t, const char *want)
{
    for (int k = 0; k < 20; k++) {
        sl_client_frame f;
        ASSERT_EQ(sl_client_next(c, &f, 2000), 1);
        const char *got = sl_frame_is(&f, "tick") ? group_event(&f, g, t) : "";
        if (*got) {
            if (strcmp(got, want))
                fprintf(stderr, "group %llu, target %llu: %s, not %s\n", (unsigned long long)g,
                        (unsigned long long)t, got, want);
            ASSERT(!strcmp(got, want));
            return;
        }
    }
    ASSERT(0);
}

/* Vision groups: a client subscribed to group 5 gets what its members (another client's
 * units) see, as group events with the targets' positions: a member that stops seeing a
 * target ("unseen"), one that leaves the group ("left"); a removed target ("removed");
 * unsubscribed, it gets no more; group 0 is refused; the recorder writes `group` lines. */
TEST_IMPL(server_groups)
{
    srv s;
    srv_start(&s, "--space", "w:300x300,reasons", NULL);
    char buf[4096];
    sl_client *c = connect_to(&s), *d = connect_to(&s);
    sl_client_subscribe(d, "w", 5, true, 1);
    expect_ok(d, 1);
    sl_client_subscribe(d, "w", 0, true, 2);
    expect_error(d, 2, "bad_value");
    sl_client_add(c, "w", 1, 100, 100, 30, 0);
    sl_client_add(c, "w", 2, 200, 200, 30, 0);
    sl_client_group(c, "w", 1, 5, 3);
    expect_ok(c, 3);
    sl_client_group(c, "w", 2, 5, 4);
    expect_ok(c, 4);
    sl_client_group(d, "w", 1, 6, 5);
    expect_error(d, 5, "foreign");
    sl_client_add(d, "w", 3, 110, 100, 0, 0);
    sl_client_add(d, "w", 4, 210, 200, 0, 0);
    sl_client_add(d, "w", 5, 205, 200, 0, 0);
    expect_group_event(d, 5, 4, "enter");
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "entity w 1"), 0);
    ASSERT(strstr(buf, "group 5") != NULL);
    sl_client_move(d, "w", 3, 180, 100, 0);
    expect_group_event(d, 5, 3, "leave unseen");
    sl_client_group(c, "w", 2, 0, 6);
    expect_ok(c, 6);
    expect_group_event(d, 5, 4, "leave left");
    sl_client_group(c, "w", 2, 5, 7);
    expect_ok(c, 7);
    expect_group_event(d, 5, 5, "enter");
    sl_client_remove(d, "w", 5, 0);
    expect_group_event(d, 5, 5, "leave removed");
    sl_client_subscribe(d, "w", 5, false, 8);
    expect_ok(d, 8);
    sl_client_move(d, "w", 3, 110, 100, 0);
    for (int k = 0; k < 5; k++) {       /* (ticks of 50 ms: a few go by) */
        sl_client_frame f;
        int got = sl_client_next(d, &f, 100);
        ASSERT(got >= 0);
        ASSERT(got == 0 || !sl_frame_get(&f, "group_enter"));
    }
    sl_client_close(c);
    sl_client_close(d);
    srv_stop(&s, false);
    return 0;
}

/* The `cap` and `priority` messages: a watcher capped at 2 sees its two nearest targets;
 * another session's priority on the farthest brings it in and the cut leave says "cap";
 * lifting the cap brings the third back; bad values and other sessions' entities are
 * refused; sightctl entity and why tell. */
TEST_IMPL(server_caps)
{
    srv s;
    srv_start(&s, "--space", "w:300x300,reasons", NULL);
    char buf[4096];
    sl_client *c = connect_to(&s), *other = connect_to(&s);
    static view v;
    sl_client_add(c, "w", 1, 100, 100, 50, 0);
    sl_client_add(other, "w", 2, 110, 100, 0, 0);
    sl_client_add(other, "w", 3, 120, 100, 0, 0);
    sl_client_add(other, "w", 4, 130, 100, 0, 0);
    drain(c, &v, 150);
    ASSERT_EQ(v.n, 3);
    sl_client_cap(c, "w", 1, 2, 0, 1);
    expect_ok(c, 1);
    drain(c, &v, 150);
    ASSERT_EQ(v.n, 2);
    ASSERT(find_pair(&v, 1, 2) >= 0 && find_pair(&v, 1, 3) >= 0);
    sl_client_priority(other, "w", 4, 5, 2);
    expect_ok(other, 2);
    bool cut = false;
    for (int k = 0; k < 20 && !cut; k++) {
        sl_client_frame f;
        ASSERT_EQ(sl_client_next(c, &f, 2000), 1);
        cut = sl_frame_is(&f, "tick") && !strcmp(frame_why(&f, 1, 3), "cap");
    }
    ASSERT(cut);
    sl_client_cap(other, "w", 1, 1, 0, 3);
    expect_error(other, 3, "foreign");
    sl_client_cap(c, "w", 1, 2, -1, 4);
    expect_error(c, 4, "bad_value");
    sl_client_cap(c, "w", 9, 2, 0, 5);
    expect_error(c, 5, "no_entity");
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "entity w 1"), 0);
    ASSERT(strstr(buf, "cap 2 margin 0 candidates 3 priority 0") != NULL);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "why w 1 3"), 0);
    ASSERT(strstr(buf, "a candidate the cap LEFT OUT") && strstr(buf, "not visible"));
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "why w 1 4"), 0);
    ASSERT(strstr(buf, "(the target's: 5)") && strstr(buf, "VISIBLE"));
    sl_client_cap(c, "w", 1, 0, 0, 6);
    expect_ok(c, 6);
    static view v2;
    drain(c, &v2, 150);
    ASSERT(find_pair(&v2, 1, 3) >= 0);
    sl_client_close(c);
    sl_client_close(other);
    srv_stop(&s, false);
    return 0;
}

/* ---- the server on etcd ------------------------------------------------------------------- */

#include "fixtures/etcd_env.h"

/* Drains c's ticks while v holds n pairs, 2 s at the most. */
static void drain_while_pairs(sl_client *c, view *v, size_t n)
{
    for (int i = 0; i < 40 && v->n == n; i++)
        drain(c, v, 50);
}

/* Space "arena" of cluster "t", defined in etcd (with a field the server does not read),
 * comes up on the server. */
static void arena_defined(etcd_env *t, const srv *s)
{
    char doc[512];
    snprintf(doc, sizeof doc, "{\"version\": \"1.0.0\", \"schema_hash\": \"%016llx\", "
             "\"created_at\": \"2026-11-24T00:00:00Z\", \"data\": {\"width\": 1000, "
             "\"height\": 1000, \"index\": \"auto\", \"hysteresis\": 0}}", schema_hash());
    ASSERT_EQ(etcd_do(t, ETCD_PUT, "/sightline/t/v1/spaces/arena", doc).r.status.code, 0);
    char buf[8192];
    ASSERT(ctl_until(s, "spaces", "arena entities 0", buf, sizeof buf));
}

/* A client's watcher (entity 1) sees static entity 500 come from etcd, and cannot move it.
 * Returns the client. */
static sl_client *static_entity_comes(etcd_env *t, const srv *s, view *v)
{
    sl_client *c = connect_to(s);
    sl_client_add(c, "arena", 1, 100, 100, 50, 1);
    expect_ok(c, 1);
    ASSERT_EQ(etcd_do(t, ETCD_PUT, "/sightline/t/v1/spaces/arena/entities/500",
                      "{\"x\": 110, \"y\": 100, \"props\": {\"kind\": \"tree\"}}")
                  .r.status.code, 0);
    drain_while_pairs(c, v, 0);
    ASSERT_EQ(v->n, 1);
    ASSERT(v->w[0] == 1 && v->t[0] == 500 && v->x[0] == 110);
    sl_client_move(c, "arena", 500, 1, 1, 2);
    expect_error(c, 2, "foreign");
    char buf[4096];
    ASSERT_EQ(ctl(s, buf, sizeof buf, "entity arena 500"), 0);
    ASSERT(strstr(buf, "owner etcd (a static entity)") != NULL);
    return c;
}

/* A bad entity document, a definition of an unknown major version and one with a wrong
 * schema hash are refused; the running space keeps its definition. */
static void bad_documents_refused(etcd_env *t, const srv *s)
{
    ASSERT_EQ(etcd_do(t, ETCD_PUT, "/sightline/t/v1/spaces/arena/entities/501",
                      "{\"x\": \"left\"}").r.status.code, 0);
    char bad[512];
    snprintf(bad, sizeof bad, "{\"version\": \"2.0.0\", \"schema_hash\": \"%016llx\", "
             "\"data\": {\"width\": 10, \"height\": 10}}", schema_hash());
    ASSERT_EQ(etcd_do(t, ETCD_PUT, "/sightline/t/v1/spaces/arena", bad).r.status.code, 0);
    char buf[8192];
    ASSERT(ctl_until(s, "stats", "refused 2", buf, sizeof buf));
    ASSERT(strstr(buf, "major version 1") != NULL);
    ASSERT_EQ(ctl(s, buf, sizeof buf, "spaces"), 0);
    ASSERT(strstr(buf, "arena entities 2") != NULL);
    ASSERT_EQ(etcd_do(t, ETCD_PUT, "/sightline/t/v1/spaces/arena",
                      "{\"version\": \"1.1.0\", \"schema_hash\": \"0000\", \"data\": "
                      "{\"width\": 1000, \"height\": 1000}}").r.status.code, 0);
    ASSERT(ctl_until(s, "stats", "refused 3", buf, sizeof buf));
}

/* A new definition reconfigures the space in place (its index and its own tick period),
 * keeping entities and pairs. */
static void reconfigured_in_place(etcd_env *t, const srv *s)
{
    char doc[512];
    snprintf(doc, sizeof doc, "{\"version\": \"1.0.1\", \"schema_hash\": \"%016llx\", "
             "\"data\": {\"width\": 1000, \"height\": 1000, \"index\": \"quadtree\", "
             "\"cell\": 32, \"tick_ms\": 60}}", schema_hash());
    ASSERT_EQ(etcd_do(t, ETCD_PUT, "/sightline/t/v1/spaces/arena", doc).r.status.code, 0);
    char buf[8192];
    ASSERT(ctl_until(s, "spaces", "arena entities 2 pairs 1 index quadtree", buf, sizeof buf));
    ASSERT(strstr(buf, "tick_ms 60") != NULL);      /* its own period (the server: 20 ms) */
}

/* sightctl space get / put: compare-and-swap on the revision; a document with a bad schema
 * hash is refused before it is written. */
static void space_put_compare_and_swap(const srv *s)
{
    char buf[8192];
    ASSERT_EQ(ctl(s, buf, sizeof buf, "space get arena"), 0);
    char *mr = strstr(buf, "mod_revision ");
    ASSERT(mr != NULL && strstr(buf, "quadtree") != NULL);
    long long cur = atoll(mr + 13);
    char file[128], cmd[256];
    snprintf(file, sizeof file, "%s/arena.json", s->dir);
    FILE *fp = fopen(file, "w");
    fprintf(fp, "{\"version\": \"1.0.2\",\n \"schema_hash\": \"%016llx\",\n \"data\": "
            "{\"width\": 1000, \"height\": 1000, \"index\": \"grid\", \"cell\": 64}}\n",
            schema_hash());
    fclose(fp);
    snprintf(cmd, sizeof cmd, "space put arena %s %lld", file, cur - 1);
    ASSERT_EQ(ctl(s, buf, sizeof buf, cmd), 1);
    char want[96];
    snprintf(want, sizeof want, "is at mod_revision %lld", cur);
    ASSERT(strstr(buf, "conflict") && strstr(buf, want));
    snprintf(cmd, sizeof cmd, "space put arena %s", file);     /* create-only: exists */
    ASSERT_EQ(ctl(s, buf, sizeof buf, cmd), 1);
    snprintf(cmd, sizeof cmd, "space put arena %s %lld", file, cur);
    ASSERT_EQ(ctl(s, buf, sizeof buf, cmd), 0);
    ASSERT(strstr(buf, "written at revision") != NULL);
    ASSERT(ctl_until(s, "spaces", "arena entities 2 pairs 1 index grid cell 64", buf, sizeof buf));
    put_file(file, "{\"version\": \"1.0.3\", \"schema_hash\": \"nope\", \"data\": {}}");
    snprintf(cmd, sizeof cmd, "space put other %s", file);
    ASSERT_EQ(ctl(s, buf, sizeof buf, cmd), 1);
    ASSERT(strstr(buf, "refused before writing") != NULL);
}

/* The node is registered under its lease; static entity 500, deleted from etcd, leaves the
 * client's view after the grace period. */
static void registered_and_static_goes(etcd_env *t, sl_client *c, view *v)
{
    ASSERT_EQ(etcd_do(t, ETCD_RANGE, "/sightline/t/v1/nodes/n1", "").nkvs, 1);
    const char *entity = "/sightline/t/v1/spaces/arena/entities/500";
    ASSERT_EQ(etcd_do(t, ETCD_DELETE, entity, "").r.status.code, 0);
    drain_while_pairs(c, v, 1);
    ASSERT_EQ(v->n, 0);
}

/* Losing etcd does not stop the server; it says so, and reconnects. */
static void survives_losing_etcd(etcd_env *t, const srv *s, sl_client *c)
{
    char buf[8192];
    etcd_fx_stop(&t->fx, true);
    ASSERT(ctl_until(s, "stats", "etcd DISCONNECTED", buf, sizeof buf));
    sl_client_move(c, "arena", 1, 101, 100, 3);
    expect_ok(c, 3);
    etcd_fx_restart(&t->fx);
    ASSERT(ctl_until(s, "stats", "etcd connected", buf, sizeof buf));
}

/* After the server's clean shutdown its node registration is gone at once (the lease was
 * revoked), as seen once the test's own client has reconnected. */
static void registration_gone(etcd_env *t)
{
    uint64_t end = uv_now(&t->loop) + 5000;
    while (!sl_etcd_connected(t->e) && uv_now(&t->loop) < end)
        uv_run(&t->loop, UV_RUN_ONCE);
    ASSERT_EQ(etcd_do(t, ETCD_RANGE, "/sightline/t/v1/nodes/", "").nkvs, 0);
}

/* The server on etcd: space definitions and static entities from etcd, refusals, reconfiguring
 * in place, sightctl space get / put, node registration, losing etcd, a clean shutdown. */
TEST_IMPL(server_on_etcd)
{
    etcd_env t;
    etcd_env_start(&t);
    srv s;
    srv_start(&s, "--etcd", t.fx.endpoint, "--cluster", "t", "--node-id", "n1",
              "--static-grace-ms", "300", NULL);
    arena_defined(&t, &s);
    static view v;
    sl_client *c = static_entity_comes(&t, &s, &v);
    bad_documents_refused(&t, &s);
    reconfigured_in_place(&t, &s);
    space_put_compare_and_swap(&s);
    registered_and_static_goes(&t, c, &v);
    survives_losing_etcd(&t, &s, c);
    sl_client_close(c);
    srv_stop(&s, false);
    registration_gone(&t);
    etcd_env_end(&t);
    return 0;
}

/* server_etcd_reconfigure_moving: 300 entities of one client in space "m" (600 x 600) of
 * cluster "r", radius 35. */
enum { RECONF_N = 300 };

/* Space "m", defined in etcd with a grid index, comes up on the server. */
static void space_m_defined(etcd_env *t, const srv *s)
{
    char doc[512], buf[8192];
    snprintf(doc, sizeof doc, "{\"version\": \"1.0.0\", \"schema_hash\": \"%016llx\", \"data\": "
             "{\"width\": 600, \"height\": 600, \"index\": \"grid\"}}", schema_hash());
    ASSERT_EQ(etcd_do(t, ETCD_PUT, "/sightline/r/v1/spaces/m", doc).r.status.code, 0);
    ASSERT(ctl_until(s, "spaces", "m entities 0", buf, sizeof buf));
}

/* Round `round`: every entity takes a random step, all in one batch; in rounds 1, 5, 9, ...
 * a new definition switches the index (grid, quadtree in turn) and the cell size. */
static void move_and_redefine(etcd_env *t, sl_client *c, float *x, float *y, uint32_t *seed,
                              int round)
{
    static const char *const kinds[] = {"grid", "quadtree"};
    uint64_t ids[RECONF_N];
    float xy[2 * RECONF_N];
    for (int i = 0; i < RECONF_N; i++) {
        random_step(&x[i], &y[i], next_rand(seed), 599);
        ids[i] = (uint64_t)i + 1;
        xy[2 * i] = x[i];
        xy[2 * i + 1] = y[i];
    }
    ASSERT_EQ(sl_client_moves(c, "m", ids, xy, RECONF_N, 0), 0);
    if (round % 4 == 1) {
        char doc[512];
        snprintf(doc, sizeof doc, "{\"version\": \"1.0.%d\", \"schema_hash\": \"%016llx\", "
                 "\"data\": {\"width\": 600, \"height\": 600, \"index\": \"%s\", "
                 "\"cell\": %d}}", round, schema_hash(), kinds[(round / 4) % 2],
                 16 + 8 * (round % 3));
        ASSERT_EQ(etcd_do(t, ETCD_PUT, "/sightline/r/v1/spaces/m", doc).r.status.code, 0);
    }
}

/* Definitions switch the index back and forth while a client moves 300 entities in batches:
 * at the end the client's view equals the brute-force visible set. */
TEST_IMPL(server_etcd_reconfigure_moving)
{
    etcd_env t;
    etcd_env_start(&t);
    srv s;
    srv_start(&s, "--etcd", t.fx.endpoint, "--cluster", "r", NULL);
    space_m_defined(&t, &s);
    sl_client *c = connect_to(&s);
    static view v;
    static float x[RECONF_N], y[RECONF_N];
    uint32_t seed = 3;
    add_scattered(&c, 1, "m", RECONF_N, 600, 35, x, y, &seed);
    for (int round = 0; round < 24; round++) {
        move_and_redefine(&t, c, x, y, &seed, round);
        drain(c, &v, 25);
    }
    drain(c, &v, 300);
    size_t total = check_oracle(x, y, RECONF_N, 35, &v, 1);
    ASSERT(total > 200);
    char buf[8192];
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "stats"), 0);
    ASSERT(strstr(buf, "refused 0") != NULL);
    sl_client_close(c);
    srv_stop(&s, true);
    etcd_env_end(&t);
    return 0;
}

/* ---- etcd's documents: schema versions, keys, all-or-nothing, no-ops, merged changes --------- */

/* A definition of space `name` in cluster "d": version, hash and data as given. */
static void define(etcd_env *t, const char *name, const char *version, unsigned long long hash,
                   const char *data)
{
    char key[128], doc[768];
    snprintf(key, sizeof key, "/sightline/d/v1/spaces/%s", name);
    snprintf(doc, sizeof doc, "{\"version\": \"%s\", \"schema_hash\": \"%016llx\", "
             "\"data\": {%s}}", version, hash, data);
    ASSERT_EQ(etcd_do(t, ETCD_PUT, key, doc).r.status.code, 0);
}

/* The number after `word ` in the `etcd` line of stats. */
static long long etcd_figure(const srv *s, const char *word)
{
    char buf[8192], pat[64];
    ASSERT_EQ(ctl(s, buf, sizeof buf, "stats"), 0);
    snprintf(pat, sizeof pat, " %s ", word);
    char *line = strstr(buf, "\netcd ");
    char *p = line ? strstr(line, pat) : NULL;
    ASSERT(p != NULL);
    return atoll(p + strlen(pat));
}

/* The figure once the `etcd` line has caught up with what was applied (the server refreshes
 * it every 500 ms): a baseline read at once could be a refresh old. */
static long long settled_figure(const srv *s, const char *word)
{
    sleep_ms(600);
    return etcd_figure(s, word);
}

/* Waits until the etcd line's `refused` reaches n; true if it did. */
static bool refused_reaches(const srv *s, long long n)
{
    for (int i = 0; i < 100 && etcd_figure(s, "refused") < n; i++)
        sleep_ms(50);
    return etcd_figure(s, "refused") == n;
}

/* Versions are semver: 1.0.x with the README's hash and with the old basis's hash (counted)
 * are read; 1.banana, 1.99.0 (a minor this server does not know), wrong types and unknown
 * fields are refused with a reason that names them. */
static void versions_and_fields(etcd_env *t, const srv *s)
{
    char buf[8192];
    define(t, "a", "1.0.0", schema_hash(), "\"width\": 500, \"height\": 500");
    define(t, "old", "1.0.0", 0xb8104100491115a7ULL, "\"width\": 100, \"height\": 100");
    ASSERT(ctl_until(s, "spaces", "old entities 0", buf, sizeof buf));
    ASSERT(strstr(buf, "a entities 0") != NULL);
    static const struct { const char *version, *data, *why; } bad[] = {
        {"1.banana", "\"width\": 9, \"height\": 9", "is not MAJOR.MINOR.PATCH"},
        {"1.99.0", "\"width\": 9, \"height\": 9", "written for 1.99, this server knows up to 1.2"},
        {"1.0.0", "\"width\": 9, \"height\": 9, \"reasons\": true", "data.reasons: no such field"},
        {"1.0.0", "\"width\": 9, \"height\": 9, \"cell\": \"big\"", "data.cell must be a number"},
        {"1.0.0", "\"width\": 9, \"height\": 9, \"tick_ms\": \"fast\"", "data.tick_ms must be"},
        {"1.0.0", "\"width\": 9, \"height\": 9, \"index\": 7", "data.index must be a string"},
        {"1.0.0", "\"width\": 9, \"height\": 9, \"colour\": 1", "data.colour: no such field"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        define(t, "b", bad[i].version, schema_hash(), bad[i].data);
        ASSERT(refused_reaches(s, (long long)i + 1));
        ASSERT_EQ(ctl(s, buf, sizeof buf, "stats"), 0);
        if (!strstr(buf, bad[i].why))
            fprintf(stderr, "wanted '%s' in: %s\n", bad[i].why, buf);
        ASSERT(strstr(buf, bad[i].why) != NULL);
    }
    ASSERT_EQ(ctl(s, buf, sizeof buf, "spaces"), 0);
    ASSERT(strstr(buf, "b entities") == NULL);
    /* Schema 1.1 adds `reasons` (with its own hash). */
    define(t, "r", "1.1.0", 0xe7a98085d844cee2ULL,
           "\"width\": 50, \"height\": 50, \"reasons\": true");
    ASSERT(ctl_until(s, "spaces", "r entities 0", buf, sizeof buf));
    char *line = strstr(buf, "r entities 0");
    ASSERT(line && strstr(line, " reasons") && strstr(line, " reasons") < strchr(line, '\n'));
    ASSERT(ctl_until(s, "stats", "etcd_legacy_hash 1\n", buf, sizeof buf));  /* and /metrics */
    ASSERT(strstr(buf, "etcd_connected 1\n") && strstr(buf, "etcd_refused 7\n"));
    ASSERT(strstr(buf, "etcd_state 2\n") && strstr(buf, "etcd_lease_ttl_left_s "));
    /* sightctl space check: the same checks, offline. */
    char file[128], cmd[200], doc[512];
    snprintf(file, sizeof file, "%s/check.json", s->dir);
    snprintf(doc, sizeof doc, "{\"version\": \"1.0.4\", \"schema_hash\": \"%016llx\", "
             "\"data\": {\"width\": 64, \"height\": 32, \"index\": \"grid\"}}", schema_hash());
    put_file(file, doc);
    snprintf(cmd, sizeof cmd, "space check %s", file);
    ASSERT_EQ(ctl(s, buf, sizeof buf, cmd), 0);
    ASSERT(strstr(buf, "valid: schema 1.0.4, map 64x32, index grid") != NULL);
    put_file(file, "{\"version\": \"1.0.0\", \"schema_hash\": \"804a650955269821\", "
                   "\"data\": {\"width\": 9, \"height\": 9, \"cell\": \"big\"}}");
    ASSERT_EQ(ctl(s, buf, sizeof buf, cmd), 1);
    ASSERT(strstr(buf, "refused: data.cell must be a number, not a string") != NULL);
}

/* sightctl space migrate --all rewrites the definitions of 1.0 (one with the old hash basis)
 * and 1.1 as 1.2 through the CAS, names the refused one; the server finds the rewrites equal
 * to what it applied. */
static void migrated(etcd_env *t, const srv *s)
{
    char buf[8192];
    long long same = settled_figure(s, "unchanged");
    ASSERT_EQ(ctl(s, buf, sizeof buf, "space migrate --all"), 1);
    ASSERT(strstr(buf, "old: migrated to schema 1.2 at revision") != NULL);
    ASSERT(strstr(buf, "a: migrated to schema 1.2 at revision") != NULL);   /* (1.0 -> 1.2) */
    ASSERT(strstr(buf, "r: migrated to schema 1.2 at revision") != NULL);   /* (1.1 -> 1.2) */
    ASSERT(strstr(buf, "b: refused, left alone: data.colour: no such field") != NULL);
    ASSERT(strstr(buf, "migrated 3, already current 0, refused 1, failed 0") != NULL);
    etcd_fx_got g = etcd_do(t, ETCD_RANGE, "/sightline/d/v1/spaces/old", "");
    ASSERT(strstr(g.value, "\"schema_hash\":\"bfbef4044f3e2194\"") &&
           strstr(g.value, "\"version\":\"1.2.0\""));
    for (int i = 0; i < 100 && etcd_figure(s, "unchanged") < same + 3; i++)
        sleep_ms(50);
    ASSERT_EQ(etcd_figure(s, "unchanged"), same + 3);
    ASSERT_EQ(ctl(s, buf, sizeof buf, "space migrate old"), 0);
    ASSERT(strstr(buf, "migrated 0, already current 1") != NULL);
}

/* One entity has one key: 7 is read; 007, " 15", -1, abc, an empty id and a deeper key are
 * refused and counted, and a space name with a blank is refused. */
static void keys_canonical(etcd_env *t, const srv *s)
{
    static const char *const refused[] = {"a/entities/007", "a/entities/ 15", "a/entities/-1",
                                          "a/entities/abc", "a/entities/", "a/x/y",
                                          "a b/entities/1"};
    char key[128], buf[8192];
    long long before = settled_figure(s, "refused");
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        snprintf(key, sizeof key, "/sightline/d/v1/spaces/%s", refused[i]);
        ASSERT_EQ(etcd_do(t, ETCD_PUT, key, "{\"x\": 1, \"y\": 1}").r.status.code, 0);
    }
    ASSERT_EQ(etcd_do(t, ETCD_PUT, "/sightline/d/v1/spaces/a/entities/7",
                      "{\"x\": 10, \"y\": 10}").r.status.code, 0);
    ASSERT(ctl_until(s, "spaces", "a entities 1", buf, sizeof buf));
    ASSERT(refused_reaches(s, before + (long long)(sizeof refused / sizeof refused[0])));
}

/* A refused document changes nothing: a definition whose scripts do not exist (with a new
 * cell) leaves the index and cell; an entity update with radius 1e39 leaves the position. */
static void refused_changes_nothing(etcd_env *t, const srv *s)
{
    char buf[8192];
    define(t, "a", "1.0.1", schema_hash(), "\"width\": 500, \"height\": 500, \"index\": "
           "\"grid\", \"cell\": 50");
    ASSERT(ctl_until(s, "spaces", "index grid cell 50", buf, sizeof buf));
    long long before = settled_figure(s, "refused");
    define(t, "a", "1.0.2", schema_hash(), "\"width\": 500, \"height\": 500, \"index\": "
           "\"quadtree\", \"cell\": 20, \"scripts\": \"nowhere\"");
    ASSERT(refused_reaches(s, before + 1));
    ASSERT_EQ(ctl(s, buf, sizeof buf, "spaces"), 0);
    ASSERT(strstr(buf, "index grid cell 50") != NULL);
    ASSERT_EQ(etcd_do(t, ETCD_PUT, "/sightline/d/v1/spaces/a/entities/7",
                      "{\"x\": 99, \"y\": 99, \"radius\": 1e39}").r.status.code, 0);
    ASSERT(refused_reaches(s, before + 2));
    ASSERT_EQ(ctl(s, buf, sizeof buf, "entity a 7"), 0);
    ASSERT(strstr(buf, "x 10 y 10 radius 0") != NULL);
    /* Redefining the space re-applies its entities but counts no refusal again. */
    define(t, "a", "1.0.3", schema_hash(), "\"width\": 500, \"height\": 500, \"index\": "
           "\"grid\", \"cell\": 25");
    ASSERT(ctl_until(s, "spaces", "index grid cell 25", buf, sizeof buf));
    ASSERT_EQ(etcd_figure(s, "refused"), before + 2);
}

/* Puts that change nothing are no-ops: 30 identical definitions (another patch version) and
 * 30 identical entity documents (props in another order) apply nothing (each is merged into
 * a later one of its key within a tick, or found equal to what is applied). */
static void identical_puts_free(etcd_env *t, const srv *s)
{
    char buf[8192];
    ASSERT_EQ(etcd_do(t, ETCD_PUT, "/sightline/d/v1/spaces/a/entities/8",
                      "{\"x\": 5, \"y\": 5, \"props\": {\"k\": 1, \"j\": \"v\"}}").r.status.code, 0);
    ASSERT(ctl_until(s, "spaces", "a entities 2", buf, sizeof buf));
    long long applied = settled_figure(s, "applied");
    long long same = etcd_figure(s, "unchanged") + etcd_figure(s, "merged");
    for (int i = 0; i < 30; i++) {
        define(t, "a", i % 2 ? "1.0.9" : "1.0.3", schema_hash(), "\"width\": 500, \"height\": "
               "500, \"index\": \"grid\", \"cell\": 25");
        ASSERT_EQ(etcd_do(t, ETCD_PUT, "/sightline/d/v1/spaces/a/entities/8",
                          "{\"props\": {\"j\": \"v\", \"k\": 1}, \"y\": 5, \"x\": 5}")
                      .r.status.code, 0);
    }
    for (int i = 0; i < 100 && etcd_figure(s, "unchanged") + etcd_figure(s, "merged") <
                                   same + 60; i++)
        sleep_ms(50);
    ASSERT_EQ(etcd_figure(s, "unchanged") + etcd_figure(s, "merged"), same + 60);
    ASSERT_EQ(etcd_figure(s, "applied"), applied);
}

/* A space deleted and defined again at another size within one tick is dropped and built
 * anew (not refused as a change of size on a running space). */
static void recreated_in_one_tick(etcd_env *t, const srv *s)
{
    char buf[8192];
    define(t, "r", "1.0.0", schema_hash(), "\"width\": 100, \"height\": 100");
    ASSERT(ctl_until(s, "spaces", "r entities 0", buf, sizeof buf));
    long long before = settled_figure(s, "refused");
    ASSERT_EQ(etcd_do(t, ETCD_DELETE, "/sightline/d/v1/spaces/r", "").r.status.code, 0);
    define(t, "r", "1.0.0", schema_hash(), "\"width\": 300, \"height\": 300");
    ASSERT(ctl_until(s, "spaces", "map 300x300", buf, sizeof buf));
    ASSERT_EQ(etcd_figure(s, "refused"), before);
}

/* A second node with a live node's --node-id does not start (exit 1, a clear message). */
static void node_id_taken(etcd_env *t)
{
    ASSERT_EQ(etcd_do(t, ETCD_RANGE, "/sightline/d/v1/nodes/n1", "").nkvs, 1);
    char log[128];
    snprintf(log, sizeof log, "/tmp/sl-nodeid-%d.log", (int)getpid());
    srv_stderr = log;
    srv two;
    srv_start(&two, "--etcd", t->fx.endpoint, "--cluster", "d", "--node-id", "n1", NULL);
    int status = 0;
    pid_t got = 0;
    for (int i = 0; i < 400 && got == 0; i++) {     /* the wait for a dead holder: 15 s */
        got = waitpid(two.pid, &status, WNOHANG);
        if (!got)
            sleep_ms(50);
    }
    ASSERT_EQ(got, two.pid);
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    char text[8192] = "";
    FILE *f = fopen(log, "r");
    ASSERT(f != NULL);
    text[fread(text, 1, sizeof text - 1, f)] = '\0';
    fclose(f);
    unlink(log);
    ASSERT(strstr(text, "node id n1 is held by a live node") != NULL);
    etcd_fx_got g = etcd_do(t, ETCD_RANGE, "/sightline/d/v1/nodes/n1", "");
    for (int i = 0; i < 20 && g.r.status.code; i++)     /* the test's client may reconnect */
        g = etcd_do(t, ETCD_RANGE, "/sightline/d/v1/nodes/n1", "");
    ASSERT_EQ(g.nkvs, 1);
}

/* etcd's documents: schema versions and hashes, canonical keys, documents checked whole,
 * no-op puts, changes merged per tick, node ids held by live nodes. */
TEST_IMPL(server_etcd_documents)
{
    etcd_env t;
    etcd_env_start(&t);
    srv s;
    srv_start(&s, "--etcd", t.fx.endpoint, "--cluster", "d", "--node-id", "n1", "--tick-ms",
              "1000", NULL);
    versions_and_fields(&t, &s);
    migrated(&t, &s);
    keys_canonical(&t, &s);
    refused_changes_nothing(&t, &s);
    identical_puts_free(&t, &s);
    recreated_in_one_tick(&t, &s);
    node_id_taken(&t);
    srv_stop(&s, false);
    etcd_env_end(&t);
    return 0;
}

/* Static zones: a definition of schema 1.2 sets regions in its space (no session's: their
 * events go to the scripts), and a new definition reshapes, removes and adds them. */
TEST_IMPL(server_etcd_zones)
{
    etcd_env t;
    etcd_env_start(&t);
    scratch d;
    scratch_make(&d, "/tmp/sl-zones-XXXXXX",
                 "function on_region_enter(g, e) emit(e.id, 'zone', 'enter ' .. g) end\n"
                 "function on_region_leave(g, e) emit(e.id, 'zone', 'leave ' .. g) end\n");
    srv s;
    srv_start(&s, "--etcd", t.fx.endpoint, "--cluster", "d", "--node-id", "n1", "--scripts",
              d.dir, NULL);
    char buf[8192], got[4096];
    define(&t, "z", "1.2.0", 0xbfbef4044f3e2194ULL, "\"width\": 100, \"height\": 100, "
           "\"regions\": [{\"id\": 1, \"circle\": [50, 50, 10]}, "
           "{\"id\": 2, \"rect\": [0, 0, 20, 20], \"mask\": 2}]");
    ASSERT(ctl_until(&s, "spaces", "z entities 0", buf, sizeof buf));
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "region z 1"), 0);
    ASSERT(strstr(buf, "circle 50 50 10 mask 0xffffffff owner none") != NULL);
    sl_client *c = connect_to(&s);
    sl_client_add(c, "z", 1, 50, 55, 0, 0);
    sl_client_add_ex(c, "z", 2, 10, 10, 0, 1, ~0u, 0);     /* (layer 1: rect's mask) */
    emits_until(c, got, sizeof got, "enter 2");
    ASSERT(strstr(got, "\"enter 1\"") && strstr(got, "\"enter 2\""));
    /* The client's own region 5 about 1 (its events go to the client, and to the scripts
     * as all region events do). */
    float mine[3] = {50, 55, 5};
    sl_client_region(c, "z", 5, "circle", mine, 3, ~0u, 8);
    expect_ok(c, 8);
    emits_until(c, got, sizeof got, "enter 5");
    ASSERT_STR_EQ(got, "\"enter 5\"\n");
    /* Reshaped away from 1, the rectangle gone (no event), a triangle under 2, and zone 5
     * taken from the client: it starts afresh, so the scripts get 1's enter. */
    define(&t, "z", "1.2.0", 0xbfbef4044f3e2194ULL, "\"width\": 100, \"height\": 100, "
           "\"regions\": [{\"id\": 1, \"circle\": [50, 80, 10]}, "
           "{\"id\": 3, \"poly\": [0, 0, 30, 0, 0, 30]}, {\"id\": 5, \"circle\": [50, 55, 6]}]");
    emits_until(c, got, sizeof got, "enter 5");
    ASSERT_STR_EQ(got, "\"leave 1\"\n\"enter 3\"\n\"enter 5\"\n");
    ASSERT(ctl(&s, buf, sizeof buf, "region z 2") != 0 && strstr(buf, "no region 2"));
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "region z 3"), 0);
    ASSERT(strstr(buf, "members 1 at the last tick: 2") != NULL);
    /* A session cannot take a zone: it is no session's. */
    float circle[3] = {1, 1, 1};
    sl_client_region(c, "z", 3, "circle", circle, 3, ~0u, 9);
    expect_error(c, 9, "foreign");
    sl_client_close(c);
    srv_stop(&s, false);
    remove_dir(d.dir);
    etcd_env_end(&t);
    return 0;
}

/* Health from what works: a paused etcd (SIGSTOP) still accepts TCP, and the server used to
 * say connected throughout; now it says DEGRADED or DISCONNECTED with a reason within
 * about two probe periods plus a call's deadline, and connected again after SIGCONT. */
TEST_IMPL(server_etcd_health)
{
    etcd_env t;
    etcd_env_start(&t);
    srv s;
    srv_start(&s, "--etcd", t.fx.endpoint, "--cluster", "h", "--etcd-probe-ms", "200",
              "--etcd-timeout-ms", "500", NULL);
    char buf[8192];
    ASSERT(ctl_until(&s, "stats", "etcd connected", buf, sizeof buf));
    ASSERT(strstr(buf, "etcd_state 2\n") != NULL);
    kill(t.fx.pid, SIGSTOP);
    bool told = false;
    for (int i = 0; i < 100 && !told; i++) {
        sleep_ms(50);
        ASSERT_EQ(ctl(&s, buf, sizeof buf, "stats"), 0);
        told = !strstr(buf, "etcd connected") && strstr(buf, " reason ");
    }
    kill(t.fx.pid, SIGCONT);
    if (!told)
        fprintf(stderr, "still connected with etcd stopped: %s\n", buf);
    ASSERT(told);
    ASSERT(strstr(buf, "etcd_state 2\n") == NULL);
    ASSERT(ctl_until(&s, "stats", "etcd connected", buf, sizeof buf));
    srv_stop(&s, false);
    etcd_env_end(&t);
    return 0;
}

/* ---- the server on a 3-member etcd ------------------------------------------------------- */

/* Puts entity documents from..to-1 of space p (cluster "q"), at x = id. */
static void put_entities(etcd_env *t, int from, int to)
{
    for (int i = from; i < to; i++) {
        char key[96], doc[96];
        snprintf(key, sizeof key, "/sightline/q/v1/spaces/p/entities/%d", i);
        snprintf(doc, sizeof doc, "{\"x\": %d, \"y\": 50}", i);
        etcd_do_retry(t, ETCD_PUT, key, doc);
    }
}

/* The server's space p holds exactly the entities etcd defines (count and one position),
 * and `clients` entities of clients. */
static void server_equals_etcd(etcd_env *t, const srv *s, int last_x, size_t clients)
{
    etcd_fx_got g = etcd_do_retry(t, ETCD_RANGE, "/sightline/q/v1/spaces/p/entities/", "");
    char want[64], buf[8192], cmd[64];
    snprintf(want, sizeof want, "p entities %zu ", g.nkvs + clients);
    ASSERT(ctl_until(s, "spaces", want, buf, sizeof buf));
    snprintf(cmd, sizeof cmd, "entity p %d", last_x);
    snprintf(want, sizeof want, "x %d y 50", last_x);
    ASSERT(ctl_until(s, cmd, want, buf, sizeof buf));
}

/* A 3-member etcd whose peer traffic goes through a proxy the test controls. The server is
 * given the members with member 0 first while member 0 is partitioned from the others: it
 * leaves it and loads the space from the majority. Then the leader is killed, then quorum
 * is lost (one of the two left partitioned) and restored: after each, with documents
 * written meanwhile, the server's space equals etcd's. While quorum is lost it says so and
 * keeps serving. */
TEST_IMPL(server_etcd_three_members)
{
    etcd_cluster cl;
    etcd_cluster_start(&cl, 3);
    etcd_env t = {0};
    uv_loop_init(&t.loop);
    char eps[128], mine[128], err[256], doc[512], buf[8192];
    snprintf(eps, sizeof eps, "%s,%s,%s", cl.endpoint[0], cl.endpoint[1], cl.endpoint[2]);
    snprintf(mine, sizeof mine, "%s,%s", cl.endpoint[1], cl.endpoint[2]);
    sl_etcd_config ec = {.endpoints = mine};
    ASSERT_EQ(sl_etcd_new(&t.e, &t.loop, &ec, err, sizeof err), 0);
    snprintf(doc, sizeof doc, "{\"version\": \"1.0.0\", \"schema_hash\": \"%016llx\", \"data\": "
             "{\"width\": 1000, \"height\": 100}}", schema_hash());
    etcd_do_retry(&t, ETCD_PUT, "/sightline/q/v1/spaces/p", doc);
    put_entities(&t, 1, 21);
    etcd_proxy_isolate(cl.proxy, 0, true);          /* member 0: no leader, no quorum */
    srv s;
    srv_start(&s, "--etcd", eps, "--cluster", "q", "--etcd-probe-ms", "200",
              "--etcd-timeout-ms", "1000", NULL);
    server_equals_etcd(&t, &s, 20, 0);
    ASSERT(ctl_until(&s, "stats", "etcd connected ", buf, sizeof buf));
    const char *in_use = strstr(buf, "etcd connected ") + strlen("etcd connected ");
    ASSERT(strncmp(in_use, cl.endpoint[0], strlen(cl.endpoint[0])) != 0);   /* left it */
    etcd_proxy_isolate(cl.proxy, 0, false);
    /* The leader dies: the two left elect another; the server follows what they write. */
    int leader = etcd_cluster_leader(&cl, 1);
    for (int i = 0; i < 100 && leader < 0; i++, sleep_ms(50))
        leader = etcd_cluster_leader(&cl, 1);
    ASSERT(leader >= 0);
    kill(cl.pid[leader], SIGKILL);
    waitpid(cl.pid[leader], NULL, 0);
    cl.pid[leader] = 0;
    int b = (leader + 2) % 3;
    put_entities(&t, 21, 31);
    server_equals_etcd(&t, &s, 30, 0);
    /* Quorum lost: one of the two partitioned. The server says so and keeps serving. */
    etcd_proxy_isolate(cl.proxy, b, true);
    ASSERT(ctl_until(&s, "stats", " reason ", buf, sizeof buf));
    ASSERT(strstr(buf, "etcd connected") == NULL);
    ASSERT(ctl_until(&s, "spaces", "p entities 30 ", buf, sizeof buf));
    sl_client *c = connect_to(&s);
    sl_client_add(c, "p", 9000, 500, 60, 100, 1);
    expect_ok(c, 1);
    /* Quorum back: changes written after it reach the server. */
    etcd_proxy_isolate(cl.proxy, b, false);
    put_entities(&t, 31, 36);
    etcd_do_retry(&t, ETCD_DELETE, "/sightline/q/v1/spaces/p/entities/1", "");
    server_equals_etcd(&t, &s, 35, 1);
    ASSERT(ctl_until(&s, "stats", "etcd connected", buf, sizeof buf));
    sl_client_close(c);
    srv_stop(&s, false);
    sl_etcd_free(t.e);
    uv_run(&t.loop, UV_RUN_DEFAULT);
    uv_loop_close(&t.loop);
    etcd_cluster_cleanup(&cl);
    return 0;
}

/* The server speaks to etcd over TLS (CA, client certificate and key) with etcd's
 * authentication (user and a password file), all set in --config: a definition written with
 * etcdctl comes up, and the node registers. */
TEST_IMPL(server_etcd_tls_auth)
{
    etcd_fx fx;
    etcd_fx_start_tls(&fx);
    etcd_fx_ctl(&fx, "user add root:rootpw >/dev/null");
    etcd_fx_ctl(&fx, "auth enable >/dev/null");
    char conf[160], pw[160], text[1024], cmd[700], buf[8192];
    snprintf(conf, sizeof conf, "%s/sightline.conf", fx.dir);
    snprintf(pw, sizeof pw, "%s/password", fx.dir);
    put_file(pw, "rootpw\n");
    snprintf(text, sizeof text, "# etcd over TLS with a user\netcd-ca %s\netcd-cert %s\n"
             "etcd-key %s\netcd-user root\netcd-password-file %s\n", fx.ca, fx.cert, fx.key, pw);
    put_file(conf, text);
    srv s;
    srv_start(&s, "--etcd", fx.endpoint, "--cluster", "sec", "--node-id", "z1", "--config",
              conf, NULL);
    snprintf(cmd, sizeof cmd, "--user root:rootpw put /sightline/sec/v1/spaces/z "
             "'{\"version\": \"1.0.0\", \"schema_hash\": \"%016llx\", \"data\": {\"width\": 10, "
             "\"height\": 10}}' >/dev/null", schema_hash());
    etcd_fx_ctl(&fx, cmd);
    ASSERT(ctl_until(&s, "spaces", "z entities 0", buf, sizeof buf));
    ASSERT(ctl_until(&s, "stats", "etcd connected", buf, sizeof buf));
    ASSERT(ctl_until(&s, "cluster", "node z1 listen", buf, sizeof buf));
    srv_stop(&s, false);
    etcd_fx_stop(&fx, false);
    etcd_fx_cleanup(&fx);
    return 0;
}

/* etcd runs out of its backend quota (NOSPACE alarm): the server keeps serving with what it
 * applied, says so (stats, metrics, one log line), and once the operator deletes, compacts,
 * defragments and disarms, it clears by itself and follows etcd again. */
TEST_IMPL(server_etcd_nospace)
{
    etcd_env t = {0};
    etcd_fx_start_with(&t.fx, "--quota-backend-bytes=4194304");
    uv_loop_init(&t.loop);
    char err[256], doc[512], buf[8192];
    sl_etcd_config ec = {.endpoints = t.fx.endpoint};
    ASSERT_EQ(sl_etcd_new(&t.e, &t.loop, &ec, err, sizeof err), 0);
    srv s;
    srv_start(&s, "--etcd", t.fx.endpoint, "--cluster", "ns", NULL);
    snprintf(doc, sizeof doc, "{\"version\": \"1.0.0\", \"schema_hash\": \"%016llx\", \"data\": "
             "{\"width\": 100, \"height\": 100}}", schema_hash());
    etcd_do_retry(&t, ETCD_PUT, "/sightline/ns/v1/spaces/q", doc);
    ASSERT(ctl_until(&s, "spaces", "q entities 0", buf, sizeof buf));
    /* Fill etcd until it refuses a write. */
    static char big[512 * 1024];
    memset(big, 'x', sizeof big - 1);
    int rc = 0;
    for (int i = 0; i < 200 && !rc; i++) {
        char key[32];
        snprintf(key, sizeof key, "/fill/%d", i);
        rc = etcd_do(&t, ETCD_PUT, key, big).r.status.code;
    }
    ASSERT(rc != 0);
    ASSERT(ctl_until(&s, "stats", "alarm NOSPACE", buf, sizeof buf));
    ASSERT(strstr(buf, "etcd_alarm_nospace 1\n") != NULL);
    sl_client *c = connect_to(&s);
    sl_client_add(c, "q", 1, 50, 50, 10, 1);
    expect_ok(c, 1);                            /* still serving */
    /* The operator's recovery. */
    etcd_fx_ctl(&t.fx, "del --prefix /fill/ >/dev/null");
    int64_t rev = etcd_do_retry(&t, ETCD_RANGE, "/fill/", "").r.revision;
    char cmd[96];
    snprintf(cmd, sizeof cmd, "compact %lld >/dev/null", (long long)rev);
    etcd_fx_ctl(&t.fx, cmd);
    etcd_fx_ctl(&t.fx, "defrag >/dev/null");
    etcd_fx_ctl(&t.fx, "alarm disarm >/dev/null");
    ASSERT(ctl_until(&s, "stats", "etcd_alarm_nospace 0\n", buf, sizeof buf));
    ASSERT(strstr(buf, "alarm NOSPACE") == NULL);
    etcd_do_retry(&t, ETCD_PUT, "/sightline/ns/v1/spaces/q2", doc);
    ASSERT(ctl_until(&s, "spaces", "q2 entities 0", buf, sizeof buf));
    sl_client_close(c);
    srv_stop(&s, false);
    etcd_env_end(&t);
    return 0;
}

/* Keys a message type does not use are ignored whatever their value (PROTOCOL.md 2): a ping
 * carrying x: [] gets its pong (it was bad_message: x is another type's field). */
TEST_IMPL(server_unused_fields_ignored)
{
    srv s;
    srv_start(&s, "--space", "u:100x100", NULL);
    sl_client *c = connect_to(&s);
    static const unsigned char ping[] = {0x83, 0xa1, 't', 0xa4, 'p', 'i', 'n', 'g',
                                         0xa3, 'r', 'i', 'd', 0x05, 0xa1, 'x', 0x90};
    send_body(c, ping, sizeof ping);
    sl_client_frame f;
    ASSERT_EQ(sl_client_wait(c, "pong", 5, &f, 2000), 1);
    sl_client_close(c);
    srv_stop(&s, false);
    return 0;
}
