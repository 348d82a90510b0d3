/*
 * cluster_client.h: a client of a Sightline cluster (PROTOCOL.md §2.4) on top of sl_client:
 * one connection per node it needs, opened lazily; every request routed to the node that
 * serves its space, `moved` followed and `not_owner` retried by itself; what the caller
 * added recorded per space and added again on the new owner when a space moves; tick frames
 * of an older ownership (epoch) dropped. One thread, blocking sockets and poll().
 *
 *   const char *seeds[] = {"127.0.0.1:7101", "127.0.0.1:7102"};
 *   sl_cclient *c;
 *   sl_cclient_open(&c, seeds, 2, NULL, err, sizeof err);
 *   sl_cclient_add(c, "arena", 42, 100, 200, 50, 0, SL_CC_ALL_LAYERS, 1);
 *   sl_cc_event ev;
 *   while (sl_cclient_next(c, &ev, 1000) == 1)
 *       if (ev.kind == SL_CC_EPOCH) { forget what you saw of ev.space }
 *       else if (ev.kind == SL_CC_TICK) { ... sl_frame_get(ev.frame, "enter") ... }
 */
#pragma once

#include "proto/client.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_cclient sl_cclient;

#define SL_CC_ALL_LAYERS 0xffffffffu

typedef enum sl_cc_kind {
    SL_CC_TICK = 1,     /* a tick frame of the space's current epoch (frame, space, epoch) */
    SL_CC_OK,           /* the request sent with caller rid `rid` succeeded (space) */
    SL_CC_ERROR,        /* a request failed (code, msg; rid 0 when it had none or was the
                         * library's own re-add); frame when the server sent it */
    SL_CC_EPOCH,        /* the space is served from now on under `epoch` by `node` (its
                         * address); its tick frames from now on are of this epoch. The
                         * first one names the first epoch. Unless `continued`: forget every
                         * pair you knew in it. With `continued` (a planned move, its
                         * entities and events carried over; or the same node serving the
                         * space again under a new epoch, its state kept): keep them, the
                         * events go on exactly (if the new owner then lost them after all,
                         * another SL_CC_EPOCH without `continued` follows). */
    SL_CC_FRAME,        /* any other frame from a node (pong, space.dropped, ...) */
} sl_cc_kind;

/* What sl_cclient_next hands out; valid until the next call. */
typedef struct sl_cc_event {
    sl_cc_kind kind;
    const char *space;              /* "" when none */
    uint64_t rid;                   /* the caller's request id (OK, ERROR) */
    uint64_t epoch;                 /* TICK, EPOCH */
    const char *code, *msg;         /* ERROR */
    const char *node;               /* EPOCH: the owner's address; else the sender's */
    bool continued;                 /* EPOCH: the view carries over (see SL_CC_EPOCH) */
    const sl_client_frame *frame;   /* NULL for the events the library makes */
} sl_cc_event;

typedef struct sl_cclient_config {
    const char *token;      /* the hello token, when the operator set one */
    int retry_ms;           /* how long a request answered not_owner is retried before it
                             * fails (0: 15000); a space with no owner known is asked about
                             * (where) as long, then the requests it held fail */
    int max_hops;           /* `moved` answers followed by one request (0: 8) */
    int max_frames_per_s;   /* frames sent to one node a second at most, a quarter second's
                             * worth at once (0: 1500, under the server's default 2000) */
} sl_cclient_config;

typedef struct sl_cclient_stats {
    uint64_t redirects;         /* `moved` answers followed */
    uint64_t not_owner;         /* not_owner answers (each retried after a backoff) */
    uint64_t rehomes;           /* spaces that changed node or epoch (the first routing too) */
    uint64_t readds, readds_ok; /* entities added again on a space's new owner, and ok'd */
    uint64_t settings_again;    /* settings and subscriptions sent again after a re-add, ok'd */
    uint64_t claims, claims_ok; /* sessions claimed on a space's new owner after a planned
                                 * move (its entities came with it), and those answered ok */
    uint64_t resent;            /* requests sent again (to a new owner, or after not_owner) */
    uint64_t dropped_ticks;     /* tick frames of an older epoch or a former owner */
    uint64_t lost;              /* connections lost */
    uint64_t failed;            /* requests given up (reported as SL_CC_ERROR) */
    uint64_t refused;           /* requests refused by a node's frame rate limit, sent again */
    uint64_t limit_errors;      /* `limit` errors without rid (that limit's notices) */
    double last_rehome_ms;      /* sl_now_ms of the last change of node or epoch */
    double last_readd_ok_ms;    /* ... and of the last re-add answered ok */
} sl_cclient_stats;

