/*
 * parallel.h: parallel ticks (`--spaces K --threads N`): K independent W1 / W2 spaces
 * (seeds seed, seed + 1, ...) ticked each round on a pool of N threads (core/base/pool.h),
 * as the server ticks its spaces, against the same K spaces ticked on one thread, in the
 * same run on the same moves. With K = 1 the one space's tick is split over the pool
 * instead (sl_space_set_pool).
 */
#pragma once

#include "engine/index.h"
#include "engine/space.h"
#include "workload.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct par_options {
    wl_kind kind;
    uint32_t n, ticks, spaces, threads;
    uint64_t seed;
    sl_index_kind index;
    float cell;
    sl_event_order order;
    bool json;
} par_options;

/* Returns 0, or 1 when the two runs' events differ or set-up fails. */
int bench_parallel(const par_options *o);
