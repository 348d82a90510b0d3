/*
 * sightline: the AOI server program. Parses the command line, creates the server
 * (server.h), its spaces (--space, --config), the etcd side (--etcd, cluster.h), the admin
 * socket (admin.h) and the Prometheus endpoint (--metrics), then runs the loop.
 *
 * Signals: SIGHUP reloads the scripts; SIGTERM and SIGINT shut down (clients and sockets
 * are closed, the node's etcd lease revoked, exit status 0). --watch-scripts reloads after
 * the script directory, subfolders included, has been quiet for a moment (watch.c).
 *
 * Shutdown order: stop() closes every handle (server, admin socket, signals, metrics, the
 * watch) and starts revoking the lease; the loop then runs until the last handle is closed
 * (the revoke has a deadline), and only then is the server freed.
 */
#include "net/http.h"

#include "base/log.h"
#include "server/admin.h"
#include "server/cluster.h"
#include "server/server.h"
#include "server/watch.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* What the command line asks for. */
typedef struct options {
    sl_server_config cfg;
    const char *admin;
    const char *spaces[64];
    int nspaces;
    const char *config;
    const char *password_file;  /* --etcd-password-file */
    const char *secret_file;    /* --cluster-secret-file */
    const char *metrics_host;
    int metrics_port;
    sl_cluster_config cluster;
    bool watch;
} options;

/* The running program: the server and everything wired around it. */
typedef struct program {
    uv_loop_t *loop;
    sl_server *srv;
    sl_admin *admin;
    uv_signal_t sig_hup, sig_term, sig_int;
    sl_watch *watch;            /* --watch-scripts */
    sl_http *metrics;           /* --metrics: the HTTP endpoint */
    sl_cluster *cluster;        /* --etcd */
    bool stopping;
    bool failed;                /* stopped by an error: exit 1 */
} program;

static char answer[1 << 16];

static void stop(void *ud)
{
    program *p = ud;
    if (p->stopping)
        return;
    p->stopping = true;
    sl_server_shutdown(p->srv);
    uv_close((uv_handle_t *)&p->sig_hup, NULL);
    uv_close((uv_handle_t *)&p->sig_term, NULL);
    uv_close((uv_handle_t *)&p->sig_int, NULL);
    sl_http_close(p->metrics);
    p->metrics = NULL;
    sl_cluster_stop(p->cluster);
    p->cluster = NULL;
    sl_watch_close(p->watch);
    p->watch = NULL;
    /* Last: an answer from etcd that the cluster's stop cancelled still reaches its admin
     * connection before the socket closes. */
    sl_admin_close(p->admin);
    p->admin = NULL;
}

/* Reloads every space's scripts and says so on stderr; why: what asked for it. */
static void reload(program *p, const char *why)
{
    int rc = sl_server_reload(p->srv, answer, sizeof answer);
    if (!sl_server_config_of(p->srv)->quiet)
        sl_log("%s: %s%s", why, rc ? "reload failed: " : "", answer);
}

static void on_signal(uv_signal_t *h, int signum)
{
    program *p = h->data;
    if (signum == SIGHUP) {
        reload(p, "SIGHUP");
        return;
    }
    if (!sl_server_config_of(p->srv)->quiet)
        sl_log("%s: shutting down",
               signum == SIGTERM ? "SIGTERM" : "SIGINT");
    stop(p);
}

static void on_scripts_changed(void *ud)
{
    reload(ud, "scripts changed");
}

/* Runs an admin command at start-up; false (said on stderr, prefixed by what) if it failed. */
static bool start_command(program *p, const char *what, const char *line)
{
    if (!sl_admin_command(p->srv, line, answer, sizeof answer))
        return true;
    sl_log("%s: %s", what, answer);
    return false;
}

/*
 * --config FILE: one space per line, `space NAME WIDTH HEIGHT [cell=C]
 * [index=grid|quadtree|auto] [hysteresis=H] [stay] [order=id|tick] [depth=D]`; `#` starts a
 * comment.
 */
