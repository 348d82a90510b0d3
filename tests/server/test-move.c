/*
 * test-move.c: live spaces moved between nodes (README "Moving a live space"): the events
 * every client receives across a planned move are exactly those of a run without it; the
 * clients' sessions go on on the new owner (claimed, nothing added again); the ownership
 * logs never overlap.
 */
#include "test.h"

#include "fixtures/cluster_fixture.h"
#include "proto/client.h"
#include "proto/cluster_client.h"

#include "base/clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MOVERS 60
#define WATCHERS 30
#define ROUNDS 40
#define MAXEV 4096

/* The events one client received in one round, as sorted text lines. */
typedef struct round_events {
    char **line;
    size_t n, cap;
} round_events;

typedef struct client {
    sl_cclient *c;
    uint64_t seen_tick;         /* the highest tick number of its frames */
    round_events *rounds;       /* [ROUNDS + 1] */
    int epochs, continued;
} client;

static void note(round_events *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(round_events *r, const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->line = realloc(r->line, r->cap * sizeof *r->line);
        ASSERT(r->line != NULL);
    }
    r->line[r->n++] = strdup(buf);
}

/* A tick frame's events, into round r (region events too, when it has some). */
static void note_tick(round_events *r, const sl_client_frame *f)
{
    static const char *const keys[5] = {"enter", "leave", "stay", "region_enter",
                                        "region_leave"};
    for (int k = 0; k < 5; k++) {
        const msgpack_object *a = sl_frame_get(f, keys[k]);
        if (k >= 3 && !a)
            continue;
        ASSERT(a && a->type == MSGPACK_OBJECT_ARRAY);
        uint32_t step = k == 0 ? 4 : 2;
        for (uint32_t i = 0; i + step <= a->via.array.size; i += step) {
            const msgpack_object *o = &a->via.array.ptr[i];
            if (k == 0)
                note(r, "enter %llu %llu %.3f %.3f", (unsigned long long)o[0].via.u64,
                     (unsigned long long)o[1].via.u64, o[2].via.f64, o[3].via.f64);
            else
                note(r, "%s %llu %llu", keys[k], (unsigned long long)o[0].via.u64,
                     (unsigned long long)o[1].via.u64);
        }
    }
}

/* Which round each tick number belongs to (the round whose moves its ok named); -1: none
 * (the setup's ticks, not compared). Frames are put in their round by their number, so
 * that frames a client reads late (held for it while it did not read) count where they
 * belong. */
#define MAXTICK 8192
static int tick_round[MAXTICK];

/* Reads c's events until its ok for rid came (its tick into *tick, noted as round
 * `round`'s; rid 0: none awaited) and it saw a tick frame numbered at least *tick; each
 * tick's events go to the round of its number. */
static void pump_until(client *c, uint64_t rid, uint64_t *tick, int round)
{
    bool ok = rid == 0;
    for (double end = sl_now_ms() + 15000; sl_now_ms() < end;) {
        if (ok && c->seen_tick >= *tick)
            return;
        sl_cc_event ev;
        if (sl_cclient_next(c->c, &ev, 100) != 1)
            continue;
        switch (ev.kind) {
        case SL_CC_TICK: {
            uint64_t n = sl_frame_u64(ev.frame, "n");
            c->seen_tick = n;
            ASSERT(n < MAXTICK);
            if (tick_round[n] > 0)
                note_tick(&c->rounds[tick_round[n]], ev.frame);
            break;
        }
        case SL_CC_OK:
            if (ev.rid == rid) {
                ok = true;
                *tick = sl_frame_u64(ev.frame, "tick");
                ASSERT(*tick < MAXTICK);
                tick_round[*tick] = round;
            }
            break;
        case SL_CC_EPOCH:
            c->epochs++;
            c->continued += ev.continued;
            break;
        case SL_CC_ERROR:
            fprintf(stderr, "unexpected error (rid %llu): %s: %s\n",
                    (unsigned long long)ev.rid, ev.code, ev.msg);
            ASSERT(0);
            break;
        default:
            break;
        }
    }
    const sl_cclient_stats *st = sl_cclient_stats_get(c->c);
    fprintf(stderr, "no ok for %llu or no tick %llu within 15 s (seen %llu; claims %llu ok "
            "%llu, readds %llu, epochs %d, pending %zu, dropped %llu)\n", (unsigned long long)rid,
            (unsigned long long)*tick, (unsigned long long)c->seen_tick,
            (unsigned long long)st->claims, (unsigned long long)st->claims_ok,
            (unsigned long long)st->readds, c->epochs, sl_cclient_pending(c->c), (unsigned long long)st->dropped_ticks);
    ASSERT(0);
}

