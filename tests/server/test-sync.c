/*
 * test-sync.c: etcd's documents applied to a server (core/server/sync.h) without etcd: the
 * queue and the store, checked through the server's admin commands.
 */
#include "test.h"

#include "base/clock.h"
#include "server/admin.h"
#include "server/server.h"
#include "server/sync.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

static void put(sl_sync *s, const char *key, const char *doc, int64_t rev)
{
    sl_sync_put(s, key, strlen(key), (const uint8_t *)doc, strlen(doc), rev);
}

/* The admin command's answer contains want. */
static bool answers(sl_server *srv, const char *cmd, const char *want)
{
    static char out[4096];
    sl_admin_command(srv, cmd, out, sizeof out);
    if (!strstr(out, want))
        fprintf(stderr, "`%s`: wanted '%s', got: %s\n", cmd, want, out);
    return strstr(out, want) != NULL;
}

/* A server on loop that never ticks by itself (its spaces change only as a test says). */
static sl_server *server_up(uv_loop_t *loop)
{
    uv_loop_init(loop);
    sl_server_config cfg = {.listen_host = "127.0.0.1", .quiet = true, .tick_ms = 1e6};
    sl_server *srv = NULL;
    char err[256];
    ASSERT_EQ(sl_server_new(&srv, loop, &cfg, err, sizeof err), 0);
    return srv;
}

static void server_down(uv_loop_t *loop, sl_server *srv)
{
    sl_server_shutdown(srv);
    uv_run(loop, UV_RUN_DEFAULT);
    sl_server_free(srv);
    uv_loop_close(loop);
}

/* Forgetting an entity document that is not the last one of its space moves the last one
 * into its place: the last one must still be found (its id re-pointed, not added twice; an
 * assertion in the id map caught that only in debug builds), updated and deleted as any. */
TEST_IMPL(sync_forget_keeps_others)
{
    uv_loop_t loop;
    sl_server *srv = server_up(&loop);
    sl_sync_config sc = {.static_grace_ms = 0, .merge = false};
    sl_sync *s = sl_sync_new(srv, &sc);
    put(s, "w", "{\"version\": \"1.0.0\", \"schema_hash\": \"804a650955269821\", \"data\": "
                "{\"width\": 100, \"height\": 100}}", 1);
    put(s, "w/entities/1", "{\"x\": 1, \"y\": 1}", 2);
    put(s, "w/entities/2", "{\"x\": 2, \"y\": 2}", 3);
    put(s, "w/entities/3", "{\"x\": 3, \"y\": 3}", 4);
    sl_sync_delete(s, "w/entities/1", strlen("w/entities/1"), 5);
    put(s, "w/entities/3", "{\"x\": 30, \"y\": 3}", 6);     /* the moved document, updated */
    sl_sync_delete(s, "w/entities/2", strlen("w/entities/2"), 7);
    sl_sync_stats st;
    sl_sync_get_stats(s, &st);
    ASSERT_EQ(st.entities, 1);
    ASSERT(answers(srv, "entity w 3", "x 30 y 3"));
    sl_sync_delete(s, "w/entities/3", strlen("w/entities/3"), 8);
    sl_sync_get_stats(s, &st);
    ASSERT_EQ(st.entities, 0);
    ASSERT_EQ(st.refused, 0);
    sl_sync_free(s);
    server_down(&loop, srv);
    return 0;
}

/* The release time of space `name` in an ownership log (-1: none). */
static double released_at(FILE *log, const char *name)
{
    char what[16], sp[80];
    unsigned long long epoch;
    double t, at = -1;
    rewind(log);
    while (fscanf(log, "%15s %79s %llu %lf", what, sp, &epoch, &t) == 4)
        if (!strcmp(what, "release") && !strcmp(sp, name))
            at = t;
    return at;
}

/* A node that stops serving a cluster space some time after its serving deadline passed (it
 * was paused past its lease, and notices on waking that the lease is lost, or that the
 * space has a new epoch) logs the end of serving at the deadline of its last check, not when
 * it noticed: nothing was served after that deadline, and another node may serve the space
 * from then on (server_cluster_three_nodes saw two owners at once in the logs, 111 ms). */
TEST_IMPL(server_ownership_log_release)
{
    uv_loop_t loop;
    sl_server *srv = server_up(&loop);
    FILE *log = tmpfile();
    ASSERT(log != NULL);
    sl_server_set_clustered(srv, "n0", "127.0.0.1:1", log);
    char err[256];
    sl_space_config sc = {.width = 100, .height = 100};
    ASSERT_EQ(sl_server_define_space(srv, "a", &sc, NULL, 0, err, sizeof err), 0);
    ASSERT_EQ(sl_server_define_space(srv, "b", &sc, NULL, 0, err, sizeof err), 0);
    ASSERT_EQ(sl_server_set_epoch(srv, "a", 5), 0);
    ASSERT_EQ(sl_server_set_epoch(srv, "b", 6), 0);
    double until = sl_now_ms() + 20;
    sl_server_set_serve_until(srv, until);
    ASSERT(answers(srv, "spaces", "epoch 5\n"));        /* both served: logged acquired */
    ASSERT(answers(srv, "spaces", "epoch 6\n"));
    uv_sleep(60);                                       /* paused past the deadline */
    ASSERT_EQ(sl_server_set_epoch(srv, "b", 7), 0);     /* woke up: b has a new epoch */
    sl_server_set_serve_until(srv, 0);                  /* and the lease is lost */
    double a = released_at(log, "a"), b = released_at(log, "b");
    bool ok = fabs(a - until) < 0.001 && fabs(b - until) < 0.001;   /* (logged in us) */
    if (!ok)
        fprintf(stderr, "deadline %.3f: a released at %.3f, b at %.3f\n", until, a, b);
    ASSERT(ok);
    server_down(&loop, srv);
    fclose(log);
    return 0;
}
