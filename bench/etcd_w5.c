/*
 * W5-etcd (shared/WORKLOADS.md): one writer puts small keys into a real etcd-server as fast
 * as it can (64 puts in flight): static-entity documents of one space, ids cycling over
 * W5_IDS, as a studio's tools would write them. One Sightline mirror (list-then-watch,
 * core/etcd/mirror.c) consumes them in its own thread with its own loop and client, and
 * hands them to a server's apply path there (core/server/sync.h: queued, merged per key,
 * applied at the server's tick), as `sightline --etcd` does; `etcdctl watch` consumes the
 * same stream in another process, as the reference. Reports, for each consumer, events/s
 * over its own run (first event to last) and how long after the writer's last
 * acknowledged put its last event came; whether every put reached the mirror exactly once;
 * the mirror thread's CPU per event, apply included, against etcd's own.
 */
#include "etcd_w5.h"

#include "base/clock.h"
#include "etcd/etcd.h"
#include "etcd/mirror.h"
#include "fixtures/etcd_fixture.h"
#include "server/cluster.h"
#include "server/server.h"
#include "server/sync.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct wstate {
    sl_etcd *e;
    uv_loop_t *loop;
    uint64_t next, acked, failed;
    int inflight;
    double until_ms;
} wstate;

static void put_next(wstate *w);

static void on_put(void *ud, const sl_etcd_result *r)
{
    wstate *w = ud;
    w->inflight--;
    if (r->status.code == 0)
        w->acked++;
    else
        w->failed++;
    if (sl_now_ms() < w->until_ms)
        put_next(w);
}

#define W5_PREFIX SL_CLUSTER_ROOT "w5/" SL_SCHEMA_PATH "spaces/"
enum { W5_IDS = 20000 };

static void put_next(wstate *w)
{
    char key[64], doc[96];
    uint64_t k = w->next++;
    snprintf(key, sizeof key, W5_PREFIX "w/entities/%llu", (unsigned long long)(k % W5_IDS));
    int n = snprintf(doc, sizeof doc, "{\"x\": %llu.5, \"y\": %llu, \"radius\": 8}",
                     (unsigned long long)(k * 7 % 3989), (unsigned long long)(k * 13 % 3967));
    if (sl_etcd_put(w->e, key, doc, (size_t)n, 0, false, on_put, w) == 0)
        w->inflight++;
}

/* The mirror's thread, and the server it feeds. */
typedef struct mthread {
    const char *endpoint;
    volatile int stop;
    volatile uint64_t puts;
    uint64_t duplicates;
    double cpu_ms;
    volatile int ready;
    double first_ms, last_ms;       /* the mirror's first and last event */
    double applied_last_ms;         /* the last tick that applied something */
    sl_sync *sync;
    sl_sync_stats sync_stats;
} mthread;

static void m_put(void *ud, const char *k, size_t kl, const uint8_t *v, size_t vl, int64_t mod)
{
    mthread *t = ud;
    t->last_ms = sl_now_ms();
    if (!t->puts)
        t->first_ms = t->last_ms;
    t->puts++;
    size_t pl = strlen(W5_PREFIX);
    if (kl > pl)
        sl_sync_put(t->sync, k + pl, kl - pl, v, vl, mod);
}

/* The server's tick: the queued changes applied, as sightline --etcd does. */
static void m_tick(void *ud)
{
    mthread *t = ud;
    sl_sync_stats st;
    sl_sync_get_stats(t->sync, &st);
    sl_sync_apply(t->sync);
    if (st.queued)
        t->applied_last_ms = sl_now_ms();
}

static void m_synced(void *ud, int64_t rev)
{
    (void)rev;
    mthread *t = ud;
    t->ready = 1;
}

static void *mirror_main(void *arg)
{
    mthread *t = arg;
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_etcd *e;
    char err[256];
    sl_etcd_config cfg = {.endpoints = t->endpoint};
    sl_server_config sc = {.listen_host = "127.0.0.1", .quiet = true, .tick_ms = 50};
    sl_server *srv;
    if (sl_etcd_new(&e, &loop, &cfg, err, sizeof err) ||
        sl_server_new(&srv, &loop, &sc, err, sizeof err))
        return NULL;
    sl_sync_config yc = {.merge = true};
    t->sync = sl_sync_new(srv, &yc);
    const char *def = "{\"version\": \"1.0.0\", \"schema_hash\": \"804a650955269821\", "
                      "\"data\": {\"width\": 4096, \"height\": 4096, \"cell\": 64}}";
    sl_sync_put(t->sync, "w", 1, (const uint8_t *)def, strlen(def), 1);
    sl_sync_apply(t->sync);
    sl_server_on_tick(srv, m_tick, t);
    sl_etcd_mirror_handlers h = {.on_put = m_put, .on_synced = m_synced};
    sl_etcd_mirror *m = sl_etcd_mirror_start(e, W5_PREFIX, &h, t);
    struct timespec c0, c1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    /* The client's keepalive timer wakes the loop twice a second, so `stop` is seen. */
    while (!t->stop)
        uv_run(&loop, UV_RUN_ONCE);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    t->cpu_ms = (c1.tv_sec - c0.tv_sec) * 1e3 + (c1.tv_nsec - c0.tv_nsec) / 1e6;
    sl_etcd_mirror_stats st;
    sl_etcd_mirror_get_stats(m, &st);
    t->duplicates = st.duplicates;
    sl_etcd_mirror_stop(m);
    sl_etcd_free(e);
    sl_sync_get_stats(t->sync, &t->sync_stats);
    sl_server_on_tick(srv, NULL, NULL);
    sl_sync_free(t->sync);
    sl_server_shutdown(srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    sl_server_free(srv);
    uv_loop_close(&loop);
    return NULL;
}

static void sleep_ms(double ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)((ms - 1000 * (double)(time_t)(ms / 1000)) * 1e6)};
    nanosleep(&ts, NULL);
}

