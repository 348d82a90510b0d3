/*
 * sightline: the AOI server. Wires the app (app.c) to the command line, the admin socket
 * (a Unix socket, mode 0600, one command per line; `sightctl` speaks it) and signals:
 * SIGHUP reloads the scripts, SIGTERM and SIGINT shut down cleanly (queued events are
 * written, clients closed, exit status 0).
 */
#include "server/app.h"
#include "server/cluster.h"
#include "net/metrics.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

typedef struct admin_conn {
    uv_pipe_t pipe;
    char in[8192];
    size_t n;
    struct server *srv;
    struct admin_conn *prev, *next;
    int pending;                /* answers still to come from etcd */
    bool dropped;               /* closed meanwhile: the last answer frees it */
} admin_conn;

typedef struct server {
    uv_loop_t *loop;
    sl_app *app;
    uv_pipe_t admin;
    bool admin_on;
    const char *admin_path;
    uv_signal_t sig_hup, sig_term, sig_int;
    uv_fs_event_t watch;        /* --watch-scripts */
    uv_timer_t settle;          /* reloads once the files have been quiet for a moment */
    bool watching;
    sl_metrics *metrics;        /* --metrics */
    sl_cluster *cluster;        /* --etcd */
    bool stopping;
    admin_conn *admins;     /* open admin connections */
} server;

static void admin_closed(uv_handle_t *h);

/* Unlinks an admin connection and closes it. */
static void admin_drop(admin_conn *c)
{
    server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->admins = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->pipe, admin_closed);
}

static char reply_buf[1 << 16];

static void stop(server *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    sl_app_shutdown(s->app);
    if (s->admin_on) {
        uv_close((uv_handle_t *)&s->admin, NULL);
        unlink(s->admin_path);
        s->admin_on = false;
    }
    uv_close((uv_handle_t *)&s->sig_hup, NULL);
    uv_close((uv_handle_t *)&s->sig_term, NULL);
    uv_close((uv_handle_t *)&s->sig_int, NULL);
    sl_metrics_close(s->metrics);
    s->metrics = NULL;
    sl_cluster_stop(s->cluster);
    s->cluster = NULL;
    if (s->watching) {
        uv_close((uv_handle_t *)&s->watch, NULL);
        uv_close((uv_handle_t *)&s->settle, NULL);
        s->watching = false;
    }
    /* Admin clients get their answer (queued writes finish before the close). */
    while (s->admins)
        admin_drop(s->admins);
}

static void admin_closed(uv_handle_t *h)
{
    admin_conn *c = (admin_conn *)h;
    if (c->pending)
        c->dropped = true;      /* an etcd answer is on its way: it frees c */
    else
        free(c);
}

typedef struct admin_write {
    uv_write_t req;
    char *buf;
} admin_write;

static void admin_written(uv_write_t *req, int status)
{
    (void)status;
    admin_write *w = (admin_write *)req;
    free(w->buf);
    free(w);
}

static void admin_send(admin_conn *c, const char *text, int failed)
{
    size_t n = strlen(text);
    admin_write *w = malloc(sizeof *w);
    char *buf = malloc(n + 16);
    if (!w || !buf) {
        free(w);
        free(buf);
        return;
    }
    memcpy(buf, text, n);
    if (n && buf[n - 1] != '\n')
        buf[n++] = '\n';
    n += (size_t)sprintf(buf + n, "%s\n", failed ? ".fail" : ".ok");
    w->buf = buf;
    uv_buf_t b = uv_buf_init(buf, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, admin_written) < 0) {
        free(buf);
        free(w);
    }
}

/* An etcd-backed command's answer. */
static void admin_async_reply(void *ud, const char *text, bool failed)
{
    admin_conn *c = ud;
    c->pending--;
    if (c->dropped) {
        if (!c->pending)
            free(c);
        return;
    }
    admin_send(c, text, failed);
}

