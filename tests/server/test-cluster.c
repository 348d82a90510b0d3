/*
 * test-cluster.c: several sightline nodes on one etcd (README "Running a cluster"): every
 * space served by exactly one node, spread by capacity; a client on the wrong node is told
 * where (`moved`, `where`); a node killed (-9) or paused past its lease has its spaces
 * served elsewhere within two lease TTLs; the nodes' ownership logs never overlap.
 */
#include "test.h"

#include "fixtures/cluster_fixture.h"
#include "proto/client.h"
#include "proto/cluster_client.h"

#include "base/clock.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
    ASSERT(ctl_until(&cl.n[0], "cluster", "lease ttl left ", buf, sizeof buf));
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

    /* SIGSTOP of another owner past its lease, then SIGCONT. A client of the paused node,
     * with two entities that see each other in one of its spaces, then gets no tick frame of
     * the old epoch from it and no `ok`: its move is refused (moved or not_owner). */
    int paused = owner[0] == victim ? owner[2] : owner[0];
    int ps = owner[0] == victim ? 2 : 0;
    char psname[16];
    snprintf(psname, sizeof psname, "s%d", ps);
    sl_client *pc = connect_to(&cl.n[paused]);
    sl_client_add(pc, psname, 500, 50, 50, 20, 11);
    sl_client_add(pc, psname, 501, 55, 50, 20, 12);
    expect_ok(pc, 11);
    expect_ok(pc, 12);
    sl_client_frame f;
    uint64_t old_epoch = 0;
    for (int k = 0; k < 20 && !old_epoch; k++)       /* the enters, and the epoch */
        if (sl_client_wait(pc, "tick", 0, &f, 100) == 1)
            old_epoch = sl_frame_u64(&f, "epoch");
    ASSERT(old_epoch > 0);
    while (sl_client_next(pc, &f, 200) == 1)          /* nothing more comes without moves */
        ;
    kill(cl.n[paused].pid, SIGSTOP);
    cl.down[paused] = true;
    double stopped = sl_now_ms();
    ASSERT(all_served(&cl, owner, 5000));
    fprintf(stderr, "failover after SIGSTOP: every space served again within %.0f ms\n",
            sl_now_ms() - stopped);
    kill(cl.n[paused].pid, SIGCONT);
    cl.down[paused] = false;
    sl_client_move(pc, psname, 500, 80, 50, 13);      /* would make a leave */
    bool answered = false;
    for (int k = 0; k < 50 && !answered; k++) {
        int rc = sl_client_next(pc, &f, 100);
        if (rc < 0)
            break;                                  /* (closed: also no stale frame) */
        if (rc != 1)
            continue;
        char code[32] = "";
        ASSERT(!sl_frame_is(&f, "ok"));
        ASSERT(!(sl_frame_is(&f, "tick") && sl_frame_u64(&f, "epoch") == old_epoch));
        if (sl_frame_is(&f, "error") && sl_frame_u64(&f, "rid") == 13) {
            sl_frame_str(&f, "code", code, sizeof code);
            ASSERT(!strcmp(code, "moved") || !strcmp(code, "not_owner"));
            answered = true;
        }
    }
    ASSERT(answered);
    sl_client_close(pc);
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

/* ---- the cluster client (proto/cluster_client.h) ----------------------------------------- */

/* Starts etcd and the three nodes with spaces s0..s5 (cluster_up); owner[]: by which node. */
static void cc_cluster_up(cluster *cl, int *owner)
{
    memset(cl, 0, sizeof *cl);
    etcd_env_start(&cl->t);
    cluster_up(cl, owner);
}

static void cluster_down(cluster *cl)
{
    cluster_end(cl);
}

static sl_cclient *cclient_to(const srv *s)
{
    char seed[64], err[256];
    address(s, seed, sizeof seed);
    const char *seeds[] = {seed};
    sl_cclient *c = NULL;
    int rc = sl_cclient_open(&c, seeds, 1, NULL, err, sizeof err);
    if (rc)
        fprintf(stderr, "sl_cclient_open: %s\n", err);
    ASSERT_EQ(rc, 0);
    return c;
}

/* What a test keeps per space: its entities' places (ids 1..n) and the view from ticks. */
enum { CC_N = 40, CC_MAXRID = 4096 };
typedef struct cc_space {
    char name[16];
    float x[CC_N], y[CC_N];
    view v;
    uint64_t epoch;             /* from the last SL_CC_EPOCH */
    int epochs;                 /* SL_CC_EPOCH events seen */
} cc_space;

typedef struct cc_run {
    sl_cclient *c;
    cc_space *sp;
    int nsp;
    int answered[CC_MAXRID];    /* SL_CC_OK per caller rid */
    uint64_t next_rid;
    bool sent[CC_MAXRID];
    /* The documented gap (README "Moving a live space", the source dying after the snapshot):
     * a move committed while the nodes lost etcd leaves the entities parked on the target,
     * and the client's re-add there meets them (`exists`). When set, that is noted in `gap`
     * instead of failing. */
    bool tolerate_gap, gap;
    char gap_space[16];
} cc_run;

