/*
 * sightline-loadgen: drives W4-server (shared/WORKLOADS.md) against a sightline server over
 * TCP on loopback. Several client threads, each with its own connection, own an equal
 * share of N entities (W1 layout: uniform on 4096 x 4096, radius 50, ids 1..N). Every
 * period (default 50 ms, 20 Hz) each client moves a fresh 20 % of its entities by a step
 * of at most 5 on each axis, in one `moves` frame, and reads its tick frames, counting
 * events. With --saturate, clients send move frames as fast as the socket takes them.
 *
 * Figures: moves/s accepted (the server's own count, from its admin socket), events/s
 * delivered (what the clients received), the server's tick time p50 / p99 (its admin
 * stats), and the interval between tick frames seen by the clients (p50 / p99: "on
 * time"). --server BIN starts a server on a free port for the run.
 *
 * W6 (--node HOST:PORT, repeated): the same load against a cluster through the cluster
 * client library (proto/cluster_client.h): the entities spread over --spaces spaces
 * (PREFIX0, PREFIX1, ..., defined in etcd beforehand, --size x --size), each space driven
 * by one client thread (space j by client j % C), each client seeded with the nodes in a
 * different order, so most of its spaces are reached through a redirect. Figures: moves/s
 * sent and answered, events/s, redirects followed, the first request's latency per space
 * (where + moved + connecting) against a steady moves' ok latency, and with --kill-pid PID
 * --kill-after S (a node the caller started): the time from the kill -9 to full service
 * (every space it served re-added on its new owner and ticking again). --frames-per-s F: the
 * client's frame budget a node (its default 1500 keeps under the nodes' default limit).
 */
#include "base/clock.h"
#include "base/rng.h"
#include "proto/client.h"
#include "proto/cluster_client.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct opts {
    const char *host, *server_bin, *admin, *scripts;
    const char *order;          /* --server: the space's event order (NULL: the default) */
    int port, clients;
    uint32_t n;
    double seconds, period_ms;
    bool saturate, json;
    uint64_t seed;
    /* W6, a cluster */
    const char *nodes[8];
    int nnodes, nspaces;
    const char *prefix;
    float size;
    int kill_pid;
    double kill_after;
    int client_fps;             /* the cluster client's max_frames_per_s (0: its default) */
} opts;

typedef struct worker {
    const opts *o;
    int k;
    sl_client *c;
    uint64_t first, count;      /* ids first .. first + count - 1 */
    float *x, *y;
    uint64_t moves_sent, events, frames, errors;
    double *gaps;               /* ms between consecutive tick frames */
    size_t ngaps, capgaps;
    volatile int *stop;
    bool failed;
} worker;

static void sleep_ms(double ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(fmod(ms, 1000) * 1e6)};
    nanosleep(&ts, NULL);
}

/* Reads what has arrived (for up to wait_ms): counts events, records tick gaps. */
static void drain(worker *w, double wait_ms, double *last_tick)
{
    double until = sl_now_ms() + wait_ms;
    for (;;) {
        int left = (int)(until - sl_now_ms());
        sl_client_frame f;
        int rc = sl_client_next(w->c, &f, left > 0 ? left : 0);
        if (rc != 1) {
            if (rc < 0)
                w->failed = true;
            return;
        }
        w->frames++;
        if (sl_frame_is(&f, "tick")) {
            const msgpack_object *en = sl_frame_get(&f, "enter"), *lv = sl_frame_get(&f, "leave");
            w->events += (en ? en->via.array.size / 4 : 0) + (lv ? lv->via.array.size / 2 : 0);
            double t = sl_now_ms();
            if (*last_tick > 0 && w->ngaps < w->capgaps)
                w->gaps[w->ngaps++] = t - *last_tick;
            *last_tick = t;
        } else if (sl_frame_is(&f, "error")) {
            w->errors++;
        }
    }
}