/*
 * Connects to the first seed (`host:port`) that answers, learns the cluster's nodes from its
 * welcome. Returns 0, or SL_EIO (no seed answered, reason in err) / SL_ENOMEM. cfg may be
 * NULL (defaults).
 */
int sl_cclient_open(sl_cclient **out, const char *const *seeds, int nseeds,
                    const sl_cclient_config *cfg, char *err, size_t errlen);
/* Closes every connection and frees the client (NULL: nothing). */
void sl_cclient_close(sl_cclient *c);

/*
 * Requests, routed to the space's owner (asked with `where` the first time). rid 0: no
 * SL_CC_OK (errors are reported all the same). 0 when queued or sent; SL_EINVAL for a space
 * name over 64 bytes, SL_ENOMEM. A lost connection is no error here: the library re-routes.
 */
int sl_cclient_add(sl_cclient *c, const char *space, uint64_t e, float x, float y, float r,
                   uint32_t layer, uint32_t mask, uint64_t rid);
/* Adds n entities of one space in one `adds` frame (copied; keep n to a few thousand so
 * that the frame stays under the server's max_frame: about 35 bytes an entity). */
int sl_cclient_adds(sl_cclient *c, const char *space, const sl_client_entity *v, uint32_t n,
                    uint64_t rid);
int sl_cclient_move(sl_cclient *c, const char *space, uint64_t e, float x, float y,
                    uint64_t rid);
/* Moves n entities of one space in one frame (xy: 2n floats); copied. */
int sl_cclient_moves(sl_cclient *c, const char *space, const uint64_t *e, const float *xy,
                     uint32_t n, uint64_t rid);
int sl_cclient_remove(sl_cclient *c, const char *space, uint64_t e, uint64_t rid);
/* An entity's settings (PROTOCOL.md `hysteresis`, `always`, `cap`, `priority`, `group`, `lod`) and
 * the session's vision-group subscriptions (`subscribe` / `unsubscribe`): recorded once
 * confirmed, and sent again with the entities when a space is re-added on a new owner. */
int sl_cclient_hysteresis(sl_cclient *c, const char *space, uint64_t e, float h, uint64_t rid);
int sl_cclient_always(sl_cclient *c, const char *space, uint64_t e, bool on, uint64_t rid);
int sl_cclient_cap(sl_cclient *c, const char *space, uint64_t e, uint32_t n, float margin,
                   uint64_t rid);
int sl_cclient_priority(sl_cclient *c, const char *space, uint64_t e, int32_t p, uint64_t rid);
int sl_cclient_group(sl_cclient *c, const char *space, uint64_t e, uint32_t g, uint64_t rid);
/* LOD bands (PROTOCOL.md `lod`; at most 8, else SL_EINVAL; n 0: none). */
int sl_cclient_lod(sl_cclient *c, const char *space, uint64_t e, const sl_client_band *bands,
                   uint32_t n, uint64_t rid);
int sl_cclient_subscribe(sl_cclient *c, const char *space, uint32_t g, bool on, uint64_t rid);
/* A region (sl_client_region's arguments; nv at most 128, else SL_EINVAL), and its removal:
 * recorded as confirmed, and set again on a space's new owner after a re-add. */
int sl_cclient_region(sl_cclient *c, const char *space, uint64_t id, const char *shape,
                      const float *v, uint32_t nv, uint32_t mask, uint64_t rid);
int sl_cclient_unregion(sl_cclient *c, const char *space, uint64_t id, uint64_t rid);

/*
 * Hands out the next event from any connection (or one the library made): 1, or 0 when
 * timeout_ms passed without one. Retries, re-adds and redirects happen inside this call, so
 * call it often (it never fails: a dead node is a re-route).
 */
int sl_cclient_next(sl_cclient *c, sl_cc_event *ev, int timeout_ms);

/* Requests sent or queued and not answered yet (the library's re-adds and wheres too). */
size_t sl_cclient_pending(const sl_cclient *c);
/* The space's current epoch (0: not known yet) and owner's address (NULL: none known). */
uint64_t sl_cclient_epoch(const sl_cclient *c, const char *space);
const char *sl_cclient_owner(const sl_cclient *c, const char *space);
/* Entities recorded in the space (added, answered ok, not removed). */
size_t sl_cclient_entities(const sl_cclient *c, const char *space);
/* Nodes known (from welcomes, moved, where) and connections open now. */
size_t sl_cclient_nodes(const sl_cclient *c, size_t *open);
const sl_cclient_stats *sl_cclient_stats_get(const sl_cclient *c);