/* `space put NAME REV JSON` / `space get NAME`: answered when etcd answers. */
static bool admin_space(admin_conn *c, const char *line)
{
    server *s = c->srv;
    char verb[8] = "", name[65] = "";
    long long rev = 0;
    int used = 0;
    if (strncmp(line, "space ", 6))
        return false;
    if (!s->cluster) {
        admin_send(c, "error: space put / get need the server to run with --etcd", 1);
        return true;
    }
    if (sscanf(line + 6, "%7s %64s%n", verb, name, &used) < 2) {
        admin_send(c, "error: usage: space get NAME | space put NAME REV JSON", 1);
        return true;
    }
    const char *rest = line + 6 + used;
    if (!strcmp(verb, "get")) {
        c->pending++;
        sl_cluster_space_get(s->cluster, name, admin_async_reply, c);
    } else if (!strcmp(verb, "put") && sscanf(rest, " %lld%n", &rev, &used) == 1) {
        c->pending++;
        sl_cluster_space_put(s->cluster, name, rev, rest + used, admin_async_reply, c);
    } else {
        admin_send(c, "error: usage: space get NAME | space put NAME REV JSON", 1);
    }
    return true;
}

static void admin_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    admin_conn *c = (admin_conn *)h;
    *buf = uv_buf_init(c->in + c->n, (unsigned)(sizeof c->in - c->n - 1));
}

static void admin_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    admin_conn *c = (admin_conn *)st;
    if (nread < 0) {
        admin_drop(c);
        return;
    }
    c->n += (size_t)nread;
    char *nl;
    while ((nl = memchr(c->in, '\n', c->n))) {
        *nl = '\0';
        server *s = c->srv;
        if (!admin_space(c, c->in)) {
            int failed = sl_app_command(s->app, c->in, reply_buf, sizeof reply_buf);
            admin_send(c, reply_buf, failed);
        }
        size_t used = (size_t)(nl - c->in) + 1;
        memmove(c->in, nl + 1, c->n - used);
        c->n -= used;
        if (sl_app_stopping(s->app)) {
            stop(s);
            return;
        }
    }
    if (c->n >= sizeof c->in - 1) {
        admin_send(c, "error: line too long", 1);
        c->n = 0;
    }
}

static void admin_accept(uv_stream_t *server_stream, int status)
{
    server *s = server_stream->data;
    if (status < 0)
        return;
    admin_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->srv = s;
    uv_pipe_init(s->loop, &c->pipe, 0);
    c->next = s->admins;
    if (s->admins)
        s->admins->prev = c;
    s->admins = c;
    if (uv_accept(server_stream, (uv_stream_t *)&c->pipe) < 0 ||
        uv_read_start((uv_stream_t *)&c->pipe, admin_alloc, admin_read) < 0)
        admin_drop(c);
}

static void on_signal(uv_signal_t *h, int signum)
{
    server *s = h->data;
    if (signum == SIGHUP) {
        int failed = sl_app_reload(s->app, reply_buf, sizeof reply_buf);
        fprintf(stderr, "sightline: SIGHUP: %s%s", failed ? "reload failed: " : "", reply_buf);
        return;
    }
    fprintf(stderr, "sightline: %s: shutting down\n", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    stop(s);
}

/* --watch-scripts: a change in the script directory reloads after 200 ms of quiet (an
 * editor writes a file in several steps). */
static void on_settled(uv_timer_t *t)
{
    server *s = t->data;
    int failed = sl_app_reload(s->app, reply_buf, sizeof reply_buf);
    fprintf(stderr, "sightline: scripts changed: %s%s", failed ? "reload failed: " : "", reply_buf);
}

static void on_script_change(uv_fs_event_t *h, const char *file, int events, int status)
{
    (void)file;
    (void)events;
    server *s = h->data;
    if (status == 0)
        uv_timer_start(&s->settle, on_settled, 200, 0);
}

/*
 * --config FILE: one space per line, `space NAME WIDTH HEIGHT [cell=C]
 * [index=grid|quadtree|auto] [hysteresis=H] [stay]`; `#` starts a comment.
 */
static int load_config(server *s, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "sightline: --config %s: %s\n", path, strerror(errno));
        return 1;
    }
    char line[512];
    int n = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        n++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char word[16] = "";
        int used = 0;
        if (sscanf(line, " %15s%n", word, &used) != 1)
            continue;
        if (strcmp(word, "space")) {
            fprintf(stderr, "sightline: %s:%d: unknown directive %s\n", path, n, word);
            rc = 1;
            break;
        }
        char cmd[600];
        snprintf(cmd, sizeof cmd, "create %s", line + used);
        if (sl_app_command(s->app, cmd, reply_buf, sizeof reply_buf)) {
            fprintf(stderr, "sightline: %s:%d: %s", path, n, reply_buf);
            rc = 1;
            break;
        }
    }
    fclose(f);
    return rc;
}