static cc_space *cc_find(cc_run *r, const char *name)
{
    for (int i = 0; i < r->nsp; i++)
        if (!strcmp(r->sp[i].name, name))
            return &r->sp[i];
    return NULL;
}

/* Reads the client's events for ms: an epoch change clears the space's view, a tick applies
 * to it (never of an epoch older than the last change), an ok counts, an error fails. */
static void cc_drain(cc_run *r, int ms)
{
    double end = sl_now_ms() + ms;
    for (;;) {
        int left = (int)(end - sl_now_ms());
        sl_cc_event ev;
        if (left <= 0 || sl_cclient_next(r->c, &ev, left) != 1)
            return;
        cc_space *s = cc_find(r, ev.space);
        switch (ev.kind) {
        case SL_CC_EPOCH:
            ASSERT(s != NULL);
            if (ev.epoch < s->epoch)
                fprintf(stderr, "%s: epoch %llu after %llu (node %s)\n", ev.space,
                        (unsigned long long)ev.epoch, (unsigned long long)s->epoch, ev.node);
            /* (A planned move whose claim failed after all: the same epoch again, to
             * rebuild.) */
            ASSERT(ev.epoch > s->epoch || (!ev.continued && ev.epoch == s->epoch));
            s->epoch = ev.epoch;
            s->epochs++;
            if (!ev.continued)
                memset(&s->v, 0, sizeof s->v);
            break;
        case SL_CC_TICK:
            ASSERT(s != NULL);
            ASSERT(ev.epoch > 0);
            ASSERT_U64_EQ(ev.epoch, s->epoch);      /* never an older epoch's frame */
            apply_tick(&s->v, ev.frame);
            break;
        case SL_CC_OK:
            ASSERT(ev.rid > 0 && ev.rid < CC_MAXRID && r->sent[ev.rid]);
            r->answered[ev.rid]++;
            ASSERT_EQ(r->answered[ev.rid], 1);      /* answered once */
            break;
        case SL_CC_ERROR:
            if (r->tolerate_gap && ((ev.rid == 0 && !strcmp(ev.code, "bad_items")) ||
                                    (r->gap && !strcmp(ev.space, r->gap_space)))) {
                r->gap = true;      /* (and the space's requests after it: not its own) */
                snprintf(r->gap_space, sizeof r->gap_space, "%s", ev.space);
                break;
            }
            fprintf(stderr, "unexpected error on %s (rid %llu): %s: %s\n", ev.space,
                    (unsigned long long)ev.rid, ev.code, ev.msg);
            ASSERT(0);
            break;
        default:
            break;
        }
    }
}

static uint64_t cc_rid(cc_run *r)
{
    uint64_t rid = ++r->next_rid;
    ASSERT(rid < CC_MAXRID);
    r->sent[rid] = true;
    return rid;
}

/* Adds CC_N entities (radius 20) at seeded places in every space: one `add` each in the
 * even spaces, one `adds` frame in the odd ones. */
static void cc_add_all(cc_run *r, uint32_t *seed)
{
    for (int k = 0; k < r->nsp; k++) {
        cc_space *s = &r->sp[k];
        sl_client_entity v[CC_N];
        for (int i = 0; i < CC_N; i++) {
            s->x[i] = (float)(next_rand(seed) >> 8 & 0xffff) / 65536.0f * 99;
            s->y[i] = (float)(next_rand(seed) >> 8 & 0xffff) / 65536.0f * 99;
            v[i] = (sl_client_entity){(uint64_t)i + 1, s->x[i], s->y[i], 20, 0,
                                      SL_CC_ALL_LAYERS};
            if (k % 2 == 0)
                ASSERT_EQ(sl_cclient_add(r->c, s->name, v[i].id, v[i].x, v[i].y, 20, 0,
                                         SL_CC_ALL_LAYERS, cc_rid(r)), 0);
        }
        if (k % 2)
            ASSERT_EQ(sl_cclient_adds(r->c, s->name, v, CC_N, cc_rid(r)), 0);
    }
}

/* One round: in every space a `moves` of all its entities, and one single `move`. */
static void cc_move_round(cc_run *r, uint32_t *seed)
{
    for (int k = 0; k < r->nsp; k++) {
        cc_space *s = &r->sp[k];
        uint64_t ids[CC_N];
        float xy[2 * CC_N];
        for (int i = 0; i < CC_N; i++) {
            random_step(&s->x[i], &s->y[i], next_rand(seed), 99);
            ids[i] = (uint64_t)i + 1;
            xy[2 * i] = s->x[i];
            xy[2 * i + 1] = s->y[i];
        }
        ASSERT_EQ(sl_cclient_moves(r->c, s->name, ids, xy, CC_N, cc_rid(r)), 0);
        int one = (int)(next_rand(seed) >> 8) % CC_N;
        random_step(&s->x[one], &s->y[one], next_rand(seed), 99);
        ASSERT_EQ(sl_cclient_move(r->c, s->name, (uint64_t)one + 1, s->x[one], s->y[one],
                                  cc_rid(r)), 0);
    }
}

/* n rounds, the client's events read for ms after each. */
static void cc_rounds(cc_run *r, uint32_t *seed, int n, int ms)
{
    for (int round = 0; round < n; round++) {
        cc_move_round(r, seed);
        cc_drain(r, ms);
    }
}

