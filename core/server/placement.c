/*
 * placement.c: the server's side of a cluster (README "Running a cluster"). cluster.c and
 * owners.c decide which spaces this node serves; here the server keeps what a request or a
 * tick needs to know about it:
 *
 * - a cluster space is served only while the node's lease surely lives (serve_until: the
 *   lease's TTL counted from when its last answered keepalive was sent, less a margin):
 *   past it, the space sends no tick frame and its requests get `not_owner`, before etcd
 *   can let another node take it; every start and end of serving is written to the
 *   ownership log (--ownership-log) with its CLOCK_MONOTONIC time;
 * - where the spaces this node does not serve are served (the `moved` error, `where`);
 * - the cluster's nodes (the `welcome` frame).
 */
#include "server/server_impl.h"

#include "base/clock.h"

#include <string.h>

const remote_space *sl__remote_find(const sl_server *srv, const char *name, size_t n)
{
    const remote_space *r = srv->remote.p;
    for (size_t i = 0; i < srv->remote.n; i++)
        if (strlen(r[i].name) == n && !memcmp(r[i].name, name, n))
            return &r[i];
    return NULL;
}

/* One line of the ownership log: what, space, epoch, CLOCK_MONOTONIC ms. */
static void log_ownership(sl_server *srv, const char *what, const hosted_space *sp, double t)
{
    if (!srv->ownership_log)
        return;
    fprintf(srv->ownership_log, "%s %s %llu %.3f\n", what, sp->name,
            (unsigned long long)sp->epoch, t);
    fflush(srv->ownership_log);
}

/* The end of a serving interval. Every request and tick served was checked against the
 * deadline of that moment, the last of them against sp->serve_deadline_ms: nothing was
 * served after it, whenever the end is noticed (a node paused past its lease notices on
 * waking, when another node may already serve the space). */
static void release(sl_server *srv, hosted_space *sp, double now_ms)
{
    if (sp->serving)
        log_ownership(srv, "release", sp,
                      sp->serve_deadline_ms < now_ms ? sp->serve_deadline_ms : now_ms);
    sp->serving = false;
}

bool sl__serving(sl_server *srv, hosted_space *sp, double now_ms)
{
    if (sp->creator != SL_CREATOR_CLUSTER || !srv->clustered)
        return true;
    bool ok = sp->epoch && now_ms < srv->serve_until_ms && !sp->exported;
    if (!ok) {
        release(srv, sp, now_ms);
        return false;
    }
    if (!sp->serving)
        log_ownership(srv, "acquire", sp, now_ms);
    sp->serving = true;
    sp->serve_deadline_ms = srv->serve_until_ms;
    return true;
}

void sl__serving_end(sl_server *srv, hosted_space *sp)
{
    release(srv, sp, sl_now_ms());
}

/* The `moved` error: the space is served by another node. */
static void reply_moved(sl_server *srv, sl_conn *c, const sl_msg *m, const remote_space *r)
{
    sl_enc e;
    sl_enc_begin(&e, sl_conn_out(c));
    sl_enc_map(&e, 7 + (m && m->has_rid));
    sl_enc_kv_str(&e, "t", "error");
    if (m && m->has_rid)
        sl_enc_kv_u64(&e, "rid", m->rid);
    sl_enc_kv_str(&e, "code", "moved");
    char msg[320];
    snprintf(msg, sizeof msg, "space %s is served by node %s at %s (epoch %llu)", r->name,
             r->node, r->listen, (unsigned long long)r->epoch);
    sl_enc_kv_str(&e, "msg", msg);
    sl_enc_kv_str(&e, "space", r->name);
    sl_enc_kv_str(&e, "node", r->node);
    sl_enc_kv_str(&e, "owner", r->listen);
    sl_enc_kv_u64(&e, "epoch", r->epoch);
    sl_enc_end(&e);
    srv->errors_sent++;
}

bool sl__reply_not_here(sl_server *srv, sl_conn *c, const sl_msg *m, const char *name,
                        size_t n)
{
    const remote_space *r = sl__remote_find(srv, name, n);
    hosted_space *sp = sl__space_find(srv, name, n);
    char msg[200];
    if (r && r->listen[0]) {
        reply_moved(srv, c, m, r);
        return true;
    }
    if (!r && !(sp && sp->creator == SL_CREATOR_CLUSTER && srv->clustered))
        return false;
    snprintf(msg, sizeof msg, "space %.*s has no node serving it right now (it is being "
             "placed, or its owner cannot confirm its lease): retry", (int)n, name);
    sl_enc_error(sl_conn_out(c), m && m->has_rid, m ? m->rid : 0, "not_owner", msg);
    srv->errors_sent++;
    return true;
}

void sl__encode_nodes(const sl_server *srv, sl_enc *e)
{
    const cluster_node *nd = srv->nodes.p;
    sl_enc_str(e, "nodes");
    sl_enc_array(e, (uint32_t)srv->nodes.n);
    for (size_t i = 0; i < srv->nodes.n; i++) {
        sl_enc_map(e, 2);
        sl_enc_kv_str(e, "node", nd[i].node);
        sl_enc_kv_str(e, "listen", nd[i].listen);
    }
}

/* ---- what cluster.c sets ------------------------------------------------------------------- */

void sl_server_set_clustered(sl_server *srv, const char *node, const char *advertise,
                             FILE *ownership_log)
{
    srv->clustered = true;
    snprintf(srv->node_id, sizeof srv->node_id, "%s", node);
    snprintf(srv->advertise, sizeof srv->advertise, "%s", advertise);
    srv->ownership_log = ownership_log;
}

void sl_server_set_serve_until(sl_server *srv, double until_ms)
{
    srv->serve_until_ms = until_ms;
    if (until_ms > 0)
        return;
    for (uint32_t k = 0; k < srv->nspaces; k++)     /* stopping: logged at once */
        sl__serving_end(srv, srv->spaces[k]);
}

int sl_server_set_remote(sl_server *srv, const char *space, const char *node,
                         const char *listen, uint64_t epoch)
{
    remote_space *r = (remote_space *)sl__remote_find(srv, space, strlen(space));
    if (!r) {
        r = sl_vec_push(&srv->remote, sizeof *r);
        if (!r)
            return SL_ENOMEM;
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "%s", space);
    }
    snprintf(r->node, sizeof r->node, "%s", node ? node : "");
    snprintf(r->listen, sizeof r->listen, "%s", listen ? listen : "");
    r->epoch = epoch;
    return 0;
}

void sl_server_forget_remote(sl_server *srv, const char *space)
{
    remote_space *r = (remote_space *)sl__remote_find(srv, space, strlen(space));
    if (r)
        *r = ((remote_space *)srv->remote.p)[--srv->remote.n];
}

int sl_server_set_epoch(sl_server *srv, const char *space, uint64_t epoch)
{
    hosted_space *sp = sl__space_find(srv, space, strlen(space));
    if (!sp)
        return SL_ENOENT;
    if (sp->epoch != epoch)                     /* a new epoch: a new interval */
        release(srv, sp, sl_now_ms());
    sp->epoch = epoch;
    return 0;
}

void sl_server_set_nodes(sl_server *srv, const char *const *ids, const char *const *listens,
                         size_t n)
{
    srv->nodes.n = 0;
    for (size_t i = 0; i < n; i++) {
        cluster_node *nd = sl_vec_push(&srv->nodes, sizeof *nd);
        if (!nd)
            return;
        snprintf(nd->node, sizeof nd->node, "%s", ids[i]);
        snprintf(nd->listen, sizeof nd->listen, "%s", listens[i]);
    }
}
