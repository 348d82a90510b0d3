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
int sl_oracle_set_radius(sl_oracle *o, uint64_t id, float r);
int sl_oracle_set_layer(sl_oracle *o, uint64_t id, uint32_t layer);
int sl_oracle_set_mask(sl_oracle *o, uint64_t id, uint32_t mask);
int sl_oracle_remove(sl_oracle *o, uint64_t id);

/*
 * Runs a tick; *events (owned by the oracle, valid until the next tick) receives the events
 * sorted by watcher then target. Returns the number of events, or -1 on OOM.
 */
long sl_oracle_tick(sl_oracle *o, const sl_event **events);
/* Visible pairs after the last tick. */
size_t sl_oracle_pairs(const sl_oracle *o);