/* utime + stime of a process, in ms. */
static double proc_cpu_ms(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

/* The reference: etcdctl watching the w5/ prefix in its own process group, its output
 * in DIR/etcdctl.out. Returns its pid. */
static pid_t start_reference(const etcd_fx *fx)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "exec env ETCDCTL_API=3 etcdctl --endpoints=%s watch --prefix "
             W5_PREFIX " > %s/etcdctl.out", fx->endpoint, fx->dir);
    pid_t ref = fork();
    if (ref == 0) {
        setpgid(0, 0);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return ref;
}

/* Stops the reference and counts the events it printed; *last_write: when it last wrote
 * (CLOCK_REALTIME, its output's mtime). */
static uint64_t stop_reference(pid_t ref, const etcd_fx *fx, struct timespec *last_write)
{
    kill(-ref, SIGTERM);
    waitpid(ref, NULL, 0);
    char path[128];
    snprintf(path, sizeof path, "%s/etcdctl.out", fx->dir);
    struct stat st;
    if (stat(path, &st) == 0)
        *last_write = st.st_mtim;
    FILE *f = fopen(path, "r");
    unsigned long long lines = 0;
    if (f) {
        int ch;
        while ((ch = getc(f)) != EOF)
            lines += ch == '\n';
        fclose(f);
    }
    return lines / 3;       /* etcdctl prints each event as PUT, key, value */
}

/* What the writer measured. */
typedef struct wfigures {
    double secs, etcd_cpu, drain_ms;
    double last_ack_ms;             /* sl_now_ms of the last acknowledged put */
    struct timespec last_ack_real;  /* the same moment on CLOCK_REALTIME */
} wfigures;

/* The writer: puts for `seconds` with 64 in flight on its own loop, then waits (up to 30 s)
 * for the mirror to catch up. Returns 0, or 1 when the client cannot be made. */
static int write_phase(wstate *w, const etcd_fx *fx, const mthread *mt, double seconds,
                       wfigures *out)
{
    char err[256];
    sl_etcd_config cfg = {.endpoints = fx->endpoint};
    if (sl_etcd_new(&w->e, w->loop, &cfg, err, sizeof err))
        return 1;
    while (!sl_etcd_connected(w->e))
        uv_run(w->loop, UV_RUN_ONCE);
    double cpu0 = proc_cpu_ms(fx->pid), t0 = sl_now_ms();
    w->until_ms = t0 + seconds * 1000;
    for (int i = 0; i < 64; i++)
        put_next(w);
    while (w->inflight > 0)
        uv_run(w->loop, UV_RUN_ONCE);
    out->last_ack_ms = sl_now_ms();
    clock_gettime(CLOCK_REALTIME, &out->last_ack_real);
    out->secs = (sl_now_ms() - t0) / 1000;
    out->etcd_cpu = proc_cpu_ms(fx->pid) - cpu0;
    /* Let the mirror and etcdctl drain. */
    double drain0 = sl_now_ms();
    for (int i = 0; i < 3000 && mt->puts < w->acked; i++)
        sleep_ms(10);
    out->drain_ms = sl_now_ms() - drain0;
    return 0;
}

/* What each consumer did: events, events/s over its own run, and how long after the
 * writer's last acknowledged put its last event came. */
typedef struct consumer {
    uint64_t events;
    double per_s, behind_ms;
} consumer;

