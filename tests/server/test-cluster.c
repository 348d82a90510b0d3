/*
 * test-cluster.c: several sightline nodes on one etcd (README "Running a cluster"): every
 * space served by exactly one node, spread by capacity; a client on the wrong node is told
 * where (`moved`, `where`); a node killed (-9) or paused past its lease has its spaces
 * served elsewhere within two lease TTLs; the nodes' ownership logs never overlap.
 */
#include "test.h"

#include "fixtures/cluster_fixture.h"
#include "proto/client.h"

#include "base/clock.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The address a node advertises. */
static void address(const srv *s, char *out, size_t len)
{
    snprintf(out, len, "127.0.0.1:%d", s->port);
}

/* A client of node `at` asks about space `name` served by node `owner`: `moved` naming the
 * owner's address and the epoch, for an add and for where; on the owner, where answers
 * itself and the add goes through; its tick frames carry the same epoch. */
static void redirected(cluster *cl, const char *name, int at, int owner)
{
    sl_client *c = connect_to(&cl->n[at]);
    sl_client_frame f;
    char want[64], got[64];
    address(&cl->n[owner], want, sizeof want);
    ASSERT_EQ(sl_client_add(c, name, 77, 10, 10, 5, 1), 0);
    ASSERT_EQ(sl_client_wait(c, "error", 1, &f, 2000), 1);
    ASSERT(!strcmp(sl_frame_str(&f, "code", got, sizeof got), "moved"));
    ASSERT(!strcmp(sl_frame_str(&f, "owner", got, sizeof got), want));
    uint64_t epoch = sl_frame_u64(&f, "epoch");
    ASSERT(epoch > 0);
    sl_client_close(c);
    /* The welcome names the live nodes. */
    sl_client *w;
    char err[256];
    ASSERT_EQ(sl_client_dial(&w, "127.0.0.1", cl->n[owner].port, err, sizeof err), 0);
    static const unsigned char hello[] = {0x82, 0xa1, 't', 0xa5, 'h', 'e', 'l', 'l', 'o',
                                          0xa1, 'v', 0x01};
    send_body(w, hello, sizeof hello);
    ASSERT_EQ(sl_client_wait(w, "welcome", 0, &f, 2000), 1);
    const msgpack_object *nodes = sl_frame_get(&f, "nodes");
    ASSERT(nodes && nodes->type == MSGPACK_OBJECT_ARRAY && nodes->via.array.size >= 2);
    sl_client_close(w);
    c = connect_to(&cl->n[owner]);
    ASSERT_EQ(sl_client_where(c, name, 2), 0);
    ASSERT_EQ(sl_client_wait(c, "where", 2, &f, 2000), 1);
    ASSERT(!strcmp(sl_frame_str(&f, "owner", got, sizeof got), want));
    ASSERT_EQ(sl_frame_u64(&f, "epoch"), epoch);
    ASSERT_EQ(sl_client_add(c, name, 77, 10, 10, 5, 3), 0);
    ASSERT_EQ(sl_client_add(c, name, 78, 12, 10, 5, 4), 0);
    expect_ok(c, 3);
    expect_ok(c, 4);
    ASSERT_EQ(sl_client_wait(c, "tick", 0, &f, 2000), 1);
    ASSERT_EQ(sl_frame_u64(&f, "epoch"), epoch);
    sl_client_close(c);
}

/* Three nodes (lease TTL 2 s), six spaces: spread two each; redirects; a node killed -9,
 * then one paused (SIGSTOP) past its lease and let go on: each time every space is served
 * again within two TTLs (+ 1 s), a static entity comes back on its space's new owner, the
 * paused node stops serving before another takes its spaces and comes back as a member;
 * a clean shutdown hands its spaces over at once; the ownership logs never overlap. */
TEST_IMPL(server_cluster_three_nodes)
{
    cluster cl;
    memset(&cl, 0, sizeof cl);
    etcd_env_start(&cl.t);
    int owner[SPACES];
    char key[96];
    cluster_up(&cl, owner);
    for (int i = 0; i < NODES; i++)
        ASSERT_EQ(count_owned(owner, i), SPACES / NODES);      /* the weighted share */
    char buf[8192];
    ASSERT_EQ(ctl(&cl.n[0], buf, sizeof buf, "cluster"), 0);
    ASSERT(strstr(buf, "node n1 listen") && strstr(buf, "space s0 owner n"));
    redirected(&cl, "s0", (owner[0] + 1) % NODES, owner[0]);

    /* A static entity of s1 (etcd's) is on its owner. */
    etcd_do_retry(&cl.t, ETCD_PUT, "/sightline/k/v1/spaces/s1/entities/9", "{\"x\": 5, \"y\": 5}");
    ASSERT(ctl_until(&cl.n[owner[1]], "entity s1 9", "x 5 y 5", buf, sizeof buf));

    /* kill -9 of the owner of s1: within 2 TTLs + 1 s everything is served again, and the
     * static entity is on s1's new owner by itself. */
    int victim = owner[1];
    kill(cl.n[victim].pid, SIGKILL);
    waitpid(cl.n[victim].pid, NULL, 0);
    cl.died_ms[victim] = sl_now_ms();
    cl.down[victim] = true;
    ASSERT(all_served(&cl, owner, 5000));
    double took = sl_now_ms() - cl.died_ms[victim];
    fprintf(stderr, "failover after kill -9: every space served again within %.0f ms\n", took);
    for (int s = 0; s < SPACES; s++)
        ASSERT(owner[s] != victim);
    ASSERT(ctl_until(&cl.n[owner[1]], "entity s1 9", "x 5 y 5", buf, sizeof buf));
    redirected(&cl, "s1", (owner[1] + 1) % NODES == victim ? (owner[1] + 2) % NODES
                                                           : (owner[1] + 1) % NODES, owner[1]);

    /* SIGSTOP of another owner past its lease, then SIGCONT. */
    int paused = owner[0] == victim ? owner[2] : owner[0];
    kill(cl.n[paused].pid, SIGSTOP);
    cl.down[paused] = true;
    double stopped = sl_now_ms();
    ASSERT(all_served(&cl, owner, 5000));
    fprintf(stderr, "failover after SIGSTOP: every space served again within %.0f ms\n",
            sl_now_ms() - stopped);
    kill(cl.n[paused].pid, SIGCONT);
    cl.down[paused] = false;
    /* It comes back as a member (its registry key again) and serves nothing it lost. */
    snprintf(key, sizeof key, "node n%d listen", paused);
    ASSERT(ctl_until(&cl.n[paused], "cluster", key, buf, sizeof buf));
    ASSERT(all_served(&cl, owner, 5000));

    /* A clean shutdown hands the node's spaces over at once (its lease revoked), well
     * within a TTL. */
    int leaving = owner[3];
    srv_stop(&cl.n[leaving], false);
    cl.down[leaving] = true;
    double left = sl_now_ms();
    ASSERT(all_served(&cl, owner, 5000));
    double handover = sl_now_ms() - left;
    fprintf(stderr, "clean shutdown: its spaces served elsewhere within %.0f ms\n", handover);
    ASSERT(handover < 1500);
    sleep_ms(500);
    logs_never_overlap(&cl);
    for (int i = 0; i < NODES; i++) {
        if (!cl.down[i])
            srv_stop(&cl.n[i], false);
        unlink(cl.log[i]);
    }
    etcd_env_end(&cl.t);
    return 0;
}