static int load_config(program *p, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        sl_log("--config %s: %s", path, strerror(errno));
        return SL_EIO;
    }
    char line[512], where[600];
    int n = 0, rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        n++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char word[16] = "", cmd[600];
        int used = 0;
        if (sscanf(line, " %15s%n", word, &used) != 1)
            continue;
        snprintf(where, sizeof where, "%s:%d", path, n);
        if (strcmp(word, "space"))
            continue;       /* a setting (config_settings read it) */
        snprintf(cmd, sizeof cmd, "create %s", line + used);
        if (!start_command(p, where, cmd))
            rc = SL_EINVAL;
    }
    fclose(f);
    return rc;
}

/* --space NAME:WIDTHxHEIGHT[xDEPTH][,OPTION...], each one a `create` (the options its words;
 * a depth is its depth=D). */
static int create_spaces(program *p, const options *o)
{
    for (int i = 0; i < o->nspaces; i++) {
        char line[320], what[300], name[65], opts[160] = "";
        float w, h, d = 0;
        int used = 0, more = 0;
        bool ok = sscanf(o->spaces[i], "%64[^:]:%fx%f%n", name, &w, &h, &used) == 3;
        if (ok && o->spaces[i][used] == 'x')
            ok = sscanf(o->spaces[i] + used, "x%f%n", &d, &more) == 1 && d > 0;
        used += more;
        if (!ok || (o->spaces[i][used] && o->spaces[i][used] != ',')) {
            sl_log("--space %s: expected NAME:WIDTHxHEIGHT[xDEPTH][,OPTION...]", o->spaces[i]);
            return SL_EINVAL;
        }
        snprintf(opts, sizeof opts, "%s", o->spaces[i] + used);
        for (char *c = opts; *c; c++)
            if (*c == ',')
                *c = ' ';
        char depth[40] = "";
        if (d > 0)
            snprintf(depth, sizeof depth, " depth=%.9g", (double)d);
        snprintf(line, sizeof line, "create %s %g %g%s%s", name, (double)w, (double)h, depth,
                 opts);
        snprintf(what, sizeof what, "--space %s", o->spaces[i]);
        if (!start_command(p, what, line))
            return SL_EINVAL;
    }
    return 0;
}

