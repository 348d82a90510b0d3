/*
 * The etcd client converges on etcd's truth (issue 13): a mirror that keeps following after
 * a compaction resync, a key deleted and created again while the mirror was cut off,
 * etcd's revision going backwards (a recreated cluster), keys of 1-2 KiB, a watch stopped
 * from its own callback, a peer that accepts and closes, host names as endpoints, and a
 * cluster of three members with one partitioned (tests/fixtures/etcd_fixture.h: the proxy
 * and the cluster).
 *
 * Each mirror here is checked against a Range of etcd: same keys, values and revisions.
 */
#include "test.h"

#include "etcd/etcd.h"
#include "etcd/mirror.h"
#include "fixtures/etcd_fixture.h"

#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

typedef etcd_fx_got got;

/* Runs the loop for ms, whatever happens. */
static void run_ms(uv_loop_t *loop, int ms)
{
    got never = {0};
    etcd_fx_wait(loop, &never, ms);
}

#define CALL(expr, g)                                 \
    do {                                              \
        memset(&(g), 0, sizeof(g));                   \
        ASSERT_EQ((expr), 0);                         \
        ASSERT(etcd_fx_wait(loop, &(g), 8000));       \
    } while (0)

/* Runs the loop until cond holds or ms pass; returns cond. */
#define WAIT_FOR(loop, cond, ms)                                              \
    ({                                                                        \
        uint64_t end_ = uv_now(loop) + (uint64_t)(ms);                        \
        while (!(cond) && uv_now(loop) < end_)                                \
            uv_run((loop), UV_RUN_ONCE);                                      \
        (cond);                                                               \
    })

static sl_etcd *client(uv_loop_t *loop, const char *endpoints, sl_etcd_config cfg)
{
    cfg.endpoints = endpoints;
    sl_etcd *e;
    char err[256];
    ASSERT_EQ(sl_etcd_new(&e, loop, &cfg, err, sizeof err), 0);
    return e;
}

/* ---- a model of a prefix: what a mirror delivered, or what a Range read -------------------- */

#define MAXK 2048

typedef struct mkey {
    char *key, *value;
    size_t klen;
    int64_t mod;
    int64_t create;             /* a Range's; 0 for what a mirror delivered */
    char log[64];               /* a mirror's: 'p' put, 'd' delete, in order (last 63) */
} mkey;

typedef struct model {
    mkey k[MAXK];
    int n;
    uint64_t puts, deletes, syncs;
    int64_t synced_rev;
} model;

static mkey *model_find(model *m, const char *k, size_t kl, bool add)
{
    for (int i = 0; i < m->n; i++)
        if (m->k[i].klen == kl && !memcmp(m->k[i].key, k, kl))
            return &m->k[i];
    if (!add)
        return NULL;
    ASSERT(m->n < MAXK);
    mkey *x = &m->k[m->n++];
    memset(x, 0, sizeof *x);
    x->key = malloc(kl + 1);
    ASSERT(x->key);
    memcpy(x->key, k, kl);
    x->key[kl] = '\0';
    x->klen = kl;
    return x;
}

static void mkey_log(mkey *x, char c)
{
    size_t n = strlen(x->log);
    if (n == sizeof x->log - 1) {
        memmove(x->log, x->log + 1, n - 1);
        n--;
    }
    x->log[n] = c;
    x->log[n + 1] = '\0';
}

static void model_put(model *m, const char *k, size_t kl, const uint8_t *v, size_t vl,
                      int64_t mod, int64_t create)
{
    mkey *x = model_find(m, k, kl, true);
    free(x->value);
    x->value = malloc(vl + 1);
    ASSERT(x->value);
    memcpy(x->value, v, vl);
    x->value[vl] = '\0';
    x->mod = mod;
    x->create = create;
}

static void model_free(model *m)
{
    for (int i = 0; i < m->n; i++) {
        free(m->k[i].key);
        free(m->k[i].value);
    }
    m->n = 0;
}

/* A mirror's callbacks into a model: a put of a key it holds, a delete of one it does not
 * hold, fail the test. */
static void mm_put(void *ud, const char *k, size_t kl, const uint8_t *v, size_t vl, int64_t mod)
{
    model *m = ud;
    mkey *x = model_find(m, k, kl, true);
    mkey_log(x, 'p');
    model_put(m, k, kl, v, vl, mod, 0);
    m->puts++;
}

static void mm_delete(void *ud, const char *k, size_t kl, int64_t rev)
{
    (void)rev;
    model *m = ud;
    mkey *x = model_find(m, k, kl, false);
    ASSERT(x != NULL && x->value != NULL);
    mkey_log(x, 'd');
    free(x->value);
    x->value = NULL;
    x->mod = 0;
    m->deletes++;
}

static void mm_synced(void *ud, int64_t rev)
{
    model *m = ud;
    m->syncs++;
    m->synced_rev = rev;
}

