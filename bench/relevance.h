/*
 * relevance.h: what the relevance controls of issue 17 cost (`sightline-bench --workload
 * relevance`): W1 with stays, the plain run against the same moves with every entity given
 * its own hysteresis (equal to the plain run's space hysteresis, so the events must agree)
 * and with every watcher given LOD bands (fewer stays: its own events), in one run.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Returns 0, or 1 when set-up fails or the hysteresis runs disagree. */
int bench_relevance(uint32_t n, uint32_t ticks, uint64_t seed, bool json);
/* `--workload queries`: ns per circle and rectangle query in W1 (relevance.c); 0, or 1 when
 * set-up fails or the oracle disagrees. */
int bench_queries(uint32_t n, uint32_t ticks, uint64_t seed, bool json);
/* `--workload regions`: W1's tick with 1,000 regions against without (relevance.c); 0, or 1
 * when set-up fails or the oracle disagrees. */
int bench_regions(uint32_t n, uint32_t ticks, uint64_t seed, bool json);
/* `--workload 3d`: W1's tick in a 4096 x 4096 x 256 3D space against the flat one
 * (relevance.c); 0, or 1 when set-up fails or the oracle disagrees. */
int bench_3d(uint32_t n, uint32_t ticks, uint64_t seed, bool json);
