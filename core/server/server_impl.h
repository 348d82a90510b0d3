/*
 * server_impl.h: the server's state, shared by its files and by nothing else (the sl__
 * names here never leave core/server). One file a concept:
 *
 *   server.c       life (new, shutdown, free) and the tick loop
 *   spaces.c       the hosted spaces: create, find, drop, remove an entity for good
 *   session.c      sessions: tokens, hello and resume, detach, grace and expiry
 *   request.c      the protocol's requests, one function a message type
 *   fanout.c       a space-tick's events and custom events, routed into tick frames
 *                  (the ticks themselves run in parallel: server.c says how)
 *   record.c       `record start`: a replay trace of one space
 *   definitions.c  spaces and static entities defined in etcd (sync.c calls these)
 *   schema.c       etcd's documents checked: keys, versions, fields (also for sightctl)
 *   sync.c         etcd's changes queued, merged per key, applied at the tick boundary
 *   stats.c        the figures of `stats` and of the Prometheus endpoint
 *   admin.c        the admin socket and its command table
 *   cluster.c      the server on etcd: the mirror, the node registry, `space get/put`
 *   handoff.c      a live space handed to another node and taken from one (node to node)
 *   main.c         the command line, signals, --watch-scripts
 *
 * Owners. Every entity has an owner in its space's owner map (entity id -> value): a
 * session (its index + 1) or STATIC_OWNER (defined in etcd). An entity leaves the space
 * through sl__space_remove_entity, which forgets its owner, props and recording together.
 */
#pragma once

#include "server/server.h"

#include "base/pool.h"
#include "base/vec.h"
#include "engine/idmap.h"
#include "lua/host.h"
#include "net/net.h"
#include "proto/codec.h"

#include <stdio.h>

#define MAX_SPACES 1024u
#define MAX_NAME 64u                    /* bytes of a space name */
#define STATIC_OWNER (UINT32_MAX - 1)   /* owner of the entities defined in etcd */
#define TICK_HIST 1024u                 /* tick times kept for the percentiles */
#define MAX_THREADS 256u                /* --threads */

typedef struct handoff_out handoff_out;

/* A space the server hosts: the engine's space, its scripts, and who owns each entity. */
typedef struct hosted_space {
    char name[MAX_NAME + 1];
    const sl_server *srv;       /* (for its scripts' log lines) */
    uint64_t serial;            /* unique for the server's life (names may be reused) */
    uint64_t creator;           /* SL_CREATOR_OPERATOR, _CLUSTER, or a session's serial */
    sl_space *s;
    sl_lua *h;                  /* NULL: no scripts */
    sl_idmap owners;            /* entity id -> session idx + 1, or STATIC_OWNER */
    sl_idmap region_owners;     /* region id -> session idx + 1 (regions of no session: none) */
    sl_vec zones;               /* uint64_t: the ids of the regions its definition set */
    uint64_t ticks;
    double period_ms;           /* its own tick period (0: every server tick) */
    double due_ms;              /* when it ticks next */
    uint64_t epoch;             /* a cluster space: its ownership epoch (0: not owned yet) */
    bool serving;               /* a cluster space: served now (its log interval is open) */
    double serve_deadline_ms;   /* the serving deadline at its last check (sl_now_ms) */
    handoff_out *handoff;       /* being handed to another node (handoff.c): its requests
                                 * are refused; NULL: not moving */
    bool exported;              /* its snapshot went out: it neither ticks nor serves here */
    bool handed;                /* handed over: its drop tells sessions to claim (handoff) */
    /* fanout.c: its last tick's events (tick_ev) and custom events (sl_lua_emit), as the
     * tick made them, on whichever thread ran it; routed to sessions on the loop thread. */
    sl_vec tick_evs, tick_emits;
    sl_vec tick_gevs;           /* its last tick's group events (gtick_ev) */
    sl_vec gsubs;               /* gsub: sessions subscribed to its vision groups */
} hosted_space;

/* A group event of a space's tick, kept until it is routed: an enter carries the target's
 * position at the tick. */
