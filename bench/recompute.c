/*
 * recompute.c: the tuned stateless recompute, the bar of issue 16 (see recompute.h).
 *
 * What it keeps between ticks is the last tick's positions (which define the last tick's
 * visible set: no hysteresis, no rule), nothing else. A tick:
 * (1) the largest displacement D since the last tick, and a counting sort of every entity
 *     into cells of side r + 2D (structure of arrays: the new x, y, the old x, y and the id
 *     of the entities of cell c are at [start[c], start[c + 1])). A pair visible last tick
 *     is at most r + 2D apart now, so the 3 x 3 cells around a watcher hold every pair
 *     that can be visible now or was visible then;
 * (2) watchers in cell order (neighbours stay in cache), every candidate of the 3 x 3 cells
 *     around tested 16 at a time against the new positions and the old ones: two 16-bit
 *     masks (AVX2 when the CPU has it, else a plain loop). Their difference is the events
 *     (new and not old: enter; old and not new: leave), emitted as found, unsorted. Pairs
 *     that did not change cost two compares and no memory.
 * With teleports D grows and so do the cells: still exact, only slower.
 */
#include "recompute.h"

#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define LANES 16
/* Cells of side (r + 2D) / SUB, a watcher's neighbourhood the (2 SUB + 1)^2 cells around:
 * finer cells than r + 2D test fewer candidates (at W1 50k, 5 x 5 cells of side 32 test
 * about 5 groups of 16 a watcher, 3 x 3 of side 64 about 9). */
#define SUB 2u

struct recompute {
    float w, h, r, r2;
    uint32_t n, max_cells;
    /* this tick's grid */
    float side;
    uint32_t cols, rows, ncells;
    uint32_t *count, *start;        /* per cell (start has ncells + 1) */
    float *sx, *sy, *ox, *oy;       /* new and old positions sorted by cell, padded */
    uint32_t *sid;
    uint32_t *cell_of;              /* per entity index */
    float *px, *py;                 /* last tick's positions per entity (NaN before) */
    bool avx2;
};

recompute *rc_new(float w, float h, float r, uint32_t n)
{
    recompute *rc = calloc(1, sizeof *rc);
    if (!rc)
        return NULL;
    rc->w = w;
    rc->h = h;
    rc->r = r;
    rc->r2 = r * r;
    rc->n = n;
    rc->max_cells = (uint32_t)ceilf(w * SUB / r) * (uint32_t)ceilf(h * SUB / r);
    rc->count = calloc(rc->max_cells, sizeof *rc->count);
    rc->start = calloc(rc->max_cells + 1, sizeof *rc->start);
    size_t padded = (size_t)n + LANES;
    rc->sx = malloc(padded * sizeof *rc->sx);
    rc->sy = malloc(padded * sizeof *rc->sy);
    rc->ox = malloc(padded * sizeof *rc->ox);
    rc->oy = malloc(padded * sizeof *rc->oy);
    rc->sid = malloc(padded * sizeof *rc->sid);
    rc->cell_of = malloc((n ? n : 1) * sizeof *rc->cell_of);
    rc->px = malloc((n ? n : 1) * sizeof *rc->px);
    rc->py = malloc((n ? n : 1) * sizeof *rc->py);
    if (!rc->count || !rc->start || !rc->sx || !rc->sy || !rc->ox || !rc->oy || !rc->sid ||
        !rc->cell_of || !rc->px || !rc->py) {
        rc_free(rc);
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++)
        rc->px[i] = rc->py[i] = NAN;    /* nothing was visible before the first tick */
    __builtin_cpu_init();
    rc->avx2 = __builtin_cpu_supports("avx2");
    return rc;
}

void rc_free(recompute *rc)
{
    if (!rc)
        return;
    free(rc->count);
    free(rc->start);
    free(rc->sx);
    free(rc->sy);
    free(rc->ox);
    free(rc->oy);
    free(rc->sid);
    free(rc->cell_of);
    free(rc->px);
    free(rc->py);
    free(rc);
}

/* (1) The cell side for this tick: r + 2D, D the largest move since the last tick (with a
 * margin for float rounding). */
