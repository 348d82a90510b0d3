/*
 * The etcd client against a real etcd-server (tests/fixtures/etcd_fixture.c): unary calls,
 * pagination, compare-and-swap, transactions, watches (previous values, progress
 * notifications, fragments), the mirror, leases kept alive, and failures (nothing
 * listening, a paused server, a killed and restarted server, a dead first endpoint): every
 * call ends with one callback and a clear status, and watches resume without a gap.
 *
 * Each test is a scenario over time against one etcd; its phases are helpers that share
 * the loop and the client, run in order by the TEST_IMPL.
 */
#include "test.h"

#include "etcd/etcd.h"
#include "etcd/mirror.h"
#include "fixtures/etcd_fixture.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef etcd_fx_got got;

static void wait_connected(uv_loop_t *loop, sl_etcd *e)
{
    uint64_t end = uv_now(loop) + 5000;
    while (!sl_etcd_connected(e) && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    ASSERT(sl_etcd_connected(e));
}

/* Runs the loop for ms, whatever happens. */
static void run_ms(uv_loop_t *loop, int ms)
{
    got never = {0};
    etcd_fx_wait(loop, &never, ms);
}

/* Makes a call into g and waits for its callback (the loop is the `loop` in scope). */
#define CALL(expr, g)                                 \
    do {                                              \
        memset(&(g), 0, sizeof(g));                   \
        ASSERT_EQ((expr), 0);                         \
        ASSERT(etcd_fx_wait(loop, &(g), 6000));       \
    } while (0)

/* A test's world: an etcd-server, a loop, and a client connected to it. */
typedef struct world {
    etcd_fx fx;
    uv_loop_t loop;
    sl_etcd *e;
} world;

/* A new client of w's etcd with cfg (endpoints filled in); it connects in the background. */
static sl_etcd *client_of(world *w, sl_etcd_config cfg)
{
    cfg.endpoints = w->fx.endpoint;
    sl_etcd *e;
    char err[256];
    ASSERT_EQ(sl_etcd_new(&e, &w->loop, &cfg, err, sizeof err), 0);
    return e;
}

/* Starts etcd and the loop, and a client w->e with cfg, connected. */
static void world_up(world *w, sl_etcd_config cfg)
{
    etcd_fx_start(&w->fx);
    uv_loop_init(&w->loop);
    w->e = client_of(w, cfg);
    wait_connected(&w->loop, w->e);
}

/* Frees w->e, then ends the loop (every handle must be gone) and etcd. */
static void world_down(world *w)
{
    sl_etcd_free(w->e);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&w->loop), 0);
    etcd_fx_cleanup(&w->fx);
}

/* ---- unary calls --------------------------------------------------------------------------- */

