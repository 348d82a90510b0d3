/*
 * simd.h: the batched distance filter at the heart of every query, in four interchangeable
 * kernels (scalar reference, SSE2, AVX2, AVX-512) selected at run time.
 *
 * Every kernel computes, in float32 and in this order, dx = x[i] - cx, dy = y[i] - cy,
 * d2 = dx*dx + dy*dy, and keeps i when d2 <= r2. The build disables FMA contraction, so all
 * kernels give bit-identical answers.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef enum sl_simd_level {
    SL_SIMD_SCALAR = 0,
    SL_SIMD_SSE2,
    SL_SIMD_AVX2,
    SL_SIMD_AVX512,
    SL_SIMD_LEVELS
} sl_simd_level;

/* Kernels read the coordinate arrays in blocks of up to SL_SIMD_PAD floats. */
#define SL_SIMD_PAD 16u

/* Rounds n up to a whole number of SL_SIMD_PAD blocks. */
static inline uint32_t sl_simd_padded(uint32_t n)
{
    return (n + SL_SIMD_PAD - 1) & ~(SL_SIMD_PAD - 1);
}

/*
 * Writes to out[] the indices i < n whose point lies within sqrt(r2) of (cx, cy) and
 * returns how many. xs/ys must be readable up to sl_simd_padded(n) with NaN in the padding;
 * out must have room for sl_simd_padded(n) + SL_SIMD_PAD entries (kernels store whole
 * vectors past the count). Indices come out in increasing order.
 */
typedef uint32_t (*sl_within_fn)(const float *xs, const float *ys, uint32_t n, float cx,
                                 float cy, float r2, uint32_t *out);

/* The kernel currently selected (resolved on first use: SIGHTLINE_SIMD, else the best). */
extern sl_within_fn sl__simd_within;

static inline uint32_t sl_simd_within(const float *xs, const float *ys, uint32_t n, float cx,
                                      float cy, float r2, uint32_t *out)
{
    return sl__simd_within(xs, ys, n, cx, cy, r2, out);
}

/* True when this CPU can run kernels of the given level. */
bool sl_simd_supported(sl_simd_level level);
/* The highest level this CPU supports. */
sl_simd_level sl_simd_best(void);
/* Selects the kernel used by every space; returns 0, or SL_EINVAL when unsupported. */
int sl_simd_set(sl_simd_level level);
/* The level in use (resolving it first if nothing selected one yet). */
sl_simd_level sl_simd_get(void);
/* The kernel of a level, whether or not it is selected; NULL when unsupported. */
sl_within_fn sl_simd_kernel(sl_simd_level level);
/* "scalar", "sse2", "avx2" or "avx512". */
const char *sl_simd_name(sl_simd_level level);
/* Parses a level name; returns 0 or SL_EINVAL. */
int sl_simd_parse(const char *name, sl_simd_level *level);
/*
 * Applies SIGHTLINE_SIMD if set. Returns 0 (also when unset), or SL_EINVAL when the value
 * is unknown or the CPU lacks that level, in which case *why (if given) explains it and
 * the best level stays selected.
 */
int sl_simd_from_env(const char **why);