static sl_etcd_mirror *mirror_into(sl_etcd *e, const char *prefix, model *m)
{
    memset(m, 0, sizeof *m);
    sl_etcd_mirror_handlers h = {mm_put, mm_delete, mm_synced};
    sl_etcd_mirror *mi = sl_etcd_mirror_start(e, prefix, &h, m);
    ASSERT(mi != NULL);
    return mi;
}

static sl_etcd_mirror_stats mstats(const sl_etcd_mirror *mi)
{
    sl_etcd_mirror_stats st;
    sl_etcd_mirror_get_stats(mi, &st);
    return st;
}

/* A Range's keys into a model. */
typedef struct ranged {
    bool done;
    int code;
    int64_t rev;
    model *m;
} ranged;

static void on_ranged(void *ud, const sl_etcd_result *r)
{
    ranged *g = ud;
    g->done = true;
    g->code = r->status.code;
    g->rev = r->revision;
    for (size_t i = 0; r->status.code == 0 && i < r->nkvs; i++)
        model_put(g->m, (const char *)r->kvs[i].key, r->kvs[i].key_len, r->kvs[i].value,
                  r->kvs[i].value_len, r->kvs[i].mod_revision, r->kvs[i].create_revision);
}

/* Reads the prefix from etcd (retrying while it is unavailable); returns the revision. */
static int64_t read_prefix(uv_loop_t *loop, sl_etcd *e, const char *prefix, model *out)
{
    for (int attempt = 0; attempt < 100; attempt++) {
        model_free(out);
        memset(out, 0, sizeof *out);
        ranged g = {.m = out};
        ASSERT_EQ(sl_etcd_range(e, prefix, true, 0, 0, on_ranged, &g), 0);
        ASSERT(WAIT_FOR(loop, g.done, 8000));
        if (g.code == 0)
            return g.rev;
        run_ms(loop, 100);
    }
    ASSERT(0);
    return 0;
}

/* Whether the mirror's model holds exactly what etcd holds under prefix; asserts so when
 * must. */
static bool same_as_etcd_try(uv_loop_t *loop, sl_etcd *e, const char *prefix, const model *mm,
                             bool must);

/* The mirror's model holds exactly what etcd holds under prefix. etcd may change between
 * its read and the comparison (a lease expiring): a few tries, the mirror given time to
 * catch up with each read. */
static void same_as_etcd(uv_loop_t *loop, sl_etcd *e, const char *prefix, const model *mm)
{
    for (int i = 0; i < 4; i++) {
        if (same_as_etcd_try(loop, e, prefix, mm, false))
            return;
        run_ms(loop, 300);
    }
    same_as_etcd_try(loop, e, prefix, mm, true);
}

static bool same_as_etcd_try(uv_loop_t *loop, sl_etcd *e, const char *prefix, const model *mm,
                             bool must)
{
    static model truth;
    read_prefix(loop, e, prefix, &truth);
    int live = 0;
    for (int i = 0; i < mm->n; i++) {
        const mkey *x = &mm->k[i];
        if (!x->value)
            continue;
        live++;
        mkey *t = model_find(&truth, x->key, x->klen, false);
        if (!t || t->mod != x->mod || strcmp(t->value, x->value)) {
            fprintf(stderr, "mirror has %.60s at %lld, etcd %s at %lld\n", x->key,
                    (long long)x->mod, t ? t->value : "nothing", t ? (long long)t->mod : 0LL);
            ASSERT(!must);
            model_free(&truth);
            return false;
        }
    }
    if (live != truth.n) {
        fprintf(stderr, "mirror has %d keys, etcd %d\n", live, truth.n);
        ASSERT(!must);
        model_free(&truth);
        return false;
    }
    model_free(&truth);
    return true;
}

/* Writes (value NULL: deletes) key, retrying while etcd is unavailable; the revision. */
static int64_t put(uv_loop_t *loop, sl_etcd *e, const char *key, const char *value)
{
    got g;
    for (int attempt = 0; attempt < 100; attempt++) {
        if (value)
            CALL(sl_etcd_put(e, key, value, strlen(value), 0, false, etcd_fx_on_result, &g), g);
        else
            CALL(sl_etcd_delete(e, key, false, false, etcd_fx_on_result, &g), g);
        if (g.r.status.code == 0)
            return g.r.revision;
        run_ms(loop, 100);
    }
    fprintf(stderr, "put %s: %d %s\n", key, g.r.status.code, g.r.status.message);
    ASSERT(0);
    return 0;
}

static void compact(const char *endpoint, int64_t rev)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ETCDCTL_API=3 etcdctl --endpoints=%s compact %lld >/dev/null",
             endpoint, (long long)rev);
    ASSERT_EQ(system(cmd), 0);
}

/* ---- a mirror cut off from etcd through a proxy ----------------------------------------------- */

/* etcd, a writer talking to it directly, and a mirror's client through the proxy. */
typedef struct cut_world {
    etcd_fx fx;
    uv_loop_t loop;
    etcd_proxy *px;
    char via[32];
    sl_etcd *w, *me;
    sl_etcd_mirror *mi;
    model mm;
} cut_world;

