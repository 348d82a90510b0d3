/*
 * stats.c: the server's figures, one table for both readers: the admin `stats` command
 * (one `name value` line each) and the Prometheus endpoint (--metrics). A figure added to
 * `figures()` shows in both, with its help text.
 *
 * Tick times are kept in a ring of the last TICK_HIST ticks; the percentiles sort a copy
 * when asked (an admin or scrape rate, never per tick). `stats reset` empties the ring,
 * e.g. after a bulk load whose ticks would dominate the percentiles.
 */
#include "server/server_impl.h"

#include "base/clock.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct figure {
    const char *name;
    double v;
    bool counter;
    const char *help;
} figure;

/* How many figures figures() has (a static assertion there keeps the two in step), and
 * how many etcd_* figures follow them on a server on etcd. */
#define NFIGURES 25
#define NCLUSTER 30
static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* The median and the 99th percentile of the tick-time ring; n ticks in it. */
static void tick_percentiles(const sl_server *srv, double *p50, double *p99, uint64_t *n)
{
    *n = srv->hist_n < TICK_HIST ? srv->hist_n : TICK_HIST;
    double sorted[TICK_HIST];
    memcpy(sorted, srv->tick_hist, *n * sizeof(double));
    qsort(sorted, *n, sizeof(double), cmp_d);
    uint64_t i99 = (*n * 99) / 100 < *n ? (*n * 99) / 100 : *n - 1;
    *p50 = *n ? sorted[*n / 2] : 0;
    *p99 = *n ? sorted[i99] : 0;
}

/* What the spaces and their scripts hold, summed. */
typedef struct space_sums {
    uint64_t entities, pairs, script_errors, overruns;
    size_t mem, script_mem;
    uint32_t faulted;
} space_sums;

static space_sums sum_spaces(const sl_server *srv)
{
    space_sums t = {0};
    for (uint32_t k = 0; k < srv->nspaces; k++) {
        const hosted_space *sp = srv->spaces[k];
        sl_space_stats st;
        sl_space_get_stats(sp->s, &st);
        t.entities += st.entities;
        t.pairs += st.pairs;
        t.mem += st.bytes_total + sl_idmap_bytes(&sp->owners) +
                 sp->tick_evs.cap * sizeof(tick_ev) + sp->tick_emits.cap * sizeof(sl_lua_emit) +
                 sp->tick_gevs.cap * sizeof(gtick_ev) + sp->gsubs.cap * sizeof(gsub);
        if (sp->h) {
            sl_lua_stats ls;
            sl_lua_get_stats(sp->h, &ls);
            for (int i = 0; i < SL_FN_COUNT; i++)
                t.script_errors += ls.errors[i];
            t.mem += ls.mem_bytes;
            t.script_mem += ls.mem_script_bytes;
            t.overruns += ls.overruns;
            t.faulted += ls.faulted;
        }
    }
    return t;
}