typedef struct gtick_ev {
    uint64_t t;
    float x, y, z;              /* (z: 0 in a flat space) */
    uint32_t group, kind, reason;
} gtick_ev;

/* A session subscribed to a vision group of a space (the session's serial tells a slot
 * reused since: the entry is then dropped). */
typedef struct gsub {
    uint32_t group, idx;
    uint64_t serial;
} gsub;

/* An event of a space's tick, kept until it is routed (fanout.c): an enter carries the
 * target's position at the tick. */
typedef struct tick_ev {
    uint64_t w, t;
    float x, y, z;              /* (z: 0 in a flat space) */
    uint32_t kind;              /* sl_event_kind */
    uint32_t reason;            /* a leave's sl_leave_reason (spaces with reasons) */
} tick_ev;

/* Where a cluster space this node does not serve is served (placement.c). */
typedef struct remote_space {
    char name[MAX_NAME + 1];
    char node[65], listen[128]; /* "" while it has no live owner */
    uint64_t epoch;
} remote_space;

/* A node of the cluster, for `welcome`. */
typedef struct cluster_node {
    char node[65], listen[128];
} cluster_node;

/* Events of the current space-tick for one session (see fanout.c). */
typedef struct enter_ev {
    uint64_t w, t;
    float x, y, z;
} enter_ev;

typedef struct pair_ev {
    uint64_t w, t;
    uint32_t reason;            /* a leave's sl_leave_reason (spaces with reasons) */
} pair_ev;

/* An entity a session added (the entity may have gone since: see sl__session_expire). */
typedef struct owned {
    uint64_t serial;            /* its space's serial */
    uint64_t id;
} owned;

/* A tick frame a parked session holds: its space and where it is in `held`. */
typedef struct held_frame {
    uint64_t serial;
    size_t off, len;
} held_frame;

typedef struct session {
    uint32_t idx;
    uint64_t serial;            /* unique for the server's life (slots are reused) */
    bool used;
    char token[33];
    sl_conn *conn;              /* NULL while detached */
    double detached_ms;
    sl_vec enter, leave, stay;  /* this space-tick's events (enter_ev, pair_ev, pair_ev) */
    sl_vec emits;               /* this space-tick's custom events (sl_lua_emit: the strings
                                 * are the script host's, valid until it runs again) */
    sl_vec genter, gleave;      /* this space-tick's group events (enter_ev, pair_ev: w is
                                 * the group) */
    sl_vec renter, rleave;      /* this space-tick's events of its regions (pair_ev: w is the
                                 * region, t the entity) */
    sl_vec regions;             /* owned: regions set (pruned as they go, see session.c) */
    bool dirty;                 /* is in the server's dirty list */
    sl_vec owned;               /* owned: entities added (pruned as they go, see session.c) */
    uint32_t live;              /* entities it owns now */
    uint32_t spaces;            /* spaces it created that still exist */
    bool peer;                  /* another node of the cluster (hello with the secret) */
    bool parked;                /* made by a handoff for a client of the old owner: its tick
                                 * frames wait in `held` until the client claims it */
    sl_obuf held;
    sl_vec held_at;             /* held_frame, in order */
    bool held_lost;             /* held frames were dropped (past the output cap) */
    sl_vec claimed;             /* char[33]: the tokens it claimed (a claim may come again for
                                 * each space that moved with one) */
} session;

/* A static entity (defined in etcd) whose delete waits out its grace period. */
typedef struct pending_delete {
    uint64_t serial, id;
    double at_ms;
} pending_delete;