static void cut_up(cut_world *c, const char *prefix)
{
    etcd_fx_start(&c->fx);
    uv_loop_init(&c->loop);
    c->px = etcd_proxy_start(&c->fx.client_port, 1);
    snprintf(c->via, sizeof c->via, "127.0.0.1:%d", etcd_proxy_port(c->px, 0));
    c->w = client(&c->loop, c->fx.endpoint, (sl_etcd_config){0});
    c->me = client(&c->loop, c->via, (sl_etcd_config){.backoff_min_ms = 50,
                                                      .backoff_max_ms = 200});
    c->mi = mirror_into(c->me, prefix, &c->mm);
}

static void cut_down(cut_world *c)
{
    sl_etcd_mirror_stop(c->mi);
    sl_etcd_free(c->me);
    sl_etcd_free(c->w);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&c->loop), 0);
    etcd_proxy_stop(c->px);
    etcd_fx_cleanup(&c->fx);
    model_free(&c->mm);
}

/* Cuts the mirror's client off and waits until it knows. */
static void cut_off(cut_world *c)
{
    etcd_proxy_isolate(c->px, 0, true);
    ASSERT(WAIT_FOR(&c->loop, !sl_etcd_connected(c->me), 5000));
}

/* Writes the keys p/k00 .. p/k(n-1) = value; returns the last revision. */
static int64_t put_keys(cut_world *c, const char *prefix, int from, int to, const char *value)
{
    int64_t rev = 0;
    char key[64];
    for (int i = from; i < to; i++) {
        snprintf(key, sizeof key, "%sk%02d", prefix, i);
        rev = put(&c->loop, c->w, key, value);
    }
    return rev;
}

TEST_IMPL(etcd_mirror_follows_after_resync)
{
    /* Issue 13, 1: compacted at the latest revision while the mirror was cut off, the
     * mirror lists again, and must then keep following etcd. */
    static cut_world c;
    cut_up(&c, "f/");
    uv_loop_t *loop = &c.loop;
    int64_t rev = put_keys(&c, "f/", 0, 20, "a");
    ASSERT(WAIT_FOR(loop, mstats(c.mi).revision >= rev, 5000));
    cut_off(&c);
    put_keys(&c, "f/", 5, 10, NULL);
    rev = put_keys(&c, "f/", 10, 25, "b");
    compact(c.fx.endpoint, rev);
    etcd_proxy_isolate(c.px, 0, false);
    ASSERT(WAIT_FOR(loop, mstats(c.mi).resyncs == 1 && mstats(c.mi).revision >= rev, 8000));
    same_as_etcd(loop, c.w, "f/", &c.mm);
    /* A put after the resync arrives. */
    rev = put(loop, c.w, "f/after", "c");
    bool seen = WAIT_FOR(loop, mstats(c.mi).revision >= rev, 5000);
    if (!seen)
        fprintf(stderr, "mirror at %lld after the resync, etcd at %lld\n",
                (long long)mstats(c.mi).revision, (long long)rev);
    ASSERT(seen);
    same_as_etcd(loop, c.w, "f/", &c.mm);
    cut_down(&c);
    return 0;
}

TEST_IMPL(etcd_mirror_resync_recreated_key)
{
    /* Issue 13, 2: a key deleted and created again while the mirror was cut off (and the
     * history compacted) comes out of the resync as a delete, then a put. */
    static cut_world c;
    cut_up(&c, "r/");
    uv_loop_t *loop = &c.loop;
    int64_t rev = put_keys(&c, "r/", 0, 4, "a");
    ASSERT(WAIT_FOR(loop, mstats(c.mi).revision >= rev, 5000));
    cut_off(&c);
    put(loop, c.w, "r/k01", NULL);
    put(loop, c.w, "r/k01", "again");
    put(loop, c.w, "r/k02", NULL);
    rev = put(loop, c.w, "r/k03", "changed");
    compact(c.fx.endpoint, rev);
    etcd_proxy_isolate(c.px, 0, false);
    ASSERT(WAIT_FOR(loop, mstats(c.mi).resyncs == 1 && mstats(c.mi).revision >= rev, 8000));
    same_as_etcd(loop, c.w, "r/", &c.mm);
    mkey *k1 = model_find(&c.mm, "r/k01", 5, false), *k2 = model_find(&c.mm, "r/k02", 5, false);
    mkey *k3 = model_find(&c.mm, "r/k03", 5, false), *k0 = model_find(&c.mm, "r/k00", 5, false);
    fprintf(stderr, "k00 %s, k01 %s, k02 %s, k03 %s\n", k0->log, k1->log, k2->log, k3->log);
    ASSERT(strcmp(k0->log, "p") == 0);
    ASSERT(strcmp(k1->log, "pdp") == 0);     /* delete then put: a new key */
    ASSERT(strcmp(k2->log, "pd") == 0);
    ASSERT(strcmp(k3->log, "pp") == 0);      /* a change of the same key */
    cut_down(&c);
    return 0;
}