static int by_text(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static sl_cclient *cclient_to(const srv *s)
{
    char seed[64], err[256];
    snprintf(seed, sizeof seed, "127.0.0.1:%d", s->port);
    const char *seeds[] = {seed};
    sl_cclient *c = NULL;
    ASSERT_EQ(sl_cclient_open(&c, seeds, 1, NULL, err, sizeof err), 0);
    return c;
}

/*
 * One run: 3 nodes (on a 3-member etcd when `move`, else one etcd), space s0 (300 x 300,
 * hysteresis 4, stays) and s1..s5. Client P moves 60
 * entities a round (one `moves` frame: one tick), client Q only watches (30 watchers).
 * Each also has a sentinel pair that yields a stay every round, so that both get a frame
 * for every round's tick. With `move`, s0 is moved to another node before round ROUNDS / 2.
 * Fills p and q with the rounds' events; *freeze_ms: the move's time (from the cluster's
 * listing).
 */
static void run(bool move, client *p, client *q, double *move_ms)
{
    setenv("SIGHTLINE_CLUSTER_SECRET", "a test secret", 1);
    static cluster cl;
    memset(&cl, 0, sizeof cl);
    /* The run with the move on a 3-member etcd, the other on one etcd. */
    if (move)
        cluster_etcd3_start(&cl);
    else
        etcd_env_start(&cl.t);
    for (int i = 0; i < NODES; i++)
        start_node(&cl, i);
    define_spaces(&cl, 300, ", \"hysteresis\": 4, \"stay\": true");
    /* A static entity with props: it moves with the space, props and all. */
    etcd_do_retry(&cl.t, ETCD_PUT, "/sightline/k/v1/spaces/s0/entities/5000",
                  "{\"x\": 150, \"y\": 150, \"radius\": 0, "
                  "\"props\": {\"team\": 2, \"name\": \"flag\"}}");
    int owner[SPACES];
    ASSERT(all_served(&cl, owner, 8000));
    int from = owner[0], to = (from + 1) % NODES;
    /* R, on the owner, has a capped watcher with a priority in vision group 9, and
     * subscribes to the group: all of it goes with the space (checked on the target). */
    sl_client *rc = connect_to(&cl.n[from]);
    sl_client_add(rc, "s0", 7000, 150, 160, 40, 0);
    sl_client_cap(rc, "s0", 7000, 2, 1, 0);
    sl_client_priority(rc, "s0", 7000, 3, 0);
    sl_client_group(rc, "s0", 7000, 9, 0);
    sl_client_subscribe(rc, "s0", 9, true, 1);
    expect_ok(rc, 1);
    /* Both clients start at the node that does not serve s0 (redirected there). */
    p->c = cclient_to(&cl.n[to]);
    q->c = cclient_to(&cl.n[to]);
    uint32_t seed = 7;
    static float x[MOVERS], y[MOVERS];
    sl_client_entity v[MOVERS + 2];
    for (int i = 0; i < MOVERS; i++) {
        x[i] = 20 + (float)(next_rand(&seed) % 26000) / 100;
        y[i] = 20 + (float)(next_rand(&seed) % 26000) / 100;
        v[i] = (sl_client_entity){(uint64_t)i + 1, x[i], y[i], 25, 0, SL_CC_ALL_LAYERS};
    }
    v[MOVERS] = (sl_client_entity){1000, 2, 1, 0, 0, SL_CC_ALL_LAYERS};     /* sentinel */
    v[MOVERS + 1] = (sl_client_entity){1001, 1, 1, 2, 0, SL_CC_ALL_LAYERS};
    uint64_t tick = 0;
    ASSERT_EQ(sl_cclient_adds(p->c, "s0", v, MOVERS + 2, 1), 0);
    for (int k = 0; k < MAXTICK; k++)
        tick_round[k] = -1;
    p->rounds = calloc(ROUNDS + 1, sizeof *p->rounds);
    q->rounds = calloc(ROUNDS + 1, sizeof *q->rounds);
    pump_until(p, 1, &tick, -1);
    sl_client_entity w[WATCHERS + 1];
    for (int i = 0; i < WATCHERS; i++)
        w[i] = (sl_client_entity){2001 + (uint64_t)i, 20 + (float)(next_rand(&seed) % 26000) / 100,
                                  20 + (float)(next_rand(&seed) % 26000) / 100, 30, 0,
                                  SL_CC_ALL_LAYERS};
    w[WATCHERS] = (sl_client_entity){2000, 1, 2, 3, 0, SL_CC_ALL_LAYERS};  /* sees 1000 */
    ASSERT_EQ(sl_cclient_adds(q->c, "s0", w, WATCHERS + 1, 2), 0);
    pump_until(q, 2, &tick, -1);
    /* Q has regions: a circle and a triangle that P's movers walk in and out of; they go
     * with the space, members and all (their events compared like the pairs'). */
    float circle[3] = {150, 150, 60}, tri[6] = {20, 20, 200, 20, 20, 200};
    ASSERT_EQ(sl_cclient_region(q->c, "s0", 1, "circle", circle, 3, ~0u, 3), 0);
    pump_until(q, 3, &tick, -1);
    ASSERT_EQ(sl_cclient_region(q->c, "s0", 2, "poly", tri, 6, ~0u, 4), 0);
    pump_until(q, 4, &tick, -1);
    uint64_t ids[MOVERS + 1];
    float xy[2 * (MOVERS + 1)];
    char buf[8192];
    for (int r = 0; r <= ROUNDS; r++) {
        if (move && r == ROUNDS / 2) {
            char cmd[64];
            snprintf(cmd, sizeof cmd, "space move s0 n%d", to);
            ASSERT_EQ(ctl(&cl.n[(from + 2) % NODES], buf, sizeof buf, cmd), 0);
        }
        for (int i = 0; i < MOVERS; i++) {
            random_step(&x[i], &y[i], next_rand(&seed), 299);
            ids[i] = (uint64_t)i + 1;
            xy[2 * i] = x[i];
            xy[2 * i + 1] = y[i];
        }
        ids[MOVERS] = 1000;
        xy[2 * MOVERS] = 2;
        xy[2 * MOVERS + 1] = r % 2 ? 1.5f : 1;
        uint64_t rid = 100 + (uint64_t)r;
        ASSERT_EQ(sl_cclient_moves(p->c, "s0", ids, xy, MOVERS + 1, rid), 0);
        /* Round 0 settles what the adds left; its events are not compared. Q does not
         * read for three rounds from the move on (in both runs): after the move its
         * session waits on the new owner, which holds its tick frames until it claims. */
        pump_until(p, rid, &tick, r ? r : -1);
        if (r < ROUNDS / 2 || r >= ROUNDS / 2 + 3)
            pump_until(q, 0, &tick, r ? r : -1);
    }
    if (move) {
        ASSERT(ctl_until(&cl.n[from], "cluster", "moved s0 to", buf, sizeof buf));
        char *at = strstr(buf, "moved s0 to");
        double ms = 0;
        ASSERT(at && sscanf(strstr(at, " in ") + 4, "%lf", &ms) == 1);
        *move_ms = ms;
        ASSERT_EQ(server_of(&cl, "s0"), to);
        char ent[1024];
        ASSERT_EQ(ctl(&cl.n[to], ent, sizeof ent, "entity s0 5000"), 0);
        ASSERT(strstr(ent, "etcd (a static entity)") && strstr(ent, "team=2") &&
               strstr(ent, "name=\"flag\""));
        ASSERT_EQ(ctl(&cl.n[to], ent, sizeof ent, "entity s0 7000"), 0);
        ASSERT(strstr(ent, "cap 2 margin 1 candidates ") && strstr(ent, " priority 3\n") &&
               strstr(ent, "group 9\n"));
        ASSERT_EQ(ctl(&cl.n[to], ent, sizeof ent, "region s0 2"), 0);
        ASSERT(strstr(ent, "poly 3 20 20 200 20 20 200 mask 0xffffffff owner session "));
        const sl_cclient_stats *ps = sl_cclient_stats_get(p->c), *qs = sl_cclient_stats_get(q->c);
        /* Both sessions went on there: claimed, nothing added again. */
        ASSERT_U64_EQ(ps->claims_ok, 1);
        ASSERT_U64_EQ(qs->claims_ok, 1);
        ASSERT_U64_EQ(ps->readds, 0);
        ASSERT_U64_EQ(qs->readds, 0);
        ASSERT_U64_EQ(ps->dropped_ticks, 0);
        ASSERT(p->continued == 1 && q->continued == 1);
    }
    logs_never_overlap(&cl);
    sl_client_close(rc);
    sl_cclient_close(p->c);
    sl_cclient_close(q->c);
    cluster_end(&cl);
}

/* The rounds of two runs' clients hold the same events. */
static void same_events(const client *a, const client *b, const char *who)
{
    for (int r = 1; r <= ROUNDS; r++) {
        round_events *x = &a->rounds[r], *y = &b->rounds[r];
        qsort(x->line, x->n, sizeof *x->line, by_text);
        qsort(y->line, y->n, sizeof *y->line, by_text);
        size_t i = 0;
        while (i < x->n && i < y->n && !strcmp(x->line[i], y->line[i]))
            i++;
        if (i < x->n || i < y->n)
            fprintf(stderr, "%s round %d: %zu vs %zu events; first difference: %s | %s\n", who,
                    r, x->n, y->n, i < x->n ? x->line[i] : "-", i < y->n ? y->line[i] : "-");
        for (size_t k = 0; getenv("SL_DEBUG") && (i < x->n || i < y->n) && k < x->n + y->n; k++)
            fprintf(stderr, "  %s %s\n", k < x->n ? "A" : "B",
                    k < x->n ? x->line[k] : y->line[k - x->n]);
        ASSERT_EQ(x->n, y->n);
        ASSERT(i == x->n);
    }
}

static void free_rounds(client *c)
{
    for (int r = 0; r <= ROUNDS; r++) {
        for (size_t i = 0; i < c->rounds[r].n; i++)
            free(c->rounds[r].line[i]);
        free(c->rounds[r].line);
    }
    free(c->rounds);
}

TEST_IMPL(server_move_exact)
{
    client p1 = {0}, q1 = {0}, p2 = {0}, q2 = {0};
    double move_ms = 0;
    run(false, &p1, &q1, &move_ms);
    run(true, &p2, &q2, &move_ms);
    size_t events = 0, region_events = 0;
    for (int r = 1; r <= ROUNDS; r++) {
        events += p1.rounds[r].n + q1.rounds[r].n;
        for (size_t i = 0; i < q1.rounds[r].n; i++)
            region_events += !strncmp(q1.rounds[r].line[i], "region_", 7);
    }
    printf("moved in %.0f ms; %zu events compared (%zu of Q's regions)\n", move_ms, events,
           region_events);
    ASSERT(events > 400 && region_events > 10);
    same_events(&p1, &p2, "P");
    same_events(&q1, &q2, "Q");
    free_rounds(&p1);
    free_rounds(&q1);
    free_rounds(&p2);
    free_rounds(&q2);
    return 0;
}