/* The end of a test of moves: no two nodes ever served a space at once (the ownership
 * logs), then the client, the cluster and the cluster secret go. */
static void moves_end(cluster *cl, cc_run *r)
{
    logs_never_overlap(cl);
    sl_cclient_close(r->c);
    cluster_down(cl);
    unsetenv("SIGHTLINE_CLUSTER_SECRET");
}

/* Whether every space's view is exact now. */
static bool cc_exact(const cc_run *r)
{
    for (int k = 0; k < r->nsp; k++)
        if (oracle_misses(r->sp[k].x, r->sp[k].y, CC_N, 20, &r->sp[k].v, 1))
            return false;
    return true;
}

/* Waits until nothing is pending, lets a few ticks pass (more while a view is not exact yet:
 * a loaded machine's ticks come late, but a lost event never comes), and checks every
 * space's view against brute force; every request sent was answered once. */
static void cc_settle_and_check(cc_run *r)
{
    for (double end = sl_now_ms() + 8000; sl_cclient_pending(r->c) && sl_now_ms() < end;)
        cc_drain(r, 20);
    ASSERT_EQ(sl_cclient_pending(r->c), 0);
    cc_drain(r, 300);
    double late = sl_now_ms();
    if (!cc_exact(r)) {
        while (!cc_exact(r) && sl_now_ms() < late + 5000)
            cc_drain(r, 50);
        fprintf(stderr, "the views came exact %.0f ms late\n", sl_now_ms() - late);
    }
    for (uint64_t rid = 1; rid <= r->next_rid; rid++)
        ASSERT_EQ(r->answered[rid], 1);
    for (int k = 0; k < r->nsp; k++) {
        size_t pairs = check_oracle(r->sp[k].x, r->sp[k].y, CC_N, 20, &r->sp[k].v, 1);
        ASSERT(pairs > 0);
        ASSERT_EQ(sl_cclient_entities(r->c, r->sp[k].name), CC_N);
    }
}

/* A run over the six spaces s0..s5, nothing seen yet. */
static void cc_run_init(cc_run *r, cc_space *sp)
{
    memset(r, 0, sizeof *r);
    memset(sp, 0, SPACES * sizeof *sp);
    r->sp = sp;
    r->nsp = SPACES;
    for (int s = 0; s < SPACES; s++)
        snprintf(sp[s].name, sizeof sp[s].name, "s%d", s);
}

/* A cluster client seeded with one node adds and moves entities in all six spaces (two on
 * each node, four of them elsewhere): everything is redirected to the owners (one
 * connection each), every request answered once, no error, and its views of every space,
 * from the tick frames it hands out, are exact against brute force. */
TEST_IMPL(server_cluster_client_redirects)
{
    cluster cl;
    int owner[SPACES];
    cc_cluster_up(&cl, owner);
    static cc_run r;
    static cc_space sp[SPACES];
    cc_run_init(&r, sp);
    int seed_node = owner[0];
    r.c = cclient_to(&cl.n[seed_node]);
    size_t open = 0;
    ASSERT_EQ(sl_cclient_nodes(r.c, &open), NODES);      /* from welcome.nodes */
    ASSERT_EQ(open, 1);
    uint32_t seed = 14;
    cc_add_all(&r, &seed);
    cc_rounds(&r, &seed, 25, 20);
    cc_settle_and_check(&r);
    const sl_cclient_stats *st = sl_cclient_stats_get(r.c);
    ASSERT_EQ(sl_cclient_nodes(r.c, &open), NODES);
    ASSERT_EQ(open, NODES);                              /* one connection per node */
    for (int s = 0; s < SPACES; s++) {
        char want[64];
        address(&cl.n[owner[s]], want, sizeof want);
        ASSERT(!strcmp(sl_cclient_owner(r.c, sp[s].name), want));
        ASSERT_EQ(sp[s].epochs, 1);
    }
    /* Each space not on the seed node was learnt by a `moved` answer to its where. */
    ASSERT_EQ(st->redirects, SPACES - count_owned(owner, seed_node));
    ASSERT_EQ(st->readds, 0);
    ASSERT_EQ(st->lost, 0);
    ASSERT_EQ(st->failed, 0);
    fprintf(stderr, "cluster client: %llu requests answered once, %llu redirects, %llu ticks "
            "dropped\n", (unsigned long long)r.next_rid, (unsigned long long)st->redirects,
            (unsigned long long)st->dropped_ticks);
    sl_cclient_close(r.c);
    cluster_down(&cl);
    return 0;
}

/* kill -9 of a node serving two of the client's spaces while the client moves its entities
 * in every space: the client re-adds them on the new owners within 2 TTLs + 1 s, with no
 * request lost or failed; tick frames of the old epoch never reach it after the change,
 * and its views, rebuilt from the new epoch's events, are exact against brute force. Then
 * a clean shutdown of another owner: the same, at once. */
