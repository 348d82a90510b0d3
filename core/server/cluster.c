/*
 * cluster.c: the server on etcd (see cluster.h).
 *
 * The mirror of /sightline/NAME/v1/spaces/ delivers, in revision order, puts and deletes of
 * space definitions and static entities; sync.c queues them and applies them at the next
 * tick boundary (checked by schema.c, applied through definitions.c).
 *
 * The node's registration is a key bound to a lease that the etcd client keeps alive,
 * created only if absent (a second node with a live node's id is refused) and updated only
 * at its own mod_revision. When the lease is lost (etcd unreachable past its TTL, or
 * expired), the key goes with it; the client grants a new lease when etcd answers again,
 * and the node registers anew.
 * Losing etcd never stops serving: the spaces stay as last defined, `stats` says
 * DISCONNECTED while etcd cannot be reached, and the mirror catches up on reconnecting.
 */
#include "server/cluster.h"

#include "base/log.h"

#include "server/moves.h"
#include "server/owners.h"
#include "server/schema.h"
#include "server/server_impl.h"
#include "server/sync.h"

#include "base/clock.h"
#include "etcd/etcd.h"
#include "etcd/mirror.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One mirror's news, forwarded below its prefix (see "the mirrors" below). */
typedef struct route {
    sl_cluster *c;
    const char *prefix;         /* (one of c's) */
    void (*put)(sl_cluster *c, const char *k, size_t n, const uint8_t *v, size_t vl,
                int64_t mod);
    void (*del)(sl_cluster *c, const char *k, size_t n, int64_t rev);
} route;

struct sl_cluster {
    sl_server *srv;
    sl_cluster_config cfg;
    char prefix[256], nodes_key[256], node_id[128], listen[128], admin[256];
    char nodes_prefix[256], owners_prefix[256], moves_prefix[256], drains_prefix[256];
    sl_etcd *e;
    sl_etcd_mirror *mirrors[5];     /* spaces/, nodes/, owners/, moves/, drains/ */
    route routes[5];                /* one a mirror */
    sl_sync *sync;
    sl_owners *owners;
    sl_moves *moves;
    sl_etcd_lease *lease;
    double margin_ms;           /* served until the lease's sure end less this */
    double stepped_ms;          /* the last placement step */
    bool changed;               /* nodes or owners changed since */
    FILE *ownership_log;
    uv_timer_t status;          /* refreshes the `stats` line and the node registration */
    int64_t reg_lease, reg_mod; /* the lease and mod_revision of our registration */
    char reg_text[2048];        /* what it says */
    struct reg_op *registering; /* the registration write out, if any */
    struct reg_op *alarming;    /* the alarm query out, if any */
    uint32_t alarms;            /* etcd's alarms (SL_ETCD_ALARM_* bits), last seen */
    struct ttl_op *ttl_ops;     /* lease TTL queries out */
    unsigned conflicts;         /* answers that found another node's key */
    unsigned status_ticks;      /* on_status calls */
    char fatal[400];            /* why the node cannot go on; "" while it can */
};

/* ---- the mirror ---------------------------------------------------------------------------- */

/* The part of key below prefix (NULL when key is not below it), its length in *n. */
static const char *below(const char *prefix, const char *key, size_t kl, size_t *n)
{
    size_t pl = strlen(prefix);
    if (kl <= pl || memcmp(key, prefix, pl))
        return NULL;
    *n = kl - pl;
    return key + pl;
}

/*
 * The mirrors. Each mirror's news, keys made relative to its prefix, go where they belong: definitions
 * and static entities to the sync queue (applied at the next tick boundary), the registry
 * and the owner keys to the placement tables (owners.c), move intents and drains to
 * moves.c; the last three ask for placement to be reconciled at the next tick boundary.
 */
static void on_route_put(void *ud, const char *key, size_t kl, const uint8_t *v, size_t vl,
                         int64_t mod)
{
    route *r = ud;
    size_t n;
    const char *k = below(r->prefix, key, kl, &n);
    if (k)
        r->put(r->c, k, n, v, vl, mod);
}

static void on_route_delete(void *ud, const char *key, size_t kl, int64_t rev)
{
    route *r = ud;
    size_t n;
    const char *k = below(r->prefix, key, kl, &n);
    if (k)
        r->del(r->c, k, n, rev);
}

static void doc_put(sl_cluster *c, const char *k, size_t n, const uint8_t *v, size_t vl,
                    int64_t mod)
{
    sl_sync_put(c->sync, k, n, v, vl, mod);
}

static void doc_delete(sl_cluster *c, const char *k, size_t n, int64_t rev)
{
    sl_sync_delete(c->sync, k, n, rev);
}

static void node_put(sl_cluster *c, const char *k, size_t n, const uint8_t *v, size_t vl,
                     int64_t mod)
{
    (void)mod;
    sl_owners_node_put(c->owners, k, n, v, vl);
    c->changed = true;
}

static void node_delete(sl_cluster *c, const char *k, size_t n, int64_t rev)
{
    (void)rev;
    sl_owners_node_delete(c->owners, k, n);
    c->changed = true;
}

static void owner_put(sl_cluster *c, const char *k, size_t n, const uint8_t *v, size_t vl,
                      int64_t mod)
{
    sl_owners_owner_put(c->owners, k, n, v, vl, mod);
    c->changed = true;
}