/* ---- etcd's history going backwards ------------------------------------------------------- */

TEST_IMPL(etcd_mirror_history_reset)
{
    /* Issue 13, 5: etcd stopped, its data wiped, a fresh one started on the same ports (the
     * same flags: the same cluster id), different keys written: the client sees a revision
     * below what it had seen, and the mirror lists everything again and ends equal to etcd
     * (keys now at lower mod_revisions included). */
    static cut_world c;
    cut_up(&c, "h/");
    uv_loop_t *loop = &c.loop;
    put_keys(&c, "h/", 0, 10, "old");
    int64_t rev = put_keys(&c, "h/", 0, 10, "older");    /* revisions up to 21 */
    ASSERT(WAIT_FOR(loop, mstats(c.mi).revision >= rev, 5000));
    etcd_fx_stop(&c.fx, false);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s/data", c.fx.dir);
    ASSERT_EQ(system(cmd), 0);
    etcd_fx_restart(&c.fx);
    /* Different keys, and two of the old names again (at lower revisions than before). */
    put(loop, c.w, "h/k03", "new");
    put(loop, c.w, "h/new1", "n");
    int64_t last = put(loop, c.w, "h/k07", "new");
    ASSERT(last < rev);
    /* (Before the fix the mirror stayed at revision 21, past etcd's, and held the old keys.) */
    WAIT_FOR(loop, mstats(c.mi).full_resets >= 1 && mstats(c.mi).synced &&
                       mstats(c.mi).revision >= last, 8000);
    sl_etcd_health h;
    sl_etcd_health_get(c.me, &h);
    fprintf(stderr, "full resets %llu, history resets %llu, mirror at %lld\n",
            (unsigned long long)mstats(c.mi).full_resets,
            (unsigned long long)h.history_resets, (long long)mstats(c.mi).revision);
    same_as_etcd(loop, c.w, "h/", &c.mm);
    ASSERT_EQ(mstats(c.mi).full_resets, 1);
    ASSERT(h.history_resets >= 1);
    /* And it follows on from there. */
    last = put(loop, c.w, "h/new2", "n");
    ASSERT(WAIT_FOR(loop, mstats(c.mi).revision >= last, 5000));
    same_as_etcd(loop, c.w, "h/", &c.mm);
    ASSERT_EQ(mstats(c.mi).revision, last);
    cut_down(&c);
    return 0;
}

/* ---- smaller ones ------------------------------------------------------------------------- */

typedef struct stopper {
    sl_etcd_watch *w;
    int calls;
} stopper;

static void stop_inside(void *ud, const sl_etcd_event *ev, size_t n)
{
    (void)ev;
    (void)n;
    stopper *s = ud;
    s->calls++;
    sl_etcd_watch_stop(s->w);
}

TEST_IMPL(etcd_watch_stop_inside)
{
    /* Issue 13, 6: a watch stopped from inside its own on_events (a use after free before;
     * AddressSanitizer sees it), two watches on one revision of 12 events. */
    etcd_fx fx;
    etcd_fx_start(&fx);
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_etcd *e = client(&loop, fx.endpoint, (sl_etcd_config){0});
    static stopper s1, s2;
    sl_etcd_watch_handlers wh = {.on_events = stop_inside};
    s1.w = sl_etcd_watch_start(e, "si/", true, 0, &wh, &s1);
    s2.w = sl_etcd_watch_start(e, "si/", true, 0, &wh, &s2);
    ASSERT(WAIT_FOR(&loop, sl_etcd_watch_live(s1.w) && sl_etcd_watch_live(s2.w), 5000));
    /* One revision of 12 values of 100 KB. */
    static char blob[100001];  /* 12 of them: 1.2 MB, under the request limit */
    memset(blob, 'x', sizeof blob - 1);
    sl_etcd_txn_op ops[16];
    char keys[16][16];
    for (int i = 0; i < 12; i++) {
        snprintf(keys[i], sizeof keys[i], "si/%02d", i);
        ops[i] = (sl_etcd_txn_op){.kind = SL_TXN_PUT, .key = keys[i], .value = blob,
                                  .value_len = sizeof blob - 1};
    }
    got g;
    uv_loop_t *lp = &loop;
    {
        uv_loop_t *loop = lp;
        CALL(sl_etcd_txn(e, NULL, 0, ops, 12, NULL, 0, etcd_fx_on_result, &g), g);
        ASSERT_EQ(g.r.status.code, 0);
        CALL(sl_etcd_put(e, "si/more", "1", 1, 0, false, etcd_fx_on_result, &g), g);
    }
    ASSERT(WAIT_FOR(&loop, s1.calls && s2.calls, 5000));
    run_ms(&loop, 300);
    ASSERT_EQ(s1.calls, 1);
    ASSERT_EQ(s2.calls, 1);
    sl_etcd_free(e);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    etcd_fx_cleanup(&fx);
    return 0;
}