static void kv_put_range(uv_loop_t *loop, sl_etcd *e)
{
    got g;
    CALL(sl_etcd_put(e, "sl/a", "one", 3, 0, false, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    int64_t rev = g.r.revision;
    ASSERT(rev > 0);
    CALL(sl_etcd_range(e, "sl/a", false, 0, 0, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    ASSERT_EQ(g.nkvs, 1);
    ASSERT(strcmp(g.value, "one") == 0 && g.mod == rev);
    /* prev_kv on put. */
    CALL(sl_etcd_put(e, "sl/a", "two", 3, 0, true, etcd_fx_on_result, &g), g);
    ASSERT(g.nkvs == 1 && strcmp(g.value, "one") == 0);
}

/* 250 keys under a prefix: paginated by 100, a count, a pinned revision. */
static void kv_pages(uv_loop_t *loop, sl_etcd *e)
{
    got g;
    char key[64], val[64];
    for (int i = 0; i < 250; i++) {
        snprintf(key, sizeof key, "sl/pg/%03d", i);
        snprintf(val, sizeof val, "v%d", i);
        CALL(sl_etcd_put(e, key, val, strlen(val), 0, false, etcd_fx_on_result, &g), g);
        ASSERT_EQ(g.r.status.code, 0);
    }
    CALL(sl_etcd_range(e, "sl/pg/", true, 0, 100, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.nkvs, 100);
    ASSERT(g.r.more);
    ASSERT_EQ(g.r.count, 250);
    ASSERT(strcmp(g.key, "sl/pg/000") == 0);
    int64_t pinned = g.r.revision;
    CALL(sl_etcd_put(e, "sl/pg/zzz", "late", 4, 0, false, etcd_fx_on_result, &g), g);
    CALL(sl_etcd_range(e, "sl/pg/", true, pinned, 0, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.nkvs, 250);     /* as of the pinned revision: the late key is not there */
}

/* Compare-and-swap on mod_revision. */
static void kv_cas(uv_loop_t *loop, sl_etcd *e)
{
    got g;
    CALL(sl_etcd_cas(e, "sl/cas", "first", 5, 0, etcd_fx_on_result, &g), g);
    ASSERT(g.r.succeeded);
    int64_t crev = g.r.revision;
    CALL(sl_etcd_cas(e, "sl/cas", "again", 5, 0, etcd_fx_on_result, &g), g);
    ASSERT(!g.r.succeeded);
    ASSERT(g.nkvs == 1 && g.mod == crev && strcmp(g.value, "first") == 0);
    CALL(sl_etcd_cas(e, "sl/cas", "second", 6, crev, etcd_fx_on_result, &g), g);
    ASSERT(g.r.succeeded);
}

/* Delete a prefix (kv_pages' 251 keys), with the previous values. */
static void kv_delete_prefix(uv_loop_t *loop, sl_etcd *e)
{
    got g;
    CALL(sl_etcd_delete(e, "sl/pg/", true, true, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.deleted, 251);
    ASSERT_EQ(g.nkvs, 251);
    CALL(sl_etcd_range(e, "sl/pg/", true, 0, 0, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.nkvs, 0);
    ASSERT_EQ(g.r.count, 0);
}

/* A lease: a key under it goes when it is revoked. */
static void kv_lease(uv_loop_t *loop, sl_etcd *e)
{
    got g;
    CALL(sl_etcd_lease_grant(e, 30, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    int64_t lease = g.r.lease_id;
    ASSERT(lease != 0 && g.r.ttl == 30);
    CALL(sl_etcd_put(e, "sl/leased", "x", 1, lease, false, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    CALL(sl_etcd_lease_revoke(e, lease, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    CALL(sl_etcd_range(e, "sl/leased", false, 0, 0, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.nkvs, 0);
    /* A put under a lease that is gone: a clear error from etcd. */
    CALL(sl_etcd_put(e, "sl/leased", "x", 1, lease, false, etcd_fx_on_result, &g), g);
    ASSERT(g.r.status.code != 0);
    ASSERT(strstr(g.r.status.message, "lease not found") != NULL);
}

TEST_IMPL(etcd_kv)
{
    world w;
    world_up(&w, (sl_etcd_config){0});
    kv_put_range(&w.loop, w.e);
    kv_pages(&w.loop, w.e);
    kv_cas(&w.loop, w.e);
    kv_delete_prefix(&w.loop, w.e);
    kv_lease(&w.loop, w.e);
    world_down(&w);
    return 0;
}

TEST_IMPL(etcd_failures)
{
    /* Nothing listening: the call fails with UNAVAILABLE, never hangs. */
    world w;
    etcd_fx_start(&w.fx);
    etcd_fx_stop(&w.fx, false);
    uv_loop_init(&w.loop);
    uv_loop_t *loop = &w.loop;
    char err[256];
    got g;
    /* No health probe meanwhile: a probe missing its deadline during the pause would drop the
     * connection, and the call would end with UNAVAILABLE before its own deadline. */
    sl_etcd_config cfg = {.endpoints = w.fx.endpoint, .timeout_ms = 400,
                          .probe_interval_ms = 600000};
    ASSERT_EQ(sl_etcd_new(&w.e, loop, &cfg, err, sizeof err), 0);
    sl_etcd *e = w.e;
    CALL(sl_etcd_range(e, "k", false, 0, 0, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, SL_GRPC_UNAVAILABLE);
    ASSERT(g.r.status.message[0] != '\0');

    /* etcd comes up: the client reconnects by itself (backoff) and calls work. */
    etcd_fx_restart(&w.fx);
    wait_connected(loop, e);
    CALL(sl_etcd_put(e, "k", "v", 1, 0, false, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    int64_t rev = g.r.revision;

    /* Paused: the deadline ends the call. (A signal takes effect when the target next
     * enters the kernel: give it a moment, so the call cannot be answered first. And let
     * the new connection's health probe end first: missing its deadline in the pause, it
     * would drop the connection, and the call would end with UNAVAILABLE.) */
    run_ms(loop, 500);
    kill(w.fx.pid, SIGSTOP);
    run_ms(loop, 100);
    uint64_t t0 = uv_now(loop);
    CALL(sl_etcd_range(e, "k", false, 0, 0, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, SL_GRPC_DEADLINE);
    ASSERT(uv_now(loop) - t0 >= 350 && uv_now(loop) - t0 < 2000);
    kill(w.fx.pid, SIGCONT);
    CALL(sl_etcd_range(e, "k", false, 0, 0, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);

    /* Killed and restarted on the same data: calls fail, then work; the data is there. */
    etcd_fx_stop(&w.fx, true);
    CALL(sl_etcd_range(e, "k", false, 0, 0, etcd_fx_on_result, &g), g);
    ASSERT(g.r.status.code == SL_GRPC_UNAVAILABLE || g.r.status.code == SL_GRPC_DEADLINE);
    uint64_t before = sl_etcd_connects(e);
    etcd_fx_restart(&w.fx);
    uint64_t end = uv_now(loop) + 8000;
    while (sl_etcd_connects(e) == before && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    wait_connected(loop, e);
    CALL(sl_etcd_range(e, "k", false, 0, 0, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    ASSERT(g.nkvs == 1 && g.mod == rev);
    world_down(&w);
    return 0;
}

/* ---- mirror ------------------------------------------------------------------------------ */

#define NKEYS 3000

/* What a mirror's callbacks saw, by key m/0000 .. m/2999. */
typedef struct mstate {
    int64_t mod[NKEYS];     /* 0: absent */
    char value[NKEYS][16];
    uint64_t puts, deletes, syncs;
    bool bad_order;
    int64_t last_rev;
} mstate;

static int key_index(const char *k, size_t n)
{
    if (n != 6 || memcmp(k, "m/", 2))
        return -1;
    char digits[5];     /* keys from etcd are not NUL-terminated */
    memcpy(digits, k + 2, 4);
    digits[4] = '\0';
    return atoi(digits);
}

static void m_put(void *ud, const char *k, size_t kl, const uint8_t *v, size_t vl, int64_t mod)
{
    mstate *s = ud;
    int i = key_index(k, kl);
    ASSERT(i >= 0 && i < NKEYS);
    ASSERT(mod > s->mod[i]);                /* never twice, never backwards */
    s->mod[i] = mod;
    snprintf(s->value[i], sizeof s->value[i], "%.*s", (int)vl, (const char *)v);
    s->puts++;
}

static void m_delete(void *ud, const char *k, size_t kl, int64_t rev)
{
    mstate *s = ud;
    int i = key_index(k, kl);
    ASSERT(i >= 0 && i < NKEYS);
    ASSERT(s->mod[i] != 0 && rev > s->mod[i]);
    s->mod[i] = 0;
    s->deletes++;
}

static void m_synced(void *ud, int64_t rev)
{
    mstate *s = ud;
    s->syncs++;
    s->last_rev = rev;
}

/* Starts a mirror of "m/" on e into s (cleared first). */
static sl_etcd_mirror *mirror_of(sl_etcd *e, mstate *s)
{
    memset(s, 0, sizeof *s);
    sl_etcd_mirror_handlers h = {m_put, m_delete, m_synced};
    sl_etcd_mirror *m = sl_etcd_mirror_start(e, "m/", &h, s);
    ASSERT(m != NULL);
    return m;
}

static sl_etcd_mirror_stats stats_of(const sl_etcd_mirror *m)
{
    sl_etcd_mirror_stats st;
    sl_etcd_mirror_get_stats(m, &st);
    return st;
}

typedef struct writer {
    sl_etcd *e;
    got g;
} writer;

/* Puts (or deletes, with value NULL) one key and waits. */
static int64_t wr(uv_loop_t *loop, writer *w, int i, const char *value)
{
    char key[16];
    snprintf(key, sizeof key, "m/%04d", i);
    /* While etcd restarts the writer retries (the same value: harmless to repeat). */
    for (int attempt = 0; attempt < 200; attempt++) {
        memset(&w->g, 0, sizeof w->g);
        if (value)
            ASSERT_EQ(sl_etcd_put(w->e, key, value, strlen(value), 0, false, etcd_fx_on_result,
                                  &w->g), 0);
        else
            ASSERT_EQ(sl_etcd_delete(w->e, key, false, false, etcd_fx_on_result, &w->g), 0);
        ASSERT(etcd_fx_wait(loop, &w->g, 6000));
        if (w->g.r.status.code != SL_GRPC_UNAVAILABLE)
            break;
        run_ms(loop, 50);
    }
    ASSERT_EQ(w->g.r.status.code, 0);
    return w->g.r.revision;
}

/* wr for the keys [from, to), one by one; returns the last write's revision. */
static int64_t wr_keys(uv_loop_t *loop, writer *w, int from, int to, const char *value)
{
    int64_t rev = 0;
    for (int i = from; i < to; i++)
        rev = wr(loop, w, i, value);
    return rev;
}

/* Runs the loop until the mirror has applied revision rev. */
static void catch_up(uv_loop_t *loop, sl_etcd_mirror *m, int64_t rev)
{
    uint64_t end = uv_now(loop) + 10000;
    sl_etcd_mirror_stats st;
    do {
        uv_run(loop, UV_RUN_ONCE);
        st = stats_of(m);
    } while (st.revision < rev && uv_now(loop) < end);
    if (st.revision < rev)
        fprintf(stderr, "mirror at %lld, wanted %lld\n", (long long)st.revision, (long long)rev);
    ASSERT(st.revision >= rev);
}

/* The mirror's view must equal a Range of the prefix (values and mod revisions). */
static void same_as_etcd(uv_loop_t *loop, writer *w, const mstate *s)
{
    static int64_t mod[NKEYS];
    memset(mod, 0, sizeof mod);
    got g;
    int64_t rev = 0;
    size_t total = 0;
    char from[16] = "m/";
    for (;;) {
        char end[8];
        size_t elen = sl_etcd_prefix_end("m/", 2, end, sizeof end);
        memset(&g, 0, sizeof g);
        /* etcd_fx_on_result keeps only the first kv: use pages of one key. */
        ASSERT_EQ(sl_etcd_range_ex(w->e, from, strlen(from) + (total ? 1 : 0), end, elen, rev,
                                   1, etcd_fx_on_result, &g), 0);
        ASSERT(etcd_fx_wait(loop, &g, 6000));
        ASSERT_EQ(g.r.status.code, 0);
        if (!rev)
            rev = g.r.revision;
        if (!g.nkvs)
            break;
        int i = key_index(g.key, strlen(g.key));
        ASSERT(i >= 0);
        mod[i] = g.mod;
        ASSERT(strcmp(s->value[i], g.value) == 0);
        total++;
        snprintf(from, sizeof from, "%s", g.key);   /* next: after this key */
        if (!g.r.more)
            break;
    }
    for (int i = 0; i < NKEYS; i++)
        if (mod[i] != s->mod[i])
            fprintf(stderr, "key %d: etcd %lld, mirror %lld\n", i, (long long)mod[i],
                    (long long)s->mod[i]);
    for (int i = 0; i < NKEYS; i++)
        ASSERT(mod[i] == s->mod[i]);
}

/* etcd killed hard and restarted on the same data; returns once the writer is connected. */
static void etcd_crash(world *wd, writer *w)
{
    etcd_fx_stop(&wd->fx, true);
    etcd_fx_restart(&wd->fx);
    wait_connected(&wd->loop, w->e);
}

/* Live changes through the watch: new keys, updates, deletes. */
static void mirror_live(uv_loop_t *loop, writer *w, sl_etcd_mirror *m, const mstate *s)
{
    wr_keys(loop, w, 1500, 1600, "b");
    wr_keys(loop, w, 0, 50, "c");
    int64_t rev = wr_keys(loop, w, 100, 130, NULL);
    catch_up(loop, m, rev);
    same_as_etcd(loop, w, s);
    ASSERT_EQ(s->deletes, 30);
}

/* etcd killed and restarted: the watch resumes from the last revision + 1, nothing is lost
 * or repeated. */
static void mirror_resume(world *wd, writer *w, sl_etcd_mirror *m, const mstate *s)
{
    etcd_crash(wd, w);
    wr_keys(&wd->loop, w, 1600, 1700, "d");
    int64_t rev = wr(&wd->loop, w, 140, NULL);
    catch_up(&wd->loop, m, rev);
    same_as_etcd(&wd->loop, w, s);
    ASSERT_EQ(stats_of(m).resyncs, 0);
}

/* Compaction while the mirror is away (its client reconnects slowly): it lists again and
 * delivers the difference. */
static void mirror_resync(world *wd, writer *w, sl_etcd_mirror *m, const mstate *s)
{
    etcd_crash(wd, w);
    wr_keys(&wd->loop, w, 1700, 1750, "e");
    wr_keys(&wd->loop, w, 200, 220, NULL);
    int64_t rev = wr_keys(&wd->loop, w, 300, 310, "f");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ETCDCTL_API=3 etcdctl --endpoints=%s compact %lld >/dev/null",
             wd->fx.endpoint, (long long)rev);
    ASSERT_EQ(system(cmd), 0);
    catch_up(&wd->loop, m, rev);
    same_as_etcd(&wd->loop, w, s);
    sl_etcd_mirror_stats st = stats_of(m);
    ASSERT_EQ(st.resyncs, 1);
    ASSERT_EQ(s->syncs, 2);
    ASSERT_EQ(st.duplicates, 0);
}

TEST_IMPL(etcd_mirror)
{
    world wd;
    world_up(&wd, (sl_etcd_config){0});
    writer w = {.e = wd.e};
    /* 1500 keys before the mirror starts: it lists them in two pages. */
    int64_t rev = wr_keys(&wd.loop, &w, 0, 1500, "a");
    /* The mirror's own client reconnects slowly, to leave room for the compaction in
     * mirror_resync. */
    sl_etcd *me = client_of(&wd, (sl_etcd_config){.backoff_min_ms = 1500,
                                                  .backoff_max_ms = 1500});
    static mstate s;
    sl_etcd_mirror *m = mirror_of(me, &s);
    catch_up(&wd.loop, m, rev);
    ASSERT_EQ(s.syncs, 1);
    ASSERT_EQ(s.puts, 1500);
    ASSERT_EQ(stats_of(m).keys, 1500);
    mirror_live(&wd.loop, &w, m, &s);
    mirror_resume(&wd, &w, m, &s);
    mirror_resync(&wd, &w, m, &s);
    sl_etcd_mirror_stop(m);
    sl_etcd_free(me);
    world_down(&wd);
    return 0;
}

/* ---- leases kept alive ------------------------------------------------------------------- */

typedef struct lstate {
    int64_t id;
    int alive, lost;
} lstate;

static void on_lease(void *ud, sl_etcd_lease *l, int64_t id, bool alive)
{
    (void)l;
    lstate *s = ud;
    if (alive) {
        s->alive++;
        s->id = id;
    } else {
        s->lost++;
        s->id = 0;
    }
}

/* etcd paused past the TTL: the lease is lost, the owner told, a new one granted; the old
 * lease's key goes (etcd expires it once running again) and the owner re-registers. */
static void lease_pause(world *w, sl_etcd_lease *l, lstate *s)
{
    uv_loop_t *loop = &w->loop;
    int64_t old = s->id;
    kill(w->fx.pid, SIGSTOP);
    run_ms(loop, 3000);
    kill(w->fx.pid, SIGCONT);
    uint64_t end = uv_now(loop) + 8000;
    while ((s->alive < 2 || !s->id) && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    ASSERT(s->lost >= 1);
    ASSERT(s->alive >= 2 && s->id != 0 && s->id != old);
    ASSERT(sl_etcd_lease_losses(l) >= 1);
    got g;
    end = uv_now(loop) + 8000;
    do {
        CALL(sl_etcd_range(w->e, "node/a", false, 0, 0, etcd_fx_on_result, &g), g);
        if (g.nkvs == 0)
            break;
        run_ms(loop, 200);
    } while (uv_now(loop) < end);
    ASSERT_EQ(g.nkvs, 0);
    CALL(sl_etcd_put(w->e, "node/a", "up", 2, s->id, false, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
}

TEST_IMPL(etcd_lease_keepalive)
{
    world w;
    world_up(&w, (sl_etcd_config){.timeout_ms = 1000});
    uv_loop_t *loop = &w.loop;
    static lstate s;
    sl_etcd_lease *l = sl_etcd_lease_keep(w.e, 2, on_lease, &s);
    ASSERT(l != NULL);
    uint64_t end = uv_now(loop) + 3000;
    while (!s.alive && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    ASSERT_EQ(s.alive, 1);
    got g;
    CALL(sl_etcd_put(w.e, "node/a", "up", 2, s.id, false, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    /* Kept alive well past its TTL of 2 s. */
    run_ms(loop, 3500);
    CALL(sl_etcd_range(w.e, "node/a", false, 0, 0, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.nkvs, 1);
    ASSERT_EQ(s.lost, 0);

    lease_pause(&w, l, &s);

    /* A clean release revokes: the key goes at once. */
    sl_etcd_lease_release(l, true);
    run_ms(loop, 300);
    CALL(sl_etcd_range(w.e, "node/a", false, 0, 0, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.nkvs, 0);
    world_down(&w);
    return 0;
}

TEST_IMPL(etcd_failover_limits)
{
    /* The first endpoint is dead: the client moves on to the next and works. */
    world w;
    etcd_fx_start(&w.fx);
    uv_loop_init(&w.loop);
    uv_loop_t *loop = &w.loop;
    etcd_fx dead;
    etcd_fx_start(&dead);
    etcd_fx_stop(&dead, false);
    char err[256], eps[160];
    snprintf(eps, sizeof eps, "%s,%s", dead.endpoint, w.fx.endpoint);
    sl_etcd_config cfg = {.endpoints = eps, .max_message = 4096};
    ASSERT_EQ(sl_etcd_new(&w.e, loop, &cfg, err, sizeof err), 0);
    sl_etcd *e = w.e;
    wait_connected(loop, e);
    ASSERT(strcmp(sl_etcd_endpoint(e), w.fx.endpoint) == 0);
    /* A response over the message size limit: a clear RESOURCE_EXHAUSTED, no hang. */
    static char big[1000];
    memset(big, 'x', sizeof big - 1);
    char key[32];
    got g;
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "big/%d", i);
        CALL(sl_etcd_put(e, key, big, sizeof big - 1, 0, false, etcd_fx_on_result, &g), g);
        ASSERT_EQ(g.r.status.code, 0);
    }
    CALL(sl_etcd_range(e, "big/", true, 0, 2, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);          /* two values: under the limit */
    CALL(sl_etcd_range(e, "big/", true, 0, 0, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, SL_GRPC_RESOURCE_EXHAUSTED);
    ASSERT(strstr(g.r.status.message, "over the limit") != NULL);
    /* The connection is still good for the next call. */
    CALL(sl_etcd_range(e, "big/0", false, 0, 0, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    /* A bad endpoint list is refused up front. */
    sl_etcd *bad;
    sl_etcd_config bc = {.endpoints = "no-port-here"};
    ASSERT_EQ(sl_etcd_new(&bad, loop, &bc, err, sizeof err), SL_EINVAL);
    ASSERT(strstr(err, "host:port") != NULL);
    world_down(&w);
    etcd_fx_cleanup(&dead);
    return 0;
}

/* ---- transactions, watch prev_kv, progress notifications --------------------------------- */

/* What a watch's callbacks saw: the first 16 events, with their previous values. */
typedef struct wstate {
    sl_etcd_event ev[16];
    char prev_value[16][32];
    size_t n;
    int calls;
    int progress;
    int64_t progress_rev;
} wstate;

static void w_events(void *ud, const sl_etcd_event *ev, size_t n)
{
    wstate *s = ud;
    s->calls++;
    for (size_t i = 0; i < n && s->n < 16; i++) {
        s->ev[s->n] = ev[i];
        snprintf(s->prev_value[s->n], 32, "%.*s", ev[i].has_prev ? (int)ev[i].prev.value_len : 0,
                 ev[i].has_prev ? (const char *)ev[i].prev.value : "");
        s->n++;
    }
}

static void w_progress(void *ud, int64_t rev)
{
    wstate *s = ud;
    s->progress++;
    s->progress_rev = rev;
}

/* Runs the loop until s has n events (or ms pass); then asserts it has exactly n. */
static void wait_events(uv_loop_t *loop, const wstate *s, size_t n, int ms)
{
    uint64_t end = uv_now(loop) + (uint64_t)ms;
    while (s->n < n && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    ASSERT_EQ(s->n, n);
}

/* A general txn: compares on value and version; several ops per branch. */
static void txn_branches(uv_loop_t *loop, sl_etcd *e)
{
    got g;
    CALL(sl_etcd_put(e, "t/a", "1", 1, 0, false, etcd_fx_on_result, &g), g);
    sl_etcd_cmp cmps[2] = {
        {.key = "t/a", .target = SL_CMP_VALUE, .op = SL_CMP_EQUAL, .value = "1", .value_len = 1},
        {.key = "t/a", .target = SL_CMP_VERSION, .op = SL_CMP_EQUAL, .number = 1},
    };
    sl_etcd_txn_op ok[3] = {
        {.kind = SL_TXN_PUT, .key = "t/b", .value = "2", .value_len = 1},
        {.kind = SL_TXN_PUT, .key = "t/c", .value = "3", .value_len = 1},
        {.kind = SL_TXN_RANGE, .key = "t/", .prefix = true},
    };
    sl_etcd_txn_op no[1] = {{.kind = SL_TXN_DELETE, .key = "t/", .prefix = true}};
    CALL(sl_etcd_txn(e, cmps, 2, ok, 3, no, 1, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    ASSERT(g.r.succeeded);
    ASSERT_EQ(g.nkvs, 3);       /* the range inside the txn sees its own puts */
    /* Now the version is 1 still but the value compare fails after a change: failure ops. */
    CALL(sl_etcd_put(e, "t/a", "9", 1, 0, false, etcd_fx_on_result, &g), g);
    CALL(sl_etcd_txn(e, cmps, 2, ok, 3, no, 1, etcd_fx_on_result, &g), g);
    ASSERT(!g.r.succeeded);
    ASSERT_EQ(g.r.deleted, 3);
    /* Compare on create revision: GREATER than 0 means "exists". */
    sl_etcd_cmp exists = {.key = "t/a", .target = SL_CMP_CREATE, .op = SL_CMP_GREATER, .number = 0};
    CALL(sl_etcd_txn(e, &exists, 1, NULL, 0, NULL, 0, etcd_fx_on_result, &g), g);
    ASSERT(!g.r.succeeded);
}

/* A watch from now, then with previous values. */
static void watch_prev(uv_loop_t *loop, sl_etcd *e, sl_etcd_watch *w, wstate *ws)
{
    got g;
    run_ms(loop, 300);      /* created */
    CALL(sl_etcd_put(e, "wa/1", "first", 5, 0, false, etcd_fx_on_result, &g), g);
    wait_events(loop, ws, 1, 3000);
    ASSERT(!ws->ev[0].deleted && !ws->ev[0].has_prev);
    sl_etcd_watch_prev_kv(w, true);
    run_ms(loop, 300);
    CALL(sl_etcd_put(e, "wa/1", "second", 6, 0, false, etcd_fx_on_result, &g), g);
    CALL(sl_etcd_delete(e, "wa/1", false, false, etcd_fx_on_result, &g), g);
    int64_t last = g.r.revision;
    wait_events(loop, ws, 3, 3000);
    ASSERT(ws->ev[1].has_prev && strcmp(ws->prev_value[1], "first") == 0);
    ASSERT(ws->ev[2].deleted && ws->ev[2].has_prev && strcmp(ws->prev_value[2], "second") == 0);
    ASSERT_EQ(sl_etcd_watch_next(w), last + 1);
}

/* Quiet for a while: a progress notification moves the resume point without events (the
 * fixture asks etcd for one a second). Writes elsewhere raise the revision. */
static void watch_progress(uv_loop_t *loop, sl_etcd *e, sl_etcd_watch *w, wstate *ws)
{
    got g;
    CALL(sl_etcd_put(e, "elsewhere", "x", 1, 0, false, etcd_fx_on_result, &g), g);
    int64_t elsewhere = g.r.revision;
    uint64_t end = uv_now(loop) + 5000;
    while (ws->progress_rev < elsewhere && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    ASSERT(ws->progress >= 1);
    ASSERT(ws->progress_rev >= elsewhere);
    ASSERT_EQ(ws->n, 3);
    ASSERT(sl_etcd_watch_next(w) >= elsewhere + 1);
}

/* A revision too big for one watch response (16 values of 90 KB overwritten in one txn,
 * with previous values: ~2.9 MB, over etcd's 1.5 MiB) comes in fragments, and is delivered
 * whole: one call with its 16 events. */
static void watch_fragments(uv_loop_t *loop, sl_etcd *e)
{
    static char blob[90001];
    memset(blob, 'b', sizeof blob - 1);
    sl_etcd_txn_op puts[16];
    char keys[16][16];
    for (int i = 0; i < 16; i++) {
        snprintf(keys[i], sizeof keys[i], "fr/%02d", i);
        puts[i] = (sl_etcd_txn_op){.kind = SL_TXN_PUT, .key = keys[i], .value = blob,
                                   .value_len = sizeof blob - 1};
    }
    got g;
    CALL(sl_etcd_txn(e, NULL, 0, puts, 16, NULL, 0, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    static wstate fs;
    sl_etcd_watch_handlers wh = {.on_events = w_events, .on_progress = w_progress};
    sl_etcd_watch *fw = sl_etcd_watch_start(e, "fr/", true, g.r.revision + 1, &wh, &fs);
    sl_etcd_watch_prev_kv(fw, true);
    memset(blob, 'c', sizeof blob - 1);
    CALL(sl_etcd_txn(e, NULL, 0, puts, 16, NULL, 0, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    wait_events(loop, &fs, 16, 5000);
    ASSERT(sl_etcd_watch_fragments(fw) >= 1);
    ASSERT_EQ(fs.calls, 1);     /* the fragments came out as one revision */
    for (int i = 0; i < 16; i++)
        ASSERT(fs.ev[i].has_prev && fs.ev[i].kv.mod_revision == g.r.revision);
    sl_etcd_watch_stop(fw);
}

TEST_IMPL(etcd_txn_watch)
{
    world w;
    world_up(&w, (sl_etcd_config){0});
    txn_branches(&w.loop, w.e);
    static wstate ws;
    sl_etcd_watch_handlers wh = {.on_events = w_events, .on_progress = w_progress};
    sl_etcd_watch *wa = sl_etcd_watch_start(w.e, "wa/", true, 0, &wh, &ws);
    ASSERT(wa != NULL);
    watch_prev(&w.loop, w.e, wa, &ws);
    watch_progress(&w.loop, w.e, wa, &ws);
    sl_etcd_watch_stop(wa);
    watch_fragments(&w.loop, w.e);
    world_down(&w);
    return 0;
}

TEST_IMPL(etcd_dead_peer)
{
    /* A peer that stops answering (SIGSTOP: the socket stays open) is found dead by the
     * PING keepalive within seconds, not by a call's deadline; the client then reconnects
     * once it answers again, and the watch resumes. */
    world w;
    world_up(&w, (sl_etcd_config){.ping_interval_ms = 1000, .ping_timeout_ms = 500,
                                  .backoff_min_ms = 200, .backoff_max_ms = 400});
    uv_loop_t *loop = &w.loop;
    static wstate ws;
    sl_etcd_watch_handlers wh = {.on_events = w_events};
    sl_etcd_watch *wa = sl_etcd_watch_start(w.e, "dp/", true, 0, &wh, &ws);
    run_ms(loop, 200);
    kill(w.fx.pid, SIGSTOP);
    uint64_t t0 = uv_now(loop);
    while (sl_etcd_connected(w.e) && uv_now(loop) - t0 < 5000)
        uv_run(loop, UV_RUN_ONCE);
    ASSERT(!sl_etcd_connected(w.e));
    ASSERT(uv_now(loop) - t0 < 2500);     /* interval 1 s + answer limit 0.5 s */
    kill(w.fx.pid, SIGCONT);
    wait_connected(loop, w.e);
    got g;
    CALL(sl_etcd_put(w.e, "dp/x", "1", 1, 0, false, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    wait_events(loop, &ws, 1, 3000);
    sl_etcd_watch_stop(wa);
    world_down(&w);
    return 0;
}

/* ---- a writer with many puts in flight, for the kill test -------------------------------- */

typedef struct aw {
    sl_etcd *e;
    int next, end, inflight, done;
    int retry[2048];
    int nretry;
} aw;

static void aw_put(aw *a, int i);

typedef struct aw_call {
    aw *a;
    int i;
} aw_call;

static void aw_done(void *ud, const sl_etcd_result *r)
{
    aw_call *c = ud;
    aw *a = c->a;
    a->inflight--;
    if (r->status.code == 0)
        a->done++;
    else if (a->nretry < 2048)
        a->retry[a->nretry++] = c->i;      /* unknown outcome: put it again (same value) */
    free(c);
    if (a->next < a->end)
        aw_put(a, a->next++);
}

static void aw_put(aw *a, int i)
{
    char key[16], val[16];
    snprintf(key, sizeof key, "m/%04d", i);
    snprintf(val, sizeof val, "w%d", i);
    aw_call *c = malloc(sizeof *c);
    ASSERT(c != NULL);
    c->a = a;
    c->i = i;
    ASSERT_EQ(sl_etcd_put(a->e, key, val, strlen(val), 0, false, aw_done, c), 0);
    a->inflight++;
}

/* Runs until every put is done: what is in flight, the rest, and (once nothing is in
 * flight) again the puts whose outcome was unknown. */
static void aw_finish(uv_loop_t *loop, aw *a)
{
    uint64_t end = uv_now(loop) + 20000;
    while ((a->inflight || a->next < a->end || a->nretry) && uv_now(loop) < end) {
        if (!a->inflight && a->next >= a->end && a->nretry) {
            int n = a->nretry;
            a->nretry = 0;
            for (int k = 0; k < n; k++)
                aw_put(a, a->retry[k]);
        }
        uv_run(loop, UV_RUN_ONCE);
    }
    ASSERT_EQ(a->inflight, 0);
    ASSERT_EQ(a->nretry, 0);
}

TEST_IMPL(etcd_mirror_writer_kill)
{
    /* etcd is killed and restarted on the same data while a writer has puts in flight: the
     * mirror ends identical to a Range of etcd, each key's revisions only go up (m_put
     * asserts it), nothing is repeated. */
    world wd;
    sl_etcd_config wc = {.backoff_min_ms = 50, .backoff_max_ms = 200};
    world_up(&wd, wc);
    uv_loop_t *loop = &wd.loop;
    writer w = {.e = wd.e};
    sl_etcd *me = client_of(&wd, wc);
    static mstate s;
    sl_etcd_mirror *m = mirror_of(me, &s);
    static aw a;
    memset(&a, 0, sizeof a);
    a.e = w.e;
    a.next = 0;
    a.end = 2000;
    for (int k = 0; k < 32 && a.next < a.end; k++)
        aw_put(&a, a.next++);
    /* Kill etcd once a third of the puts are done. */
    while (a.done < 600)
        uv_run(loop, UV_RUN_ONCE);
    etcd_fx_stop(&wd.fx, true);
    run_ms(loop, 300);
    etcd_fx_restart(&wd.fx);
    aw_finish(loop, &a);
    /* Wait until the mirror has the writer's last revision. */
    got g;
    CALL(sl_etcd_range(w.e, "m/", true, 0, 1, etcd_fx_on_result, &g), g);
    catch_up(loop, m, g.r.revision);
    same_as_etcd(loop, &w, &s);
    sl_etcd_mirror_stats st = stats_of(m);
    ASSERT_EQ(st.keys, 2000);
    ASSERT_EQ(st.duplicates, 0);
    sl_etcd_mirror_stop(m);
    sl_etcd_free(me);
    world_down(&wd);
    return 0;
}