static void figures(const sl_server *srv, figure *f)
{
    double p50, p99;
    uint64_t n;
    tick_percentiles(srv, &p50, &p99, &n);
    uint32_t clients = 0, sessions = 0;
    double queued = 0;
    size_t session_bytes = 0;
    for (uint32_t i = 0; i < srv->nsessions; i++) {
        const session *s = srv->sessions[i];
        sessions += s->used;
        clients += s->used && s->conn;
        if (s->used && s->conn)
            queued += (double)sl_conn_queued(s->conn);
        session_bytes += sizeof *s + s->owned.cap * sizeof(owned) +
                         s->enter.cap * sizeof(enter_ev) +
                         (s->leave.cap + s->stay.cap) * sizeof(pair_ev) +
                         s->emits.cap * sizeof(sl_lua_emit) + s->genter.cap * sizeof(enter_ev) +
                         s->gleave.cap * sizeof(pair_ev);
    }
    space_sums t = sum_spaces(srv);
    t.mem += session_bytes;
    sl_net_stats ns = {0};
    if (srv->net)
        sl_net_get_stats(srv->net, &ns);
    figure all[] = {
        {"spaces", srv->nspaces, false, "spaces"},
        {"entities", (double)t.entities, false, "entities in all spaces"},
        {"visible_pairs", (double)t.pairs, false, "visible pairs after the last tick"},
        {"clients", clients, false, "connected clients"},
        {"sessions", sessions, false, "sessions, connected or in their grace period"},
        {"ticks", (double)srv->ticks, true, "ticks run"},
        {"tick_threads", sl_pool_threads(srv->pool), false,
         "threads the spaces tick on in parallel (--threads; the loop thread is one)"},
        {"tick_ms_p50", p50, false, "median tick time (ms) over the window"},
        {"tick_ms_p99", p99, false, "99th percentile tick time (ms) over the window"},
        {"tick_ms_window", (double)n, false, "ticks in the tick-time window"},
        {"events_per_s", srv->events_per_s, false, "events sent per second, last second"},
        {"events_sent", (double)srv->events_sent, true, "enter / leave / stay events sent"},
        {"moves", (double)srv->moves, true, "moves accepted"},
        {"frames_in", (double)srv->frames_in, true, "frames received"},
        {"errors_sent", (double)srv->errors_sent, true, "error frames sent"},
        {"script_errors", (double)t.script_errors, true, "errors raised by scripts"},
        {"scripts_faulted", t.faulted, false, "spaces whose scripts are stopped"},
        {"script_overruns", (double)t.overruns, true,
         "ticks whose scripts were cut at the time budget"},
        {"script_memory_bytes", (double)t.script_mem, false,
         "memory the scripts hold themselves (what their limit counts)"},
        {"memory_bytes", (double)t.mem, false, "memory held by spaces, scripts and sessions"},
        {"uptime_s", (sl_now_ms() - srv->started_ms) / 1e3, false, "seconds since start"},
        {"out_queued_bytes", queued, false, "bytes queued to clients"},
        {"clients_cut_slow", (double)ns.cut_slow, true,
         "clients cut off for not reading (the output cap)"},
        {"connections_timed_out", (double)ns.timed_out, true,
         "connections closed for no hello in time, or idle"},
        {"frames_refused_rate", (double)ns.rate_refused, true,
         "frames refused for a connection's frame or byte rate"},
    };
    _Static_assert(sizeof all / sizeof *all == NFIGURES, "NFIGURES must count the figures");
    memcpy(f, all, sizeof all);
}