/* A key of about len bytes under prefix: prefix, then i, then 'k' up to len. */
static void long_key(char *out, size_t len, const char *prefix, int i)
{
    int n = snprintf(out, len + 1, "%s%05d/", prefix, i);
    memset(out + n, 'k', len - (size_t)n);
    out[len] = '\0';
}

TEST_IMPL(etcd_long_keys)
{
    /* Issue 13, 6: keys of 1-2 KiB under a prefix of 1,100 bytes: a mirror lists them over
     * two pages (the first page's last key is over 1,024 bytes), sweeps long keys deleted
     * while it was cut off, and watches the long prefix; a prefix range and delete work. */
    static cut_world c;
    static char prefix[1200], key[2200];
    memset(prefix, 'p', 1100);
    memcpy(prefix, "L/", 2);
    prefix[1100] = '/';
    prefix[1101] = '\0';
    cut_up(&c, prefix);
    uv_loop_t *loop = &c.loop;
    /* 1,050 keys (the mirror's pages hold 1,000), 32 a txn. */
    sl_etcd_txn_op ops[32];
    static char keys[32][2200];
    got g;
    for (int i = 0; i < 1050;) {
        int n = 0;
        for (; n < 32 && i < 1050; n++, i++) {
            long_key(keys[n], i % 2 ? 2048 : 1200, prefix, i);
            ops[n] = (sl_etcd_txn_op){.kind = SL_TXN_PUT, .key = keys[n], .value = "v",
                                      .value_len = 1};
        }
        CALL(sl_etcd_txn(c.w, NULL, 0, ops, (size_t)n, NULL, 0, etcd_fx_on_result, &g), g);
        ASSERT_EQ(g.r.status.code, 0);
    }
    int64_t rev = g.r.revision;
    bool listed = WAIT_FOR(loop, mstats(c.mi).synced && mstats(c.mi).revision >= rev, 10000);
    fprintf(stderr, "mirror: %zu keys at %lld (etcd %lld)\n", mstats(c.mi).keys,
            (long long)mstats(c.mi).revision, (long long)rev);
    ASSERT(listed);
    ASSERT_EQ(mstats(c.mi).keys, 1050);
    /* Cut off: a long sub-prefix deleted, the history compacted; back: swept. */
    cut_off(&c);
    char sub[1200];
    snprintf(sub, sizeof sub, "%s00", prefix);         /* keys 0 .. 999 */
    CALL(sl_etcd_delete(c.w, sub, true, false, etcd_fx_on_result, &g), g);
    ASSERT_EQ(g.r.status.code, 0);
    ASSERT_EQ(g.r.deleted, 1000);
    long_key(key, 1500, prefix, 4000);
    rev = put(loop, c.w, key, "while cut off");
    compact(c.fx.endpoint, rev);        /* the delete's revision is gone */
    etcd_proxy_isolate(c.px, 0, false);
    ASSERT(WAIT_FOR(loop, mstats(c.mi).resyncs == 1 && mstats(c.mi).synced &&
                              mstats(c.mi).revision >= rev, 8000));
    ASSERT_EQ(mstats(c.mi).keys, 51);
    /* Live: the watch on the long prefix delivers. */
    long_key(key, 2000, prefix, 5000);
    rev = put(loop, c.w, key, "live");
    ASSERT(WAIT_FOR(loop, mstats(c.mi).revision >= rev, 5000));
    ASSERT_EQ(mstats(c.mi).keys, 52);
    same_as_etcd(loop, c.w, prefix, &c.mm);
    cut_down(&c);
    return 0;
}

/* A listener that accepts and closes at once, counting connections. */
typedef struct closer {
    uv_tcp_t tcp;
    int accepts;
} closer;

static void closer_conn(uv_stream_t *s, int status)
{
    closer *cl = (closer *)s;
    if (status < 0)
        return;
    uv_tcp_t *c = malloc(sizeof *c);
    ASSERT(c);
    uv_tcp_init(s->loop, c);
    if (uv_accept(s, (uv_stream_t *)c) == 0)
        cl->accepts++;
    uv_close((uv_handle_t *)c, (uv_close_cb)free);
}

