/*
 * cluster.h: the server on etcd (`sightline --etcd ENDPOINTS --cluster NAME`). It mirrors
 * /sightline/NAME/v1/spaces/ (space definitions and static entities, README "The server on
 * etcd" has the documents), and registers the node under a kept lease at
 * /sightline/NAME/v1/nodes/NODE_ID. Losing etcd never stops the server: it serves with the
 * last known definitions, reconnects, catches up, and says so in `stats`.
 */
#pragma once

#include "server/server.h"

#include <uv.h>

typedef struct sl_cluster sl_cluster;

typedef struct sl_cluster_config {
    const char *endpoints;      /* "host:port[,host:port...]" */
    const char *name;           /* the cluster name in the key paths */
    const char *node_id;        /* NULL: hostname-pid */
    const char *listen, *admin; /* advertised in the node's registration */
    double static_grace_ms;     /* a deleted static entity leaves after this; default 2000 */
    const char *script_root;    /* definitions name script folders below this */
    double etcd_timeout_ms;     /* deadline of every etcd call; 0: 5000 */
    double etcd_probe_ms;       /* the etcd health probe's period; 0: 5000 */
    const char *advertise;      /* the address clients reach this node at; NULL: listen */
    double capacity;            /* this node's share of spaces, relative; 0: 1 */
    double lease_ttl_s;         /* the node's lease TTL; 0: 10 */
    const char *ownership_log;  /* a file for acquire / release lines; NULL: none */
    bool rebalance;             /* move spaces to nodes below their share (moves.c) */
    /* etcd over TLS, and etcd's authentication (sl_etcd_config's fields, etcd.h). */
    bool tls;
    const char *tls_ca_file, *tls_cert_file, *tls_key_file, *tls_server_name;
    const char *user, *password;
    /* Called when the node cannot go on (its --node-id is a live node's): stop with why. */
    void (*fatal)(void *ud, const char *why);
    void *fatal_ud;
} sl_cluster_config;

/* Where a cluster's keys live: SL_CLUSTER_ROOT NAME "/" SL_SCHEMA_PATH ("spaces/...",
 * "nodes/..."). The schema path is the one place the major version appears in a key. */
#define SL_CLUSTER_ROOT "/sightline/"
#define SL_SCHEMA_PATH "v1/"

/* Connects to etcd and starts the mirror, the node's lease and its registration; they
 * go on in the background (an unreachable etcd is retried). Returns 0, or SL_EINVAL (bad
 * endpoints) or SL_ENOMEM with the reason in err. */
int sl_cluster_start(sl_cluster **out, uv_loop_t *loop, sl_server *srv,
                     const sl_cluster_config *cfg, char *err, size_t errlen);
/* `sightctl cluster`: the nodes, and each space's owner and epoch, into out. */
void sl_cluster_describe(const sl_cluster *c, char *out, size_t len);
/* Revokes the node's lease (its registration goes at once) and stops. */
void sl_cluster_stop(sl_cluster *c);
/* Answers of the asynchronous admin commands below: text, and whether they failed. */
typedef void (*sl_cluster_reply)(void *ud, const char *text, bool failed);

/* `space move SPACE NODE` (NODE "": wherever placement puts it): an intent the space's owner
 * carries out (moves.c). `drain NODE` / `undrain NODE`: the node moves its spaces away and
 * takes no new one, until undrained. Answered when etcd has the key. */
void sl_cluster_move(sl_cluster *c, const char *space, const char *node, sl_cluster_reply reply,
                     void *ud);
void sl_cluster_drain(sl_cluster *c, const char *node, bool on, sl_cluster_reply reply,
                      void *ud);

/*
 * `space put NAME REV JSON`: checks the document as the server would (version, schema_hash,
 * fields), then writes it with a compare-and-swap on the key's mod_revision: REV is the
 * revision `space get` showed (0: the space must not exist yet). A conflict names the
 * current revision. `space get NAME`: the document and its mod_revision.
 */
void sl_cluster_space_put(sl_cluster *c, const char *name, int64_t rev, const char *json,
                          sl_cluster_reply reply, void *ud);
void sl_cluster_space_get(sl_cluster *c, const char *name, sl_cluster_reply reply, void *ud);
/*
 * `space migrate NAME | --all` (name NULL: all): rewrites definitions of an older minor (or
 * with the old schema_hash basis) for this server's newest minor, each through a
 * compare-and-swap on its mod_revision; a conflict reads the key again and retries (3
 * times). Documents this server would refuse are left alone and named. One line a
 * definition, then the counts.
 */
void sl_cluster_space_migrate(sl_cluster *c, const char *name, sl_cluster_reply reply,
                              void *ud);