static int usage(FILE *f)
{
    fprintf(f,
        "usage: sightline [--scripts DIR] [--listen HOST:PORT] [--admin PATH] [--tick-ms MS]\n"
        "                 [--threads N]\n"
        "                 [--token SECRET] [--grace-ms MS] [--max-frame BYTES] [--out-cap BYTES]\n"
        "                 [--budget-ms MS] [--mem-limit-mb MB] [--max-overruns N]\n"
        "                 [--unsafe-scripts]\n"
        "                 [--space NAME:WIDTHxHEIGHT[xDEPTH][,OPTION...]]... [--config FILE]\n"
        "                 [--watch-scripts]\n"
        "                 [--client-spaces on|off] [--max-session-spaces N]\n"
        "                 [--max-session-entities N] [--max-session-regions N]\n"
        "                 [--hello-ms MS] [--idle-ms MS]\n"
        "                 [--close-ms MS] [--max-frames-per-s N] [--max-bytes-per-s N]\n"
        "                 [--max-entity-props N] [--max-entity-prop-bytes N]\n"
        "                 [--max-prop-keys N]\n"
        "                 [--metrics HOST:PORT] [--etcd HOST:PORT[,...] --cluster NAME\n"
        "                 [--node-id ID] [--static-grace-ms MS] [--script-root DIR]\n"
        "                 [--etcd-timeout-ms MS] [--etcd-probe-ms MS] [--advertise HOST:PORT]\n"
        "                 [--capacity N] [--lease-ttl S] [--ownership-log FILE] [--rebalance]\n"
        "                 [--etcd-tls] [--etcd-ca FILE] [--etcd-cert FILE --etcd-key FILE]\n"
        "                 [--etcd-server-name NAME] [--etcd-user USER\n"
        "                 [--etcd-password-file FILE]] [--cluster-secret-file FILE]]\n"
        "                 [--quiet]\n"
        "Defaults: --scripts scripts/default, --listen 127.0.0.1:7100, --admin sightline.sock,\n"
        "--tick-ms 50, --grace-ms 5000, --max-frame 1048576, --out-cap 33554432,\n"
        "--budget-ms 200, --mem-limit-mb 256, --threads: the online CPUs (spaces tick in\n"
        "parallel on them). See README.md and proto/PROTOCOL.md.\n");
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

/* One option with a value: where it goes and how it reads. */
typedef enum {
    OPT_FLAG, OPT_STR, OPT_DOUBLE, OPT_SIZE, OPT_MB, OPT_LISTEN, OPT_SPACE,
    OPT_OFF,                    /* "off" sets the bool, "on" clears it */
    OPT_U32,                    /* a whole number from 1 to 2^32 - 1 */
} opt_kind;

typedef struct option {
    const char *name;
    opt_kind kind;
    size_t offset;              /* of the value in `options` */
    size_t offset2;             /* OPT_LISTEN: of the port */
} option;

#define OPT(name, kind, field) {name, kind, offsetof(options, field), 0}
static const option option_table[] = {
    OPT("--unsafe-scripts", OPT_FLAG, cfg.unsafe_scripts),
    OPT("--quiet", OPT_FLAG, cfg.quiet),
    OPT("--client-spaces", OPT_OFF, cfg.no_client_spaces),
    OPT("--max-session-spaces", OPT_U32, cfg.max_session_spaces),
    OPT("--max-session-entities", OPT_U32, cfg.max_session_entities),
    OPT("--max-session-regions", OPT_U32, cfg.max_session_regions),
    OPT("--max-entity-props", OPT_U32, cfg.max_entity_props),
    OPT("--max-entity-prop-bytes", OPT_U32, cfg.max_entity_prop_bytes),
    OPT("--max-prop-keys", OPT_U32, cfg.max_prop_keys),
    OPT("--watch-scripts", OPT_FLAG, watch),
    OPT("--scripts", OPT_STR, cfg.scripts),
    {"--listen", OPT_LISTEN, offsetof(options, cfg.listen_host),
     offsetof(options, cfg.listen_port)},
    OPT("--admin", OPT_STR, admin),
    OPT("--tick-ms", OPT_DOUBLE, cfg.tick_ms),
    OPT("--threads", OPT_U32, cfg.threads),
    OPT("--token", OPT_STR, cfg.token),
    OPT("--grace-ms", OPT_DOUBLE, cfg.grace_ms),
    OPT("--hello-ms", OPT_DOUBLE, cfg.hello_ms),
    OPT("--idle-ms", OPT_DOUBLE, cfg.idle_ms),
    OPT("--close-ms", OPT_DOUBLE, cfg.close_ms),
    OPT("--max-frames-per-s", OPT_DOUBLE, cfg.max_frames_per_s),
    OPT("--max-bytes-per-s", OPT_DOUBLE, cfg.max_bytes_per_s),
    OPT("--max-frame", OPT_SIZE, cfg.max_frame),
    OPT("--out-cap", OPT_SIZE, cfg.out_cap),
    OPT("--budget-ms", OPT_DOUBLE, cfg.budget_ms),
    OPT("--mem-limit-mb", OPT_MB, cfg.mem_limit),
    OPT("--max-overruns", OPT_U32, cfg.max_overruns),
    OPT("--space", OPT_SPACE, spaces),
    OPT("--config", OPT_STR, config),
    OPT("--etcd", OPT_STR, cluster.endpoints),
    OPT("--cluster", OPT_STR, cluster.name),
    OPT("--node-id", OPT_STR, cluster.node_id),
    OPT("--static-grace-ms", OPT_DOUBLE, cluster.static_grace_ms),
    OPT("--script-root", OPT_STR, cluster.script_root),
    OPT("--etcd-timeout-ms", OPT_DOUBLE, cluster.etcd_timeout_ms),
    OPT("--etcd-probe-ms", OPT_DOUBLE, cluster.etcd_probe_ms),
    OPT("--advertise", OPT_STR, cluster.advertise),
    OPT("--capacity", OPT_DOUBLE, cluster.capacity),
    OPT("--lease-ttl", OPT_DOUBLE, cluster.lease_ttl_s),
    OPT("--ownership-log", OPT_STR, cluster.ownership_log),
    OPT("--rebalance", OPT_FLAG, cluster.rebalance),
    OPT("--etcd-tls", OPT_FLAG, cluster.tls),
    OPT("--etcd-ca", OPT_STR, cluster.tls_ca_file),
    OPT("--etcd-cert", OPT_STR, cluster.tls_cert_file),
    OPT("--etcd-key", OPT_STR, cluster.tls_key_file),
    OPT("--etcd-server-name", OPT_STR, cluster.tls_server_name),
    OPT("--etcd-user", OPT_STR, cluster.user),
    OPT("--etcd-password-file", OPT_STR, password_file),
    OPT("--cluster-secret-file", OPT_STR, secret_file),
    {"--metrics", OPT_LISTEN, offsetof(options, metrics_host), offsetof(options, metrics_port)},
};

/* Stores one option's value; false when it does not read. */
static bool set_option(options *o, const option *opt, char *v)
{
    char *dst = (char *)o + opt->offset;
    switch (opt->kind) {
    case OPT_FLAG: *(bool *)dst = true; return true;
    case OPT_STR: *(const char **)dst = v; return true;
    case OPT_DOUBLE: *(double *)dst = strtod(v, NULL); return true;
    case OPT_SIZE: *(size_t *)dst = strtoull(v, NULL, 10); return true;
    case OPT_MB: *(size_t *)dst = strtoull(v, NULL, 10) << 20; return true;
    case OPT_LISTEN: return parse_listen(v, (const char **)dst, (int *)((char *)o + opt->offset2));
    case OPT_U32: {
        char *end;
        unsigned long long n = strtoull(v, &end, 10);
        if (*end || !*v || n == 0 || n > UINT32_MAX)
            return false;
        *(uint32_t *)dst = (uint32_t)n;
        return true;
    }
    case OPT_OFF:
        if (strcmp(v, "on") && strcmp(v, "off"))
            return false;
        *(bool *)dst = !strcmp(v, "off");
        return true;
    case OPT_SPACE:
        if (o->nspaces == 64)
            return false;
        o->spaces[o->nspaces++] = v;
        return true;
    }
    return false;
}

/* The option named by a config file's word (its flag without "--"), or NULL. */
static const option *config_option(const char *word)
{
    for (size_t k = 0; k < sizeof option_table / sizeof *option_table; k++)
        if (!strcmp(option_table[k].name + 2, word) &&
            (option_table[k].kind == OPT_STR || option_table[k].kind == OPT_FLAG))
            return &option_table[k];
    return NULL;
}

/* The values read from --config's settings, freed when the program ends. */
static char *setting_values[64];
static size_t nsetting_values;

static void free_settings(void)
{
    while (nsetting_values)
        free(setting_values[--nsetting_values]);
}

/* --config's settings other than `space` lines: `NAME VALUE` for a string option `--NAME`
 * (e.g. `etcd-ca /etc/sightline/ca.pem`), `NAME` for a flag. The command line wins: a
 * setting it gave is not replaced. 0, or 2 with the reason on stderr. */
static int config_settings(options *o, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;       /* (load_config says why, later) */
    atexit(free_settings);
    char line[1024];
    int n = 0, rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        n++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char word[64] = "", value[900] = "";
        if (sscanf(line, " %63s %899[^\n]", word, value) < 1 || !strcmp(word, "space"))
            continue;
        const option *opt = config_option(word);
        size_t vl = strlen(value);
        while (vl && (value[vl - 1] == ' ' || value[vl - 1] == '\t' || value[vl - 1] == '\r'))
            value[--vl] = '\0';
        if (!opt || (opt->kind == OPT_STR && !vl)) {
            sl_log("%s:%d: unknown setting %s", path, n, word);
            rc = 2;
            continue;
        }
        char *dst = (char *)o + opt->offset;
        if (opt->kind == OPT_FLAG)
            *(bool *)dst = true;
        else if (!*(const char **)dst && nsetting_values < 64 &&
                 (setting_values[nsetting_values] = strdup(value)))
            *(const char **)dst = setting_values[nsetting_values++];
    }
    fclose(f);
    return rc;
}