TEST_IMPL(etcd_backoff_accept_close)
{
    /* Issue 13, 6: a peer that accepts and closes at once: the backoff grows (it was reset
     * by each TCP connect, so the client came back every 50 ms). */
    uv_loop_t loop;
    uv_loop_init(&loop);
    static closer cl;
    uv_tcp_init(&loop, &cl.tcp);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    ASSERT_EQ(uv_tcp_bind(&cl.tcp, (const struct sockaddr *)&sa, 0), 0);
    ASSERT_EQ(uv_listen((uv_stream_t *)&cl.tcp, 16, closer_conn), 0);
    int len = sizeof sa;
    uv_tcp_getsockname(&cl.tcp, (struct sockaddr *)&sa, &len);
    char ep[32];
    snprintf(ep, sizeof ep, "127.0.0.1:%d", ntohs(sa.sin_port));
    sl_etcd *e = client(&loop, ep, (sl_etcd_config){0});
    run_ms(&loop, 2000);
    sl_etcd_health h;
    sl_etcd_health_get(e, &h);
    fprintf(stderr, "%d connections in 2 s; %s: %s\n", cl.accepts, sl_etcd_state_name(h.state),
            h.reason);
    ASSERT(cl.accepts >= 3 && cl.accepts <= 10);  /* 50, 100, 200, 400, 800 ms (+-20 %) */
    ASSERT(h.state == SL_ETCD_DISCONNECTED);
    sl_etcd_free(e);
    uv_close((uv_handle_t *)&cl.tcp, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    return 0;
}

TEST_IMPL(etcd_host_names)
{
    /* Issue 13, 6: an endpoint given as a host name connects (getaddrinfo); one that does
     * not resolve is skipped like a dead one. */
    etcd_fx fx;
    etcd_fx_start(&fx);
    uv_loop_t loop;
    uv_loop_init(&loop);
    char eps[128];
    snprintf(eps, sizeof eps, "no-such-host.invalid:2379,localhost:%d", fx.client_port);
    sl_etcd *e = client(&loop, eps, (sl_etcd_config){.backoff_min_ms = 20});
    got g;
    uv_loop_t *lp = &loop;
    {
        uv_loop_t *loop = lp;
        ASSERT(WAIT_FOR(loop, sl_etcd_connected(e), 5000));
        CALL(sl_etcd_put(e, "hn", "1", 1, 0, false, etcd_fx_on_result, &g), g);
        ASSERT_EQ(g.r.status.code, 0);
    }
    sl_etcd_health h;
    sl_etcd_health_get(e, &h);
    ASSERT(h.state == SL_ETCD_CONNECTED);
    ASSERT(strncmp(h.endpoint, "localhost:", 10) == 0);
    sl_etcd_free(e);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    etcd_fx_cleanup(&fx);
    return 0;
}

/* ---- a cluster of three, one member partitioned ------------------------------------------- */

/* Polls (running the loop meanwhile) until member i sees `want` as leader (-1: none; -2:
 * any member); returns the leader seen, or asserts after ms. */
static int wait_leader(uv_loop_t *loop, const etcd_cluster *cl, int i, int want, int ms)
{
    uint64_t end = uv_now(loop) + (uint64_t)ms;
    for (;;) {
        int l = etcd_cluster_leader(cl, i);
        if (l == want || (want == -2 && l >= 0))
            return l;
        if (uv_now(loop) > end) {
            fprintf(stderr, "member %d sees leader %d, wanted %d\n", i, l, want);
            ASSERT(0);
        }
        run_ms(loop, 20);
    }
}

/* The lease's owner: puts its key under each new lease. */
typedef struct owner {
    sl_etcd *e;
    int64_t id;
    int alive, lost;
} owner;

static void own_lease(void *ud, sl_etcd_lease *l, int64_t id, bool alive)
{
    (void)l;
    owner *o = ud;
    if (!alive) {
        o->lost++;
        o->id = 0;
        return;
    }
    o->alive++;
    o->id = id;
    sl_etcd_put(o->e, "c/lease", "mine", 4, id, false, NULL, NULL);
}

/* stderr goes to a file while a phase runs, to count the client's log lines (a failed
 * ASSERT meanwhile would take the lines with it: assert after capture_end). */
typedef struct capture {
    int saved;
    char path[64];
} capture;

static void capture_start(capture *c)
{
    snprintf(c->path, sizeof c->path, "/tmp/sl-etcd-log-XXXXXX");
    int fd = mkstemp(c->path);
    ASSERT(fd >= 0);
    fflush(stderr);
    c->saved = dup(2);
    dup2(fd, 2);
    close(fd);
}

/* Restores stderr, copies the first lines there, and returns how many lines were logged. */
static int capture_end(capture *c, const char *phase)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    FILE *f = fopen(c->path, "r");
    ASSERT(f);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (++n <= 8)
            fprintf(stderr, "  [%s] %s", phase, line);
    fclose(f);
    unlink(c->path);
    fprintf(stderr, "  [%s] %d lines logged\n", phase, n);
    return n;
}

/* Writes c/kNN for NN in [from, to) through w, retrying; the last revision. */
static int64_t cl_writes(uv_loop_t *loop, sl_etcd *w, int from, int to, const char *v)
{
    int64_t rev = 0;
    char key[32];
    for (int i = from; i < to; i++) {
        snprintf(key, sizeof key, "c/k%02d", i);
        rev = put(loop, w, key, v);
    }
    return rev;
}

static sl_etcd_health health_of(sl_etcd *e)
{
    sl_etcd_health h;
    sl_etcd_health_get(e, &h);
    return h;
}

