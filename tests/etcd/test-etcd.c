/*
 * The etcd client against a real etcd-server (tests/fixtures/etcd_fixture.c): unary calls,
 * pagination, compare-and-swap, leases, and failures (nothing listening, a paused server,
 * a killed and restarted server): every call ends with one callback and a clear status.
 */
#include "test.h"

#include "etcd.h"
#include "fixtures/etcd_fixture.h"

#include <signal.h>
#include <string.h>
#include <uv.h>

typedef struct got {
    bool done;
    sl_etcd_result r;
    char value[256];
    char key[256];
    int64_t mod;
    size_t nkvs;
} got;

static void on_result(void *ud, const sl_etcd_result *r)
{
    got *g = ud;
    g->done = true;
    g->r = *r;
    g->r.kvs = NULL;
    g->nkvs = r->nkvs;
    g->value[0] = g->key[0] = '\0';
    g->mod = 0;
    if (r->nkvs) {
        snprintf(g->key, sizeof g->key, "%.*s", (int)r->kvs[0].key_len, (const char *)r->kvs[0].key);
        snprintf(g->value, sizeof g->value, "%.*s", (int)r->kvs[0].value_len,
                 (const char *)r->kvs[0].value);
        g->mod = r->kvs[0].mod_revision;
    }
}

/* Runs the loop until g is done (or ms pass); returns whether it is. */
static bool wait_for(uv_loop_t *loop, got *g, int ms)
{
    uint64_t end = uv_now(loop) + (uint64_t)ms;
    while (!g->done && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    return g->done;
}

static void wait_connected(uv_loop_t *loop, sl_etcd *e)
{
    uint64_t end = uv_now(loop) + 5000;
    while (!sl_etcd_connected(e) && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    ASSERT(sl_etcd_connected(e));
}

static void close_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(loop), 0);
}

#define CALL(expr, g)                          \
    do {                                       \
        memset(&(g), 0, sizeof(g));            \
        ASSERT_EQ((expr), 0);                  \
        ASSERT(wait_for(&loop, &(g), 6000));   \
    } while (0)