static void *run_worker(void *arg)
{
    worker *w = arg;
    const opts *o = w->o;
    sl_rng g;
    sl_rng_seed(&g, o->seed * 1000 + (uint64_t)w->k);
    uint32_t batch = (uint32_t)(w->count / 5);
    if (batch == 0)
        batch = 1;
    uint64_t *ids = malloc(batch * sizeof *ids);
    float *xy = malloc(2 * batch * sizeof *xy);
    uint32_t *perm = malloc(w->count * sizeof *perm);
    for (uint32_t i = 0; i < w->count; i++)
        perm[i] = i;
    double last_tick = 0, next = sl_now_ms();
    while (!*w->stop && !w->failed) {
        /* A fresh 20 %: a partial Fisher-Yates shuffle of this client's entities. */
        for (uint32_t i = 0; i < batch; i++) {
            uint32_t j = i + sl_rng_below(&g, (uint32_t)(w->count - i));
            uint32_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
            uint32_t e = perm[i];
            float nx = w->x[e] + (sl_rng_float(&g) * 2 - 1) * 5;
            float ny = w->y[e] + (sl_rng_float(&g) * 2 - 1) * 5;
            w->x[e] = nx < 0 ? 0 : nx >= 4096 ? 4095.99f : nx;
            w->y[e] = ny < 0 ? 0 : ny >= 4096 ? 4095.99f : ny;
            ids[i] = w->first + e;
            xy[2 * i] = w->x[e];
            xy[2 * i + 1] = w->y[e];
        }
        if (sl_client_moves(w->c, "w4", ids, xy, batch, 0)) {
            w->failed = true;
            break;
        }
        w->moves_sent += batch;
        if (o->saturate) {
            drain(w, 0, &last_tick);
        } else {
            next += o->period_ms;
            drain(w, next - sl_now_ms(), &last_tick);
        }
    }
    /* Read until the server has been quiet for half a second: every tick caused by the
     * last moves has arrived. */
    uint64_t before;
    do {
        before = w->frames;
        drain(w, 500, &last_tick);
    } while (w->frames != before && !w->failed);
    free(ids);
    free(xy);
    free(perm);
    return NULL;
}

/* One admin command; the answer in buf. */
static int admin(const char *path, const char *cmd, char *buf, size_t len)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char line[256];
    snprintf(line, sizeof line, "%s\n", cmd);
    if (write(fd, line, strlen(line)) < 0) {
        close(fd);
        return -1;
    }
    size_t n = 0;
    ssize_t k;
    while (n < len - 1 && (k = read(fd, buf + n, len - 1 - n)) > 0) {
        n += (size_t)k;
        buf[n] = '\0';
        if (strstr(buf, "\n.ok\n") || strstr(buf, "\n.fail\n"))
            break;
    }
    buf[n] = '\0';
    close(fd);
    return 0;
}

static double stat_of(const char *stats, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "%s ", key);
    const char *p = strstr(stats, k);
    return p ? strtod(p + strlen(k), NULL) : -1;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Starts the server on a free port; returns its pid (and sets o->port), or -1. */
static pid_t spawn_server(opts *o, char *admin_path, size_t len)
{
    char dir[] = "/tmp/sl-loadgen-XXXXXX";
    if (!mkdtemp(dir))
        return -1;
    snprintf(admin_path, len, "%s/admin.sock", dir);
    char tick[32], space[64];
    snprintf(tick, sizeof tick, "%g", o->period_ms);
    snprintf(space, sizeof space, "w4:4096x4096%s%s", o->order ? ",order=" : "",
             o->order ? o->order : "");
    int fds[2];
    if (pipe(fds))
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl(o->server_bin, o->server_bin, "--listen", "127.0.0.1:0", "--admin", admin_path,
              "--tick-ms", tick, "--scripts", o->scripts, "--quiet", "--out-cap", "268435456",
              "--space", space, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[512] = "";
    const char *p = NULL;
    if (f && fgets(line, sizeof line, f))
        p = strstr(line, "listening on 127.0.0.1:");
    if (f)
        fclose(f);
    if (!p) {
        fprintf(stderr, "sightline-loadgen: the server did not start\n");
        return -1;
    }
    o->port = atoi(p + strlen("listening on 127.0.0.1:"));
    return pid;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: sightline-loadgen [--server BIN [--scripts DIR] [--order id|tick] | --host H "
            "--port P --admin PATH] [--clients C] [--entities N] [--seconds S] [--period-ms MS] "
            "[--saturate] [--seed S] [--json]\n"
            "       sightline-loadgen --node HOST:PORT [--node ...] [--admin PATH ...] "
            "[--spaces K] [--space-prefix P] [--size S] [--kill-pid PID --kill-after S] "
            "[--frames-per-s F (a node's budget; keep it under the nodes' limit)] "
            "[--clients C] [--entities N] [--seconds S] [--period-ms MS] [--seed S]\n"
            "Without --server, the space w4 (4096 x 4096) must exist on the server; with "
            "--node, the spaces P0 .. P(K-1) (S x S) in the cluster's etcd.\n");
    return 2;
}

/* Reads the command line into o; returns -1 to go on, else the exit status. */
static int parse_opts(int argc, char **argv, opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--saturate")) { o->saturate = true; continue; }
        if (!strcmp(a, "--json")) { o->json = true; continue; }
        if (!v)
            return usage();
        i++;
        if (!strcmp(a, "--host")) o->host = v;
        else if (!strcmp(a, "--port")) o->port = atoi(v);
        else if (!strcmp(a, "--server")) o->server_bin = v;
        else if (!strcmp(a, "--scripts")) o->scripts = v;
        else if (!strcmp(a, "--order")) o->order = v;
        else if (!strcmp(a, "--admin")) o->admin = v;
        else if (!strcmp(a, "--node") && o->nnodes < 8) o->nodes[o->nnodes++] = v;
        else if (!strcmp(a, "--spaces")) o->nspaces = atoi(v);
        else if (!strcmp(a, "--space-prefix")) o->prefix = v;
        else if (!strcmp(a, "--size")) o->size = strtof(v, NULL);
        else if (!strcmp(a, "--kill-pid")) o->kill_pid = atoi(v);
        else if (!strcmp(a, "--kill-after")) o->kill_after = strtod(v, NULL);
        else if (!strcmp(a, "--frames-per-s")) o->client_fps = atoi(v);
        else if (!strcmp(a, "--clients")) o->clients = atoi(v);
        else if (!strcmp(a, "--entities")) o->n = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--seconds")) o->seconds = strtod(v, NULL);
        else if (!strcmp(a, "--period-ms")) o->period_ms = strtod(v, NULL);
        else if (!strcmp(a, "--seed")) o->seed = strtoull(v, NULL, 10);
        else { fprintf(stderr, "sightline-loadgen: unknown option %s\n", a); return 2; }
    }
    return o->clients < 1 || o->clients > 64 || o->n < (uint32_t)o->clients ? 2 : -1;
}

