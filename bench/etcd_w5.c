/*
 * W5-etcd (shared/WORKLOADS.md): one writer puts small keys into a real etcd-server as fast
 * as it can (64 puts in flight); one Sightline mirror (list-then-watch, core/etcd/mirror.c)
 * consumes them in its own thread with its own loop and client; `etcdctl watch` consumes
 * the same stream in another process, as the reference. Reports events/s for both, whether
 * every put reached the mirror exactly once, and the CPU time of the mirror's thread
 * against etcd's own.
 */
#include "etcd_w5.h"

#include "base/clock.h"
#include "etcd/etcd.h"
#include "etcd/mirror.h"
#include "fixtures/etcd_fixture.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void put_next(wstate *w)
{
    char key[32];
    snprintf(key, sizeof key, "w5/%010llu", (unsigned long long)w->next++);
    if (sl_etcd_put(w->e, key, "v", 1, 0, false, on_put, w) == 0)
        w->inflight++;
}

/* The mirror's thread. */
typedef struct mthread {
    const char *endpoint;
    volatile int stop;
    uint64_t puts, duplicates;
    double cpu_ms;
    volatile int ready;
} mthread;

static void m_put(void *ud, const char *k, size_t kl, const uint8_t *v, size_t vl, int64_t mod)
{
    (void)k;
    (void)kl;
    (void)v;
    (void)vl;
    (void)mod;
    mthread *t = ud;
    t->puts++;
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
    if (sl_etcd_new(&e, &loop, &cfg, err, sizeof err))
        return NULL;
    sl_etcd_mirror_handlers h = {.on_put = m_put, .on_synced = m_synced};
    sl_etcd_mirror *m = sl_etcd_mirror_start(e, "w5/", &h, t);
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
    uv_run(&loop, UV_RUN_DEFAULT);
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
    snprintf(cmd, sizeof cmd, "exec env ETCDCTL_API=3 etcdctl --endpoints=%s watch --prefix w5/ "
             "> %s/etcdctl.out", fx->endpoint, fx->dir);
    pid_t ref = fork();
    if (ref == 0) {
        setpgid(0, 0);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return ref;
}

/* Stops the reference and counts the events it printed. */
static uint64_t stop_reference(pid_t ref, const etcd_fx *fx)
{
    kill(-ref, SIGTERM);
    waitpid(ref, NULL, 0);
    char path[128];
    snprintf(path, sizeof path, "%s/etcdctl.out", fx->dir);
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
    out->secs = (sl_now_ms() - t0) / 1000;
    out->etcd_cpu = proc_cpu_ms(fx->pid) - cpu0;
    /* Let the mirror and etcdctl drain. */
    double drain0 = sl_now_ms();
    for (int i = 0; i < 3000 && mt->puts < w->acked; i++)
        sleep_ms(10);
    out->drain_ms = sl_now_ms() - drain0;
    return 0;
}

static void print_w5(const wstate *w, const mthread *mt, const wfigures *f,
                     uint64_t ref_events, bool exact, bool json)
{
    double secs = f->secs, etcd_cpu = f->etcd_cpu;
    if (json) {
        printf("{\"workload\":\"W5\",\"seconds\":%.1f,\"puts_acked\":%llu,\"put_failures\":%llu,"
               "\"writes_per_s\":%.0f,\"mirror_events\":%llu,\"mirror_events_per_s\":%.0f,"
               "\"etcdctl_events\":%llu,\"etcdctl_events_per_s\":%.0f,\"exactly_once\":%s,"
               "\"mirror_cpu_ms\":%.0f,\"etcd_cpu_ms\":%.0f,\"mirror_cpu_share_of_etcd\":%.3f}\n",
               secs, (unsigned long long)w->acked, (unsigned long long)w->failed,
               w->acked / secs, (unsigned long long)mt->puts, mt->puts / secs,
               (unsigned long long)ref_events, ref_events / secs, exact ? "true" : "false",
               mt->cpu_ms, etcd_cpu, etcd_cpu > 0 ? mt->cpu_ms / etcd_cpu : 0);
        return;
    }
    printf("W5 %.1f s: %llu puts acknowledged (%.0f/s, 64 in flight), %llu failed\n", secs,
           (unsigned long long)w->acked, w->acked / secs, (unsigned long long)w->failed);
    printf("  mirror: %llu events (%.0f/s), duplicates %llu: %s\n",
           (unsigned long long)mt->puts, mt->puts / secs, (unsigned long long)mt->duplicates,
           exact ? "every put exactly once" : "LOST OR REPEATED EVENTS");
    printf("  etcdctl watch (reference): %llu events (%.0f/s)\n",
           (unsigned long long)ref_events, ref_events / secs);
    printf("  the mirror caught up %.0f ms after the last put\n", f->drain_ms);
    printf("  CPU: mirror thread %.0f ms, etcd %.0f ms (%.1f %% of etcd's)\n", mt->cpu_ms,
           etcd_cpu, etcd_cpu > 0 ? 100 * mt->cpu_ms / etcd_cpu : 0);
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
    uint64_t ref_events = stop_reference(ref, &fx);
    etcd_fx_cleanup(&fx);
    /* Every acknowledged put reached the mirror once (keys are unique: one put each). */
    bool exact = mt.puts == w.acked && mt.duplicates == 0 && w.failed == 0;
    print_w5(&w, &mt, &f, ref_events, exact, json);
    return exact ? 0 : 1;
}
