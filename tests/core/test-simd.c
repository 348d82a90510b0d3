/* Every SIMD kernel must return exactly what the scalar reference returns. */
#include "test.h"

#include "rng.h"
#include "simd.h"

#include <math.h>
#include <string.h>

#define MAXN 300

TEST_IMPL(simd_agree)
{
    static float xs[MAXN + SL_SIMD_PAD], ys[MAXN + SL_SIMD_PAD];
    static uint32_t want[MAXN + 2 * SL_SIMD_PAD], got[MAXN + 2 * SL_SIMD_PAD];
    sl_rng rng;
    sl_rng_seed(&rng, 42);
    sl_within_fn ref = sl_simd_kernel(SL_SIMD_SCALAR);
    unsigned levels_run = 0;
    for (int level = 1; level < SL_SIMD_LEVELS; level++) {
        sl_within_fn fn = sl_simd_kernel((sl_simd_level)level);
        if (!fn) {
            printf("skip %s: not supported by this CPU\n", sl_simd_name((sl_simd_level)level));
            continue;
        }
        levels_run++;
        for (int round = 0; round < 3000; round++) {
            uint32_t n = sl_rng_below(&rng, MAXN + 1);
            /* Integer lattices give exact ties d2 == r2; random floats everything else. */
            bool lattice = round % 3 == 0;
            for (uint32_t i = 0; i < n; i++) {
                xs[i] = lattice ? (float)sl_rng_below(&rng, 16) : sl_rng_float(&rng) * 100;
                ys[i] = lattice ? (float)sl_rng_below(&rng, 16) : sl_rng_float(&rng) * 100;
            }
            for (uint32_t i = n; i < sl_simd_padded(n); i++)
                xs[i] = ys[i] = NAN;
            float cx = lattice ? 8 : sl_rng_float(&rng) * 100;
            float cy = lattice ? 8 : sl_rng_float(&rng) * 100;
            float r2;
            switch (round % 7) {
            case 0: r2 = 0; break;
            case 1: r2 = INFINITY; break;
            case 2: r2 = 25; break;
            default: r2 = sl_rng_float(&rng) * 2000; break;
            }
            uint32_t k1 = ref(xs, ys, n, cx, cy, r2, want);
            uint32_t k2 = fn(xs, ys, n, cx, cy, r2, got);
            ASSERT_EQ(k1, k2);
            ASSERT(memcmp(want, got, k1 * sizeof(uint32_t)) == 0);
        }
    }
    /* The scalar level is always there; sse2 is part of x86-64. */
    ASSERT(sl_simd_supported(SL_SIMD_SCALAR));
    printf("%u vector levels checked against scalar\n", levels_run);
    return 0;
}

TEST_IMPL(simd_select)
{
    sl_simd_level l;
    ASSERT_EQ(sl_simd_parse("avx2", &l), 0);
    ASSERT_EQ(l, SL_SIMD_AVX2);
    ASSERT(sl_simd_parse("avx3", &l) != 0);
    ASSERT(sl_simd_parse(NULL, &l) != 0);
    ASSERT_EQ(sl_simd_set(SL_SIMD_SCALAR), 0);
    ASSERT_EQ(sl_simd_get(), SL_SIMD_SCALAR);
    ASSERT_EQ(sl_simd_set(sl_simd_best()), 0);
    ASSERT_EQ(sl_simd_get(), sl_simd_best());
    ASSERT(sl_simd_set((sl_simd_level)99) != 0);
    return 0;
}