TEST_IMPL(etcd_cluster_partition)
{
    /* Issue 13, 3 and 7: three members on loopback, peer traffic through the proxy. A
     * member partitioned from the others and listed first: the client moves off it at once
     * (it refuses the hasleader probe) and the mirror and a kept lease work; the leader
     * partitioned: the cluster elects another, the client follows; two partitioned (no
     * quorum anywhere): the client says so, logs a few lines (not thousands), and when the
     * partitions heal everything ends equal to etcd. */
    static etcd_cluster cl;
    etcd_cluster_start(&cl, 3);
    uv_loop_t loop;
    uv_loop_init(&loop);
    int leader = wait_leader(&loop, &cl, 0, -2, 5000);
    int p = (leader + 1) % 3, a = (p + 1) % 3, b = (p + 2) % 3;
    etcd_proxy_isolate(cl.proxy, p, true);
    wait_leader(&loop, &cl, p, -1, 5000);
    char all[128], first_p[128];
    snprintf(all, sizeof all, "%s,%s,%s", cl.endpoint[a], cl.endpoint[b], cl.endpoint[p]);
    snprintf(first_p, sizeof first_p, "%s,%s,%s", cl.endpoint[p], cl.endpoint[a],
             cl.endpoint[b]);
    sl_etcd_config fast = {.timeout_ms = 1000, .probe_interval_ms = 500,
                           .backoff_min_ms = 50, .backoff_max_ms = 500};
    sl_etcd *w = client(&loop, all, fast);

    /* 1. The partitioned member first in the list. */
    capture cap;
    capture_start(&cap);
    uint64_t t0 = uv_now(&loop);
    sl_etcd *e = client(&loop, first_p, fast);
    static model mm;
    sl_etcd_mirror *mi = mirror_into(e, "c/", &mm);
    static owner o;
    o.e = e;
    sl_etcd_lease *l = sl_etcd_lease_keep(e, 3, own_lease, &o);
    bool moved = WAIT_FOR(&loop, health_of(e).state == SL_ETCD_CONNECTED &&
                                     health_of(e).endpoint_index != 0, 5000);
    uint64_t t_move = uv_now(&loop) - t0;
    int64_t rev = cl_writes(&loop, w, 0, 20, "a");
    bool synced = WAIT_FOR(&loop, mstats(mi).synced && mstats(mi).revision >= rev && o.id, 5000);
    int lines = capture_end(&cap, "partitioned member first");
    fprintf(stderr, "moved off the partitioned member in %llu ms (lease %llx, lost %d)\n",
            (unsigned long long)t_move, (unsigned long long)o.id, o.lost);
    ASSERT(synced);
    ASSERT(moved);
    ASSERT(t_move < 2000);
    ASSERT(lines < 20);
    same_as_etcd(&loop, w, "c/", &mm);
    ASSERT(o.id != 0);

    /* 2. The partition heals; then the leader is partitioned. */
    etcd_proxy_isolate(cl.proxy, p, false);
    wait_leader(&loop, &cl, p, -2, 5000);
    leader = wait_leader(&loop, &cl, a, -2, 5000);
    capture_start(&cap);
    etcd_proxy_isolate(cl.proxy, leader, true);
    t0 = uv_now(&loop);
    rev = cl_writes(&loop, w, 10, 30, "b");     /* (its asserts would lose the capture) */
    moved = WAIT_FOR(&loop, health_of(e).state == SL_ETCD_CONNECTED &&
                                strcmp(health_of(e).endpoint, cl.endpoint[leader]) != 0 &&
                                mstats(mi).revision >= rev, 8000);
    t_move = uv_now(&loop) - t0;
    lines = capture_end(&cap, "leader partitioned");
    fprintf(stderr, "with the leader partitioned, caught up in %llu ms\n",
            (unsigned long long)t_move);
    ASSERT(moved);
    ASSERT(lines < 20);
    same_as_etcd(&loop, w, "c/", &mm);

    /* 3. A second member partitioned: no quorum anywhere. */
    int second = (leader + 1) % 3;
    capture_start(&cap);
    etcd_proxy_isolate(cl.proxy, second, true);
    run_ms(&loop, 3000);
    sl_etcd_health h = health_of(e);
    lines = capture_end(&cap, "no quorum");
    fprintf(stderr, "without quorum: %s: %s\n", sl_etcd_state_name(h.state), h.reason);
    ASSERT(h.state != SL_ETCD_CONNECTED);
    ASSERT(lines < 20);

    /* 4. Everything heals: the mirror and the lease end equal to etcd. */
    etcd_proxy_isolate(cl.proxy, leader, false);
    etcd_proxy_isolate(cl.proxy, second, false);
    rev = cl_writes(&loop, w, 25, 40, "c");
    ASSERT(WAIT_FOR(&loop, health_of(e).state == SL_ETCD_CONNECTED &&
                               mstats(mi).revision >= rev && o.id != 0, 8000));
    run_ms(&loop, 3500);                /* past the lease's TTL: kept alive */
    ASSERT(o.id != 0 && o.id == sl_etcd_lease_id(l));
    ASSERT(sl_etcd_lease_ttl_left_ms(l) > 0);
    got g;
    uv_loop_t *lp = &loop;
    {
        uv_loop_t *loop = lp;
        CALL(sl_etcd_put(w, "c/lease2", "x", 1, o.id, false, etcd_fx_on_result, &g), g);
        ASSERT_EQ(g.r.status.code, 0);      /* etcd has the lease */
    }
    rev = g.r.revision;
    ASSERT(WAIT_FOR(&loop, mstats(mi).revision >= rev, 5000));
    same_as_etcd(&loop, w, "c/", &mm);
    ASSERT(model_find(&mm, "c/lease", 7, false) != NULL);
    h = health_of(e);
    fprintf(stderr, "at the end: %s: %s; switches %llu, endpoint failures %llu, watch reopens "
            "%llu, lease lost %d times\n", sl_etcd_state_name(h.state), h.reason,
            (unsigned long long)h.switches, (unsigned long long)h.endpoint_failures,
            (unsigned long long)h.watch_reopens, o.lost);

    sl_etcd_lease_release(l, true);
    sl_etcd_mirror_stop(mi);
    sl_etcd_free(e);
    sl_etcd_free(w);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    model_free(&mm);
    etcd_cluster_cleanup(&cl);
    return 0;
}