TEST_IMPL(server_cluster_client_failover)
{
    cluster cl;
    int owner[SPACES];
    cc_cluster_up(&cl, owner);
    static cc_run r;
    static cc_space sp[SPACES];
    cc_run_init(&r, sp);
    int victim = owner[0], seed_node = (victim + 1) % NODES;
    r.c = cclient_to(&cl.n[seed_node]);
    uint32_t seed = 9;
    cc_add_all(&r, &seed);
    /* Settings that leave every pair as it is (a cap above the space's population, a
     * priority, a vision group, one LOD band of period 1) and a subscription: re-applied
     * with the re-add. */
    uint64_t set_rid[5] = {cc_rid(&r), cc_rid(&r), cc_rid(&r), cc_rid(&r), cc_rid(&r)};
    sl_client_band band = {1000, 1};        /* (every stay on time: nothing changes) */
    ASSERT_EQ(sl_cclient_cap(r.c, sp[0].name, 1, 1000, 1, set_rid[0]), 0);
    ASSERT_EQ(sl_cclient_priority(r.c, sp[0].name, 1, 2, set_rid[1]), 0);
    ASSERT_EQ(sl_cclient_group(r.c, sp[0].name, 1, 7, set_rid[2]), 0);
    ASSERT_EQ(sl_cclient_subscribe(r.c, sp[0].name, 7, true, set_rid[3]), 0);
    ASSERT_EQ(sl_cclient_lod(r.c, sp[0].name, 1, &band, 1, set_rid[4]), 0);
    cc_rounds(&r, &seed, 10, 20);
    cc_settle_and_check(&r);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(r.answered[set_rid[i]], 1);
    uint64_t before[SPACES];
    for (int s = 0; s < SPACES; s++)
        before[s] = sp[s].epoch;
    const sl_cclient_stats *st = sl_cclient_stats_get(r.c);

    kill(cl.n[victim].pid, SIGKILL);
    waitpid(cl.n[victim].pid, NULL, 0);
    cl.died_ms[victim] = sl_now_ms();
    cl.down[victim] = true;
    /* Keep moving (the victim's spaces' requests wait) until every entity of its spaces
     * is added again and answered. */
    uint64_t want_readds = (uint64_t)count_owned(owner, victim) * CC_N;
    double back = 0;
    for (int round = 0; round < 400 && !back; round++) {
        cc_move_round(&r, &seed);
        cc_drain(&r, 25);
        if (st->readds_ok >= want_readds)
            back = st->last_readd_ok_ms - cl.died_ms[victim];
    }
    ASSERT(back > 0);
    fprintf(stderr, "cluster client: %llu entities re-added on the new owners %.0f ms after "
            "kill -9 (bound 5000 ms)\n", (unsigned long long)st->readds_ok, back);
    ASSERT(back <= 5000);
    ASSERT_U64_EQ(st->readds_ok, want_readds);       /* once */
    cc_rounds(&r, &seed, 10, 20);
    cc_settle_and_check(&r);
    ASSERT_U64_EQ(st->settings_again, 5);
    char ent[1024];
    ASSERT_EQ(ctl(&cl.n[server_of(&cl, sp[0].name)], ent, sizeof ent, "entity s0 1"), 0);
    ASSERT(strstr(ent, "cap 1000 margin 1 candidates ") && strstr(ent, " priority 2\n") &&
           strstr(ent, "group 7\n") && strstr(ent, "lod 1000:1\n"));
    for (int s = 0; s < SPACES; s++) {
        char dead[64];
        address(&cl.n[victim], dead, sizeof dead);
        if (owner[s] == victim) {
            ASSERT(sp[s].epoch > before[s]);
            ASSERT(strcmp(sl_cclient_owner(r.c, sp[s].name), dead) != 0);
        } else {
            ASSERT_U64_EQ(sp[s].epoch, before[s]);
        }
    }
    ASSERT_EQ(st->failed, 0);

    /* A clean shutdown of another owner: its spaces are handed over at once (space.moved
     * or the connection closing), and the client follows them just as exactly. */
    int leaving = -1;
    all_served(&cl, owner, 5000);
    for (int s = 0; s < SPACES && leaving < 0; s++)
        if (owner[s] != seed_node)
            leaving = owner[s];
    if (leaving < 0)
        leaving = owner[0];
    for (int s = 0; s < SPACES; s++)
        before[s] = sp[s].epoch;
    uint64_t readds_before = st->readds_ok;
    srv_stop(&cl.n[leaving], false);
    cl.down[leaving] = true;
    double left = sl_now_ms();
    want_readds = (uint64_t)count_owned(owner, leaving) * CC_N;
    back = 0;
    for (int round = 0; round < 400 && !back; round++) {
        cc_move_round(&r, &seed);
        cc_drain(&r, 25);
        if (st->readds_ok - readds_before >= want_readds)
            back = st->last_readd_ok_ms - left;
    }
    ASSERT(back > 0);
    fprintf(stderr, "cluster client: %llu entities re-added %.0f ms after a clean shutdown\n",
            (unsigned long long)want_readds, back);
    cc_settle_and_check(&r);
    for (int s = 0; s < SPACES; s++)
        ASSERT(owner[s] == leaving ? sp[s].epoch > before[s] : sp[s].epoch == before[s]);
    ASSERT_EQ(st->failed, 0);
    fprintf(stderr, "cluster client: %llu requests answered once, %llu resent, %llu "
            "not_owner retries, %llu ticks of a former owner dropped\n",
            (unsigned long long)r.next_rid, (unsigned long long)st->resent,
            (unsigned long long)st->not_owner, (unsigned long long)st->dropped_ticks);
    sl_cclient_close(r.c);
    cluster_down(&cl);
    return 0;
}

