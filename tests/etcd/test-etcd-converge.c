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

#define MAXK 512

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

/* The mirror's model holds exactly what etcd holds under prefix. */
static void same_as_etcd(uv_loop_t *loop, sl_etcd *e, const char *prefix, const model *mm)
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
        if (!t || t->mod != x->mod || strcmp(t->value, x->value))
            fprintf(stderr, "mirror has %.60s at %lld, etcd %s at %lld\n", x->key,
                    (long long)x->mod, t ? t->value : "nothing", t ? (long long)t->mod : 0LL);
        ASSERT(t && t->mod == x->mod && strcmp(t->value, x->value) == 0);
    }
    if (live != truth.n)
        fprintf(stderr, "mirror has %d keys, etcd %d\n", live, truth.n);
    ASSERT_EQ(live, truth.n);
    model_free(&truth);
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
