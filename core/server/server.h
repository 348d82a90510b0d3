/*
 * server.h: the sightline server, independent of how it is started: spaces (each with its
 * script host), client sessions and the entities they own, the protocol's requests, and
 * the tick that sends every client the events of its watchers. main.c wires it to the
 * command line and signals; admin.h gives operators their commands; cluster.h feeds it the
 * spaces and static entities defined in etcd.
 *
 * Everything runs on the loop thread, except the spaces' ticks, which run in parallel on
 * --threads threads while the loop thread waits for them (server.c). Requests change spaces
 * as their frames arrive; the events they cause come out at the next tick, as the engine
 * promises.
 */
#pragma once

#include "base/value.h"
#include "engine/space.h"

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct sl_server sl_server;

typedef struct sl_server_config {
    const char *listen_host;    /* default 127.0.0.1 */
    int listen_port;            /* default 7100; 0: any free port */
    const char *scripts;        /* script directory every space runs */
    double tick_ms;             /* default 50 */
    const char *token;          /* shared secret clients must present in hello; NULL: none */
    size_t max_frame;           /* default 1 MiB */
    size_t out_cap;             /* per client; default 32 MiB */
    double grace_ms;            /* a dropped client's entities live this long; default 5000 */
    double hello_ms;            /* a connection must say hello within; default 10000 */
    double idle_ms;             /* a client that sends nothing this long is closed; default
                                 * 60000; < 0: never */
    double close_ms;            /* a closing connection's last frames wait at most; 2000 */
    double max_frames_per_s;    /* per connection; default 2000; < 0: any */
    double max_bytes_per_s;     /* per connection; default 64 MiB; < 0: any */
    double budget_ms;           /* script time per tick per space; default 200 */
    size_t mem_limit;           /* per space's script VM; default 256 MiB */
    uint32_t max_overruns;      /* ticks in a row cut at the budget that fault a space's
                                 * scripts; 0: the script host's default (3) */
    bool unsafe_scripts;
    bool quiet;                 /* no log lines on stderr */
    bool no_client_spaces;      /* clients may not create spaces (--client-spaces off) */
    uint32_t max_session_spaces;    /* spaces one session may have created; default 16 */
    uint32_t max_session_entities;  /* entities one session may own; default 100000 */
    uint32_t max_session_regions;   /* regions one session may own; default 1024 */
    uint32_t max_entity_props;      /* props a client may set on an entity; default 64 */
    uint32_t max_entity_prop_bytes; /* their bytes (keys and string values); 64 KiB */
    uint32_t max_prop_keys;         /* distinct prop keys in a space; default 4096 */
    uint32_t threads;           /* spaces tick in parallel on this many threads, the loop
                                 * thread among them (server.c); 0: the online CPUs; 1: all
                                 * on the loop thread */
} sl_server_config;

/* Starts listening on loop and ticking. Returns 0, or a negative SL_E* code with the reason
 * in err (nothing is left running). */
int sl_server_new(sl_server **out, uv_loop_t *loop, const sl_server_config *cfg, char *err,
                  size_t errlen);
/* The TCP port the server listens on. */
int sl_server_port(const sl_server *srv);
/* The configuration in force (defaults filled in). */
const sl_server_config *sl_server_config_of(const sl_server *srv);

/* Who created a space (and so may drop it): the operator, the cluster (etcd), or a client
 * session (its serial number, from 1 up). */
#define SL_CREATOR_OPERATOR 0u
#define SL_CREATOR_CLUSTER UINT64_MAX

/*
 * Creates a space named `name` running the scripts in `scripts` (NULL: none), created by
 * `creator` (SL_CREATOR_* or a session's serial). Returns 0, or
 * SL_EINVAL (bad name or configuration), SL_EEXIST (the name is taken), SL_ELIMIT (too many
 * spaces), SL_ENOEXEC (the scripts do not load) or SL_ENOMEM, with the reason in err.
 */
