/*
 * workload.h: the benchmark workloads of shared/WORKLOADS.md, deterministic from a seed
 * (sl_rng: xoshiro256** seeded by splitmix64). Entity ids are 1..N, every entity is both a
 * watcher and a target on layer 0 seeing every layer.
 *
 * W1-uniform: N positions uniform on the 4096 x 4096 map. W2-clustered: 80 % uniform in
 * the centre 1024 x 1024 square, the rest uniform on the map. Every tick exactly 20 % of
 * the entities (a fresh random choice: a partial Fisher-Yates shuffle) move by dx, dy
 * uniform in [-5, 5], clamped to the map.
 */
#pragma once

#include "engine/space.h"

#include "base/rng.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum { WL_W1, WL_W2 } wl_kind;

typedef sl_move wl_move;    /* id, x, y: what sl_space_move_many takes */

typedef struct workload {
    wl_kind kind;
    uint32_t n;
    float width, height, radius;
    sl_rng rng;
    float *x, *y;           /* current positions, index id - 1 */
    uint32_t *perm;         /* scratch permutation for choosing movers */
    wl_move *moves;         /* the current tick's moves */
    uint32_t nmoves;
} workload;

/* Sets up the initial positions; false on OOM. */
bool wl_init(workload *w, wl_kind kind, uint32_t n, uint64_t seed);
/* Chooses this tick's movers and their new positions into w->moves. */
void wl_next_tick(workload *w);
void wl_free(workload *w);
/* "W1" / "W2" names and parsing (false when unknown). */
const char *wl_name(wl_kind kind);
bool wl_parse(const char *name, wl_kind *kind);