static void owner_delete(sl_cluster *c, const char *k, size_t n, int64_t rev)
{
    (void)rev;
    sl_owners_owner_delete(c->owners, k, n);
    c->changed = true;
}

static void move_put(sl_cluster *c, const char *k, size_t n, const uint8_t *v, size_t vl,
                     int64_t mod)
{
    sl_moves_intent_put(c->moves, k, n, v, vl, mod);
}

static void move_delete(sl_cluster *c, const char *k, size_t n, int64_t rev)
{
    (void)rev;
    sl_moves_intent_delete(c->moves, k, n);
}

static void drain_put(sl_cluster *c, const char *k, size_t n, const uint8_t *v, size_t vl,
                      int64_t mod)
{
    (void)v;
    (void)vl;
    (void)mod;
    sl_moves_drain_put(c->moves, k, n);
    c->changed = true;
}

static void drain_delete(sl_cluster *c, const char *k, size_t n, int64_t rev)
{
    (void)rev;
    sl_moves_drain_delete(c->moves, k, n);
    c->changed = true;
}

/* Placement: the owner tables changed (a move committed): reconciled now. */
static void step_now(void *ud)
{
    sl_cluster *c = ud;
    const char *drained[64];
    size_t nd = sl_moves_drained(c->moves, drained, 64);
    sl_owners_set_draining(c->owners, drained, nd);
    c->changed = false;
    c->stepped_ms = sl_now_ms();
    sl_owners_step(c->owners, sl_etcd_lease_id(c->lease), c->stepped_ms);
}

/* A source says the handoff of space to this node is committed (epoch: the Txn's): the
 * owner key names us from that revision on; the space is built from its snapshot now. */
static void on_adopt(void *ud, const char *space, uint64_t epoch, uint64_t from_epoch)
{
    sl_cluster *c = ud;
    sl_owners_note(c->owners, space, c->node_id, c->listen, sl_etcd_lease_id(c->lease), epoch,
                   from_epoch);
    step_now(c);
}

/* At every tick boundary: how long the spaces may be served (the lease's sure end less the
 * margin), etcd's changes applied, and the placement reconciled when something changed
 * (or every 500 ms: waiting spaces' fallbacks). */
static void on_tick(void *ud)
{
    sl_cluster *c = ud;
    double until = sl_etcd_lease_valid_until_ms(c->lease);
    sl_server_set_serve_until(c->srv, until > 0 ? until - c->margin_ms : 0);
    sl_sync_stats a, b;
    sl_sync_get_stats(c->sync, &a);
    sl_sync_apply(c->sync);
    sl_sync_get_stats(c->sync, &b);
    double now = sl_now_ms();
    if (c->changed || a.applied != b.applied || now - c->stepped_ms >= 500)
        step_now(c);
    sl_moves_step(c->moves, sl_etcd_lease_id(c->lease), now);
}

/* ---- node registry and status -------------------------------------------------------------- */

enum { REGISTER_WAIT_S = 15 };  /* how long a start waits for a dead holder's key to expire */

static void register_node(sl_cluster *c);