int sl_server_create_space(sl_server *srv, const char *name, size_t name_len,
                           const sl_space_config *cfg, const char *scripts, uint64_t creator,
                           char *err, size_t errlen);

/* Writes the figures of `stats` in Prometheus' text format to buf (NUL-terminated, cut to
 * len); returns the length. ud is the server (the HTTP endpoint's render callback). */
size_t sl_server_metrics(void *ud, char *buf, size_t len);

/* Reloads every space's scripts; one line per space goes to out. Returns 0, or SL_ENOEXEC
 * when a space refused its new scripts (its running scripts stay). */
int sl_server_reload(sl_server *srv, char *out, size_t outlen);

/* Stops: closes clients (what is queued is written if the socket takes it) and the
 * listener, and stops the tick. Run the loop until it returns, then free. */
void sl_server_shutdown(sl_server *srv);
/* Whether a shutdown was asked for (by sl_server_shutdown or an admin command). */
bool sl_server_stopping(const sl_server *srv);
void sl_server_free(sl_server *srv);

/* ---- spaces and entities defined elsewhere (etcd: cluster.c) ---- */

/* Creates the space, or reconfigures it in place (index kind and cell, tick period; the
 * map size, hysteresis and stay cannot change); scripts NULL: the server's; tick_ms 0: the
 * server's tick (a space cannot tick faster than the server). 0, or SL_E* with err. */
int sl_server_define_space(sl_server *srv, const char *name, const sl_space_config *cfg,
                           const char *scripts, double tick_ms, char *err, size_t len);
/* The static zones of a defined space (its definition's regions, schema 1.2): the regions
 * of those ids are set (taken from any session that had one), the zones of its last call
 * not among them removed. 0, or SL_E* with err (a zone the engine refuses; the others are
 * set). */
struct sl_doc_zone;
int sl_server_space_zones(sl_server *srv, const char *name, const struct sl_doc_zone *zones,
                          size_t n, char *err, size_t len);
/* ---- in a cluster (cluster.c sets these; README "Running a cluster") ---- */

/* The server is cluster node `node`, reached at `advertise`: its cluster spaces are served
 * only within the lease (below), and each start and end of serving goes to ownership_log
 * (NULL: none). */
void sl_server_set_clustered(sl_server *srv, const char *node, const char *advertise,
                             FILE *ownership_log);
/* Cluster spaces are served only while sl_now_ms() < until_ms (0: no more, at once). */
void sl_server_set_serve_until(sl_server *srv, double until_ms);
/* A cluster space served by another node (listen "" while none serves it): requests on it
 * are answered `moved` (or `not_owner`); a hosted space of that name that is dropped tells
 * its sessions `space.moved`. */
int sl_server_set_remote(sl_server *srv, const char *space, const char *node,
                         const char *listen, uint64_t epoch);
void sl_server_forget_remote(sl_server *srv, const char *space);
/* The ownership epoch of a cluster space this node serves (its tick frames carry it). */
int sl_server_set_epoch(sl_server *srv, const char *space, uint64_t epoch);
/*
 * Live moves (handoff.c; README "Moving a live space"). The source: start freezes the space
 * (requests answered not_owner), ticks it once more, sends its snapshot to node `node` at
 * `listen` and calls fn(READY) when the target holds it, or fn(FAILED, why) (the space then
 * serves here again). Then the cluster commits (the owner key moved by a Txn to the target,
 * whose revision is the new epoch: the space is dropped here next and its sessions are told
 * to claim their entities on the target) or aborts (the space serves here again).
 */
typedef enum sl_handoff_event { SL_HANDOFF_READY, SL_HANDOFF_FAILED } sl_handoff_event;
typedef void (*sl_handoff_fn)(void *ud, const char *space, sl_handoff_event ev,
                              const char *why);
int sl_server_handoff_start(sl_server *srv, const char *space, const char *node,
                            const char *listen, sl_handoff_fn fn, void *ud, char *err,
                            size_t len);