static void choose_grid(recompute *rc, const float *x, const float *y)
{
    float m = 0;
    for (uint32_t i = 0; i < rc->n; i++) {
        float dx = x[i] - rc->px[i], dy = y[i] - rc->py[i];
        float d2 = dx * dx + dy * dy;
        m = d2 > m ? d2 : m;            /* (NaN before the first tick: not counted) */
    }
    rc->side = ((rc->r + 2 * sqrtf(m)) * 1.0001f + 1e-3f) / SUB;
    rc->cols = (uint32_t)ceilf(rc->w / rc->side);
    rc->rows = (uint32_t)ceilf(rc->h / rc->side);
    rc->ncells = rc->cols * rc->rows;   /* <= max_cells: side >= r / SUB */
}

/* (1) Every entity into its cell, the cells' entities contiguous, old positions beside. */
static void sort_cells(recompute *rc, const float *x, const float *y)
{
    uint32_t n = rc->n, cols = rc->cols, rows = rc->rows;
    float inv = 1.0f / rc->side;
    memset(rc->count, 0, rc->ncells * sizeof *rc->count);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t cx = (uint32_t)(x[i] * inv), cy = (uint32_t)(y[i] * inv);
        cx = cx < cols ? cx : cols - 1;
        cy = cy < rows ? cy : rows - 1;
        uint32_t c = cy * cols + cx;
        rc->cell_of[i] = c;
        rc->count[c]++;
    }
    uint32_t sum = 0;
    for (uint32_t c = 0; c < rc->ncells; c++) {
        rc->start[c] = sum;
        sum += rc->count[c];
    }
    rc->start[rc->ncells] = sum;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t at = rc->start[rc->cell_of[i]] + --rc->count[rc->cell_of[i]];
        rc->sx[at] = x[i];
        rc->sy[at] = y[i];
        rc->ox[at] = rc->px[i];
        rc->oy[at] = rc->py[i];
        rc->sid[at] = i;
    }
    for (uint32_t k = 0; k < LANES; k++) {      /* padding far from everything */
        rc->sx[n + k] = rc->sy[n + k] = rc->ox[n + k] = rc->oy[n + k] = 1e30f;
        rc->sid[n + k] = UINT32_MAX;
    }
}

/* A pair's contribution to the bench's order-free event hash (bench.c: mix_event). */
static inline uint64_t mix(uint64_t w, uint64_t t, uint32_t kind)
{
    uint64_t v = w * 0x9E3779B97F4A7C15ULL + t;
    v ^= v >> 33;
    v *= 0xff51afd7ed558ccdULL;
    v ^= v >> 33;
    v *= 0xc4ceb9fe1a85ec53ULL;
    v ^= v >> 33;
    return v ^ kind;
}

/* Which of the 16 candidates at j are within r of (wx, wy): a 16-bit mask. */
static inline uint32_t mask16_plain(const float *sx, const float *sy, uint32_t j, float wx,
                                    float wy, float r2)
{
    uint32_t mask = 0;
    for (uint32_t l = 0; l < LANES; l++) {
        float dx = sx[j + l] - wx, dy = sy[j + l] - wy;
        mask |= (uint32_t)(dx * dx + dy * dy <= r2) << l;
    }
    return mask;
}

__attribute__((target("avx2"))) static inline uint32_t
mask16_avx2(const float *sx, const float *sy, uint32_t j, __m256 wx, __m256 wy, __m256 r2)
{
    __m256 dx0 = _mm256_sub_ps(_mm256_loadu_ps(sx + j), wx);
    __m256 dy0 = _mm256_sub_ps(_mm256_loadu_ps(sy + j), wy);
    __m256 dx1 = _mm256_sub_ps(_mm256_loadu_ps(sx + j + 8), wx);
    __m256 dy1 = _mm256_sub_ps(_mm256_loadu_ps(sy + j + 8), wy);
    __m256 d0 = _mm256_add_ps(_mm256_mul_ps(dx0, dx0), _mm256_mul_ps(dy0, dy0));
    __m256 d1 = _mm256_add_ps(_mm256_mul_ps(dx1, dx1), _mm256_mul_ps(dy1, dy1));
    uint32_t m0 = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(d0, r2, _CMP_LE_OQ));
    uint32_t m1 = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(d1, r2, _CMP_LE_OQ));
    return m0 | m1 << 8;
}

