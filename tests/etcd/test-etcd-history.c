/*
 * test-etcd-history.c: the client's check that etcd's history did not change (a revision
 * or raft term going backwards) must not fire on a healthy etcd under load. A watch
 * response on the Watch stream can carry a newer revision than a Range answered a moment
 * later on the same connection (sent before that watch response arrived); the check used
 * to compare the Range's answer with the newest revision seen, and under a write burst it
 * "detected" a history reset every few hundred puts (each one a full list of the prefix).
 */
#include "test.h"

#include "etcd/etcd.h"
#include "etcd/mirror.h"
#include "fixtures/etcd_fixture.h"

#include <stdio.h>
#include <string.h>

typedef struct burst {
    sl_etcd *e;
    int next, inflight, acked, total;
} burst;

static void burst_put(burst *b);

static void on_put(void *ud, const sl_etcd_result *r)
{
    burst *b = ud;
    b->inflight--;
    b->acked += r->status.code == 0;
    burst_put(b);
}

static void burst_put(burst *b)
{
    if (b->next >= b->total)
        return;
    char key[32];
    snprintf(key, sizeof key, "h/%06d", b->next++);
    if (sl_etcd_put(b->e, key, "v", 1, 0, false, on_put, b) == 0)
        b->inflight++;
}

static void nothing(void *ud, const char *k, size_t kl, const uint8_t *v, size_t vl, int64_t m)
{
    (void)k, (void)kl, (void)v, (void)vl, (void)m;
    (*(uint64_t *)ud)++;
}

/* 6,000 puts, 64 in flight, from one client, while a mirror on a second client (probing
 * every 20 ms, so linearizable Ranges interleave with watch responses) follows them: no
 * history reset, no full list, every put delivered. */
TEST_IMPL(etcd_no_false_history_reset)
{
    etcd_fx fx;
    etcd_fx_start(&fx);
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    sl_etcd *w, *r;
    sl_etcd_config wc = {.endpoints = fx.endpoint};
    sl_etcd_config rc = {.endpoints = fx.endpoint, .probe_interval_ms = 20};
    ASSERT_EQ(sl_etcd_new(&w, &loop, &wc, err, sizeof err), 0);
    ASSERT_EQ(sl_etcd_new(&r, &loop, &rc, err, sizeof err), 0);
    uint64_t seen = 0;
    sl_etcd_mirror_handlers h = {.on_put = nothing};
    sl_etcd_mirror *m = sl_etcd_mirror_start(r, "h/", &h, &seen);
    burst b = {.e = w, .total = 6000};
    for (int i = 0; i < 64; i++)
        burst_put(&b);
    uint64_t end = uv_now(&loop) + 60000;
    while ((b.inflight > 0 || seen < (uint64_t)b.acked) && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT_EQ(b.acked, 6000);
    ASSERT_EQ(seen, 6000);
    sl_etcd_health hh;
    sl_etcd_health_get(r, &hh);
    sl_etcd_mirror_stats st;
    sl_etcd_mirror_get_stats(m, &st);
    if (hh.history_resets)
        fprintf(stderr, "history resets: %llu (full lists %llu)\n",
                (unsigned long long)hh.history_resets, (unsigned long long)st.full_resets);
    ASSERT_EQ(hh.history_resets, 0);
    ASSERT_EQ(st.full_resets, 0);
    sl_etcd_mirror_stop(m);
    sl_etcd_free(r);
    sl_etcd_free(w);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    etcd_fx_stop(&fx, false);
    etcd_fx_cleanup(&fx);
    return 0;
}