/* Fills o from argv; 0, or the exit status (0 after --help, 2 for a usage error). */
static int parse_args(options *o, int argc, char **argv, bool *done)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            *done = true;
            return 0;
        }
        const option *opt = NULL;
        for (size_t k = 0; k < sizeof option_table / sizeof *option_table && !opt; k++)
            if (!strcmp(argv[i], option_table[k].name))
                opt = &option_table[k];
        if (!opt)
            return usage(stderr);
        char *v = opt->kind == OPT_FLAG ? NULL : i + 1 < argc ? argv[++i] : NULL;
        if ((opt->kind != OPT_FLAG && !v) || !set_option(o, opt, v))
            return usage(stderr);
    }
    return 0;
}

/* What the command line and --config's settings say together: 0 or 2 (said on stderr). */
static int check_settings(options *o)
{
    if (o->config && config_settings(o, o->config))
        return 2;
    if (!o->cluster.endpoints != !o->cluster.name) {
        sl_log("--etcd and --cluster go together");
        return 2;
    }
    return 0;
}

/* A secret from a file's first line (or, without a file, from the environment variable env):
 * never on the command line, where `ps` shows it. *out NULL when neither gives one. 0, or
 * SL_EIO with the reason in err. */
static int read_secret(const char *file, const char *flag, const char *env, char *buf,
                       size_t len, const char **out, char *err, size_t errlen)
{
    if (!file) {
        *out = getenv(env);
        return 0;
    }
    FILE *f = fopen(file, "r");
    if (!f || !fgets(buf, (int)len, f)) {
        if (f)
            fclose(f);
        return sl_fail(err, errlen, SL_EIO, "%s %s: cannot read it", flag, file);
    }
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    *out = buf;
    return 0;
}

