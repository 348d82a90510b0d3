/* util.c: see util.h. */
#include "util.h"

#include "base/hash.h"

#include <stdlib.h>

int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, uint32_t n)
{
    qsort(v, n, sizeof *v, bench_cmp_double);
    return n ? v[n / 2] : 0;
}

uint64_t bench_hash_events(uint64_t h, const sl_event *ev, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h = (h ^ ev[i].watcher) * SL_FNV1A64_PRIME;
        h = (h ^ ev[i].target) * SL_FNV1A64_PRIME;
        h = (h ^ ev[i].kind) * SL_FNV1A64_PRIME;
    }
    return h;
}
