/*
 * recompute.h: the tuned stateless recompute (issue 16's bar, shared/WORKLOADS.md): every
 * tick, counting-sort all entities into cells (structure of arrays), test every pair of
 * the neighbourhood 16 candidates at a time, and emit the set difference with the last
 * tick's visible pairs, unsorted. It remembers nothing between ticks but the last tick's
 * positions (which give the last tick's visible set): see recompute.c.
 * Entities are indexes 0..n-1 (ids 1..n), all watchers and targets of radius r on layer 0.
 */
#pragma once

#include <stdint.h>

typedef struct recompute recompute;

/* What a tick produced: counts, and the order-free hash of its events (bench.c). */
typedef struct rc_counts {
    uint64_t enters, leaves, hash;
} rc_counts;

/* A recompute of n entities of radius r on a w x h map; NULL on OOM. */
recompute *rc_new(float w, float h, float r, uint32_t n);
void rc_free(recompute *rc);
/* One tick over the positions x[i], y[i] of entity i (id i + 1). */
void rc_tick(recompute *rc, const float *x, const float *y, rc_counts *out);