/* The cluster cannot go on (another live node has this node's id): stop, exit 1. */
static void cluster_fatal(void *ud, const char *why)
{
    program *p = ud;
    sl_log("--etcd: %s", why);
    p->failed = true;
    stop(p);
}

/* --etcd: the cluster side, advertising this node's addresses. Definitions name their
 * scripts below --script-root (default: the folder holding --scripts). */
static int start_cluster(program *p, options *o, char *err, size_t errlen)
{
    static char root[1024];
    if (!o->cluster.script_root) {
        const char *slash = o->cfg.scripts ? strrchr(o->cfg.scripts, '/') : NULL;
        snprintf(root, sizeof root, "%.*s", slash ? (int)(slash - o->cfg.scripts) : 1,
                 slash ? o->cfg.scripts : ".");
        o->cluster.script_root = root;
    }
    o->cluster.fatal = cluster_fatal;
    o->cluster.fatal_ud = p;
    static char pw[256], secret[129];
    const char *cluster_secret;
    if (read_secret(o->password_file, "--etcd-password-file", "SIGHTLINE_ETCD_PASSWORD", pw,
                    sizeof pw, &o->cluster.password, err, errlen) ||
        read_secret(o->secret_file, "--cluster-secret-file", "SIGHTLINE_CLUSTER_SECRET",
                    secret, sizeof secret, &cluster_secret, err, errlen))
        return SL_EIO;
    sl_server_set_secret(p->srv, cluster_secret);
    char listen[128];
    snprintf(listen, sizeof listen, "%s:%d", sl_server_config_of(p->srv)->listen_host,
             sl_server_port(p->srv));
    o->cluster.listen = listen;
    o->cluster.admin = o->admin;
    return sl_cluster_start(&p->cluster, p->loop, p->srv, &o->cluster, err, errlen);
}