/* The events of watcher w against the 16 candidates at ids: the lanes in `changed`, new
 * visibility in `now`. (The watcher's own lane is visible in both roles, or, on the first
 * tick, new: skipped.) */
static inline void emit(uint32_t w, const uint32_t *ids, uint32_t changed, uint32_t now,
                        rc_counts *out)
{
    while (changed) {
        uint32_t l = (uint32_t)__builtin_ctz(changed);
        changed &= changed - 1;
        uint32_t t = ids[l];
        if (t == w)
            continue;
        uint32_t leave = !(now >> l & 1);
        out->hash += mix(w + 1, t + 1, leave);
        out->enters += !leave;
        out->leaves += leave;
    }
}

/* (2) Watchers cell by cell, against the 3 x 3 cells around, in both positions. */
#define JUDGE(SETUP, NEW, OLD)                                                             \
    for (uint32_t c = 0; c < rc->ncells; c++) {                                            \
        uint32_t cx = c % cols, cy = c / cols;                                             \
        uint32_t y0 = cy > SUB ? cy - SUB : 0, y1 = cy + SUB < rows ? cy + SUB : rows - 1; \
        uint32_t x0 = cx > SUB ? cx - SUB : 0, x1 = cx + SUB < cols ? cx + SUB : cols - 1; \
        for (uint32_t i = rc->start[c]; i < rc->start[c + 1]; i++) {                       \
            uint32_t w = sid[i];                                                           \
            SETUP                                                                          \
            for (uint32_t yy = y0; yy <= y1; yy++) {                                       \
                /* The cells x0..x1 of a row are contiguous: one span. */                  \
                uint32_t from = rc->start[yy * cols + x0];                                 \
                uint32_t to = rc->start[yy * cols + x1 + 1];                               \
                for (uint32_t j = from; j < to; j += LANES) {                              \
                    uint32_t now = (NEW), changed = now ^ (OLD);                           \
                    if (j + LANES > to)                                                    \
                        changed &= (1u << (to - j)) - 1;                                   \
                    if (changed)                                                           \
                        emit(w, sid + j, changed, now, out);                               \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }

static void judge_plain(recompute *rc, rc_counts *out)
{
    uint32_t cols = rc->cols, rows = rc->rows;
    const float *restrict sx = rc->sx, *restrict sy = rc->sy;
    const float *restrict ox = rc->ox, *restrict oy = rc->oy;
    const uint32_t *restrict sid = rc->sid;
    float r2 = rc->r2;
    JUDGE(float wx = sx[i]; float wy = sy[i]; float owx = ox[i]; float owy = oy[i];,
          mask16_plain(sx, sy, j, wx, wy, r2), mask16_plain(ox, oy, j, owx, owy, r2))
}

__attribute__((target("avx2"))) static void judge_avx2(recompute *rc, rc_counts *out)
{
    uint32_t cols = rc->cols, rows = rc->rows;
    const float *restrict sx = rc->sx, *restrict sy = rc->sy;
    const float *restrict ox = rc->ox, *restrict oy = rc->oy;
    const uint32_t *restrict sid = rc->sid;
    __m256 r2 = _mm256_set1_ps(rc->r2);
    JUDGE(__m256 wx = _mm256_set1_ps(sx[i]); __m256 wy = _mm256_set1_ps(sy[i]);
          __m256 owx = _mm256_set1_ps(ox[i]); __m256 owy = _mm256_set1_ps(oy[i]);,
          mask16_avx2(sx, sy, j, wx, wy, r2), mask16_avx2(ox, oy, j, owx, owy, r2))
}

void rc_tick(recompute *rc, const float *x, const float *y, rc_counts *out)
{
    memset(out, 0, sizeof *out);
    choose_grid(rc, x, y);
    sort_cells(rc, x, y);
    if (rc->avx2)
        judge_avx2(rc, out);
    else
        judge_plain(rc, out);
    memcpy(rc->px, x, rc->n * sizeof *x);
    memcpy(rc->py, y, rc->n * sizeof *y);
}
