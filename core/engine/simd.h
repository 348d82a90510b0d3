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
#include <stddef.h>
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

/*
 * The pair judge. A bucket's lanes hold each entity's position now and at the last tick, its
 * squared radius and squared radius + hysteresis, the layers it sees (0 when it watches
 * nothing) and its layer bit. For one entity E that has only moved since the last tick, the
 * judge reports the lanes C whose pair with E may have changed verdict, in either role:
 * E watching C (E's radius), or C watching E (C's radius; not when C is DIRTY, which judges
 * that pair itself, or BIG, which is judged from the big-watcher list). A pair is stable
 * when it was inside r at the last tick and is inside r now (its verdict and its standing
 * as an exception cannot change), or was beyond r + h and is beyond r now (invisible before
 * and after); everything else, hysteresis-band cases included, is reported. With `stay`,
 * stably visible pairs are reported too. Lanes flagged SPECIAL and E's own lane are never
 * reported.
 */
#define SL_LANE_DIRTY   1u  /* changed since the last tick */
#define SL_LANE_SPECIAL 2u  /* added, re-shaped or jumped: its own pass judges all its pairs */
#define SL_LANE_BIG     4u  /* a watcher judged from the big-watcher list */

typedef struct sl_lanes {
    const float *x, *y, *px, *py, *r2, *rh2;
    const uint32_t *slot, *wmask, *lbit, *flags;
    uint32_t n;             /* readable up to sl_simd_padded(n); padding positions are NaN */
    uint32_t cap;           /* the columns' length (>= sl_simd_padded(n)) */
} sl_lanes;

/* In a 3D space, the heights now and at the last tick: two more columns, right after py in
 * the same block (so that a bucket's descriptor stays as small as a flat one's). */
static inline const float *sl_lanes_z(const sl_lanes *l)
{
    return l->py + l->cap;
}

static inline const float *sl_lanes_pz(const sl_lanes *l)
{
    return l->py + 2 * (size_t)l->cap;
}

typedef struct sl_judge {
    float x, y, px, py;     /* E now and at the last tick */
    float r2, rh2;          /* E's r^2 and (r + h)^2 */
    uint32_t wmask;         /* layers E sees (0 when E watches nothing) */
    uint32_t lbit;          /* 1 << E's layer */
    uint32_t slot;          /* E's own slot */
    bool stay;              /* also report stably visible pairs */
    bool h0;                /* no hysteresis: every rh2 (E's and the lanes') equals its r2,
                               which lets a kernel skip the r + h tests */
    bool uniform;           /* with h0 and no stay: every lane not SPECIAL has E's r2, sees
                               E's layer and is seen by E, and is not BIG. The report is then
                               the lanes whose distance crossed r2, which a kernel may compute
                               as such (E's own lane never crosses) */
    bool d3;                /* a 3D space: the lanes have z / pz, and every squared distance
                               is (dx*dx + dy*dy) + dz*dz */
    float z, pz;            /* E's height now and at the last tick (d3) */
} sl_judge;

/*
 * Judges nl buckets (lanes[0..nl)) for one E: writes to out[] the indices of the reported
 * lanes and to tag[] the bucket (0 .. nl - 1) each is in, bucket after bucket (increasing
 * within each), and returns how many; out and tag need room for the sum of
 * sl_simd_padded(n) + SL_SIMD_PAD entries.
 * (One call for the whole neighbourhood: the set-up is paid once and the CPU overlaps the
 * buckets; the tags let the caller settle the reports in one loop, without a branch a
 * bucket.)
 */
typedef uint32_t (*sl_judge_fn)(const sl_lanes *const *lanes, uint32_t nl,
                                const sl_judge *judge, uint32_t *out, uint32_t *tag);

/* The judge of a level (NULL when unsupported), and the one of the selected level. */
sl_judge_fn sl_simd_judge_kernel(sl_simd_level level);
extern sl_judge_fn sl__simd_judge;

static inline uint32_t sl_simd_judge(const sl_lanes *const *lanes, uint32_t nl,
                                     const sl_judge *judge, uint32_t *out, uint32_t *tag)
{
    return sl__simd_judge(lanes, nl, judge, out, tag);
}

/* Returns the index of the first x in v[0..n), or n when absent (pair-list searches). */
typedef uint32_t (*sl_find_fn)(const uint32_t *v, uint32_t n, uint32_t x);
sl_find_fn sl_simd_find_kernel(sl_simd_level level);
extern sl_find_fn sl__simd_find;

static inline uint32_t sl_simd_find(const uint32_t *v, uint32_t n, uint32_t x)
{
    return sl__simd_find(v, n, x);
}

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