/* Signals, --watch-scripts and --metrics; 0, or nonzero (said on stderr). */
static int start_handles(program *p, const options *o, char *mline, size_t mlen)
{
    uv_signal_t *sigs[3] = {&p->sig_hup, &p->sig_term, &p->sig_int};
    const int signums[3] = {SIGHUP, SIGTERM, SIGINT};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(p->loop, sigs[i]);
        sigs[i]->data = p;
        uv_signal_start(sigs[i], on_signal, signums[i]);
    }
    int rc;
    char err[512];
    if (o->watch && (rc = sl_watch_start(&p->watch, p->loop, o->cfg.scripts,
                                         on_scripts_changed, p, err, sizeof err))) {
        sl_log("%s", err);
        return rc;
    }
    mline[0] = '\0';
    if (o->metrics_host) {
        if ((rc = sl_http_listen(&p->metrics, p->loop, o->metrics_host, o->metrics_port,
                                    sl_server_metrics, p->srv, err, sizeof err))) {
            sl_log("%s", err);
            return rc;
        }
        snprintf(mline, mlen, ", metrics http://%s:%d/metrics", o->metrics_host,
                 sl_http_port(p->metrics));
    }
    return 0;
}

int main(int argc, char **argv)
{
    options o = {.cfg = {.listen_host = "127.0.0.1", .listen_port = 7100,
                         .scripts = "scripts/default", .tick_ms = 50, .grace_ms = 5000},
                 .admin = "sightline.sock", .cluster = {.static_grace_ms = 2000}};
    bool done = false;
    int rc = parse_args(&o, argc, argv, &done);
    if (rc || done || (rc = check_settings(&o)))
        return rc;
    signal(SIGPIPE, SIG_IGN);
    if (sl_admin_in_use(o.admin)) {
        /* Before anything starts: a second server must not take a live one's socket. */
        sl_log("admin socket %s: another server is running there (stop it, "
               "or give this one another --admin)", o.admin);
        return 1;
    }
    program p = {.loop = uv_default_loop()};
    char err[512];
    if (sl_server_new(&p.srv, p.loop, &o.cfg, err, sizeof err)) {
        sl_log("%s", err);
        return 1;
    }
    if (create_spaces(&p, &o) || (o.config && load_config(&p, o.config)))
        return 1;
    if (o.cluster.endpoints && start_cluster(&p, &o, err, sizeof err)) {
        sl_log("--etcd: %s", err);
        return 1;
    }
    if (sl_admin_listen(&p.admin, p.loop, o.admin, p.srv, p.cluster, stop, &p, err,
                        sizeof err)) {
        sl_log("%s", err);
        return 1;
    }
    char mline[128];
    if (start_handles(&p, &o, mline, sizeof mline))
        return 1;
    /* Always printed (also with --quiet): tools read the port from it. */
    printf("sightline: listening on %s:%d (protocol: proto/PROTOCOL.md), admin socket %s "
           "(try: build/sightctl --admin %s stats), scripts %s, tick %g ms on %u threads%s\n",
           sl_server_config_of(p.srv)->listen_host, sl_server_port(p.srv), o.admin, o.admin,
           o.cfg.scripts, sl_server_config_of(p.srv)->tick_ms,
           sl_server_config_of(p.srv)->threads, mline);
    fflush(stdout);
    uv_run(p.loop, UV_RUN_DEFAULT);
    sl_server_free(p.srv);
    uv_loop_close(p.loop);
    return p.failed ? 1 : 0;
}