/*
 * Connects client k and adds its share of the entities (W1 positions drawn from g, one
 * stream for all clients, so the layout does not depend on the number of clients), then
 * waits for the last add's ok. Returns 0, or 1 (printed).
 */
static int open_worker(worker *w, const opts *o, int k, volatile int *stop, sl_rng *g)
{
    char err[256];
    if (sl_client_connect(&w->c, o->host, o->port, NULL, NULL, err, sizeof err)) {
        fprintf(stderr, "sightline-loadgen: %s\n", err);
        return 1;
    }
    uint64_t per = o->n / (uint32_t)o->clients;
    w->o = o;
    w->k = k;
    w->stop = stop;
    w->first = 1 + (uint64_t)k * per;
    w->count = k == o->clients - 1 ? o->n - (uint64_t)k * per : per;
    w->x = malloc(w->count * sizeof(float));
    w->y = malloc(w->count * sizeof(float));
    w->capgaps = (size_t)(o->seconds * 1000 / o->period_ms * 4) + 64;
    w->gaps = malloc(w->capgaps * sizeof(double));
    /* In `adds` frames of 1000 (one frame an entity would run into the server's frame
     * rate limit at tens of thousands). */
    sl_client_entity batch[1000];
    uint32_t nb = 0;
    for (uint64_t i = 0; i < w->count; i++) {
        w->x[i] = sl_rng_float(g) * 4096;
        w->y[i] = sl_rng_float(g) * 4096;
        if (w->x[i] >= 4096) w->x[i] = 4095.99f;
        if (w->y[i] >= 4096) w->y[i] = 4095.99f;
        batch[nb++] = (sl_client_entity){w->first + i, w->x[i], w->y[i], 50, 0, ~0u};
        if (nb == 1000 || i + 1 == w->count) {
            sl_client_adds(w->c, "w4", batch, nb, i + 1 == w->count ? 1 : 0);
            nb = 0;
        }
    }
    sl_client_frame f;
    if (sl_client_wait(w->c, "ok", 1, &f, 30000) != 1) {
        fprintf(stderr, "sightline-loadgen: adding entities failed (does space w4 exist?)\n");
        return 1;
    }
    return 0;
}

/* The run's figures: the clients' sums and the server's admin stats. */
typedef struct result {
    double secs;
    uint64_t sent, events, errors;
    bool failed;
    double gap50, gap99;        /* ms between tick frames at the clients */
    double accepted, p50, p99, server_sent, window;    /* -1 (0 for window): no admin */
    bool all;                   /* every event the server sent arrived */
} result;

/* The tick gaps of every client, sorted: the median and the 99th percentile. */
static void gap_percentiles(const worker *w, int clients, result *r)
{
    size_t ng = 0;
    for (int k = 0; k < clients; k++)
        ng += w[k].ngaps;
    double *gaps = malloc((ng + 1) * sizeof(double));
    size_t m = 0;
    for (int k = 0; k < clients; k++)
        for (size_t i = 0; i < w[k].ngaps; i++)
            gaps[m++] = w[k].gaps[i];
    qsort(gaps, m, sizeof(double), cmp_d);
    r->gap50 = m ? gaps[m / 2] : 0;
    r->gap99 = m ? gaps[(m * 99) / 100] : 0;
    free(gaps);
}

