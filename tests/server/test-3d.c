/*
 * 3D spaces end to end: the real server (--space NAME:WxHxD), real TCP clients, sightctl and
 * a recording. Visibility is a sphere (README "The visibility contract"): a target right
 * above a watcher but farther than its radius in z is not seen, and moving only z makes
 * pairs enter and leave; queries take a sphere and a box; a bad z is refused without
 * touching anything else.
 */
#include "test.h"

#include "fixtures/server_fixture.h"

#include "proto/client.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The query reply to rid: its ids and heights (hits_z), how many (at most max kept). */
static size_t hits3(sl_client *c, uint64_t rid, uint64_t *ids, float *z, size_t max)
{
    for (int k = 0; k < 50; k++) {
        sl_client_frame f;
        ASSERT_EQ(sl_client_next(c, &f, 2000), 1);
        if (sl_frame_is(&f, "error") && sl_frame_u64(&f, "rid") == rid) {
            char code[32], msg[256];
            fprintf(stderr, "query %llu: %s: %s\n", (unsigned long long)rid,
                    sl_frame_str(&f, "code", code, sizeof code),
                    sl_frame_str(&f, "msg", msg, sizeof msg));
            ASSERT(0);
        }
        if (!sl_frame_is(&f, "query") || sl_frame_u64(&f, "rid") != rid)
            continue;
        const msgpack_object *h = sl_frame_get(&f, "hits"), *hz = sl_frame_get(&f, "hits_z");
        ASSERT(h && h->type == MSGPACK_OBJECT_ARRAY && h->via.array.size % 3 == 0);
        size_t n = h->via.array.size / 3;
        ASSERT(hz && hz->type == MSGPACK_OBJECT_ARRAY && hz->via.array.size == n);
        for (size_t i = 0; i < n && i < max; i++) {
            ids[i] = h->via.array.ptr[3 * i].via.u64;
            z[i] = (float)hz->via.array.ptr[i].via.f64;
        }
        return n;
    }
    ASSERT(0);
    return 0;
}

/* sightctl entity SPACE ID contains want. */
static void expect_entity(const srv *s, const char *space, uint64_t id, const char *want)
{
    char buf[2048], cmd[128];
    snprintf(cmd, sizeof cmd, "entity %s %llu", space, (unsigned long long)id);
    ASSERT_EQ(ctl(s, buf, sizeof buf, cmd), 0);
    if (!strstr(buf, want))
        fprintf(stderr, "entity %llu: want \"%s\" in: %s", (unsigned long long)id, want, buf);
    ASSERT(strstr(buf, want) != NULL);
}

/* The pair (w, t) is in v, entered with the target at height z. */
static void expect_seen(const view *v, uint64_t w, uint64_t t, float z)
{
    long k = find_pair(v, w, t);
    if (k < 0 || v->z[k] != z)
        fprintf(stderr, "pair %llu -> %llu: %s, z %g (want %g)\n", (unsigned long long)w,
                (unsigned long long)t, k < 0 ? "not seen" : "seen", k < 0 ? 0.0 : v->z[k],
                (double)z);
    ASSERT(k >= 0 && v->z[k] == z);
}

/* The pairs a replay of trace ends with. */
static void replay3(const char *dir, const char *trace, view *r)
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

