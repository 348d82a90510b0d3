/*
 * test-cluster-etcd.c: three sightline nodes on a 3-member etcd whose peer traffic goes
 * through a proxy the test controls (README "Running a cluster"): etcd's leader killed,
 * then its quorum lost and restored. Exclusivity holds throughout (the ownership logs never
 * overlap); while etcd has no quorum the nodes stop serving the cluster's spaces once their
 * leases are unsure, and every space is served again within two lease TTLs of quorum's
 * return.
 */
#include "test.h"

#include "fixtures/cluster_fixture.h"

#include "base/clock.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Whether no space is served by any node, waiting up to ms. */
static bool none_served(cluster *cl, int ms)
{
    for (double end = sl_now_ms() + ms; sl_now_ms() < end; sleep_ms(50)) {
        int served = 0;
        for (int s = 0; s < SPACES; s++) {
            char name[16];
            snprintf(name, sizeof name, "s%d", s);
            int who = server_of(cl, name);
            ASSERT(who != -2);
            served += who >= 0;
        }
        if (!served)
            return true;
    }
    return false;
}

TEST_IMPL(server_cluster_etcd_faults)
{
    etcd_cluster ec;
    etcd_cluster_start(&ec, 3);
    cluster cl;
    memset(&cl, 0, sizeof cl);
    char eps[128], err[256];
    snprintf(eps, sizeof eps, "%s,%s,%s", ec.endpoint[0], ec.endpoint[1], ec.endpoint[2]);
    cl.endpoints = eps;
    uv_loop_init(&cl.t.loop);
    sl_etcd_config cfg = {.endpoints = eps};
    ASSERT_EQ(sl_etcd_new(&cl.t.e, &cl.t.loop, &cfg, err, sizeof err), 0);
    int owner[SPACES];
    cluster_up(&cl, owner);

    /* etcd's leader dies: the two members left elect another; service goes on. */
    int leader = etcd_cluster_leader(&ec, 0);
    for (int i = 0; i < 100 && leader < 0; i++, sleep_ms(50))
        leader = etcd_cluster_leader(&ec, 0);
    ASSERT(leader >= 0);
    kill(ec.pid[leader], SIGKILL);
    waitpid(ec.pid[leader], NULL, 0);
    ec.pid[leader] = 0;
    sleep_ms(500);
    ASSERT(all_served(&cl, owner, 5000));

    /* Quorum lost (one of the two left partitioned): once their leases are unsure (TTL 2 s
     * less a tenth), no node serves a cluster space. */
    int cut = (leader + 1) % 3;
    etcd_proxy_isolate(ec.proxy, cut, true);
    double lost = sl_now_ms();
    ASSERT(none_served(&cl, 4000));
    fprintf(stderr, "quorum lost: every node stopped serving after %.0f ms\n",
            sl_now_ms() - lost);
    sleep_ms(1000);
    /* Quorum back: every space served again within two TTLs (+ 1 s). */
    etcd_proxy_isolate(ec.proxy, cut, false);
    double back = sl_now_ms();
    ASSERT(all_served(&cl, owner, 5000));
    fprintf(stderr, "quorum back: every space served again after %.0f ms\n",
            sl_now_ms() - back);
    sleep_ms(300);
    logs_never_overlap(&cl);
    for (int i = 0; i < NODES; i++) {
        srv_stop(&cl.n[i], false);
        unlink(cl.log[i]);
    }
    sl_etcd_free(cl.t.e);
    uv_run(&cl.t.loop, UV_RUN_DEFAULT);
    uv_loop_close(&cl.t.loop);
    etcd_cluster_cleanup(&ec);
    return 0;
}