static void print_w5(const wstate *w, const mthread *mt, const wfigures *f,
                     const consumer *mirror, const consumer *ref, bool exact, bool json)
{
    double secs = f->secs, etcd_cpu = f->etcd_cpu;
    const sl_sync_stats *ss = &mt->sync_stats;
    double us_per_event = mt->puts ? mt->cpu_ms * 1e3 / (double)mt->puts : 0;
    double apply_behind = mt->applied_last_ms - f->last_ack_ms;
    if (json) {
        printf("{\"workload\":\"W5\",\"seconds\":%.1f,\"puts_acked\":%llu,\"put_failures\":%llu,"
               "\"writes_per_s\":%.0f,\"mirror_events\":%llu,\"mirror_events_per_s\":%.0f,"
               "\"mirror_behind_ms\":%.0f,\"applied\":%llu,\"merged\":%llu,"
               "\"unchanged\":%llu,\"refused\":%llu,\"apply_behind_ms\":%.0f,"
               "\"etcdctl_events\":%llu,\"etcdctl_events_per_s\":%.0f,\"etcdctl_behind_ms\":%.0f,"
               "\"exactly_once\":%s,\"mirror_cpu_ms\":%.0f,\"cpu_us_per_event\":%.2f,"
               "\"etcd_cpu_ms\":%.0f,\"mirror_cpu_share_of_etcd\":%.3f}\n",
               secs, (unsigned long long)w->acked, (unsigned long long)w->failed,
               w->acked / secs, (unsigned long long)mirror->events, mirror->per_s,
               mirror->behind_ms, (unsigned long long)ss->applied,
               (unsigned long long)ss->merged, (unsigned long long)ss->unchanged,
               (unsigned long long)ss->refused, apply_behind,
               (unsigned long long)ref->events, ref->per_s, ref->behind_ms,
               exact ? "true" : "false", mt->cpu_ms, us_per_event, etcd_cpu,
               etcd_cpu > 0 ? mt->cpu_ms / etcd_cpu : 0);
        return;
    }
    printf("W5 %.1f s: %llu puts acknowledged (%.0f/s, 64 in flight, %d entity ids), %llu "
           "failed\n", secs, (unsigned long long)w->acked, w->acked / secs, W5_IDS,
           (unsigned long long)w->failed);
    printf("  mirror: %llu events (%.0f/s over its run), last %.0f ms after the last put, "
           "duplicates %llu: %s\n", (unsigned long long)mirror->events, mirror->per_s,
           mirror->behind_ms, (unsigned long long)mt->duplicates,
           exact ? "every put exactly once" : "LOST OR REPEATED EVENTS");
    printf("  server apply: %llu applied, %llu merged, %llu unchanged, %llu refused; last "
           "applied %.0f ms after the last put\n", (unsigned long long)ss->applied,
           (unsigned long long)ss->merged, (unsigned long long)ss->unchanged,
           (unsigned long long)ss->refused, apply_behind);
    printf("  etcdctl watch (reference): %llu events (%.0f/s over its run), last %.0f ms after "
           "the last put\n", (unsigned long long)ref->events, ref->per_s, ref->behind_ms);
    printf("  CPU: mirror + apply thread %.0f ms (%.2f us an event), etcd %.0f ms (%.1f %% of "
           "etcd's)\n", mt->cpu_ms, us_per_event, etcd_cpu,
           etcd_cpu > 0 ? 100 * mt->cpu_ms / etcd_cpu : 0);
}

int bench_w5(double seconds, bool json)
{
    etcd_fx fx;
    etcd_fx_start(&fx);
    pid_t ref = start_reference(&fx);
    static mthread mt;
    memset(&mt, 0, sizeof mt);
    mt.endpoint = fx.endpoint;
    pthread_t th;
    pthread_create(&th, NULL, mirror_main, &mt);
    while (!mt.ready)
        sleep_ms(10);
    sleep_ms(300);      /* etcdctl is watching by now */

    uv_loop_t loop;
    uv_loop_init(&loop);
    wstate w = {.loop = &loop};
    wfigures f;
    if (write_phase(&w, &fx, &mt, seconds, &f))
        return 1;
    sleep_ms(500);
    mt.stop = 1;
    pthread_join(th, NULL);
    sl_etcd_free(w.e);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    struct timespec ref_last = f.last_ack_real;
    uint64_t ref_events = stop_reference(ref, &fx, &ref_last);
    etcd_fx_cleanup(&fx);
    /* Every acknowledged put reached the mirror once (each put is its own revision), and
     * every one was applied, merged into a later one, or found unchanged. */
    const sl_sync_stats *ss = &mt.sync_stats;
    bool exact = mt.puts == w.acked && mt.duplicates == 0 && w.failed == 0 &&
                 ss->applied + ss->merged + ss->unchanged == mt.puts + 1 && ss->refused == 0;
    double ref_behind = (double)(ref_last.tv_sec - f.last_ack_real.tv_sec) * 1e3 +
                        (double)(ref_last.tv_nsec - f.last_ack_real.tv_nsec) / 1e6;
    double ref_secs = f.secs + ref_behind / 1e3;    /* its run: the writer's, and its lag */
    consumer mc = {mt.puts, mt.last_ms > mt.first_ms ? mt.puts * 1e3 / (mt.last_ms - mt.first_ms)
                                                      : 0, mt.last_ms - f.last_ack_ms};
    consumer rc = {ref_events, ref_secs > 0 ? ref_events / ref_secs : 0, ref_behind};
    print_w5(&w, &mt, &f, &mc, &rc, exact, json);
    return exact ? 0 : 1;
}