/* Sums the clients' counts and reads the server's (stats0: before, stats1: at the end of
 * the timed run, stats2: after the clients drained). */
static result summarise(const opts *o, const worker *w, double secs, const char *stats0,
                        const char *stats1, const char *stats2)
{
    result r = {.secs = secs};
    for (int k = 0; k < o->clients; k++) {
        r.sent += w[k].moves_sent;
        r.events += w[k].events;
        r.errors += w[k].errors;
        r.failed |= w[k].failed;
    }
    gap_percentiles(w, o->clients, &r);
    r.accepted = o->admin ? (stat_of(stats1, "moves") - stat_of(stats0, "moves")) / secs : -1;
    r.p50 = o->admin ? stat_of(stats1, "tick_ms_p50") : -1;
    r.p99 = o->admin ? stat_of(stats1, "tick_ms_p99") : -1;
    r.server_sent = o->admin ? stat_of(stats2, "events_sent") - stat_of(stats0, "events_sent")
                             : -1;
    r.window = o->admin ? stat_of(stats1, "tick_ms_window") : 0;
    r.all = !o->admin || (double)r.events == r.server_sent;
    return r;
}

static void print_result(const opts *o, const result *r)
{
    double secs = r->secs;
    if (o->json) {
        printf("{\"workload\":\"W4\",\"entities\":%u,\"clients\":%d,\"seconds\":%.1f,"
               "\"saturate\":%s,\"moves_per_s_sent\":%.0f,\"moves_per_s_accepted\":%.0f,"
               "\"events_per_s_delivered\":%.0f,\"server_tick_ms_p50\":%.3f,"
               "\"server_tick_ms_p99\":%.3f,\"tick_gap_ms_p50\":%.2f,\"tick_gap_ms_p99\":%.2f,"
               "\"events_sent_by_server\":%.0f,\"events_received\":%llu,\"all_delivered\":%s,"
               "\"errors\":%llu,\"failed\":%s}\n",
               o->n, o->clients, secs, o->saturate ? "true" : "false", r->sent / secs,
               r->accepted, r->events / secs, r->p50, r->p99, r->gap50, r->gap99,
               r->server_sent, (unsigned long long)r->events, r->all ? "true" : "false",
               (unsigned long long)r->errors, r->failed ? "true" : "false");
        return;
    }
    printf("W4 N=%u clients=%d %s, %.1f s\n", o->n, o->clients,
           o->saturate ? "saturating" : "20 Hz moves", secs);
    printf("  moves/s sent %.0f, accepted by the server %.0f\n", r->sent / secs, r->accepted);
    printf("  events/s delivered %.0f\n", r->events / secs);
    printf("  server tick ms p50 %.3f, p99 %.3f (the run's last %.0f ticks)\n", r->p50, r->p99,
           r->window);
    printf("  interval between tick frames at the clients: p50 %.1f ms, p99 %.1f ms\n",
           r->gap50, r->gap99);
    printf("  events sent by the server %.0f, received by the clients %llu: %s\n",
           r->server_sent, (unsigned long long)r->events,
           r->all ? "all delivered" : "NOT ALL DELIVERED");
    printf("  errors %llu%s\n", (unsigned long long)r->errors,
           r->failed ? ", a connection FAILED" : "");
}

/* Stops the server started for the run and removes its admin socket's directory. */
static void stop_server(pid_t server, const char *admin_path)
{
    kill(server, SIGTERM);
    waitpid(server, NULL, 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %.*s", (int)(strlen(admin_path) - strlen("/admin.sock")),
             admin_path);
    if (system(cmd)) {}
}

/* ---- W6: a cluster, through the cluster client library ------------------------------------ */

#define MAXSP 64
#define RING 8192               /* request ids remembered (send time, kind) */
#define ADDS_BATCH 1000u        /* entities of one `adds` frame at setup */

typedef struct cworker {
    const opts *o;
    int k;
    sl_cclient *c;
    int nsp;
    int sp[MAXSP];              /* the spaces it drives (global indexes) */
    char name[MAXSP][72];
    uint32_t per;               /* entities per space: ids 1..per */
    float *x[MAXSP], *y[MAXSP];
    uint32_t off[MAXSP];        /* the next window of 20 % */
    uint64_t rid;
    double sent_at[RING];
    int tag[RING];              /* -1: a moves frame; s >= 0: the first add of space s */
    uint32_t items[RING];
    uint64_t moves_sent, moves_ok, events, errors, epochs;
    double first_ms[MAXSP];     /* first request's latency (where, moved, connect) */
    double first_sent[MAXSP];   /* when the space's first request was made */
    double route_ms[MAXSP];     /* from then to its first SL_CC_EPOCH (routed) */
    bool redirected[MAXSP];     /* the owner is not the first seed */
    double *lat;                /* moves' ok latency, ms */
    size_t nlat, caplat;
    char owner_at_kill[MAXSP][64];
    bool saw_kill;
    double epoch_at[MAXSP], back_at[MAXSP];
    double readd_ms;            /* last re-add answered after the kill, from the kill */
    volatile int *stop;
    bool failed;
} cworker;