TEST_IMPL(server_3d)
{
    scratch d;
    scratch_make(&d, "/tmp/sl-3d-XXXXXX", "function visible(w, t) return true end\n");
    srv s;
    srv_start(&s, "--scripts", d.dir, "--space", "d:300x300x100", NULL);
    char buf[8192], cmd[512], trace[128];
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "spaces"), 0);
    ASSERT(strstr(buf, "map 300x300x100 ") != NULL);
    snprintf(trace, sizeof trace, "%s/run.trace", d.dir);
    snprintf(cmd, sizeof cmd, "record start %s d", trace);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, cmd), 0);
    sl_client *a = connect_to(&s), *b = connect_to(&s);
    static view va, vb;
    track(a, &va);
    track(b, &vb);
    /* Watcher 1 at height 50, radius 30. Target 2 is near (d2 = 200); 3 is straight above
     * it, 40 up; 4 is at z 0 (an add without z), 50 down. */
    sl_client_add3(a, "d", 1, 100, 100, 50, 30, 0, ~0u, 1);
    expect_ok(a, 1);
    sl_client_add3(b, "d", 2, 110, 100, 60, 0, 0, ~0u, 2);
    expect_ok(b, 2);
    sl_client_add3(b, "d", 3, 100, 100, 90, 0, 0, ~0u, 3);
    expect_ok(b, 3);
    sl_client_add(b, "d", 4, 100, 100, 0, 4);
    expect_ok(b, 4);
    drain(a, &va, 200);
    ASSERT_EQ(va.n, 1);
    expect_seen(&va, 1, 2, 60);
    expect_entity(&s, "d", 3, " x 100 y 100 z 90 ");
    expect_entity(&s, "d", 4, " z 0 ");
    /* Only z moves: 3 comes down to 70 (dz 20: enters, at 70), then goes up again. */
    sl_client_move3(b, "d", 3, 100, 100, 70, 5);
    expect_ok(b, 5);
    drain(a, &va, 200);
    ASSERT_EQ(va.n, 2);
    expect_seen(&va, 1, 3, 70);
    sl_client_move3(b, "d", 3, 100, 100, 95, 6);
    expect_ok(b, 6);
    drain(a, &va, 200);
    ASSERT_EQ(va.n, 1);
    ASSERT(find_pair(&va, 1, 3) < 0);
    /* A 2D move keeps z; moves with a nil z keep it, a number sets it. */
    sl_client_move(b, "d", 2, 112, 100, 7);
    expect_ok(b, 7);
    expect_entity(&s, "d", 2, " x 112 y 100 z 60 ");
    const uint64_t ids[2] = {2, 4};
    const float xyz[6] = {111, 100, NAN, 100, 100, 45};
    ASSERT_EQ(sl_client_moves3(b, "d", ids, xyz, 2, 8), 0);
    expect_ok(b, 8);
    expect_entity(&s, "d", 2, " x 111 y 100 z 60 ");
    expect_entity(&s, "d", 4, " z 45 ");
    drain(a, &va, 200);
    ASSERT_EQ(va.n, 2);
    expect_seen(&va, 1, 4, 45);
    /* Bad heights: refused with bad_value, nothing changed; in a moves frame only the bad
     * item is refused. */
    sl_client_move3(b, "d", 2, 100, 100, 100, 9);           /* z must be < depth */
    expect_error(b, 9, "bad_value");
    sl_client_move3(b, "d", 2, 100, 100, INFINITY, 10);
    expect_error(b, 10, "bad_value");
    sl_client_add3(b, "d", 5, 100, 100, -1, 0, 0, ~0u, 11);
    expect_error(b, 11, "bad_value");
    const float bad[6] = {100, 100, 200, 100, 100, 44};
    ASSERT_EQ(sl_client_moves3(b, "d", ids, bad, 2, 12), 0);
    expect_error(b, 12, "bad_items");
    expect_entity(&s, "d", 2, " x 111 y 100 z 60 ");
    expect_entity(&s, "d", 4, " z 44 ");
    sl_client_ping(b, 13);
    sl_client_frame f;
    ASSERT_EQ(sl_client_wait(b, "pong", 13, &f, 2000), 1);     /* (still connected) */
    drain(a, &va, 200);
    ASSERT_EQ(va.n, 2);
    ASSERT(find_pair(&va, 1, 2) >= 0 && find_pair(&va, 1, 4) >= 0);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "why d 1 3"), 0);
    ASSERT(strstr(buf, "watcher 1 at (100, 100, 50)") && strstr(buf, "target 3 at (100, 100, "
           "95)") && strstr(buf, "out of range"));
    /* Queries: the sphere of radius 16 around (100, 100, 50) holds 1 (d2 0), 4 (at z 44:
     * d2 36) and 2 (d2 121 + 100), nearest first, not 3 (dz 45). */
    uint64_t q[8];
    float qz[8];
    sl_client_query3(a, "d", 100, 100, 50, 16, NAN, NAN, NAN, ~0u, 0, 20);
    ASSERT_EQ(hits3(a, 20, q, qz, 8), 3);
    ASSERT(q[0] == 1 && qz[0] == 50 && q[1] == 4 && qz[1] == 44 && q[2] == 2 && qz[2] == 60);
    /* The box [95, 115] x [95, 105] x [55, 100]: 2 (z 60) and 3 (z 95). */
    sl_client_query3(a, "d", 95, 95, 55, 0, 115, 105, 100, ~0u, 0, 21);
    ASSERT_EQ(hits3(a, 21, q, qz, 8), 2);
    ASSERT((q[0] == 2 && q[1] == 3) || (q[0] == 3 && q[1] == 2));
    /* Without z the query is 2D (every height): all four. */
    sl_client_query(a, "d", 100, 100, 12, NAN, NAN, ~0u, 0, 22);
    ASSERT_EQ(hits3(a, 22, q, qz, 8), 4);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "query d 100 100 12"), 0);
    ASSERT(strstr(buf, "4 entities within 12") &&
           strstr(buf, "\n3 at (100, 100, 95) distance 0\n"));
    /* A flat space refuses heights and 3D queries; a client creates a 3D space too. */
    sl_client_create_space(a, "flat", 100, 100, 30);
    expect_ok(a, 30);
    sl_client_add3(a, "flat", 9, 10, 10, 5, 1, 0, ~0u, 31);
    expect_error(a, 31, "bad_value");
    sl_client_query3(a, "flat", 10, 10, 0, 5, NAN, NAN, NAN, ~0u, 0, 32);
    expect_error(a, 32, "bad_value");
    sl_client_create_space_with(a, "deep", 100, 100, &(sl_client_space_opts){.depth = 10}, 33);
    expect_ok(a, 33);
    sl_client_create_space_with(a, "neg", 100, 100, &(sl_client_space_opts){.depth = -1}, 34);
    expect_error(a, 34, "bad_value");
    sl_client_add3(a, "deep", 9, 10, 10, 9.5f, 1, 0, ~0u, 35);
    expect_ok(a, 35);
    expect_entity(&s, "deep", 9, " z 9.5 ");
    /* The recording: a 3D space line, 3D adds and moves (a 2D move keeps z); it replays to
     * the clients' pairs. */
    drain(a, &va, 100);
    drain(b, &vb, 100);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "record stop"), 0);
    FILE *tf = fopen(trace, "r");
    ASSERT(tf != NULL);
    size_t n = fread(buf, 1, sizeof buf - 1, tf);
    buf[n] = '\0';
    fclose(tf);
    ASSERT(strstr(buf, "\nspace 300 300 index=") && strstr(buf, " depth=100\n"));
    ASSERT(strstr(buf, "\nadd 1 100 100 50 30 0 0xffffffff\n"));
    ASSERT(strstr(buf, "\nadd 4 100 100 0 0 0 0xffffffff\n"));
    ASSERT(strstr(buf, "\nmove 3 100 100 70\n") && strstr(buf, "\nmove 2 112 100\n"));
    ASSERT(strstr(buf, "\nmove 2 111 100\nmove 4 100 100 45\n") ||
           strstr(buf, "\nmove 4 100 100 45\nmove 2 111 100\n"));
    ASSERT(!strstr(buf, " 200\n"));             /* (a refused move is not recorded) */
    static view r;
    replay3(d.dir, trace, &r);
    ASSERT_EQ(r.n, va.n + vb.n);
    for (size_t i = 0; i < va.n; i++)
        ASSERT(find_pair(&r, va.w[i], va.t[i]) >= 0);
    for (size_t i = 0; i < vb.n; i++)
        ASSERT(find_pair(&r, vb.w[i], vb.t[i]) >= 0);
    sl_client_close(a);
    sl_client_close(b);
    srv_stop(&s, false);
    remove_dir(d.dir);
    return 0;
}