static size_t render_metrics(void *ud, char *buf, size_t len)
{
    return sl_app_metrics(ud, buf, len);
}

static int usage(FILE *f)
{
    fprintf(f,
        "usage: sightline [--scripts DIR] [--listen HOST:PORT] [--admin PATH] [--tick-ms MS]\n"
        "                 [--token SECRET] [--grace-ms MS] [--max-frame BYTES] [--out-cap BYTES]\n"
        "                 [--budget-ms MS] [--mem-limit-mb MB] [--unsafe-scripts]\n"
        "                 [--space NAME:WIDTHxHEIGHT]... [--config FILE] [--watch-scripts]\n"
        "                 [--metrics HOST:PORT] [--etcd HOST:PORT[,...] --cluster NAME\n"
        "                 [--node-id ID] [--static-grace-ms MS]]\n"
        "                 [--quiet]\n"
        "Defaults: --scripts scripts/default, --listen 127.0.0.1:7100, --admin sightline.sock,\n"
        "--tick-ms 50, --grace-ms 5000, --max-frame 1048576, --out-cap 33554432,\n"
        "--budget-ms 200, --mem-limit-mb 256. See README.md and proto/PROTOCOL.md.\n");
    return 2;
}

/* Splits "host:port" (IPv6: "[::1]:7100"). */
static bool parse_listen(char *arg, const char **host, int *port)
{
    char *colon = strrchr(arg, ':');
    if (!colon)
        return false;
    *colon = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535)
        return false;
    if (arg[0] == '[') {
        size_t n = strlen(arg);
        if (n < 2 || arg[n - 1] != ']')
            return false;
        arg[n - 1] = '\0';
        arg++;
    }
    *host = arg;
    *port = (int)p;
    return true;
}