static volatile double kill_ms;     /* sl_now_ms of the kill (0: none yet) */

static uint64_t cw_rid(cworker *w, int tag, uint32_t items)
{
    uint64_t rid = ++w->rid;
    w->sent_at[rid % RING] = sl_now_ms();
    w->tag[rid % RING] = tag;
    w->items[rid % RING] = items;
    return rid;
}

static int cw_local(const cworker *w, const char *space)
{
    for (int s = 0; s < w->nsp; s++)
        if (!strcmp(w->name[s], space))
            return s;
    return -1;
}

/* Reads events for up to wait_ms. */
static void cw_drain(cworker *w, double wait_ms)
{
    double until = sl_now_ms() + wait_ms;
    if (kill_ms > 0 && !w->saw_kill) {
        w->saw_kill = true;
        for (int s = 0; s < w->nsp; s++) {
            const char *ow = sl_cclient_owner(w->c, w->name[s]);
            snprintf(w->owner_at_kill[s], sizeof w->owner_at_kill[s], "%s", ow ? ow : "");
        }
    }
    for (;;) {
        int left = (int)(until - sl_now_ms());
        sl_cc_event ev;
        if (sl_cclient_next(w->c, &ev, left > 0 ? left : 0) != 1)
            return;
        double now = sl_now_ms();
        int s = cw_local(w, ev.space);
        if (ev.kind == SL_CC_TICK) {
            const msgpack_object *en = sl_frame_get(ev.frame, "enter");
            const msgpack_object *lv = sl_frame_get(ev.frame, "leave");
            w->events += (en ? en->via.array.size / 4 : 0) + (lv ? lv->via.array.size / 2 : 0);
            if (s >= 0 && w->epoch_at[s] > 0 && w->back_at[s] == 0)
                w->back_at[s] = now;
        } else if (ev.kind == SL_CC_EPOCH) {
            w->epochs++;
            if (s >= 0 && w->route_ms[s] == 0) {
                w->route_ms[s] = now - w->first_sent[s];
                w->redirected[s] = strcmp(ev.node, w->o->nodes[w->k % w->o->nnodes]) != 0;
            }
            if (s >= 0 && kill_ms > 0) {
                w->epoch_at[s] = now;
                w->back_at[s] = 0;
            }
        } else if (ev.kind == SL_CC_OK) {
            uint64_t i = ev.rid % RING;
            if (w->tag[i] < 0) {
                w->moves_ok += w->items[i];
                if (w->nlat < w->caplat)
                    w->lat[w->nlat++] = now - w->sent_at[i];
            } else if (w->tag[i] < MAXSP && w->first_ms[w->tag[i]] == 0) {
                w->first_ms[w->tag[i]] = now - w->sent_at[i];
            }
        } else if (ev.kind == SL_CC_ERROR) {
            if (w->errors++ < 5)
                fprintf(stderr, "sightline-loadgen: client %d: %s %s: %s\n", w->k, ev.space,
                        ev.code, ev.msg);
        }
    }
}

