/*
 * apply.h: the apply path of etcd's documents alone (bench/apply.c): a generator feeds the
 * server's sync queue (core/server/sync.h, what the mirror calls) with static-entity
 * documents, no etcd in the way.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Runs it for n distinct entities; returns 0, or 1 when the server's state is wrong. */
int bench_apply(uint32_t n, uint64_t seed, bool json);