/* The node's registration: listen and admin addresses, pid, the spaces it hosts. */
static char *registration(sl_cluster *c)
{
    json_t *doc = json_object();
    json_object_set_new(doc, "listen", json_string(c->listen));
    json_object_set_new(doc, "admin", json_string(c->admin));
    json_object_set_new(doc, "pid", json_integer(getpid()));
    json_object_set_new(doc, "capacity", json_real(c->cfg.capacity));
    json_object_set_new(doc, "lease", json_integer(sl_etcd_lease_id(c->lease)));
    json_t *spaces = json_array();
    const char *names[64];
    size_t n = sl_server_space_names(c->srv, names, 64);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(spaces, json_string(names[i]));
    json_object_set_new(doc, "spaces", spaces);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

/* The answer of a registration write (create-if-absent, or an update on our own
 * mod_revision). Ours: noted. Held by another lease: a live node has this id; a start waits
 * up to REGISTER_WAIT_S for a crashed holder's lease to expire, then gives up. */
typedef struct reg_op {
    sl_cluster *c;              /* NULL once the cluster stopped */
} reg_op;

static void on_registered(void *ud, const sl_etcd_result *r)
{
    reg_op *op = ud;
    sl_cluster *c = op->c;
    free(op);
    if (!c)
        return;
    c->registering = NULL;
    int64_t lease = sl_etcd_lease_id(c->lease);
    if (r->status.code)
        return;                 /* etcd unreachable: the next status tick tries again */
    if (r->succeeded) {
        c->reg_lease = lease;
        c->reg_mod = r->revision;
        return;
    }
    if (r->nkvs && r->kvs[0].lease == lease && lease) {
        c->reg_lease = lease;   /* our own earlier write, answered late */
        c->reg_mod = r->kvs[0].mod_revision;
        return;
    }
    c->reg_text[0] = '\0';
    if (c->reg_lease == lease && lease) {
        c->reg_lease = 0;       /* our key is gone (or was taken): create it again */
        return;
    }
    if (r->nkvs && ++c->conflicts <= REGISTER_WAIT_S * 2) {
        if (c->conflicts == 1)
            sl__log(c->srv, "etcd: node id %s is registered under another lease (%llx): "
                    "waiting up to %d s for it to expire", c->node_id,
                    (unsigned long long)r->kvs[0].lease, REGISTER_WAIT_S);
        return;
    }
    if (r->nkvs)                /* said from the status timer, outside etcd's callback */
        snprintf(c->fatal, sizeof c->fatal, "node id %s is held by a live node (%.*s): give "
                 "this node another --node-id, or stop that one", c->node_id,
                 (int)(r->kvs[0].value_len < 200 ? r->kvs[0].value_len : 200),
                 (const char *)r->kvs[0].value);
}

/* Writes the node's registration under its lease when it changed: created only if absent
 * (a live node's key is never overwritten), then updated only at the mod_revision we
 * wrote. Nothing to do without a lease or while a write is out. */
static void register_node(sl_cluster *c)
{
    int64_t id = c->lease ? sl_etcd_lease_id(c->lease) : 0;
    if (!id || c->registering)
        return;
    char *text = registration(c);
    if (!text)
        return;
    if (c->reg_lease == id && !strcmp(text, c->reg_text)) {
        free(text);
        return;
    }
    bool fresh = c->reg_lease != id;
    sl_etcd_cmp cmp = {.key = c->nodes_key, .target = fresh ? SL_CMP_CREATE : SL_CMP_MOD,
                       .op = SL_CMP_EQUAL, .number = fresh ? 0 : c->reg_mod};
    sl_etcd_txn_op put = {.kind = SL_TXN_PUT, .key = c->nodes_key, .value = text,
                          .value_len = strlen(text), .lease = id};
    sl_etcd_txn_op get = {.kind = SL_TXN_RANGE, .key = c->nodes_key};
    reg_op *op = calloc(1, sizeof *op);
    if (op && !sl_etcd_txn(c->e, &cmp, 1, &put, 1, &get, 1, on_registered, op)) {
        op->c = c;
        c->registering = op;
        snprintf(c->reg_text, sizeof c->reg_text, "%s", text);
    } else {
        free(op);
    }
    free(text);
}

/* The lease keeper's news: a lease granted (first, or again after a loss) registers the
 * node; a loss needs nothing here, since the registration went with the lease. */
static void on_lease(void *ud, sl_etcd_lease *l, int64_t id, bool alive)
{
    (void)l;
    (void)id;
    sl_cluster *c = ud;
    if (alive)
        register_node(c);     /* (again, after a loss) */
}

/* The answer of the alarm query: a change (NOSPACE raised or cleared) is logged once. */
static void on_alarms(void *ud, const sl_etcd_result *r)
{
    reg_op *op = ud;
    sl_cluster *c = op->c;
    free(op);
    if (!c)
        return;
    c->alarming = NULL;
    if (r->status.code)
        return;
    bool was = c->alarms & (1u << SL_ETCD_ALARM_NOSPACE);
    bool now = r->alarms & (1u << SL_ETCD_ALARM_NOSPACE);
    if (now && !was)
        sl__log(c->srv, "etcd: alarm NOSPACE: etcd's backend quota is used up and it refuses "
                "writes; serving with the definitions applied (the operator compacts, "
                "defragments and disarms: README \"Running etcd for Sightline\")");
    else if (was && !now)
        sl__log(c->srv, "etcd: alarm NOSPACE cleared");
    c->alarms = r->alarms;
}

/* What is left of a node's lease: kept for `sightctl cluster`. */
typedef struct ttl_op {
    sl_cluster *c;
    int64_t lease;
    struct ttl_op *next;
} ttl_op;

static void on_ttl(void *ud, const sl_etcd_result *r)
{
    ttl_op *op = ud;
    sl_cluster *c = op->c;
    if (c) {
        for (ttl_op **p = &c->ttl_ops; *p; p = &(*p)->next)
            if (*p == op) {
                *p = op->next;
                break;
            }
        if (!r->status.code)
            sl_owners_lease_ttl(c->owners, op->lease, r->ttl, sl_now_ms());
    }
    free(op);
}

/* Asks etcd what is left of every node's lease (every 2 s while connected). */
static void query_ttls(sl_cluster *c)
{
    int64_t leases[64];
    size_t n = sl_owners_node_leases(c->owners, leases, 64);
    if (c->ttl_ops || !sl_etcd_connected(c->e))
        return;                 /* (the last round is still out) */
    for (size_t i = 0; i < n; i++) {
        ttl_op *op = calloc(1, sizeof *op);
        if (!op)
            return;
        *op = (ttl_op){.c = c, .lease = leases[i]};
        if (sl_etcd_lease_ttl(c->e, leases[i], on_ttl, op)) {
            free(op);
            return;
        }
        op->next = c->ttl_ops;
        c->ttl_ops = op;
    }
}

/* Asks etcd for its alarms (every 2 s while connected). */
static void query_alarms(sl_cluster *c)
{
    if (c->alarming || !sl_etcd_connected(c->e))
        return;
    reg_op *op = calloc(1, sizeof *op);
    if (op && !sl_etcd_alarms(c->e, on_alarms, op)) {
        op->c = c;
        c->alarming = op;
    } else {
        free(op);
    }
}

/* Every 500 ms: the `etcd` line of `stats`, and the registration (written when the spaces it
 * lists changed, or after a lost lease). */
static void on_status(uv_timer_t *t)
{
    sl_cluster *c = t->data;
    sl_etcd_mirror_stats st;
    sl_etcd_mirror_get_stats(c->mirrors[0], &st);
    sl_etcd_health h;
    sl_etcd_mirror_health(c->mirrors[0], &h);
    sl_sync_stats ss;
    sl_sync_get_stats(c->sync, &ss);
    static const char *const state[] = {"DISCONNECTED", "DEGRADED", "connected"};
    char line[1024];
    snprintf(line, sizeof line, "%s %s%s revision %lld head %lld keys %zu resyncs %llu "
             "applied %llu unchanged %llu merged %llu refused %llu queued %zu%s%s%s%s",
             state[h.state], h.endpoint ? h.endpoint : "-",
             c->alarms & (1u << SL_ETCD_ALARM_NOSPACE) ? " alarm NOSPACE" : "",
             (long long)st.revision,
             (long long)h.head_revision, st.keys, (unsigned long long)st.resyncs,
             (unsigned long long)ss.applied, (unsigned long long)ss.unchanged,
             (unsigned long long)ss.merged, (unsigned long long)ss.refused, ss.queued,
             h.state != SL_ETCD_CONNECTED ? " reason " : "",
             h.state != SL_ETCD_CONNECTED ? h.reason : "",
             ss.last_refusal[0] ? " last_refusal " : "", ss.last_refusal);
    sl_server_set_cluster_status(c->srv, line);
    int64_t ttl = sl_etcd_lease_ttl_left_ms(c->lease);
    sl_cluster_figures f = {
        .state = h.state, .revision = (double)st.revision, .head_revision = (double)h.head_revision,
        .keys = (double)st.keys, .resyncs = (double)st.resyncs,
        .full_resets = (double)st.full_resets, .reconnects = (double)h.connects,
        .endpoint_index = h.endpoint_index, .switches = (double)h.switches,
        .endpoint_failures = (double)h.endpoint_failures,
        .watch_reopens = (double)h.watch_reopens, .applied = (double)ss.applied,
        .unchanged = (double)ss.unchanged, .merged = (double)ss.merged,
        .refused = (double)ss.refused, .queued = (double)ss.queued,
        .legacy_hash = (double)ss.legacy_hash, .lease_ttl_left_s = ttl > 0 ? ttl / 1e3 : 0,
        .alarm_nospace = (c->alarms & (1u << SL_ETCD_ALARM_NOSPACE)) != 0};
    size_t nodes, mine, waiting;
    sl_owners_counts(c->owners, &nodes, &mine, &waiting);
    double until = sl_etcd_lease_valid_until_ms(c->lease);
    f.nodes = (double)nodes;
    f.spaces_owned = (double)mine;
    f.spaces_waiting = (double)waiting;
    f.serving = until - c->margin_ms > sl_now_ms();
    uint64_t moved, failed;
    bool moving;
    sl_moves_counts(c->moves, &moved, &failed, &moving);
    f.moves = (double)moved;
    f.move_failures = (double)failed;
    f.moving = moving;
    f.taken = (double)c->srv->handoffs_taken;
    f.freeze_ms = c->srv->last_freeze_ms;
    if (++c->status_ticks % 4 == 0) {
        query_alarms(c);
        query_ttls(c);
    }
    sl_server_set_cluster_figures(c->srv, &f);
    if (c->fatal[0] && c->cfg.fatal)
        c->cfg.fatal(c->cfg.fatal_ud, c->fatal);    /* stops the cluster: nothing after */
    else
        register_node(c);
}

int sl_cluster_start(sl_cluster **out, uv_loop_t *loop, sl_server *srv,
                     const sl_cluster_config *cfg, char *err, size_t errlen)
{
    if (!sl_doc_space_name_ok(cfg->name, strlen(cfg->name)))
        return sl_fail(err, errlen, SL_EINVAL, "--cluster %s: a name is 1 to 64 letters, "
                       "digits and _ . : -", cfg->name);
    if (cfg->node_id && !sl_doc_space_name_ok(cfg->node_id, strlen(cfg->node_id)))
        return sl_fail(err, errlen, SL_EINVAL, "--node-id %s: an id is 1 to 64 letters, "
                       "digits and _ . : -", cfg->node_id);
    if (cfg->capacity < 0 || !isfinite(cfg->capacity))
        return sl_fail(err, errlen, SL_EINVAL, "--capacity must be a positive number");
    if (cfg->lease_ttl_s != 0 && !(cfg->lease_ttl_s >= 1 && cfg->lease_ttl_s <= 3600))
        return sl_fail(err, errlen, SL_EINVAL, "--lease-ttl is 1 to 3600 seconds");
    sl_cluster *c = calloc(1, sizeof *c);
    if (!c)
        return sl_fail(err, errlen, SL_ENOMEM, "out of memory");
    c->srv = srv;
    c->cfg = *cfg;
    if (!(c->cfg.static_grace_ms >= 0))
        c->cfg.static_grace_ms = 2000;
    if (cfg->node_id) {
        snprintf(c->node_id, sizeof c->node_id, "%s", cfg->node_id);
    } else {
        char host[64] = "node";
        gethostname(host, sizeof host - 1);
        snprintf(c->node_id, sizeof c->node_id, "%s-%d", host, (int)getpid());
    }
    snprintf(c->prefix, sizeof c->prefix, "%s%s/%sspaces/", SL_CLUSTER_ROOT, cfg->name,
             SL_SCHEMA_PATH);
    snprintf(c->nodes_key, sizeof c->nodes_key, "%s%s/%snodes/%s", SL_CLUSTER_ROOT,
             cfg->name, SL_SCHEMA_PATH, c->node_id);
    snprintf(c->nodes_prefix, sizeof c->nodes_prefix, "%s%s/%snodes/", SL_CLUSTER_ROOT,
             cfg->name, SL_SCHEMA_PATH);
    snprintf(c->owners_prefix, sizeof c->owners_prefix, "%s%s/%sowners/", SL_CLUSTER_ROOT,
             cfg->name, SL_SCHEMA_PATH);
    snprintf(c->moves_prefix, sizeof c->moves_prefix, "%s%s/%smoves/", SL_CLUSTER_ROOT,
             cfg->name, SL_SCHEMA_PATH);
    snprintf(c->drains_prefix, sizeof c->drains_prefix, "%s%s/%sdrains/", SL_CLUSTER_ROOT,
             cfg->name, SL_SCHEMA_PATH);
    snprintf(c->listen, sizeof c->listen, "%s",
             cfg->advertise ? cfg->advertise : cfg->listen ? cfg->listen : "");
    snprintf(c->admin, sizeof c->admin, "%s", cfg->admin ? cfg->admin : "");
    if (!(c->cfg.lease_ttl_s >= 1))
        c->cfg.lease_ttl_s = 10;
    if (!(c->cfg.capacity > 0))
        c->cfg.capacity = 1;
    /* A tenth of the TTL: far more than the clocks of two machines drift apart in a TTL,
     * and than a keepalive answer's delay that is not already counted (from its sending). */
    c->margin_ms = c->cfg.lease_ttl_s * 100.0;
    if (cfg->ownership_log && !(c->ownership_log = fopen(cfg->ownership_log, "a"))) {
        free(c);
        return sl_fail(err, errlen, SL_EIO, "--ownership-log %s: cannot open it",
                       cfg->ownership_log);
    }
    sl_server_set_clustered(srv, c->node_id, c->listen, c->ownership_log);
    sl_sync_config sc = {.static_grace_ms = c->cfg.static_grace_ms,
                         .script_root = cfg->script_root, .merge = true, .hosting = true};
    sl_etcd_config ec = {.endpoints = cfg->endpoints, .timeout_ms = cfg->etcd_timeout_ms,
                         .probe_interval_ms = cfg->etcd_probe_ms, .tls = cfg->tls,
                         .tls_ca_file = cfg->tls_ca_file, .tls_cert_file = cfg->tls_cert_file,
                         .tls_key_file = cfg->tls_key_file,
                         .tls_server_name = cfg->tls_server_name, .user = cfg->user,
                         .password = cfg->password};
    int rc = (c->sync = sl_sync_new(srv, &sc)) ? sl_etcd_new(&c->e, loop, &ec, err, errlen)
                                               : sl_fail(err, errlen, SL_ENOMEM, "out of memory");
    if (rc) {
        sl_sync_free(c->sync);
        free(c);
        return rc;
    }
    c->owners = sl_owners_new(srv, c->sync, c->e, c->owners_prefix, c->node_id, c->listen);
    char root[256];
    snprintf(root, sizeof root, "%s%s/%s", SL_CLUSTER_ROOT, cfg->name, SL_SCHEMA_PATH);
    c->moves = sl_moves_new(srv, c->owners, c->e, root, c->node_id, cfg->rebalance, step_now,
                            c);
    sl_server_on_adopt(srv, on_adopt, c);
    static const struct {
        size_t prefix;
        void (*put)(sl_cluster *, const char *, size_t, const uint8_t *, size_t, int64_t);
        void (*del)(sl_cluster *, const char *, size_t, int64_t);
    } kinds[5] = {
        {offsetof(sl_cluster, prefix), doc_put, doc_delete},
        {offsetof(sl_cluster, nodes_prefix), node_put, node_delete},
        {offsetof(sl_cluster, owners_prefix), owner_put, owner_delete},
        {offsetof(sl_cluster, moves_prefix), move_put, move_delete},
        {offsetof(sl_cluster, drains_prefix), drain_put, drain_delete},
    };
    sl_etcd_mirror_handlers rh = {.on_put = on_route_put, .on_delete = on_route_delete};
    for (int i = 0; i < 5; i++) {
        c->routes[i] = (route){c, (const char *)c + kinds[i].prefix, kinds[i].put,
                               kinds[i].del};
        c->mirrors[i] = sl_etcd_mirror_start(c->e, c->routes[i].prefix, &rh, &c->routes[i]);
    }
    c->lease = sl_etcd_lease_keep(c->e, (int64_t)c->cfg.lease_ttl_s, on_lease, c);
    sl_server_on_tick(srv, on_tick, c);
    uv_timer_init(loop, &c->status);
    c->status.data = c;
    uv_timer_start(&c->status, on_status, 0, 500);
    *out = c;
    return 0;
}

void sl_cluster_describe(const sl_cluster *c, char *out, size_t len)
{
    double now = sl_now_ms(), until = sl_etcd_lease_valid_until_ms(c->lease);
    int k = snprintf(out, len, "this node %s listen %s lease %llx ttl %g s, sure for %.1f s, "
                     "serving %s\n", c->node_id, c->listen,
                     (unsigned long long)sl_etcd_lease_id(c->lease), c->cfg.lease_ttl_s,
                     until > now ? (until - now) / 1e3 : 0.0,
                     until - c->margin_ms > now ? "yes" : "NO (its lease is not confirmed)");
    if (k > 0 && (size_t)k < len)
        k += (int)sl_owners_describe(c->owners, out + k, len - (size_t)k, now);
    if (k > 0 && (size_t)k < len)
        sl_moves_describe(c->moves, out + k, len - (size_t)k, now);
}

static void cluster_closed(uv_handle_t *h)
{
    free(h->data);
}

/* The revoke is answered (or failed, or timed out): now the client can go. */
static void on_revoked(void *ud, const sl_etcd_result *r)
{
    sl_etcd *e = ud;
    if (r->status.code)
        sl_log("etcd: revoking the node's lease: %s", r->status.message);
    sl_etcd_free(e);
}

void sl_cluster_stop(sl_cluster *c)
{
    if (!c)
        return;
    sl_server_on_tick(c->srv, NULL, NULL);
    sl_server_set_serve_until(c->srv, 0);      /* nothing served from here on */
    if (c->registering)
        c->registering->c = NULL;
    if (c->alarming)
        c->alarming->c = NULL;
    for (ttl_op *op = c->ttl_ops; op; op = op->next)
        op->c = NULL;
    for (int i = 0; i < 5; i++)
        sl_etcd_mirror_stop(c->mirrors[i]);
    sl_server_on_adopt(c->srv, NULL, NULL);
    sl_moves_free(c->moves);
    sl_owners_free(c->owners);
    /* Revoke the lease so that the registration goes at once; the client lives until the
     * answer (the call has a deadline), keeping the loop running that long. A registration
     * write still out is cancelled with the client: it must not reach a freed cluster. */
    int64_t id = sl_etcd_lease_id(c->lease);
    sl_etcd_lease_release(c->lease, false);
    if (!id || sl_etcd_lease_revoke(c->e, id, on_revoked, c->e))
        sl_etcd_free(c->e);
    sl_sync_free(c->sync);
    if (c->ownership_log)
        fclose(c->ownership_log);
    sl_server_set_clustered(c->srv, c->node_id, c->listen, NULL);
    uv_close((uv_handle_t *)&c->status, cluster_closed);
}

/* ---- `sightctl space move`, `drain`, `undrain` ---------------------------------------------- */

typedef struct intent_op {
    sl_cluster_reply reply;
    void *ud;
    char text[200];
} intent_op;

static void on_intent_written(void *ud, const sl_etcd_result *r)
{
    intent_op *op = ud;
    char text[400];
    if (r->status.code)
        snprintf(text, sizeof text, "error: etcd: %s", r->status.message);
    else
        snprintf(text, sizeof text, "%s (revision %lld); `sightctl cluster` shows it", op->text,
                 (long long)r->revision);
    op->reply(op->ud, text, r->status.code != 0);
    free(op);
}

void sl_cluster_move(sl_cluster *c, const char *space, const char *node, sl_cluster_reply reply,
                     void *ud)
{
    char key[320], value[200];
    intent_op *op = calloc(1, sizeof *op);
    if (!op || strlen(space) > 64 || strlen(node) > 64) {
        free(op);
        reply(ud, op ? "error: out of memory" : "error: names are at most 64 bytes", true);
        return;
    }
    op->reply = reply;
    op->ud = ud;
    snprintf(op->text, sizeof op->text, "move of %s to %s asked", space, *node ? node : "any node");
    snprintf(key, sizeof key, "%s%s", c->moves_prefix, space);
    snprintf(value, sizeof value, "{\"to\":\"%s\"}", node);
    if (sl_etcd_put(c->e, key, value, strlen(value), 0, false, on_intent_written, op)) {
        free(op);
        reply(ud, "error: out of memory", true);
    }
}

void sl_cluster_drain(sl_cluster *c, const char *node, bool on, sl_cluster_reply reply,
                      void *ud)
{
    char key[320];
    intent_op *op = calloc(1, sizeof *op);
    if (!op || strlen(node) > 64) {
        free(op);
        reply(ud, op ? "error: out of memory" : "error: names are at most 64 bytes", true);
        return;
    }
    op->reply = reply;
    op->ud = ud;
    snprintf(op->text, sizeof op->text, on ? "drain of node %s asked: its spaces move away one "
             "at a time" : "drain of node %s ended", node);
    snprintf(key, sizeof key, "%s%s", c->drains_prefix, node);
    int rc = on ? sl_etcd_put(c->e, key, "{}", 2, 0, false, on_intent_written, op)
                : sl_etcd_delete(c->e, key, false, false, on_intent_written, op);
    if (rc) {
        free(op);
        reply(ud, "error: out of memory", true);
    }
}

/* ---- `sightctl space put / get` ------------------------------------------------------------ */

typedef struct admin_op {
    sl_cluster_reply reply;
    void *ud;
    char name[65];
    int64_t rev;
} admin_op;

/* The answer of `space put`'s compare-and-swap: written, or a conflict that names what the
 * caller must do (read again and merge, or create with revision 0). */
static void on_cas(void *ud, const sl_etcd_result *r)
{
    admin_op *op = ud;
    char text[512];
    bool failed = true;
    if (r->status.code)
        snprintf(text, sizeof text, "error: etcd: %s", r->status.message);
    else if (r->succeeded) {
        snprintf(text, sizeof text, "space %s written at revision %lld", op->name,
                 (long long)r->revision);
        failed = false;
    } else if (r->nkvs)
        snprintf(text, sizeof text, "error: conflict: space %s is at mod_revision %lld, not "
                 "%lld (someone changed it: get it again, merge, put with the new revision)",
                 op->name, (long long)r->kvs[0].mod_revision, (long long)op->rev);
    else
        snprintf(text, sizeof text, "error: conflict: space %s does not exist (put it with "
                 "revision 0 to create it)", op->name);
    op->reply(op->ud, text, failed);
    free(op);
}

void sl_cluster_space_put(sl_cluster *c, const char *name, int64_t rev, const char *json,
                          sl_cluster_reply reply, void *ud)
{
    char why[256], key[320];
    sl_space_doc d;
    if (!sl_doc_space_name_ok(name, strlen(name)))
        snprintf(why, sizeof why, "a space name is 1 to %u letters, digits and _ . : -",
                 SL_SCHEMA_NAME_MAX);
    if (!sl_doc_space_name_ok(name, strlen(name)) ||
        sl_space_doc_parse(json, strlen(json), &d, why, sizeof why)) {
        char text[300];
        snprintf(text, sizeof text, "error: refused before writing: %s", why);
        reply(ud, text, true);
        return;
    }
    sl_space_doc_free(&d);      /* (only checked here) */
    admin_op *op = calloc(1, sizeof *op);
    if (!op) {
        reply(ud, "error: out of memory", true);
        return;
    }
    op->reply = reply;
    op->ud = ud;
    op->rev = rev;
    snprintf(op->name, sizeof op->name, "%s", name);
    snprintf(key, sizeof key, "%s%s", c->prefix, name);
    if (sl_etcd_cas(c->e, key, json, strlen(json), rev, on_cas, op)) {
        free(op);
        reply(ud, "error: out of memory", true);
    }
}

static void on_get(void *ud, const sl_etcd_result *r)
{
    admin_op *op = ud;
    if (r->status.code) {
        char text[300];
        snprintf(text, sizeof text, "error: etcd: %s", r->status.message);
        op->reply(op->ud, text, true);
    } else if (!r->nkvs) {
        char text[160];
        snprintf(text, sizeof text, "error: no space %s in etcd", op->name);
        op->reply(op->ud, text, true);
    } else {
        size_t n = r->kvs[0].value_len;
        char *text = malloc(n + 64);
        if (text) {
            snprintf(text, n + 64, "%.*s\nmod_revision %lld", (int)n,
                     (const char *)r->kvs[0].value, (long long)r->kvs[0].mod_revision);
            op->reply(op->ud, text, false);
            free(text);
        }
    }
    free(op);
}

void sl_cluster_space_get(sl_cluster *c, const char *name, sl_cluster_reply reply, void *ud)
{
    admin_op *op = calloc(1, sizeof *op);
    char key[320];
    if (!op) {
        reply(ud, "error: out of memory", true);
        return;
    }
    op->reply = reply;
    op->ud = ud;
    snprintf(op->name, sizeof op->name, "%s", name);
    snprintf(key, sizeof key, "%s%s", c->prefix, name);
    if (sl_etcd_range(c->e, key, false, 0, 0, on_get, op)) {
        free(op);
        reply(ud, "error: out of memory", true);
    }
}

/* ---- `sightctl space migrate` --------------------------------------------------------------- */

/* A migration: the definitions listed once, then rewritten one after the other through a
 * compare-and-swap on each one's mod_revision; a conflict reads that key again and retries
 * (a few times), so a concurrent writer's change is never overwritten blindly. */
typedef struct migration {
    sl_cluster *c;
    sl_cluster_reply reply;
    void *ud;
    char **keys;                /* the definitions' keys still to do, and their texts */
    char **docs;
    int64_t *mods;
    size_t n, next;
    int tries;
    unsigned done, current, refused, failed;
    char text[8192];            /* the answer, a line a definition */
    size_t len;
    char *doc_out;              /* the rewritten document of the write in flight */
} migration;

static void migrate_next(migration *mg);

static void mg_say(migration *mg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mg_say(migration *mg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(mg->text + mg->len, sizeof mg->text - mg->len, fmt, ap);
    va_end(ap);
    if (k > 0)
        mg->len = mg->len + (size_t)k < sizeof mg->text ? mg->len + (size_t)k : sizeof mg->text - 1;
}

static void migration_end(migration *mg)
{
    mg_say(mg, "migrated %u, already current %u, refused %u, failed %u\n", mg->done,
           mg->current, mg->refused, mg->failed);
    mg->reply(mg->ud, mg->text, mg->failed + mg->refused > 0);
    for (size_t i = 0; i < mg->n; i++) {
        free(mg->keys[i]);
        free(mg->docs[i]);
    }
    free(mg->keys);
    free(mg->docs);
    free(mg->mods);
    free(mg->doc_out);
    free(mg);
}

/* The document rewritten for the newest minor: version 1.SL_SCHEMA_MINOR (the patch kept
 * when the minor stays), its hash; NULL when it needs nothing (or cannot be read). */
static char *migrated(const char *doc, const char *name, migration *mg)
{
    sl_space_doc d;
    char why[300];
    if (sl_space_doc_parse(doc, strlen(doc), &d, why, sizeof why)) {
        mg_say(mg, "%s: refused, left alone: %s\n", name, why);
        mg->refused++;
        return NULL;
    }
    sl_space_doc_free(&d);      /* (only its version is read below) */
    if (d.minor == SL_SCHEMA_MINOR && !d.legacy_hash) {
        mg->current++;
        return NULL;
    }
    json_t *j = json_loads(doc, 0, NULL);
    char version[32];
    snprintf(version, sizeof version, "1.%u.%u", SL_SCHEMA_MINOR,
             d.minor == SL_SCHEMA_MINOR ? d.patch : 0);
    json_object_set_new(j, "version", json_string(version));
    json_object_set_new(j, "schema_hash", json_string(sl_schema_hash(SL_SCHEMA_MINOR)));
    char *out = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return out;
}

static void on_migrate_read(void *ud, const sl_etcd_result *r);

/* The answer of one rewrite: done, or a conflict (read the key again and retry). */
static void on_migrate_cas(void *ud, const sl_etcd_result *r)
{
    migration *mg = ud;
    const char *name = mg->keys[mg->next] + strlen(mg->c->prefix);
    if (r->status.code) {
        mg_say(mg, "%s: etcd: %s\n", name, r->status.message);
        mg->failed++;
    } else if (r->succeeded) {
        mg_say(mg, "%s: migrated to schema 1.%u at revision %lld\n", name, SL_SCHEMA_MINOR,
               (long long)r->revision);
        mg->done++;
    } else if (++mg->tries <= 3 &&
               !sl_etcd_range(mg->c->e, mg->keys[mg->next], false, 0, 0, on_migrate_read, mg)) {
        return;                 /* someone changed it: read it again */
    } else {
        mg_say(mg, "%s: changed by someone else %d times in a row: left alone\n", name, 3);
        mg->failed++;
    }
    mg->next++;
    migrate_next(mg);
}

/* A key read again after a conflict (or deleted meanwhile: nothing to do). */
static void on_migrate_read(void *ud, const sl_etcd_result *r)
{
    migration *mg = ud;
    if (r->status.code || !r->nkvs) {
        mg->next++;
        migrate_next(mg);
        return;
    }
    free(mg->docs[mg->next]);
    mg->docs[mg->next] = strndup((const char *)r->kvs[0].value, r->kvs[0].value_len);
    mg->mods[mg->next] = r->kvs[0].mod_revision;
    migrate_next(mg);
}

static void migrate_next(migration *mg)
{
    for (; mg->next < mg->n; mg->next++, mg->tries = 0) {
        const char *name = mg->keys[mg->next] + strlen(mg->c->prefix);
        free(mg->doc_out);
        mg->doc_out = mg->docs[mg->next] ? migrated(mg->docs[mg->next], name, mg) : NULL;
        if (!mg->doc_out)
            continue;
        if (!sl_etcd_cas(mg->c->e, mg->keys[mg->next], mg->doc_out, strlen(mg->doc_out),
                         mg->mods[mg->next], on_migrate_cas, mg))
            return;
        mg_say(mg, "%s: out of memory\n", name);
        mg->failed++;
    }
    migration_end(mg);
}

/* The definitions under the prefix (entity keys skipped), or the one asked for. */
static void on_migrate_list(void *ud, const sl_etcd_result *r)
{
    migration *mg = ud;
    if (r->status.code) {
        mg_say(mg, "error: etcd: %s\n", r->status.message);
        mg->failed++;
        migration_end(mg);
        return;
    }
    mg->keys = calloc(r->nkvs + 1, sizeof *mg->keys);
    mg->docs = calloc(r->nkvs + 1, sizeof *mg->docs);
    mg->mods = calloc(r->nkvs + 1, sizeof *mg->mods);
    size_t pl = strlen(mg->c->prefix);
    for (size_t i = 0; mg->keys && mg->docs && mg->mods && i < r->nkvs; i++) {
        const sl_etcd_kv *kv = &r->kvs[i];
        if (kv->key_len <= pl || memchr(kv->key + pl, '/', kv->key_len - pl))
            continue;           /* not a definition */
        mg->keys[mg->n] = strndup((const char *)kv->key, kv->key_len);
        mg->docs[mg->n] = strndup((const char *)kv->value, kv->value_len);
        mg->mods[mg->n++] = kv->mod_revision;
    }
    migrate_next(mg);
}

void sl_cluster_space_migrate(sl_cluster *c, const char *name, sl_cluster_reply reply, void *ud)
{
    migration *mg = calloc(1, sizeof *mg);
    if (!mg) {
        reply(ud, "error: out of memory", true);
        return;
    }
    *mg = (migration){.c = c, .reply = reply, .ud = ud};
    char key[320];
    bool all = !name;
    snprintf(key, sizeof key, "%s%s", c->prefix, all ? "" : name);
    if (sl_etcd_range(c->e, key, all, 0, 0, on_migrate_list, mg)) {
        free(mg);
        reply(ud, "error: out of memory", true);
    }
}
