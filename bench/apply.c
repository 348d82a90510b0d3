/*
 * apply.c: how fast the server applies etcd's static-entity documents (see apply.h).
 *
 * Two runs on one server with one 4096 x 4096 space, CPU time of this thread:
 * - unmerged: every change applied at once (sl_sync_config.merge false), as a burst of n
 *   distinct entities created, then n updates (a new position each);
 * - merged: 200 hot keys updated 1,000 times each, applied once per "tick" of 2,000
 *   changes, as the server does (only each key's last value counts).
 * Then the space must hold exactly the documents' entities at their last positions.
 */
#include "apply.h"

#include "base/rng.h"
#include "server/server.h"
#include "server/sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

static double cpu_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* The changes of a run, formatted before the clock starts: what the mirror would hand
 * over (key, value). */
typedef struct change {
    char key[32], doc[96];
    uint8_t kl, dl;
} change;

static void make(change *c, uint64_t id, sl_rng *rng)
{
    c->kl = (uint8_t)snprintf(c->key, sizeof c->key, "w/entities/%llu", (unsigned long long)id);
    c->dl = (uint8_t)snprintf(c->doc, sizeof c->doc, "{\"x\": %.2f, \"y\": %.2f, \"radius\": "
                              "20, \"props\": {\"kind\": \"tree\"}}",
                              (double)(sl_rng_float(rng) * 4000),
                              (double)(sl_rng_float(rng) * 4000));
}

static void put(sl_sync *s, const change *c, int64_t rev)
{
    sl_sync_put(s, c->key, c->kl, (const uint8_t *)c->doc, c->dl, rev);
}

static sl_sync *space_w(sl_server *srv, bool merge, int64_t *rev)
{
    sl_sync_config sc = {.static_grace_ms = 0, .merge = merge};
    sl_sync *s = sl_sync_new(srv, &sc);
    const char *def = "{\"version\": \"1.0.0\", \"schema_hash\": \"804a650955269821\", "
                      "\"data\": {\"width\": 4096, \"height\": 4096, \"cell\": 64}}";
    if (s)
        sl_sync_put(s, "w", 1, (const uint8_t *)def, strlen(def), ++*rev);
    if (s)
        sl_sync_apply(s);
    return s;
}

int bench_apply(uint32_t n, uint64_t seed, bool json)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_server_config cfg = {.listen_host = "127.0.0.1", .quiet = true, .tick_ms = 1e6};
    sl_server *srv;
    char err[256];
    if (sl_server_new(&srv, &loop, &cfg, err, sizeof err)) {
        fprintf(stderr, "apply: %s\n", err);
        return 1;
    }
    sl_rng rng;
    sl_rng_seed(&rng, seed);
    enum { HOT = 200, ROUNDS = 1000, WINDOW = 2000 };
    size_t nc = 2 * (size_t)n > (size_t)HOT * ROUNDS ? 2 * (size_t)n : (size_t)HOT * ROUNDS;
    change *ch = malloc(nc * sizeof *ch);
    if (!ch)
        return 1;
    for (uint32_t i = 0; i < 2 * n; i++)
        make(&ch[i], i % n + 1, &rng);
    int64_t rev = 0;
    sl_sync *s = space_w(srv, false, &rev);
    double t0 = cpu_ms();
    for (uint32_t i = 0; i < n; i++)
        put(s, &ch[i], ++rev);
    double t1 = cpu_ms();
    for (uint32_t i = n; i < 2 * n; i++)
        put(s, &ch[i], ++rev);
    double t2 = cpu_ms();
    sl_sync_stats st;
    sl_sync_get_stats(s, &st);
    int rc = st.entities == n && st.refused == 0 ? 0 : 1;
    sl_sync_free(s);
    sl_server_shutdown(srv);    /* a fresh server for the merged run */
    uv_run(&loop, UV_RUN_DEFAULT);
    sl_server_free(srv);
    if (sl_server_new(&srv, &loop, &cfg, err, sizeof err))
        return 1;
    s = space_w(srv, true, &rev);
    for (uint32_t k = 0; k < HOT * ROUNDS; k++)
        make(&ch[k], k % HOT + 1, &rng);
    double t3 = cpu_ms();
    for (uint32_t k = 0; k < HOT * ROUNDS; k++) {
        put(s, &ch[k], ++rev);
        if (k % WINDOW == WINDOW - 1)
            sl_sync_apply(s);
    }
    sl_sync_apply(s);
    double t4 = cpu_ms();
    sl_sync_get_stats(s, &st);
    rc |= st.entities == HOT && st.refused == 0 ? 0 : 1;
    double create = n / (t1 - t0) * 1e3, update = n / (t2 - t1) * 1e3;
    double merged = (double)HOT * ROUNDS / (t4 - t3) * 1e3;
    if (json)
        printf("{\"bench\": \"apply\", \"entities\": %u, \"create_per_s\": %.0f, "
               "\"update_per_s\": %.0f, \"merged_per_s\": %.0f, \"merged\": %llu, \"ok\": %s}\n",
               n, create, update, merged, (unsigned long long)st.merged, rc ? "false" : "true");
    else
        printf("apply (etcd documents, no etcd): %u entities: created %.0f/s, updated %.0f/s "
               "(unmerged, one core); 200 hot keys x 1000 updates merged per 2000-change "
               "tick: %.0f changes/s (%llu merged away); %s\n", n, create, update, merged,
               (unsigned long long)st.merged, rc ? "WRONG STATE" : "state exact");
    sl_sync_free(s);
    free(ch);
    sl_server_shutdown(srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    sl_server_free(srv);
    uv_loop_close(&loop);
    return rc;
}