struct sl_server {
    sl_server_config cfg;
    sl_net *net;
    uv_timer_t timer;
    bool timer_on, stopping;
    hosted_space *spaces[MAX_SPACES];
    uint32_t nspaces;
    uint64_t next_serial;       /* of spaces and sessions */
    session **sessions;         /* by index; a slot is reused once its session expired */
    uint32_t nsessions;
    size_t capsessions;
    sl_decoder *dec;
    /* server.c: the threads the spaces tick on (--threads; the loop thread is one of them),
     * and this tick's due spaces (hosted_space *, in the order of `spaces`). */
    sl_pool *pool;
    sl_vec due;
    /* fanout.c: sessions with events in the space-tick being routed. */
    sl_vec dirty;
    /* request.c: a moves frame's valid moves (sl_move) and their item numbers (uint32_t). */
    sl_vec batch, batch_item;
    sl_vec fails, fail_text;    /* its refused items (item_failure) and their messages */
    /* definitions.c */
    sl_vec pending_deletes;     /* pending_delete */
    void (*tick_fn)(void *);    /* sl_server_on_tick: before the spaces tick */
    void *tick_ud;
    /* In a cluster (placement.c): cluster spaces are served only while the node's lease
     * surely lives (serve_until, sl_now_ms); where the others are; the nodes. */
    bool clustered;
    char node_id[65], advertise[128];   /* this node, as `where` names it */
    double serve_until_ms;
    sl_vec remote;              /* remote_space */
    sl_vec nodes;               /* cluster_node */
    FILE *ownership_log;
    char secret[129];           /* the cluster secret ("" none: no handoff in or out) */
    sl_vec outgoing, incoming;  /* handoff.c: handoff_out *, handoff_in * */
    void (*adopt_fn)(void *ud, const char *space, uint64_t epoch, uint64_t from_epoch);
    void *adopt_ud;
    char cluster_status[1024];  /* a line about etcd for stats, set by cluster.c */
    bool has_cluster;           /* cluster figures were set */
    sl_cluster_figures cluster; /* the figures of etcd_* */
    /* record.c: `record start`, a replay trace of one space. */
    FILE *rec;
    uint64_t rec_serial;
    char rec_path[256];
    /* stats.c */
    double tick_hist[TICK_HIST];
    uint64_t hist_n;            /* ticks in tick_hist since the last `stats reset` */
    uint64_t ticks, events_sent, frames_in, errors_sent, moves;
    uint64_t handoffs_done, handoffs_failed, handoffs_taken;
    double last_freeze_ms;      /* the last space handed from here: its freeze to the commit;
                                 * taken here: its freeze on the source to serving here */
    double started_ms;
    uint64_t events_at_mark;
    double mark_ms, events_per_s;
};