/* A cluster client seeded at node seed_node, its entities added in every space and
 * settled (views exact). */
static void client_setup(cluster *cl, cc_run *r, cc_space *sp, int seed_node, uint32_t seed)
{
    cc_run_init(r, sp);
    r->c = cclient_to(&cl->n[seed_node]);
    cc_add_all(r, &seed);
    cc_settle_and_check(r);
}

/* Asks node `at` to move space to node `to`; waits until `sightctl cluster` on the space's
 * owner `from` lists the move's end (want: "moved SPACE" or "move SPACE ... FAILED"). */
static void move_and_wait(cluster *cl, cc_run *r, int at, int from, const char *space, int to,
                          const char *want, uint32_t *seed)
{
    char cmd[64], buf[8192];
    snprintf(cmd, sizeof cmd, "space move %s n%d", space, to);
    ASSERT_EQ(ctl(&cl->n[at], buf, sizeof buf, cmd), 0);
    for (double end = sl_now_ms() + 8000;; ) {
        cc_move_round(r, seed);         /* (the client keeps moving through it) */
        cc_drain(r, 30);
        ASSERT_EQ(ctl(&cl->n[from], buf, sizeof buf, "cluster"), 0);
        if (strstr(buf, want))
            return;
        if (sl_now_ms() > end) {
            fprintf(stderr, "no '%s' in:\n%s", want, buf);
            ASSERT(0);
        }
    }
}

/*
 * Moves that fail halfway leave the space served by its owner, nothing lost: a target with
 * another cluster secret (refused), a target killed -9 a moment before (unreachable, still
 * registered). Then a drain: every space of a node moves away (claimed by the client,
 * nothing added again), after which the node stops and nothing moves. Throughout, a client
 * moves entities in all six spaces; its views stay exact and every request is answered
 * once; the ownership logs never overlap.
 */
TEST_IMPL(server_move_drain_and_failures)
{
    static cluster cl;
    memset(&cl, 0, sizeof cl);
    cluster_etcd3_start(&cl);
    setenv("SIGHTLINE_CLUSTER_SECRET", "the cluster's secret", 1);
    start_node(&cl, 0);
    start_node(&cl, 1);
    setenv("SIGHTLINE_CLUSTER_SECRET", "another secret", 1);
    start_node(&cl, 2);
    define_spaces(&cl, 100, "");
    int owner[SPACES];
    ASSERT(all_served(&cl, owner, 8000));
    static cc_run r;
    static cc_space sp[SPACES];
    client_setup(&cl, &r, sp, 0, 21);
    uint32_t seed = 22;
    const sl_cclient_stats *st = sl_cclient_stats_get(r.c);
    int a = -1;                         /* a space of n0 */
    for (int s = 0; s < SPACES && a < 0; s++)
        if (owner[s] == 0)
            a = s;
    ASSERT(a >= 0);
    char name[16], want[64];
    snprintf(name, sizeof name, "s%d", a);

    /* n2 has another secret: it refuses the handoff; s<a> serves on n0 again. */
    snprintf(want, sizeof want, "move %s to n2 FAILED", name);
    move_and_wait(&cl, &r, 1, 0, name, 2, want, &seed);
    cc_settle_and_check(&r);
    ASSERT_EQ(server_of(&cl, name), 0);

    /* n2 killed -9 (registered until its lease runs out): unreachable; s<a> stays. */
    kill(cl.n[2].pid, SIGKILL);
    waitpid(cl.n[2].pid, NULL, 0);
    cl.died_ms[2] = sl_now_ms();
    cl.down[2] = true;
    snprintf(want, sizeof want, "move %s to n2 FAILED", name);
    char buf[8192];
    ASSERT_EQ(ctl(&cl.n[0], buf, sizeof buf, "cluster"), 0);
    char *first = strstr(buf, want);
    ASSERT(first != NULL);
    size_t failed_before = 0;
    for (char *f = first; f; f = strstr(f + 1, want))
        failed_before++;
    char cmd[64];
    snprintf(cmd, sizeof cmd, "space move %s n2", name);
    ASSERT_EQ(ctl(&cl.n[0], buf, sizeof buf, cmd), 0);
    for (double end = sl_now_ms() + 8000;;) {
        cc_move_round(&r, &seed);
        cc_drain(&r, 30);
        ASSERT_EQ(ctl(&cl.n[0], buf, sizeof buf, "cluster"), 0);
        size_t n = 0;
        for (char *f = strstr(buf, want); f; f = strstr(f + 1, want))
            n++;
        if (n > failed_before)
            break;
        ASSERT(sl_now_ms() < end);
    }
    /* n2's spaces fail over to n0 and n1 (the client adds them again there). */
    ASSERT(all_served(&cl, owner, 8000));
    cc_settle_and_check(&r);
    ASSERT_EQ(server_of(&cl, name), 0);

    /* Drain n1: its spaces move to n0, one at a time; the client claims each. */
    int on1 = count_owned(owner, 1);
    ASSERT(on1 > 0);
    uint64_t readds = st->readds, claims = st->claims_ok;
    ASSERT_EQ(ctl(&cl.n[0], buf, sizeof buf, "drain n1"), 0);
    for (double end = sl_now_ms() + 15000; count_owned(owner, 1) > 0;) {
        cc_move_round(&r, &seed);
        cc_drain(&r, 30);
        ASSERT(all_served(&cl, owner, 5000));
        ASSERT(sl_now_ms() < end);
    }
    cc_settle_and_check(&r);
    ASSERT_U64_EQ(st->claims_ok - claims, (uint64_t)on1);
    ASSERT_U64_EQ(st->readds, readds);          /* nothing added again */
    /* Drained, n1 stops: nothing of the client's moves. */
    srv_stop(&cl.n[1], false);
    cl.down[1] = true;
    cc_rounds(&r, &seed, 10, 30);
    cc_settle_and_check(&r);
    ASSERT_U64_EQ(st->readds, readds);
    ASSERT_EQ(st->failed, 0);
    ASSERT(all_served(&cl, owner, 1000));
    ASSERT_EQ(count_owned(owner, 0), SPACES);
    moves_end(&cl, &r);
    return 0;
}