TEST_IMPL(etcd_kv)
{
    etcd_fx fx;
    etcd_fx_start(&fx);
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_etcd *e;
    char err[256];
    sl_etcd_config cfg = {.endpoints = fx.endpoint};
    ASSERT_EQ(sl_etcd_new(&e, &loop, &cfg, err, sizeof err), 0);
    wait_connected(&loop, e);
    got g;

    CALL(sl_etcd_put(e, "sl/a", "one", 3, 0, false, on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    int64_t rev = g.r.revision;
    ASSERT(rev > 0);
    CALL(sl_etcd_range(e, "sl/a", false, 0, 0, on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    ASSERT_EQ(g.nkvs, 1);
    ASSERT(strcmp(g.value, "one") == 0 && g.mod == rev);
    /* prev_kv on put. */
    CALL(sl_etcd_put(e, "sl/a", "two", 3, 0, true, on_result, &g), g);
    ASSERT(g.nkvs == 1 && strcmp(g.value, "one") == 0);

    /* 250 keys under a prefix: paginated by 100, a count, a pinned revision. */
    char key[64], val[64];
    for (int i = 0; i < 250; i++) {
        snprintf(key, sizeof key, "sl/pg/%03d", i);
        snprintf(val, sizeof val, "v%d", i);
        CALL(sl_etcd_put(e, key, val, strlen(val), 0, false, on_result, &g), g);
        ASSERT_EQ(g.r.status.code, 0);
    }
    CALL(sl_etcd_range(e, "sl/pg/", true, 0, 100, on_result, &g), g);
    ASSERT_EQ(g.nkvs, 100);
    ASSERT(g.r.more);
    ASSERT_EQ(g.r.count, 250);
    ASSERT(strcmp(g.key, "sl/pg/000") == 0);
    int64_t pinned = g.r.revision;
    CALL(sl_etcd_put(e, "sl/pg/zzz", "late", 4, 0, false, on_result, &g), g);
    CALL(sl_etcd_range(e, "sl/pg/", true, pinned, 0, on_result, &g), g);
    ASSERT_EQ(g.nkvs, 250);     /* as of the pinned revision: the late key is not there */

    /* Compare-and-swap on mod_revision. */
    CALL(sl_etcd_cas(e, "sl/cas", "first", 5, 0, on_result, &g), g);
    ASSERT(g.r.succeeded);
    int64_t crev = g.r.revision;
    CALL(sl_etcd_cas(e, "sl/cas", "again", 5, 0, on_result, &g), g);
    ASSERT(!g.r.succeeded);
    ASSERT(g.nkvs == 1 && g.mod == crev && strcmp(g.value, "first") == 0);
    CALL(sl_etcd_cas(e, "sl/cas", "second", 6, crev, on_result, &g), g);
    ASSERT(g.r.succeeded);

    /* Delete a prefix, with the previous values. */
    CALL(sl_etcd_delete(e, "sl/pg/", true, true, on_result, &g), g);
    ASSERT_EQ(g.r.deleted, 251);
    ASSERT_EQ(g.nkvs, 251);
    CALL(sl_etcd_range(e, "sl/pg/", true, 0, 0, on_result, &g), g);
    ASSERT_EQ(g.nkvs, 0);
    ASSERT_EQ(g.r.count, 0);

    /* A lease: a key under it goes when it is revoked. */
    CALL(sl_etcd_lease_grant(e, 30, on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    int64_t lease = g.r.lease_id;
    ASSERT(lease != 0 && g.r.ttl == 30);
    CALL(sl_etcd_put(e, "sl/leased", "x", 1, lease, false, on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    CALL(sl_etcd_lease_revoke(e, lease, on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    CALL(sl_etcd_range(e, "sl/leased", false, 0, 0, on_result, &g), g);
    ASSERT_EQ(g.nkvs, 0);
    /* A put under a lease that is gone: a clear error from etcd. */
    CALL(sl_etcd_put(e, "sl/leased", "x", 1, lease, false, on_result, &g), g);
    ASSERT(g.r.status.code != 0);
    ASSERT(strstr(g.r.status.message, "lease not found") != NULL);

    sl_etcd_free(e);
    close_loop(&loop);
    etcd_fx_cleanup(&fx);
    return 0;
}

TEST_IMPL(etcd_failures)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    got g;
    sl_etcd *e;
    /* Nothing listening: the call fails with UNAVAILABLE, never hangs. */
    etcd_fx fx;
    etcd_fx_start(&fx);
    etcd_fx_stop(&fx, false);
    sl_etcd_config cfg = {.endpoints = fx.endpoint, .timeout_ms = 400};
    ASSERT_EQ(sl_etcd_new(&e, &loop, &cfg, err, sizeof err), 0);
    CALL(sl_etcd_range(e, "k", false, 0, 0, on_result, &g), g);
    ASSERT_EQ(g.r.status.code, SL_GRPC_UNAVAILABLE);
    ASSERT(g.r.status.message[0] != '\0');

    /* etcd comes up: the client reconnects by itself (backoff) and calls work. */
    etcd_fx_restart(&fx);
    wait_connected(&loop, e);
    CALL(sl_etcd_put(e, "k", "v", 1, 0, false, on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    int64_t rev = g.r.revision;

    /* Paused: the deadline ends the call. */
    kill(fx.pid, SIGSTOP);
    uint64_t t0 = uv_now(&loop);
    CALL(sl_etcd_range(e, "k", false, 0, 0, on_result, &g), g);
    ASSERT_EQ(g.r.status.code, SL_GRPC_DEADLINE);
    ASSERT(uv_now(&loop) - t0 >= 350 && uv_now(&loop) - t0 < 2000);
    kill(fx.pid, SIGCONT);
    CALL(sl_etcd_range(e, "k", false, 0, 0, on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);

    /* Killed and restarted on the same data: calls fail, then work; the data is there. */
    etcd_fx_stop(&fx, true);
    CALL(sl_etcd_range(e, "k", false, 0, 0, on_result, &g), g);
    ASSERT(g.r.status.code == SL_GRPC_UNAVAILABLE || g.r.status.code == SL_GRPC_DEADLINE);
    uint64_t before = sl_etcd_connects(e);
    etcd_fx_restart(&fx);
    uint64_t end = uv_now(&loop) + 8000;
    while (sl_etcd_connects(e) == before && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    wait_connected(&loop, e);
    CALL(sl_etcd_range(e, "k", false, 0, 0, on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    ASSERT(g.nkvs == 1 && g.mod == rev);

    sl_etcd_free(e);
    close_loop(&loop);
    etcd_fx_cleanup(&fx);
    return 0;
}