/* ---- health ------------------------------------------------------------------------------- */

static sl_etcd_health mirror_health(const sl_etcd_mirror *mi)
{
    sl_etcd_health h;
    sl_etcd_mirror_health(mi, &h);
    return h;
}

TEST_IMPL(etcd_health)
{
    /* Issue 13, 4: the state says what works. Nothing listening: DISCONNECTED; etcd up but
     * the mirror's first list not done: DEGRADED; all working: CONNECTED; etcd paused
     * (SIGSTOP: the socket stays open, sl_etcd_connected said true throughout): not
     * CONNECTED within a probe interval and a deadline; resumed: CONNECTED again, with the
     * figures (head revision, lag, TTL left of a kept lease). */
    etcd_fx fx;
    etcd_fx_start(&fx);
    etcd_fx_stop(&fx, false);
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_etcd *e = client(&loop, fx.endpoint, (sl_etcd_config){.timeout_ms = 500,
                                                             .probe_interval_ms = 300,
                                                             .backoff_max_ms = 200});
    static model mm;
    sl_etcd_mirror *mi = mirror_into(e, "hl/", &mm);
    static owner o;
    o.e = e;
    sl_etcd_lease *l = sl_etcd_lease_keep(e, 3, own_lease, &o);
    run_ms(&loop, 300);
    sl_etcd_health h = mirror_health(mi);
    fprintf(stderr, "etcd down: %s: %s\n", sl_etcd_state_name(h.state), h.reason);
    ASSERT(h.state == SL_ETCD_DISCONNECTED);
    ASSERT(mstats(mi).revision == 0 && !mstats(mi).synced);

    etcd_fx_restart(&fx);
    ASSERT(WAIT_FOR(&loop, mirror_health(mi).state == SL_ETCD_CONNECTED, 5000));
    ASSERT(mstats(mi).synced && mstats(mi).watching);
    int64_t rev = put(&loop, e, "hl/a", "1");
    ASSERT(WAIT_FOR(&loop, mstats(mi).revision >= rev && o.id, 5000));
    h = mirror_health(mi);
    fprintf(stderr, "working: %s: %s; head %lld, mirror %lld, lease TTL left %lld ms\n",
            sl_etcd_state_name(h.state), h.reason, (long long)h.head_revision,
            (long long)mstats(mi).revision, (long long)sl_etcd_lease_ttl_left_ms(l));
    ASSERT(h.state == SL_ETCD_CONNECTED);
    ASSERT(h.head_revision >= rev && mstats(mi).head_revision >= rev);
    ASSERT(sl_etcd_lease_ttl_left_ms(l) > 1000);

    /* Paused: the probe's Range misses its deadline. */
    kill(fx.pid, SIGSTOP);
    uint64_t t0 = uv_now(&loop);
    bool noticed = WAIT_FOR(&loop, mirror_health(mi).state != SL_ETCD_CONNECTED, 5000);
    uint64_t took = uv_now(&loop) - t0;
    h = mirror_health(mi);
    fprintf(stderr, "paused: %s after %llu ms: %s\n", sl_etcd_state_name(h.state),
            (unsigned long long)took, h.reason);
    kill(fx.pid, SIGCONT);
    ASSERT(noticed);
    ASSERT(took < 1500);     /* a probe interval (300) + the deadline (500), and some */
    ASSERT(WAIT_FOR(&loop, mirror_health(mi).state == SL_ETCD_CONNECTED, 5000));
    rev = put(&loop, e, "hl/b", "2");
    ASSERT(WAIT_FOR(&loop, mstats(mi).revision >= rev, 5000));
    same_as_etcd(&loop, e, "hl/", &mm);

    sl_etcd_lease_release(l, false);
    sl_etcd_mirror_stop(mi);
    sl_etcd_free(e);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    model_free(&mm);
    etcd_fx_cleanup(&fx);
    return 0;
}