/* A planned move carries what entities were given one by one: an own hysteresis, LOD bands
 * and being always relevant (the handoff's entity items; an entity without keeps the
 * space's), and pair relations (handoff.begin's): forced and always-relevant pairs from
 * across the map still seen there. */
TEST_IMPL(server_move_entity_settings)
{
    static cluster cl;
    memset(&cl, 0, sizeof cl);
    etcd_env_start(&cl.t);
    setenv("SIGHTLINE_CLUSTER_SECRET", "the cluster's secret", 1);
    int owner[SPACES];
    cluster_up(&cl, owner);
    int from = owner[0], to = (from + 1) % NODES;
    sl_client *c = connect_to(&cl.n[from]);
    sl_client_add(c, "s0", 1, 50, 50, 10, 0);
    sl_client_add(c, "s0", 2, 55, 50, 10, 0);
    sl_client_add(c, "s0", 3, 95, 95, 10, 0);
    sl_client_hysteresis(c, "s0", 1, 7, 1);
    expect_ok(c, 1);
    sl_client_band bands[2] = {{5, 1}, {50, 3}};
    sl_client_lod(c, "s0", 2, bands, 2, 2);
    expect_ok(c, 2);
    sl_client_relate(c, "s0", 1, 3, "force", 3);
    expect_ok(c, 3);
    sl_client_relate(c, "s0", 2, 1, "never", 4);
    expect_ok(c, 4);
    sl_client_add(c, "s0", 4, 5, 95, 0, 0);
    sl_client_always(c, "s0", 4, true, 5);
    expect_ok(c, 5);
    char buf[8192], cmd[64];
    snprintf(cmd, sizeof cmd, "space move s0 n%d", to);
    ASSERT_EQ(ctl(&cl.n[from], buf, sizeof buf, cmd), 0);
    ASSERT(ctl_until(&cl.n[to], "entity s0 1", "hysteresis 7 (its own)", buf, sizeof buf));
    ASSERT_EQ(ctl(&cl.n[to], buf, sizeof buf, "entity s0 2"), 0);
    ASSERT(strstr(buf, "hysteresis 0 owner") && strstr(buf, "lod 5:1 50:3\n"));
    ASSERT_EQ(ctl(&cl.n[to], buf, sizeof buf, "why s0 1 3"), 0);
    ASSERT(strstr(buf, "relation: force") && strstr(buf, "VISIBLE"));
    ASSERT_EQ(ctl(&cl.n[to], buf, sizeof buf, "why s0 2 1"), 0);
    ASSERT(strstr(buf, "relation: never") && strstr(buf, "not visible"));
    ASSERT_EQ(ctl(&cl.n[to], buf, sizeof buf, "entity s0 4"), 0);
    ASSERT(strstr(buf, " always-relevant ") != NULL);
    ASSERT_EQ(ctl(&cl.n[to], buf, sizeof buf, "why s0 2 4"), 0);     /* (95 apart) */
    ASSERT(strstr(buf, "VISIBLE") != NULL);
    sl_client_close(c);
    logs_never_overlap(&cl);
    cluster_end(&cl);
    unsetenv("SIGHTLINE_CLUSTER_SECRET");
    return 0;
}

/* With --rebalance, a node that joins a cluster whose spaces are all placed gets its share
 * by planned moves (one at a time per node): 3 / 3 on two nodes become 2 / 2 / 2, the
 * client claims the moved spaces (nothing added again), and its views stay exact. */
