/*
 * oracle.h: a brute-force reference for the visibility contract of space.h. Every tick it
 * checks all ordered pairs (O(N^2)) and diffs the full visible-pair set against the last
 * one. It shares no code with the space beyond the event types, so that the two can check
 * each other: tests, `sightline-replay --check` and the bench baseline use it.
 */
#pragma once

#include "space.h"

typedef struct sl_oracle sl_oracle;

/* Creates an oracle for a W x H map with hysteresis h; NULL on OOM. */
sl_oracle *sl_oracle_new(float width, float height, float hysteresis, bool stay);
void sl_oracle_free(sl_oracle *o);

/* The same operations and validation as the space: 0 or the same SL_E* code. */
int sl_oracle_add(sl_oracle *o, uint64_t id, float x, float y, float r, uint32_t layer,
                  uint32_t mask);
int sl_oracle_move(sl_oracle *o, uint64_t id, float x, float y);
/* A 3D space of that depth (sl_space_config.depth; before any entity), and the 3D add and
 * move (as sl_space_add3 / sl_space_move3). */
void sl_oracle_set_depth(sl_oracle *o, float depth);
int sl_oracle_add3(sl_oracle *o, uint64_t id, float x, float y, float z, float r,
                   uint32_t layer, uint32_t mask);
int sl_oracle_move3(sl_oracle *o, uint64_t id, float x, float y, float z);
int sl_oracle_set_radius(sl_oracle *o, uint64_t id, float r);
int sl_oracle_set_layer(sl_oracle *o, uint64_t id, uint32_t layer);
int sl_oracle_set_mask(sl_oracle *o, uint64_t id, uint32_t mask);
/* id's own hysteresis (a negative h: the space's again), as sl_space_set_hysteresis. */
int sl_oracle_set_hysteresis(sl_oracle *o, uint64_t id, float h);
/* id's LOD bands, as sl_space_set_lod (a stay is emitted only on its due ticks). */
int sl_oracle_set_lod(sl_oracle *o, uint64_t id, const sl_lod_band *bands, uint32_t n);
/* A cap with its margin, and a priority, as sl_space_set_cap / sl_space_set_priority. */
int sl_oracle_set_cap(sl_oracle *o, uint64_t id, uint32_t n, float margin);
int sl_oracle_set_priority(sl_oracle *o, uint64_t id, int32_t priority);
/* id's vision group (0: none), as sl_space_set_group; the last tick's group events. */
int sl_oracle_set_group(sl_oracle *o, uint64_t id, uint32_t group);
long sl_oracle_group_events(const sl_oracle *o, const sl_group_event **events);
/* Regions, as sl_space_set_region / sl_space_remove_region; the last tick's region events. */
int sl_oracle_set_region(sl_oracle *o, uint64_t id, const sl_region *g);
int sl_oracle_remove_region(sl_oracle *o, uint64_t id);
long sl_oracle_region_events(const sl_oracle *o, const sl_region_event **events);
/* A query, as sl_space_query, by brute force. */
int sl_oracle_query(sl_oracle *o, const sl_query *q, const sl_query_hit **hits, size_t *n);
/* Leaves say why (sl_space_config.reasons). */
void sl_oracle_set_reasons(sl_oracle *o, bool on);
/* Always relevant, as sl_space_set_always. */
int sl_oracle_set_always(sl_oracle *o, uint64_t id, bool on);
/* A pair relation, as sl_space_relate (removing either entity drops it). */
int sl_oracle_relate(sl_oracle *o, uint64_t w, uint64_t t, sl_relation k);
int sl_oracle_remove(sl_oracle *o, uint64_t id);

/*
 * A per-pair rule (NULL: none): a visible pair must also satisfy it. The oracle asks it
 * about every pair in range at every tick, so a rule that depends on anything but what
 * touching reports disagrees with the space, by design of the space.
 */
typedef bool (*sl_oracle_rule)(void *ud, uint64_t watcher, uint64_t target);
void sl_oracle_set_rule(sl_oracle *o, sl_oracle_rule fn, void *ud);
/* Marks id changed for stay events (the rule's inputs changed); 0 or SL_ENOENT. */
int sl_oracle_touch(sl_oracle *o, uint64_t id);

/*
 * Runs a tick; *events (owned by the oracle, valid until the next tick) receives the events
 * sorted by watcher then target. Returns the number of events, or -1 on OOM.
 */
long sl_oracle_tick(sl_oracle *o, const sl_event **events);
/* Visible pairs after the last tick. */
size_t sl_oracle_pairs(const sl_oracle *o);
