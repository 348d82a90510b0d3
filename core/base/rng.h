/*
 * rng.h: the deterministic generator behind every workload, trace generator and randomised
 * test: xoshiro256** (Blackman and Vigna), its 256-bit state filled from the 64-bit seed by
 * splitmix64. Floats take the top 24 bits, so a seed gives the same positions on every
 * machine. Header-only (static inline), no global state.
 */
#pragma once

#include <stdint.h>

typedef struct sl_rng {
    uint64_t s[4];
} sl_rng;

static inline uint64_t sl_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void sl_rng_seed(sl_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = sl_splitmix64(&seed);
}

static inline uint64_t sl_rng_next(sl_rng *r)
{
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* A float uniformly in [0, 1): the top 24 bits scaled by 2^-24 (exact). */
static inline float sl_rng_float(sl_rng *r)
{
    return (float)(sl_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

/* An integer uniformly in [0, n) for n > 0 (Lemire's multiply-shift; negligible bias). */
static inline uint32_t sl_rng_below(sl_rng *r, uint32_t n)
{
    return (uint32_t)(((sl_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}
