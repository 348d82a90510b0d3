/*
 * util.h: what the benchmarks share: the median of tick times, and the FNV-1a hash of a
 * tick's events by which two engines' events are compared.
 */
#pragma once

#include "engine/space.h"

#include <stddef.h>
#include <stdint.h>

/* Sorts v[0..n) and returns its middle element (0 when n is 0). */
double bench_median(double *v, uint32_t n);
/* Orders doubles for qsort. */
int bench_cmp_double(const void *a, const void *b);
/* Hash h extended by events ev[0..n) (whole fields, in order). */
uint64_t bench_hash_events(uint64_t h, const sl_event *ev, size_t n);
