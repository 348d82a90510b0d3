/*
 * client.h: a small blocking C client for the sightline protocol (proto/PROTOCOL.md), used
 * by the tests, the load generator and the docs' examples. One connection, one thread.
 *
 *   sl_client *c;
 *   sl_client_connect(&c, "127.0.0.1", 7100, NULL, err, sizeof err);   // + hello
 *   sl_client_create_space(c, "arena", 4096, 4096, 1);
 *   sl_client_add(c, "arena", 42, 100, 200, 50, 0);
 *   sl_client_frame f;
 *   while (sl_client_next(c, &f, 1000) == 1)
 *       if (sl_frame_is(&f, "tick")) { ... sl_frame_get(&f, "enter") ... }
 *
 * Requests are sent at once; replies (ok / error, matched by the request id you pass, 0 for
 * none) and the server's tick frames are read with sl_client_next / sl_client_wait.
 */
#pragma once

#include "base/common.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_client sl_client;

/* One frame from the server, decoded; valid until the next sl_client_next / wait. */
typedef struct sl_client_frame {
    msgpack_object root;    /* a map */
} sl_client_frame;

/*
 * Connects, says hello (with token, or resuming `session` when not NULL) and waits for the
 * welcome. Returns 0, or SL_EIO with the reason in err (the server's error, when it sent
 * one).
 */
int sl_client_connect(sl_client **out, const char *host, int port, const char *token,
                      const char *session, char *err, size_t errlen);
/* Only opens the TCP connection, without a hello (for tests of what comes before it):
 * 0, or SL_EIO with the reason in err. */
int sl_client_dial(sl_client **out, const char *host, int port, char *err, size_t errlen);
/* Closes the connection and frees the client (NULL: nothing). */
void sl_client_close(sl_client *c);
/* The session token from the welcome (to resume after a reconnect). */
const char *sl_client_session(const sl_client *c);
/* The socket, for poll() over several clients (read it only through sl_client_next; a
 * frame may already wait in the client's buffer: sl_client_next(c, &f, 0) takes it). */
int sl_client_fd(const sl_client *c);
/* The live nodes' addresses (`host:port`) that a cluster node's welcome listed: the i-th, or
 * NULL past the last (none from a server that is not in a cluster). Owned by the client. */
const char *sl_client_node(const sl_client *c, size_t i);

/* Requests: 0 when sent, SL_EIO when the connection failed. rid 0: no request id. */
int sl_client_create_space(sl_client *c, const char *space, float w, float h, uint64_t rid);
/* space.create's optional settings (PROTOCOL.md); zero and NULL fields are not sent (the
 * server's defaults then apply). */
typedef struct sl_client_space_opts {
    float cell, hyst;
    const char *index;      /* "grid", "quadtree" or "auto" */
    const char *order;      /* the order of tick events: "id" or "tick" */
    bool stay;
    float depth;            /* > 0: a 3D space, heights in [0, depth) */
} sl_client_space_opts;
int sl_client_create_space_with(sl_client *c, const char *space, float w, float h,
                                const sl_client_space_opts *o, uint64_t rid);
int sl_client_add(sl_client *c, const char *space, uint64_t e, float x, float y, float r,
                  uint64_t rid);
/* add with a layer (0..31) and a sees-mask (the protocol's defaults: 0, 0xffffffff). */
int sl_client_add_ex(sl_client *c, const char *space, uint64_t e, float x, float y, float r,
                     uint32_t layer, uint32_t mask, uint64_t rid);
int sl_client_move(sl_client *c, const char *space, uint64_t e, float x, float y, uint64_t rid);
/* In a 3D space: add at height z (with a layer and mask, as sl_client_add_ex), move to
 * (x, y, z) (z NaN: keep the height, as sl_client_move). */
int sl_client_add3(sl_client *c, const char *space, uint64_t e, float x, float y, float z,
                   float r, uint32_t layer, uint32_t mask, uint64_t rid);
int sl_client_move3(sl_client *c, const char *space, uint64_t e, float x, float y, float z,
                    uint64_t rid);
/* Moves n entities in one frame with heights (xyz: 3n floats; a NaN z keeps that entity's
 * height: sent as nil in `zs`). */
int sl_client_moves3(sl_client *c, const char *space, const uint64_t *e, const float *xyz,
                     uint32_t n, uint64_t rid);
/* One entity of sl_client_adds. */
typedef struct sl_client_entity {
    uint64_t id;
    float x, y, r;
    uint32_t layer, mask;
} sl_client_entity;
/* Adds n entities in one `adds` frame (without props). */
int sl_client_adds(sl_client *c, const char *space, const sl_client_entity *v, uint32_t n,
                   uint64_t rid);
/* Moves n entities in one frame (xy: 2n floats). */
int sl_client_moves(sl_client *c, const char *space, const uint64_t *e, const float *xy,
                    uint32_t n, uint64_t rid);