/* A bounded text answer (admin commands): appends past the end are cut, never overflow. */
typedef struct out_text {
    char *p;
    size_t n, cap;
} out_text;
void sl__put(out_text *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A log line on stderr ("sightline: ..."), unless the server is quiet. */
void sl__log(const sl_server *srv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* spaces.c */
hosted_space *sl__space_find(const sl_server *srv, const char *name, size_t n);
void sl__space_drop(sl_server *srv, hosted_space *sp);
void sl__space_free(hosted_space *sp);
/* Removes entity id from sp for good: the space, its owner, its props, and a `remove` line
 * in the recording. Returns 0, or sl_space_remove's error (then nothing changed). */
int sl__space_remove_entity(sl_server *srv, hosted_space *sp, uint64_t id);
/* Sets region id in sp (a new one, or reshaped), owned by session idx + 1 `owner` (0: no
 * session's), with a `region` line in the recording: 0 or sl_space_set_region's error. */
int sl__space_set_region(sl_server *srv, hosted_space *sp, uint64_t id, const sl_region *g,
                         uint32_t owner);
/* Removes region id from sp, its owner, with an `unregion` line in the recording: 0 or
 * SL_ENOENT. */
int sl__space_remove_region(sl_server *srv, hosted_space *sp, uint64_t id);
/* The hosted space of that serial, or NULL when it was dropped. */
hosted_space *sl__space_by_serial(const sl_server *srv, uint64_t serial);

/* session.c */
/* Answers a hello: a new session, or the resumed one; may close the connection. */
void sl__session_hello(sl_server *srv, sl_conn *c, const sl_msg *m);
/* The connection went away: its session waits out the grace period detached. */
void sl__session_detach(void *srv, sl_conn *c, const char *reason);
/* Removes the entities of sessions whose grace ran out by now_ms. */
void sl__session_expire_due(sl_server *srv, double now_ms);
/* Entity id of sp leaves its owner (it is being removed): the owning session's count
 * goes down. */
void sl__session_disown(sl_server *srv, const hosted_space *sp, uint64_t id);
/* The session that owns entity id of sp and takes its events now (connected, or parked
 * by a handoff), or NULL. */
static inline session *sl__session_owning(const sl_server *srv, const hosted_space *sp,
                                          uint64_t id)
{
    uint32_t o = sl_idmap_get(&sp->owners, id);
    if (o == UINT32_MAX || o == 0 || o > srv->nsessions)
        return NULL;
    session *s = srv->sessions[o - 1];
    return s->used && (s->conn || s->parked) ? s : NULL;
}
/* What scripts see as the owner of entity id of sp (sightline.owner): the serial of the
 * session that owns it, attached or not; 0 for none (static entities). */
static inline uint64_t sl__owner_serial(const sl_server *srv, const hosted_space *sp,
                                        uint64_t id)
{
    uint32_t o = sl_idmap_get(&sp->owners, id);
    if (o == UINT32_MAX || o == 0 || o > srv->nsessions)
        return 0;
    const session *s = srv->sessions[o - 1];
    return s->used ? s->serial : 0;
}
/* Where a session's frames go now: its connection, or its held frames when parked. */
sl_obuf *sl__session_out(sl_server *srv, session *s);
/* The frame just encoded at start of sl__session_out's buffer is of the space of that
 * serial (kept apart when the session is parked). */
void sl__session_held(session *s, uint64_t serial, size_t start);
/* A session for a client of another node whose entities came with a handoff: the session
 * holding token if there is one, else a new parked one (detached, its grace running). */
session *sl__session_park(sl_server *srv, const char *token);
/* Whether s may own one more region (--max-session-regions). Its list is pruned first of
 * regions it no longer owns (removed by scripts, taken by a zone, in spaces gone). */
bool sl__session_regions_room(sl_server *srv, session *s);
/* A connection takes a parked session over (hello with its token, or claim): its held
 * frames go out first. */
void sl__session_unpark(sl_server *srv, session *s, sl_conn *c);
/* claim: the parked session `token`'s entities in sp become s's, and its frames of sp are
 * sent (request.c answers). 0, or SL_ENOENT (no such session waiting, or it is
 * connected). */
int sl__session_claim(sl_server *srv, session *s, const char *token, size_t n,
                      hosted_space *sp);
void sl__session_free_all(sl_server *srv);

/* request.c: one frame from a client connection (srv: the server). */
void sl__request(void *srv, sl_conn *c, const char *body, size_t len);
/* The protocol's code for a failed sl_server_create_space ("space_exists", ...). */
const char *sl__create_code(int rc);

/* fanout.c. A space's tick in three steps: begin (on the loop thread: counts and records
 * the tick), run (on any thread: the tick itself, its events kept in sp; it touches sp's
 * engine space, script host and buffers and nothing else of the server), then send (on the
 * loop thread: every session with events gets its tick frame). */
void sl__fanout_begin(sl_server *srv, hosted_space *sp);
void sl__fanout_run(hosted_space *sp);
/* Subscribes session s to group events of `group` in sp (on), or no more; 0 or SL_ENOMEM. */
int sl__group_subscribe(hosted_space *sp, const session *s, uint32_t group, bool on);
void sl__fanout_send(sl_server *srv, hosted_space *sp);

/* definitions.c: removes the static entities whose delete grace ran out by now_ms. */
void sl__static_delete_due(sl_server *srv, double now_ms);

/* placement.c: whether sp may be served now (not a cluster space, or the lease holds); a
 * cluster space that stops or starts being served is logged to the ownership log. */
bool sl__serving(sl_server *srv, hosted_space *sp, double now_ms);
/* sp stops being served (it is dropped): logged as released if it was served. */
void sl__serving_end(sl_server *srv, hosted_space *sp);
/* The reply to a request on a space this node does not serve (moved, not_owner or
 * no_space), or false when the name is not a cluster space at all. */
bool sl__reply_not_here(sl_server *srv, sl_conn *c, const sl_msg *m, const char *name,
                        size_t n);
const remote_space *sl__remote_find(const sl_server *srv, const char *name, size_t n);
/* The welcome's nodes (none outside a cluster). */
void sl__encode_nodes(const sl_server *srv, sl_enc *e);

/* handoff.c */
/* After sp's tick: a space frozen for a handoff is snapshot and sent (or tried again at the
 * next tick boundary). */
void sl__handoff_after_tick(sl_server *srv, hosted_space *sp);
/* Gives up handoffs whose target did not answer in time (the space serves here again). */
void sl__handoff_check(sl_server *srv, double now_ms);
/* A frame on a connection handoff.c made (to another node), or a handoff.* frame from a
 * peer session: true when handoff.c took it. */
bool sl__handoff_frame(sl_server *srv, sl_conn *c, session *s, const sl_msg *m,
                       sl_decode_rc rc);
/* A connection closed: a handoff it carried fails (either side). */
void sl__handoff_conn_closed(sl_server *srv, sl_conn *c);
/* A committed snapshot of space `name` waiting to be built here (spaces.c builds it), or
 * NULL. */
typedef struct handoff_in handoff_in;
handoff_in *sl__handoff_committed(sl_server *srv, const char *name, size_t n);
/* Builds sp (new, empty, its scripts loaded with the snapshot's state) from the snapshot,
 * which is used up either way; 0 or SL_E* with err. */
int sl__handoff_build(sl_server *srv, hosted_space *sp, handoff_in *in, char *err, size_t len);
/* Whether a snapshot held here (not built yet) brings the session of that token. */
bool sl__handoff_has_token(const sl_server *srv, const char *token, size_t n);
/* Gives a snapshot up. */
void sl__handoff_drop(sl_server *srv, handoff_in *in);
/* The scripts' state of a committed snapshot (for sl_lua_new), and its length. */
const char *sl__handoff_state(const handoff_in *in, size_t *len);
void sl__handoff_free_all(sl_server *srv);

/* record.c */
/* Appends a line to the trace being recorded, if it records space sp. */
void sl__rec(sl_server *srv, const hosted_space *sp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A prop line (or a comment when the trace format cannot carry the string). */
void sl__rec_prop(sl_server *srv, const hosted_space *sp, uint64_t id, const char *key,
                  const sl_value *v);
/* A lod line: entity id's bands. */
void sl__rec_lod(sl_server *srv, const hosted_space *sp, uint64_t id, const sl_lod_band *b,
                 uint32_t n);
/* An owner line for entity id, when a session owns it (scripts read it). */
void sl__rec_owner(sl_server *srv, const hosted_space *sp, uint64_t id);
/* The `add` and `move` lines of an entity: in a 3D space with its height z (`add ID X Y Z R
 * LAYER MASK`, `move ID X Y Z`), in a flat one without; a move with z NaN keeps the height
 * (`move ID X Y`). */
void sl__rec_add(sl_server *srv, const hosted_space *sp, uint64_t id, float x, float y, float z,
                 float r, uint32_t layer, uint32_t mask);
void sl__rec_move(sl_server *srv, const hosted_space *sp, uint64_t id, float x, float y,
                  float z);
/* A `region` line for region id of shape g. */
void sl__rec_region(sl_server *srv, const hosted_space *sp, uint64_t id, const sl_region *g);
/* `record start FILE [SPACE]` / `record stop` (args: after `record`); 0, or SL_E*. */
int sl__record_command(sl_server *srv, const char *args, out_text *o);
/* Stops recording sp (it is being dropped). */
void sl__record_forget(sl_server *srv, const hosted_space *sp);

/* stats.c: `stats` as text lines (the Prometheus form is sl_server_metrics). */
void sl__stats_text(sl_server *srv, out_text *o);
