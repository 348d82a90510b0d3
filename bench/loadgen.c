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
 */
#include "base/clock.h"
#include "base/rng.h"
#include "proto/client.h"

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
    int port, clients;
    uint32_t n;
    double seconds, period_ms;
    bool saturate, json;
    uint64_t seed;
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
    char tick[32];
    snprintf(tick, sizeof tick, "%g", o->period_ms);
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
              "--space", "w4:4096x4096", (char *)NULL);
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
            "usage: sightline-loadgen [--server BIN [--scripts DIR] | --host H --port P "
            "--admin PATH] [--clients C] [--entities N] [--seconds S] [--period-ms MS] "
            "[--saturate] [--seed S] [--json]\n"
            "Without --server, the space w4 (4096 x 4096) must exist on the server.\n");
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
        else if (!strcmp(a, "--admin")) o->admin = v;
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
    for (uint64_t i = 0; i < w->count; i++) {
        w->x[i] = sl_rng_float(g) * 4096;
        w->y[i] = sl_rng_float(g) * 4096;
        if (w->x[i] >= 4096) w->x[i] = 4095.99f;
        if (w->y[i] >= 4096) w->y[i] = 4095.99f;
        uint64_t rid = i + 1 == w->count ? 1 : 0;
        sl_client_add(w->c, "w4", w->first + i, w->x[i], w->y[i], 50, rid);
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

int main(int argc, char **argv)
{
    opts o = {.host = "127.0.0.1", .port = 7100, .clients = 4, .n = 50000, .seconds = 30,
              .period_ms = 50, .seed = 1, .scripts = "scripts/default"};
    int rc = parse_opts(argc, argv, &o);
    if (rc >= 0)
        return rc;
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
