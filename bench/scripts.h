/*
 * scripts.h: the scripting benchmarks of sightline-bench. W3-rules times the W1 workload with
 * the teams-and-stealth rule in Lua against the same moves without a script (the target is
 * within 1.5x); the handler benchmark counts enter / leave handler calls per second with an
 * empty handler (the target is 20 million).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Returns 0, or 1 when the Lua rule and the same rule in C disagree or set-up fails. */
int bench_w3(uint32_t n, uint32_t ticks, uint64_t seed, const char *dir, bool json);
int bench_handlers(uint32_t n, uint64_t seed, const char *dir, bool json);