/* The etcd_* figures; how many (0 without etcd). */
static int cluster_figures(const sl_server *srv, figure *f)
{
    const sl_cluster_figures *c = &srv->cluster;
    figure all[] = {
        {"etcd_connected", c->state == 2, false, "1 while etcd serves this node, else 0"},
        {"etcd_state", c->state, false, "2 connected, 1 degraded, 0 disconnected"},
        {"etcd_revision", c->revision, false, "etcd revision up to which everything is applied"},
        {"etcd_head_revision", c->head_revision, false, "highest revision etcd's answers showed"},
        {"etcd_lag_revisions", c->head_revision > c->revision ? c->head_revision - c->revision
                                                             : 0, false,
         "head revision minus applied revision"},
        {"etcd_keys", c->keys, false, "keys mirrored from etcd"},
        {"etcd_resyncs", c->resyncs, true, "full lists after a compacted resume point"},
        {"etcd_history_resets", c->full_resets, true,
         "full lists after etcd's revision went backwards or its cluster changed"},
        {"etcd_reconnects", c->reconnects, true, "connections made to etcd"},
        {"etcd_endpoint_index", c->endpoint_index, false, "the endpoint in use (from 0)"},
        {"etcd_endpoint_switches", c->switches, true, "moves to another endpoint"},
        {"etcd_endpoint_failures", c->endpoint_failures, true,
         "endpoints given up (no leader, failed probe, ...)"},
        {"etcd_watch_reopens", c->watch_reopens, true, "Watch streams opened again"},
        {"etcd_applied", c->applied, true, "documents from etcd applied"},
        {"etcd_unchanged", c->unchanged, true, "documents equal to what was applied (no-ops)"},
        {"etcd_merged", c->merged, true, "changes overtaken by a later one of their key"},
        {"etcd_refused", c->refused, true, "documents refused (once a key and revision)"},
        {"etcd_queued", c->queued, false, "changes waiting for the next tick"},
        {"etcd_legacy_hash", c->legacy_hash, true,
         "definitions accepted with the old schema_hash basis (rewrite them)"},
        {"etcd_lease_ttl_left_s", c->lease_ttl_left_s, false,
         "seconds left on the node's lease (0: none held)"},
        {"etcd_alarm_nospace", c->alarm_nospace, false,
         "1 while etcd's NOSPACE alarm is raised (it refuses writes)"},
        {"cluster_nodes", c->nodes, false, "live nodes in the cluster's registry"},
        {"cluster_spaces_owned", c->spaces_owned, false, "cluster spaces this node owns"},
        {"cluster_spaces_waiting", c->spaces_waiting, false,
         "defined spaces without an owner (being placed, or their owner's lease running out)"},
        {"cluster_serving", c->serving, false,
         "1 while this node's lease is sure and it serves its spaces, else 0"},
        {"cluster_moves", c->moves, true, "spaces this node handed to another (committed)"},
        {"cluster_move_failures", c->move_failures, true,
         "moves of this node's spaces that failed (the space stayed or failed over)"},
        {"cluster_moving", c->moving, false, "1 while this node hands a space over"},
        {"cluster_spaces_taken", c->taken, true, "spaces this node took from a handoff"},
        {"cluster_move_freeze_ms", c->freeze_ms, false,
         "the last space taken here: ms from its freeze on the source to serving here"},
    };
    _Static_assert(sizeof all / sizeof *all == NCLUSTER, "NCLUSTER must count the figures");
    if (!srv->has_cluster)
        return 0;
    memcpy(f, all, sizeof all);
    return NCLUSTER;
}

/* Every figure; how many. */
static int all_figures(const sl_server *srv, figure f[NFIGURES + NCLUSTER])
{
    figures(srv, f);
    return NFIGURES + cluster_figures(srv, f + NFIGURES);
}

/* A whole number without decimals, anything else with three. */
static void put_value(out_text *o, double v)
{
    if (v == floor(v) && fabs(v) < 1e15)
        sl__put(o, "%.0f\n", v);
    else
        sl__put(o, "%.3f\n", v);
}

void sl__stats_text(sl_server *srv, out_text *o)
{
    figure f[NFIGURES + NCLUSTER];
    int n = all_figures(srv, f);
    for (int i = 0; i < n; i++) {
        sl__put(o, "%s ", f[i].name);
        put_value(o, f[i].v);
    }
    if (srv->cluster_status[0])
        sl__put(o, "etcd %s\n", srv->cluster_status);
}

size_t sl_server_metrics(void *ud, char *buf, size_t len)
{
    sl_server *srv = ud;
    out_text o = {buf, 0, len};
    buf[0] = '\0';
    figure f[NFIGURES + NCLUSTER];
    int n = all_figures(srv, f);
    for (int i = 0; i < n; i++) {
        sl__put(&o, "# HELP sightline_%s %s\n# TYPE sightline_%s %s\nsightline_%s ", f[i].name,
                f[i].help, f[i].name, f[i].counter ? "counter" : "gauge", f[i].name);
        put_value(&o, f[i].v);
    }
    return o.n;
}

void sl_server_set_cluster_status(sl_server *srv, const char *text)
{
    snprintf(srv->cluster_status, sizeof srv->cluster_status, "%s", text);
}

void sl_server_set_cluster_figures(sl_server *srv, const sl_cluster_figures *f)
{
    srv->cluster = *f;
    srv->has_cluster = true;
}