TEST_IMPL(server_move_rebalance_on_join)
{
    static cluster cl;
    memset(&cl, 0, sizeof cl);
    cluster_etcd3_start(&cl);
    setenv("SIGHTLINE_CLUSTER_SECRET", "the cluster's secret", 1);
    cl.extra = "--rebalance";
    start_node(&cl, 0);
    start_node(&cl, 1);
    cl.down[2] = true;
    define_spaces(&cl, 100, "");
    int owner[SPACES];
    ASSERT(all_served(&cl, owner, 8000));
    /* (the first placement may come out 4 / 2 on a busy machine: --rebalance evens it) */
    for (double end = sl_now_ms() + 8000; count_owned(owner, 0) != 3 && sl_now_ms() < end;)
        ASSERT(all_served(&cl, owner, 8000));
    ASSERT_EQ(count_owned(owner, 0), 3);
    static cc_run r;
    static cc_space sp[SPACES];
    client_setup(&cl, &r, sp, 0, 33);
    uint32_t seed = 34;
    const sl_cclient_stats *st = sl_cclient_stats_get(r.c);
    uint64_t readds = st->readds;
    start_node(&cl, 2);
    cl.down[2] = false;
    double joined = sl_now_ms();
    for (double end = joined + 25000; count_owned(owner, 2) < 2;) {
        cc_move_round(&r, &seed);
        cc_drain(&r, 50);
        ASSERT(all_served(&cl, owner, 5000));
        ASSERT(sl_now_ms() < end);
    }
    fprintf(stderr, "rebalanced to %d / %d / %d in %.1f s after the join\n",
            count_owned(owner, 0), count_owned(owner, 1), count_owned(owner, 2),
            (sl_now_ms() - joined) / 1e3);
    cc_rounds(&r, &seed, 20, 50);         /* (no further move: it is balanced) */
    cc_settle_and_check(&r);
    ASSERT(all_served(&cl, owner, 1000));
    for (int i = 0; i < NODES; i++)
        ASSERT_EQ(count_owned(owner, i), 2);
    ASSERT_U64_EQ(st->claims_ok, 2);
    ASSERT_U64_EQ(st->readds, readds);
    ASSERT_EQ(st->failed, 0);
    moves_end(&cl, &r);
    return 0;
}

/* The three nodes with the cluster secret, the six spaces, and a cluster client seeded at
 * node `seed_node` with entities in every space, settled (views exact). */
static void move_setup(cluster *cl, cc_run *r, cc_space *sp, int *owner, int seed_node)
{
    memset(cl, 0, sizeof *cl);
    cluster_etcd3_start(cl);
    setenv("SIGHTLINE_CLUSTER_SECRET", "the cluster's secret", 1);
    for (int i = 0; i < NODES; i++)
        start_node(cl, i);
    define_spaces(cl, 100, "");
    ASSERT(all_served(cl, owner, 8000));
    client_setup(cl, r, sp, seed_node, 5);
}

/* Waits until `sightctl cluster` on node i shows want (a move in progress). */
static void wait_cluster_says(cluster *cl, int i, const char *want)
{
    char buf[8192];
    for (double end = sl_now_ms() + 5000;; sleep_ms(5)) {
        ASSERT_EQ(ctl(&cl->n[i], buf, sizeof buf, "cluster"), 0);
        if (strstr(buf, want))
            return;
        ASSERT(sl_now_ms() < end);
    }
}

/*
 * The source dies in the middle of a move: the target is paused (SIGSTOP) so that the
 * source waits for it with the space frozen, the source is killed (-9), the target let go
 * on. The target holds a snapshot no commit will ever name: when the source's lease runs
 * out the space is placed again like any failover (the target must not serve the stale
 * snapshot), within 2 TTLs + 1 s of the kill; the client re-adds, its views are exact, the
 * ownership logs never overlap.
 */
TEST_IMPL(server_move_source_dies)
{
    static cluster cl;
    static cc_run r;
    static cc_space sp[SPACES];
    int owner[SPACES];
    move_setup(&cl, &r, sp, owner, 0);
    int from = owner[0], to = (from + 1) % NODES, other = (from + 2) % NODES;
    if (from == 0) {            /* (the client's seed stays alive) */
        int t = to;
        to = other;
        other = t;
    }
    char cmd[64], buf[8192];
    kill(cl.n[to].pid, SIGSTOP);
    snprintf(cmd, sizeof cmd, "space move s0 n%d", to);
    ASSERT_EQ(ctl(&cl.n[other], buf, sizeof buf, cmd), 0);
    wait_cluster_says(&cl, from, "move s0 to");         /* frozen, waiting for the target */
    kill(cl.n[from].pid, SIGKILL);
    waitpid(cl.n[from].pid, NULL, 0);
    cl.died_ms[from] = sl_now_ms();
    cl.down[from] = true;
    kill(cl.n[to].pid, SIGCONT);
    uint32_t seed = 6;
    double back = 0;
    for (int round = 0; round < 400 && !back; round++) {
        cc_move_round(&r, &seed);
        cc_drain(&r, 25);
        if (round % 4 == 0 && server_of(&cl, "s0") >= 0)
            back = sl_now_ms() - cl.died_ms[from];
    }
    fprintf(stderr, "source killed mid-move: s0 served again %.0f ms later by n%d\n", back,
            server_of(&cl, "s0"));
    ASSERT(back > 0 && back <= 5000);
    ASSERT(all_served(&cl, owner, 8000));
    cc_settle_and_check(&r);
    ASSERT_EQ(sl_cclient_stats_get(r.c)->failed, 0);
    moves_end(&cl, &r);
    return 0;
}