/* (Returns how long the space was frozen here, ms: from the freeze to this commit.) */
double sl_server_handoff_commit(sl_server *srv, const char *space, uint64_t epoch);
/* The owner key shows space owned by node, moved from from_epoch: when that is the handoff
 * under way (its Txn's answer not come yet), the space's drop, next, is a handed one (its
 * sessions are told to claim their entities there). */
void sl_server_handoff_seen(sl_server *srv, const char *space, const char *node,
                            uint64_t from_epoch);
void sl_server_handoff_abort(sl_server *srv, const char *space, const char *why);
/* The target: fn is called when a source says its handoff is committed (the cluster then
 * hosts the space, built from the snapshot); the cluster says what the owner key shows with
 * sl_server_handoff_adopted (a snapshot of another from_epoch is dropped). */
void sl_server_on_adopt(sl_server *srv,
                        void (*fn)(void *ud, const char *space, uint64_t epoch,
                                   uint64_t from_epoch),
                        void *ud);
void sl_server_handoff_adopted(sl_server *srv, const char *space, uint64_t epoch,
                               uint64_t from_epoch);
/* The secret nodes present to each other (NULL or "": no handoff in or out). */
void sl_server_set_secret(sl_server *srv, const char *secret);
/* The cluster's nodes, for `welcome`. */
void sl_server_set_nodes(sl_server *srv, const char *const *ids, const char *const *listens,
                         size_t n);

/* Calls fn(ud) at every tick boundary, before the spaces tick (cluster.c applies etcd's
 * changes there); one hook, NULL to remove it. */
void sl_server_on_tick(sl_server *srv, void (*fn)(void *ud), void *ud);
/* Drops the space; SL_ENOENT when there is none of that name. */
int sl_server_undefine_space(sl_server *srv, const char *name);
/* Adds or updates an entity owned by no client; 0, or SL_E* with err (nothing changed). */
int sl_server_static_put(sl_server *srv, const char *space, uint64_t id, float x, float y,
                         float r, uint32_t layer, uint32_t mask, char *err, size_t len);
/* Sets a static entity's prop; 0, or SL_ENOENT (no such space or entity, or no scripts) or
 * SL_EINVAL (a bad key), as sl_lua_set_prop. */
int sl_server_static_prop(sl_server *srv, const char *space, uint64_t id, const char *key,
                          const sl_value *v);
/* Removes a static entity once grace_ms have passed (a put before then cancels it). */
void sl_server_static_delete(sl_server *srv, const char *space, uint64_t id, double grace_ms);
/* A line about etcd that `stats` shows. */
void sl_server_set_cluster_status(sl_server *srv, const char *text);

/* The figures of the server on etcd, shown by `stats` and /metrics as etcd_* (cluster.c
 * sets them with its status line). */
typedef struct sl_cluster_figures {
    double state;           /* 2 connected, 1 degraded, 0 disconnected */
    double revision;        /* the mirror's revision: everything up to it is applied */
    double head_revision;   /* the highest revision etcd's answers showed */
    double keys, resyncs, full_resets, reconnects;
    double endpoint_index, switches, endpoint_failures, watch_reopens;
    double applied, unchanged, merged, refused, queued, legacy_hash;
    double lease_ttl_left_s;    /* 0 while the node holds no lease */
    double alarm_nospace;       /* 1 while etcd's NOSPACE alarm is raised */
    double nodes;               /* live nodes in the registry */
    double spaces_owned;        /* cluster spaces this node owns */
    double spaces_waiting;      /* defined spaces no node owns yet */
    double serving;             /* 1 while this node's lease is sure (it serves its spaces) */
    double moves, move_failures, moving;    /* handoffs from here (moves.c) */
    double taken, freeze_ms;    /* handoffs to here, and the last one's freeze */
} sl_cluster_figures;
void sl_server_set_cluster_figures(sl_server *srv, const sl_cluster_figures *f);
/* Fills names with up to max space names (valid until a space is dropped); their count. */
size_t sl_server_space_names(const sl_server *srv, const char **names, size_t max);