static void *run_cworker(void *arg)
{
    cworker *w = arg;
    const opts *o = w->o;
    sl_rng g;
    sl_rng_seed(&g, o->seed * 1000 + (uint64_t)w->k);
    uint32_t batch = w->per / 5 ? w->per / 5 : 1;
    uint64_t *ids = malloc(batch * sizeof *ids);
    float *xy = malloc(2 * batch * sizeof *xy);
    double next = sl_now_ms();
    while (!*w->stop) {
        for (int s = 0; s < w->nsp; s++) {
            for (uint32_t i = 0; i < batch; i++) {
                uint32_t e = (w->off[s] + i) % w->per;
                float nx = w->x[s][e] + (sl_rng_float(&g) * 2 - 1) * 5;
                float ny = w->y[s][e] + (sl_rng_float(&g) * 2 - 1) * 5;
                float hi = o->size - 0.01f;
                w->x[s][e] = nx < 0 ? 0 : nx > hi ? hi : nx;
                w->y[s][e] = ny < 0 ? 0 : ny > hi ? hi : ny;
                ids[i] = e + 1;
                xy[2 * i] = w->x[s][e];
                xy[2 * i + 1] = w->y[s][e];
            }
            w->off[s] = (w->off[s] + batch) % w->per;
            sl_cclient_moves(w->c, w->name[s], ids, xy, batch, cw_rid(w, -1, batch));
            w->moves_sent += batch;
        }
        next += o->period_ms;
        cw_drain(w, next - sl_now_ms());
    }
    /* Read until every request is answered and the server has been quiet a while. */
    for (double end = sl_now_ms() + 10000; sl_cclient_pending(w->c) && sl_now_ms() < end;)
        cw_drain(w, 50);
    cw_drain(w, 500);
    const sl_cclient_stats *st = sl_cclient_stats_get(w->c);
    if (kill_ms > 0 && st->last_readd_ok_ms > kill_ms)
        w->readd_ms = st->last_readd_ok_ms - kill_ms;
    w->failed = sl_cclient_pending(w->c) != 0;
    free(ids);
    free(xy);
    return NULL;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Connects client k (seeded with the nodes in an order of its own) and adds its spaces'
 * entities; waits until every add is answered. 0, or 1 (printed). */
static int open_cworker(cworker *w, const opts *o, int k, volatile int *stop, sl_rng *g)
{
    const char *seeds[8];
    for (int i = 0; i < o->nnodes; i++)
        seeds[i] = o->nodes[(i + k) % o->nnodes];
    char err[256];
    sl_cclient_config cfg = {.max_frames_per_s = o->client_fps};
    if (sl_cclient_open(&w->c, seeds, o->nnodes, &cfg, err, sizeof err)) {
        fprintf(stderr, "sightline-loadgen: %s\n", err);
        return 1;
    }
    w->o = o;
    w->k = k;
    w->stop = stop;
    w->per = o->n / (uint32_t)o->nspaces;
    w->caplat = (size_t)(o->seconds * 1000 / o->period_ms + 64) * MAXSP;
    w->lat = malloc(w->caplat * sizeof(double));
    for (int j = k; j < o->nspaces; j += o->clients) {
        int s = w->nsp++;
        w->sp[s] = j;
        snprintf(w->name[s], sizeof w->name[s], "%s%d", o->prefix, j);
        w->x[s] = malloc(w->per * sizeof(float));
        w->y[s] = malloc(w->per * sizeof(float));
        w->first_sent[s] = sl_now_ms();
        sl_client_entity batch[ADDS_BATCH];
        uint32_t nb = 0;
        for (uint32_t i = 0; i < w->per; i++) {
            w->x[s][i] = sl_rng_float(g) * (o->size - 0.01f);
            w->y[s][i] = sl_rng_float(g) * (o->size - 0.01f);
            if (i == 0) {
                /* The first add alone: how long routing the space takes (where, a
                 * redirect, connecting to the owner). */
                sl_cclient_add(w->c, w->name[s], 1, w->x[s][0], w->y[s][0], 50, 0,
                               SL_CC_ALL_LAYERS, cw_rid(w, s, 1));
                for (double end = sl_now_ms() + 5000; w->first_ms[s] == 0 && sl_now_ms() < end;)
                    cw_drain(w, 5);
                continue;
            }
            /* The others in `adds` frames. */
            batch[nb++] = (sl_client_entity){i + 1, w->x[s][i], w->y[s][i], 50, 0,
                                             SL_CC_ALL_LAYERS};
            if (nb == ADDS_BATCH || i + 1 == w->per) {
                sl_cclient_adds(w->c, w->name[s], batch, nb, 0);
                nb = 0;
            }
        }
    }
    for (double end = sl_now_ms() + 30000; sl_cclient_pending(w->c) && sl_now_ms() < end;)
        cw_drain(w, 50);
    if (sl_cclient_pending(w->c) || w->errors) {
        const sl_cclient_stats *st = sl_cclient_stats_get(w->c);
        fprintf(stderr, "sightline-loadgen: client %d: adding entities failed (are the "
                "spaces %s0.. defined?): %zu not answered, %llu refused by the rate limit, "
                "%llu errors\n", k, o->prefix, sl_cclient_pending(w->c),
                (unsigned long long)st->refused, (unsigned long long)w->errors);
        return 1;
    }
    return 0;
}

static int run_cluster(opts *o)
{
    if (o->nspaces < 1 || o->nspaces > MAXSP || o->clients > o->nspaces) {
        fprintf(stderr, "sightline-loadgen: --spaces must be 1..%d and at least --clients\n",
                MAXSP);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    cworker *w = calloc((size_t)o->clients, sizeof *w);
    volatile int stop = 0;
    sl_rng g;
    sl_rng_seed(&g, o->seed);
    double t_setup = sl_now_ms();
    for (int k = 0; k < o->clients; k++)
        if (open_cworker(&w[k], o, k, &stop, &g))
            return 1;
    double setup = sl_now_ms() - t_setup;
    for (int k = 0; k < o->clients; k++) {
        cw_drain(&w[k], 1000 / o->clients);
        w[k].events = 0;
    }
    double t0 = sl_now_ms();
    pthread_t th[64];
    for (int k = 0; k < o->clients; k++)
        pthread_create(&th[k], NULL, run_cworker, &w[k]);
    if (o->kill_pid > 0 && o->kill_after > 0 && o->kill_after < o->seconds) {
        sleep_ms(o->kill_after * 1000);
        kill(o->kill_pid, SIGKILL);
        kill_ms = sl_now_ms();
        sleep_ms((o->seconds - o->kill_after) * 1000);
    } else {
        sleep_ms(o->seconds * 1000);
    }
    double t1 = sl_now_ms();
    stop = 1;
    for (int k = 0; k < o->clients; k++)
        pthread_join(th[k], NULL);
    double secs = (t1 - t0) / 1000;
    uint64_t sent = 0, ok = 0, events = 0, errors = 0, redirects = 0, readds = 0, resent = 0,
             dropped = 0, lost = 0, refused = 0;
    bool failed = false;
    double first_sum = 0, full = 0, readd = 0, route[2] = {0, 0};
    int nfirst = 0, moved_spaces = 0, unrecovered = 0, nroute[2] = {0, 0};
    size_t nlat = 0;
    for (int k = 0; k < o->clients; k++)
        nlat += w[k].nlat;
    double *lat = malloc((nlat + 1) * sizeof(double));
    nlat = 0;
    for (int k = 0; k < o->clients; k++) {
        cworker *c = &w[k];
        const sl_cclient_stats *st = sl_cclient_stats_get(c->c);
        sent += c->moves_sent;
        ok += c->moves_ok;
        events += c->events;
        errors += c->errors;
        failed |= c->failed;
        redirects += st->redirects;
        readds += st->readds_ok;
        resent += st->resent;
        refused += st->refused;
        dropped += st->dropped_ticks;
        lost += st->lost;
        memcpy(lat + nlat, c->lat, c->nlat * sizeof(double));
        nlat += c->nlat;
        if (c->readd_ms > readd)
            readd = c->readd_ms;
        for (int s = 0; s < c->nsp; s++) {
            if (c->route_ms[s] > 0) {
                route[c->redirected[s]] += c->route_ms[s];
                nroute[c->redirected[s]]++;
            }
            if (c->first_ms[s] > 0) {
                first_sum += c->first_ms[s];
                nfirst++;
            }
            const char *now_owner = sl_cclient_owner(c->c, c->name[s]);
            if (kill_ms > 0 && (!now_owner || strcmp(now_owner, c->owner_at_kill[s]))) {
                moved_spaces++;
                if (c->back_at[s] > 0 && c->back_at[s] - kill_ms > full)
                    full = c->back_at[s] - kill_ms;
                unrecovered += c->back_at[s] == 0;
            }
        }
    }
    if (readd > full)
        full = readd;           /* full service: re-added everywhere and ticking again */
    qsort(lat, nlat, sizeof(double), cmp_dbl);
    double l50 = nlat ? lat[nlat / 2] : 0, l99 = nlat ? lat[nlat * 99 / 100] : 0;
    if (o->json) {
        printf("{\"workload\":\"W6\",\"nodes\":%d,\"spaces\":%d,\"entities\":%u,\"clients\":%d,"
               "\"seconds\":%.1f,\"moves_per_s_sent\":%.0f,\"moves_per_s_ok\":%.0f,"
               "\"events_per_s\":%.0f,\"redirects\":%llu,\"setup_ms\":%.0f,"
               "\"first_request_ms\":%.2f,\"route_direct_ms\":%.2f,\"route_redirected_ms\":%.2f,"
               "\"moves_ok_ms_p50\":%.2f,\"moves_ok_ms_p99\":%.2f,"
               "\"killed\":%s,\"spaces_moved\":%d,\"full_service_ms\":%.0f,\"readd_ms\":%.0f,"
               "\"readds\":%llu,\"resent\":%llu,\"refused\":%llu,\"unrecovered\":%d,"
               "\"errors\":%llu,"
               "\"failed\":%s}\n",
               o->nnodes, o->nspaces, o->n, o->clients, secs, sent / secs, ok / secs,
               events / secs, (unsigned long long)redirects, setup,
               nfirst ? first_sum / nfirst : 0, nroute[0] ? route[0] / nroute[0] : 0,
               nroute[1] ? route[1] / nroute[1] : 0, l50, l99, kill_ms > 0 ? "true" : "false",
               moved_spaces, full, readd, (unsigned long long)readds,
               (unsigned long long)resent, (unsigned long long)refused, unrecovered,
               (unsigned long long)errors,
               failed ? "true" : "false");
    } else {
        printf("W6 %d nodes, %d spaces, N=%u, clients=%d, %.1f s\n", o->nnodes, o->nspaces,
               o->n, o->clients, secs);
        printf("  moves/s sent %.0f, answered ok %.0f; events/s delivered %.0f\n", sent / secs,
               ok / secs, events / secs);
        printf("  redirects followed %llu; setup (adds, routing) %.0f ms; a space routed (where, "
               "answered by the first seed: %d, %.2f ms; redirected, connect and hello: %d, "
               "%.2f ms on average); its first add answered after %.2f ms; a moves frame's ok p50 %.2f ms, p99 %.2f ms\n",
               (unsigned long long)redirects, setup, nroute[0],
               nroute[0] ? route[0] / nroute[0] : 0, nroute[1],
               nroute[1] ? route[1] / nroute[1] : 0, nfirst ? first_sum / nfirst : 0, l50, l99);
        if (kill_ms > 0)
            printf("  kill -9 of pid %d at %.1f s: %d spaces moved, full service after %.0f ms "
                   "(re-adds done after %.0f ms; %llu entities re-added, %llu requests resent, "
                   "%llu connections lost, %d spaces never back)\n", o->kill_pid,
                   o->kill_after, moved_spaces, full, readd, (unsigned long long)readds,
                   (unsigned long long)resent, (unsigned long long)lost, unrecovered);
        printf("  ticks of a former owner dropped %llu; frames refused by a node's rate limit "
               "%llu; errors %llu%s\n", (unsigned long long)dropped,
               (unsigned long long)refused, (unsigned long long)errors,
               failed ? ", requests LEFT UNANSWERED" : "");
    }
    for (int k = 0; k < o->clients; k++) {
        sl_cclient_close(w[k].c);
        for (int s = 0; s < w[k].nsp; s++) {
            free(w[k].x[s]);
            free(w[k].y[s]);
        }
        free(w[k].lat);
    }
    free(lat);
    free(w);
    return failed || errors || unrecovered ? 1 : 0;
}

int main(int argc, char **argv)
{
    opts o = {.host = "127.0.0.1", .port = 7100, .clients = 4, .n = 50000, .seconds = 30,
              .period_ms = 50, .seed = 1, .scripts = "scripts/default", .nspaces = 12,
              .prefix = "w6-", .size = 4096};
    int rc = parse_opts(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (o.nnodes)
        return run_cluster(&o);
    signal(SIGPIPE, SIG_IGN);
    char admin_path[256] = "";
    pid_t server = 0;
    if (o.server_bin) {
        if ((server = spawn_server(&o, admin_path, sizeof admin_path)) < 0)
            return 1;
        o.admin = admin_path;
    }
    /* Connect, and add every client's share (W1 positions from one seeded stream). */
    worker *w = calloc((size_t)o.clients, sizeof *w);
    volatile int stop = 0;
    sl_rng g;
    sl_rng_seed(&g, o.seed);
    for (int k = 0; k < o.clients; k++)
        if (open_worker(&w[k], &o, k, &stop, &g))
            return 1;
    /* Let the first tick (every pair new) pass, then measure. */
    for (int k = 0; k < o.clients; k++) {
        double lt = 0;
        drain(&w[k], 1500 / o.clients, &lt);
        w[k].events = w[k].frames = w[k].ngaps = 0;
    }
    char stats0[1 << 14] = "", stats1[1 << 14] = "";
    if (o.admin) {
        admin(o.admin, "stats reset", stats0, sizeof stats0);   /* tick times: this run's */
        admin(o.admin, "stats", stats0, sizeof stats0);
    }
    double t0 = sl_now_ms();
    pthread_t th[64];
    for (int k = 0; k < o.clients; k++)
        pthread_create(&th[k], NULL, run_worker, &w[k]);
    sleep_ms(o.seconds * 1000);
    if (o.admin)
        admin(o.admin, "stats", stats1, sizeof stats1);
    double t1 = sl_now_ms();
    stop = 1;
    for (int k = 0; k < o.clients; k++)
        pthread_join(th[k], NULL);
    /* Every event the server sent since the start must have reached a client (the workers
     * read for a while after the last move, and nothing moves before they start). */
    char stats2[1 << 14] = "";
    if (o.admin)
        admin(o.admin, "stats", stats2, sizeof stats2);
    result r = summarise(&o, w, (t1 - t0) / 1000, stats0, stats1, stats2);
    print_result(&o, &r);
    for (int k = 0; k < o.clients; k++) {
        sl_client_close(w[k].c);
        free(w[k].x);
        free(w[k].y);
        free(w[k].gaps);
    }
    free(w);
    if (server > 0)
        stop_server(server, admin_path);
    return r.failed || r.errors || !r.all ? 1 : 0;
}