/*
 * etcd stops answering in the middle of a move (SIGSTOP of its 3 members once the target holds the
 * snapshot and the commit is about to go): the source cannot know whether its commit
 * applied, so it keeps the space frozen and asks again; every node's lease lapses too, so
 * nobody serves. etcd back (SIGCONT after 3 s): exactly one node serves s0 again within
 * 2 TTLs + 1 s, every space is served, the client's views are exact and the ownership logs
 * never overlap.
 */
TEST_IMPL(server_move_etcd_stops)
{
    static cluster cl;
    static cc_run r;
    static cc_space sp[SPACES];
    int owner[SPACES];
    move_setup(&cl, &r, sp, owner, 0);
    r.tolerate_gap = true;
    int from = owner[0], to = (from + 1) % NODES;
    char cmd[64], buf[8192];
    kill(cl.n[to].pid, SIGSTOP);                        /* holds the move before its commit */
    snprintf(cmd, sizeof cmd, "space move s0 n%d", to);
    ASSERT_EQ(ctl(&cl.n[from], buf, sizeof buf, cmd), 0);
    wait_cluster_says(&cl, from, "move s0 to");
    for (int i = 0; i < 3; i++)
        kill(cl.ec.pid[i], SIGSTOP);
    kill(cl.n[to].pid, SIGCONT);                        /* ready: the commit goes to etcd */
    uint32_t seed = 7;
    for (double end = sl_now_ms() + 3000; sl_now_ms() < end;) {
        cc_move_round(&r, &seed);
        cc_drain(&r, 25);
        int who = server_of(&cl, "s0");
        ASSERT(who != -2);
    }
    for (int i = 0; i < 3; i++)
        kill(cl.ec.pid[i], SIGCONT);
    double resumed = sl_now_ms(), back = 0;
    for (int round = 0; round < 400 && !back; round++) {
        cc_move_round(&r, &seed);
        cc_drain(&r, 25);
        if (round % 4 == 0 && all_served(&cl, owner, 1))
            back = sl_now_ms() - resumed;
    }
    ASSERT_EQ(ctl(&cl.n[from], buf, sizeof buf, "cluster"), 0);
    fprintf(stderr, "etcd stopped mid-move for 3 s: every space served again %.0f ms after it "
            "resumed; s0 on n%d (the move went to n%d)\n", back, owner[0], to);
    ASSERT(back > 0 && back <= 5000);
    if (r.gap) {
        /* (the commit reached etcd before the leases were revoked: a view the client cannot
         * rebuild yet; the spaces are served again all the same) */
        fprintf(stderr, "the move's commit landed during the outage: the client's re-add met "
                "the parked entities (the documented gap); views not compared\n");
    } else {
        cc_settle_and_check(&r);
        ASSERT_EQ(sl_cclient_stats_get(r.c)->failed, 0);
    }
    moves_end(&cl, &r);
    return 0;
}

/* A space whose definition cannot be built on a node (its scripts under that node's
 * --script-root do not load) is let go by that node at once and served by one that can. */
TEST_IMPL(server_cluster_unbuildable_space)
{
    etcd_env t;
    etcd_env_start(&t);
    char empty[64] = "/tmp/sl-badscripts-XXXXXX", dir[96], init[128];
    ASSERT(mkdtemp(empty) != NULL);
    snprintf(dir, sizeof dir, "%s/default", empty);
    ASSERT_EQ(mkdir(dir, 0700), 0);
    snprintf(init, sizeof init, "%s/init.lua", dir);
    put_file(init, "this is not lua\n");
    srv a, b;
    srv_start(&a, "--etcd", t.fx.endpoint, "--cluster", "u", "--node-id", "a", "--lease-ttl",
              "2", "--script-root", empty, NULL);
    srv_start(&b, "--etcd", t.fx.endpoint, "--cluster", "u", "--node-id", "b", "--lease-ttl",
              "2", NULL);
    char buf[8192], doc[512], key[64];
    ASSERT(ctl_until(&a, "cluster", "node b listen", buf, sizeof buf));
    for (int s = 0; s < 4; s++) {       /* some of them land on a first */
        snprintf(key, sizeof key, "/sightline/u/v1/spaces/x%d", s);
        snprintf(doc, sizeof doc, "{\"version\": \"1.0.0\", \"schema_hash\": \"%016llx\", "
                 "\"data\": {\"width\": 10, \"height\": 10, \"scripts\": \"default\"}}",
                 schema_hash());
        etcd_do_retry(&t, ETCD_PUT, key, doc);
    }
    for (int s = 0; s < 4; s++) {
        char want[32];
        snprintf(want, sizeof want, "x%d entities 0", s);
        ASSERT(ctl_until(&b, "spaces", want, buf, sizeof buf));
    }
    ASSERT_EQ(ctl(&a, buf, sizeof buf, "spaces"), 0);
    ASSERT(strstr(buf, "x0 entities") == NULL && strstr(buf, "x3 entities") == NULL);
    srv_stop(&a, false);
    srv_stop(&b, false);
    unlink(init);
    rmdir(dir);
    rmdir(empty);
    etcd_env_end(&t);
    return 0;
}