int main(int argc, char **argv)
{
    sl_app_config cfg = {.listen_host = "127.0.0.1", .listen_port = 7100,
                         .scripts = "scripts/default", .tick_ms = 50, .grace_ms = 5000};
    const char *admin = "sightline.sock";
    const char *spaces[64];
    int nspaces = 0;
    const char *config = NULL, *metrics_host = NULL;
    sl_cluster_config ccfg = {.static_grace_ms = 2000};
    int metrics_port = 0;
    bool watch = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return usage(stdout), 0;
        if (!strcmp(a, "--unsafe-scripts")) {
            cfg.unsafe_scripts = true;
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            cfg.quiet = true;
            continue;
        }
        if (!strcmp(a, "--watch-scripts")) {
            watch = true;
            continue;
        }
        if (!v)
            return usage(stderr);
        i++;
        if (!strcmp(a, "--scripts"))
            cfg.scripts = v;
        else if (!strcmp(a, "--listen")) {
            if (!parse_listen(v, &cfg.listen_host, &cfg.listen_port))
                return usage(stderr);
        } else if (!strcmp(a, "--admin"))
            admin = v;
        else if (!strcmp(a, "--tick-ms"))
            cfg.tick_ms = strtod(v, NULL);
        else if (!strcmp(a, "--token"))
            cfg.token = v;
        else if (!strcmp(a, "--grace-ms"))
            cfg.grace_ms = strtod(v, NULL);
        else if (!strcmp(a, "--max-frame"))
            cfg.max_frame = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--out-cap"))
            cfg.out_cap = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--budget-ms"))
            cfg.budget_ms = strtod(v, NULL);
        else if (!strcmp(a, "--mem-limit-mb"))
            cfg.mem_limit = strtoull(v, NULL, 10) << 20;
        else if (!strcmp(a, "--space") && nspaces < 64)
            spaces[nspaces++] = v;
        else if (!strcmp(a, "--config"))
            config = v;
        else if (!strcmp(a, "--etcd"))
            ccfg.endpoints = v;
        else if (!strcmp(a, "--cluster"))
            ccfg.name = v;
        else if (!strcmp(a, "--node-id"))
            ccfg.node_id = v;
        else if (!strcmp(a, "--static-grace-ms"))
            ccfg.static_grace_ms = strtod(v, NULL);
        else if (!strcmp(a, "--metrics")) {
            if (!parse_listen(v, &metrics_host, &metrics_port))
                return usage(stderr);
        }
        else
            return usage(stderr);
    }
    signal(SIGPIPE, SIG_IGN);
    server s = {.loop = uv_default_loop(), .admin_path = admin};
    char err[512];
    if (sl_app_new(&s.app, s.loop, &cfg, err, sizeof err)) {
        fprintf(stderr, "sightline: %s\n", err);
        return 1;
    }
    for (int i = 0; i < nspaces; i++) {
        char line[256];
        float w, h;
        char name[65];
        if (sscanf(spaces[i], "%64[^:]:%fx%f", name, &w, &h) != 3) {
            fprintf(stderr, "sightline: --space %s: expected NAME:WIDTHxHEIGHT\n", spaces[i]);
            return 2;
        }
        snprintf(line, sizeof line, "create %s %g %g", name, (double)w, (double)h);
        if (sl_app_command(s.app, line, reply_buf, sizeof reply_buf)) {
            fprintf(stderr, "sightline: --space %s: %s", spaces[i], reply_buf);
            return 1;
        }
    }
    if (config && load_config(&s, config))
        return 1;
    if (!ccfg.endpoints != !ccfg.name) {
        fprintf(stderr, "sightline: --etcd and --cluster go together\n");
        return 2;
    }
    if (ccfg.endpoints) {
        char listen[128];
        snprintf(listen, sizeof listen, "%s:%d", cfg.listen_host, sl_app_port(s.app));
        ccfg.listen = listen;
        ccfg.admin = admin;
        if (sl_cluster_start(&s.cluster, s.loop, s.app, &ccfg, err, sizeof err)) {
            fprintf(stderr, "sightline: --etcd: %s\n", err);
            return 1;
        }
    }
    unlink(admin);
    uv_pipe_init(s.loop, &s.admin, 0);
    s.admin.data = &s;
    int rc;
    mode_t old = umask(0077);
    if ((rc = uv_pipe_bind(&s.admin, admin)) || (rc = uv_listen((uv_stream_t *)&s.admin, 16,
                                                                 admin_accept))) {
        umask(old);
        fprintf(stderr, "sightline: admin socket %s: %s\n", admin, uv_strerror(rc));
        return 1;
    }
    umask(old);
    chmod(admin, 0600);
    s.admin_on = true;
    uv_signal_init(s.loop, &s.sig_hup);
    uv_signal_init(s.loop, &s.sig_term);
    uv_signal_init(s.loop, &s.sig_int);
    s.sig_hup.data = s.sig_term.data = s.sig_int.data = &s;
    uv_signal_start(&s.sig_hup, on_signal, SIGHUP);
    uv_signal_start(&s.sig_term, on_signal, SIGTERM);
    uv_signal_start(&s.sig_int, on_signal, SIGINT);
    if (watch) {
        uv_fs_event_init(s.loop, &s.watch);
        uv_timer_init(s.loop, &s.settle);
        s.watch.data = s.settle.data = &s;
        if ((rc = uv_fs_event_start(&s.watch, on_script_change, cfg.scripts, 0))) {
            fprintf(stderr, "sightline: --watch-scripts %s: %s\n", cfg.scripts, uv_strerror(rc));
            return 1;
        }
        s.watching = true;
    }
    char mline[128] = "";
    if (metrics_host) {
        if (sl_metrics_listen(&s.metrics, s.loop, metrics_host, metrics_port, render_metrics,
                              s.app, err, sizeof err)) {
            fprintf(stderr, "sightline: %s\n", err);
            return 1;
        }
        snprintf(mline, sizeof mline, ", metrics http://%s:%d/metrics", metrics_host,
                 sl_metrics_port(s.metrics));
    }
    /* Always printed (also with --quiet): tools read the port from it. */
    printf("sightline: listening on %s:%d (protocol: proto/PROTOCOL.md), admin socket %s "
           "(try: build/sightctl --admin %s stats), scripts %s, tick %g ms%s\n",
           cfg.listen_host, sl_app_port(s.app), admin, admin, cfg.scripts, cfg.tick_ms, mline);
    fflush(stdout);
    uv_run(s.loop, UV_RUN_DEFAULT);
    sl_app_free(s.app);
    uv_loop_close(s.loop);
    return 0;
}