int sl_client_remove(sl_client *c, const char *space, uint64_t e, uint64_t rid);
/* Entity e's update rates by distance (PROTOCOL.md `lod`; n 0: none). */
typedef struct sl_client_band {
    float distance;
    uint32_t period;
} sl_client_band;
int sl_client_lod(sl_client *c, const char *space, uint64_t e, const sl_client_band *bands,
                  uint32_t n, uint64_t rid);
/* A relation of pair (w, t), w one of this session's entities: rel "force", "never" or
 * "none" (PROTOCOL.md `relate`). */
int sl_client_relate(sl_client *c, const char *space, uint64_t w, uint64_t t, const char *rel,
                     uint64_t rid);
/* Makes entity e always relevant (seen by every watcher whose mask accepts its layer), or not. */
int sl_client_always(sl_client *c, const char *space, uint64_t e, bool on, uint64_t rid);
/* Caps watcher e at n targets (0 lifts the cap), with a margin (PROTOCOL.md `cap`). */
int sl_client_cap(sl_client *c, const char *space, uint64_t e, uint32_t n, float margin,
                  uint64_t rid);
/* Puts entity e in vision group `group` (0: none; PROTOCOL.md `group`). */
int sl_client_group(sl_client *c, const char *space, uint64_t e, uint32_t group, uint64_t rid);
/* Gets (on) or stops getting the group events of `group` in space in tick frames
 * (PROTOCOL.md `subscribe`, `unsubscribe`). */
int sl_client_subscribe(sl_client *c, const char *space, uint32_t group, bool on, uint64_t rid);
/* Sets region id (PROTOCOL.md `region`): shape "circle" with v = {x, y, r} (nv 3), "rect"
 * with v = {x, y, x1, y1} (nv 4), or "poly" with v = its nv / 2 vertices' x, y; its events
 * come in this session's tick frames. SL_EINVAL (nothing sent) for more values than the
 * shape takes. unregion removes one. */
int sl_client_region(sl_client *c, const char *space, uint64_t id, const char *shape,
                     const float *v, uint32_t nv, uint32_t mask, uint64_t rid);
int sl_client_unregion(sl_client *c, const char *space, uint64_t id, uint64_t rid);
/* Asks who is within r of (x, y), or (x1 not NaN) in the rectangle [x, x1] x [y, y1], on
 * the layers of mask, at most limit (0: the server's most); the answer is a `query` frame
 * (PROTOCOL.md `query`). */
int sl_client_query(sl_client *c, const char *space, float x, float y, float r, float x1,
                    float y1, uint32_t mask, uint32_t limit, uint64_t rid);
/* The same in 3D (a 3D space): the sphere of radius r around (x, y, z), or (x1 not NaN) the
 * box [x, x1] x [y, y1] x [z, z1]; the answer's `hits_z` has the hits' heights. */
int sl_client_query3(sl_client *c, const char *space, float x, float y, float z, float r,
                     float x1, float y1, float z1, uint32_t mask, uint32_t limit, uint64_t rid);
/* Entity e's priority for capped watchers (PROTOCOL.md `priority`). */
int sl_client_priority(sl_client *c, const char *space, uint64_t e, int32_t p, uint64_t rid);
/* Gives entity e its own hysteresis h (a negative h: the space's again). */
int sl_client_hysteresis(sl_client *c, const char *space, uint64_t e, float h, uint64_t rid);
/* Takes over the entities in space of session `session` (this client's on the space's old
 * owner) that a planned move brought to this node (PROTOCOL.md 2.4: space.moved with
 * handoff). */
int sl_client_claim(sl_client *c, const char *space, const char *session, uint64_t rid);
/* Asks which node serves space (answer: a `where` frame, or a `moved` error). */
int sl_client_where(sl_client *c, const char *space, uint64_t rid);
/* Sets one prop: the number num when str is NULL, else the string str. */
int sl_client_prop(sl_client *c, const char *space, uint64_t e, const char *key, double num,
                   const char *str, uint64_t rid);
int sl_client_ping(sl_client *c, uint64_t rid);
/* Sends bytes as they are (tests of malformed input). */
int sl_client_send_raw(sl_client *c, const void *bytes, size_t len);

/* Reads the next frame: 1 (a frame), 0 on timeout, SL_EIO when the connection is closed or
 * broken (or the frame does not decode). */
int sl_client_next(sl_client *c, sl_client_frame *f, int timeout_ms);
/* Reads frames until one of type t (and request id rid, when nonzero) comes: 1, 0, SL_EIO.
 * The frames before it are skipped (tick frames included). */
int sl_client_wait(sl_client *c, const char *t, uint64_t rid, sl_client_frame *f, int timeout_ms);

/* Frame helpers: the value of key (NULL if absent), whether the type is t. */
const msgpack_object *sl_frame_get(const sl_client_frame *f, const char *key);
bool sl_frame_is(const sl_client_frame *f, const char *t);
/* A string field copied into buf ("" when absent). */
const char *sl_frame_str(const sl_client_frame *f, const char *key, char *buf, size_t len);
uint64_t sl_frame_u64(const sl_client_frame *f, const char *key);
