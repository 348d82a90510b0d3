/*
 * recompute.c: the tuned stateless recompute, the bar of issue 16 (see recompute.h).
 *
 * A tick: (1) counting sort of every entity into cells of side r (structure of arrays: the
 * x, y and id of the entities of cell c are at [start[c], start[c + 1])); (2) watchers in
 * cell order (neighbours stay in cache), every candidate of the 3 x 3 cells around tested 16
 * at a time into a 16-bit mask (AVX2 when the CPU has it, else a plain loop), the hits
 * appended to this tick's adjacency (a list per watcher); (3) the set difference against
 * the last tick's lists, watcher by watcher, with a stamp array: enters, then leaves, in no
 * particular order. Nothing else survives a tick.
 */
#include "recompute.h"

#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define LANES 16

struct recompute {
    float w, h, r2;
    float side;
    uint32_t cols, rows, ncells, n;
    uint32_t *count, *start;        /* per cell (start has ncells + 1) */
    float *sx, *sy;                 /* sorted by cell, padded by LANES */
    uint32_t *sid;
    uint32_t *cell_of;              /* per entity index */
    /* adjacency: this tick's and the last one's, a list per entity index (id - 1) */
    uint32_t *beg[2], *cnt[2], *tgt[2];
    size_t cap[2];
    int cur;
    uint32_t *mark, stamp;
    bool avx2;
};

/* For the AVX2 left-pack of hits: for each 8-bit mask, the lanes set, first to last. */
static uint32_t pack_lut[256][8] __attribute__((aligned(32)));

static void init_lut(void)
{
    for (uint32_t m = 0; m < 256; m++) {
        uint32_t k = 0;
        for (uint32_t l = 0; l < 8; l++)
            if (m >> l & 1)
                pack_lut[m][k++] = l;
    }
}

recompute *rc_new(float w, float h, float r, uint32_t n)
{
    recompute *rc = calloc(1, sizeof *rc);
    if (!rc)
        return NULL;
    rc->w = w;
    rc->h = h;
    rc->r2 = r * r;
    rc->side = r;
    rc->cols = (uint32_t)ceilf(w / r);
    rc->rows = (uint32_t)ceilf(h / r);
    rc->ncells = rc->cols * rc->rows;
    rc->n = n;
    rc->count = calloc(rc->ncells, sizeof *rc->count);
    rc->start = calloc(rc->ncells + 1, sizeof *rc->start);
    rc->sx = malloc((n + LANES) * sizeof *rc->sx);
    rc->sy = malloc((n + LANES) * sizeof *rc->sy);
    rc->sid = malloc((n + 2 * LANES) * sizeof *rc->sid);
    rc->cell_of = malloc((n ? n : 1) * sizeof *rc->cell_of);
    rc->mark = calloc(n ? n : 1, sizeof *rc->mark);
    for (int k = 0; k < 2; k++) {
        rc->beg[k] = calloc(n ? n : 1, sizeof *rc->beg[k]);
        rc->cnt[k] = calloc(n ? n : 1, sizeof *rc->cnt[k]);
        rc->cap[k] = (size_t)n * 8 + 64;
        rc->tgt[k] = malloc(rc->cap[k] * sizeof *rc->tgt[k]);
    }
    if (!rc->count || !rc->start || !rc->sx || !rc->sy || !rc->sid || !rc->cell_of ||
        !rc->mark || !rc->beg[0] || !rc->beg[1] || !rc->cnt[0] || !rc->cnt[1] ||
        !rc->tgt[0] || !rc->tgt[1]) {
        rc_free(rc);
        return NULL;
    }
    __builtin_cpu_init();
    rc->avx2 = __builtin_cpu_supports("avx2");
    init_lut();
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
    free(rc->sid);
    free(rc->cell_of);
    free(rc->mark);
    for (int k = 0; k < 2; k++) {
        free(rc->beg[k]);
        free(rc->cnt[k]);
        free(rc->tgt[k]);
    }
    free(rc);
}

/* (1) Every entity into its cell, the cells' entities contiguous. */
static void sort_cells(recompute *rc, const float *x, const float *y)
{
    uint32_t n = rc->n, cols = rc->cols;
    float side = rc->side;
    memset(rc->count, 0, rc->ncells * sizeof *rc->count);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t cx = (uint32_t)(x[i] / side), cy = (uint32_t)(y[i] / side);
        cx = cx < cols ? cx : cols - 1;
        cy = cy < rc->rows ? cy : rc->rows - 1;
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
        rc->sid[at] = i;
    }
    for (uint32_t k = 0; k < LANES; k++) {      /* padding far from everything */
        rc->sx[n + k] = rc->sy[n + k] = 1e30f;
        rc->sid[n + k] = UINT32_MAX;
    }
}

/* Makes room for `more` targets after len in the current adjacency. */
static void reserve(recompute *rc, size_t len, size_t more)
{
    int k = rc->cur;
    if (len + more <= rc->cap[k])
        return;
    size_t cap = 2 * (len + more);
    uint32_t *p = realloc(rc->tgt[k], cap * sizeof *p);
    if (!p)
        abort();                /* (a bench: out of memory ends it) */
    rc->tgt[k] = p;
    rc->cap[k] = cap;
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

/* Appends the ids of the 8 candidates at ids whose bits are set in m (m < 256), without
 * a branch a hit: the lanes are packed to the front by a permutation (out has 8 spare
 * slots). Returns how many. */
__attribute__((target("avx2"))) static inline uint32_t
pack8(const uint32_t *ids, uint32_t m, uint32_t *out)
{
    __m256i v = _mm256_loadu_si256((const __m256i *)ids);
    __m256i p = _mm256_load_si256((const __m256i *)pack_lut[m]);
    _mm256_storeu_si256((__m256i *)out, _mm256_permutevar8x32_epi32(v, p));
    return (uint32_t)__builtin_popcount(m);
}

/* The hits of one watcher against candidates [from, to): appended. */
#define SCAN(MASK, PACK)                                                                  \
    for (uint32_t j = from; j < to; j += LANES) {                                          \
        uint32_t mask = (MASK);                                                            \
        if (j + LANES > to)                                                                \
            mask &= (1u << (to - j)) - 1;                                                  \
        const uint32_t *ids = sid + j;                                                     \
        PACK                                                                               \
    }
#define PACK_AVX2                                                                          \
    n += pack8(ids, mask & 0xff, out + n);                                                 \
    n += pack8(ids + 8, mask >> 8, out + n);
#define PACK_PLAIN                                                                         \
    while (mask) {                                                                         \
        out[n++] = ids[__builtin_ctz(mask)];                                               \
        mask &= mask - 1;                                                                  \
    }

/* (2) This tick's visible pairs: watchers cell by cell, against the 3 x 3 cells around. */
__attribute__((target("avx2"))) static void judge_avx2(recompute *rc, bool avx2)
{
    int k = rc->cur;
    size_t len = 0;
    uint32_t cols = rc->cols, rows = rc->rows;
    float r2 = rc->r2;
    __m256 vr2 = _mm256_set1_ps(r2);
    for (uint32_t c = 0; c < rc->ncells; c++) {
        uint32_t cx = c % cols, cy = c / cols;
        uint32_t y0 = cy ? cy - 1 : 0, y1 = cy + 1 < rows ? cy + 1 : cy;
        uint32_t x0 = cx ? cx - 1 : 0, x1 = cx + 1 < cols ? cx + 1 : cx;
        size_t span = 0;
        for (uint32_t yy = y0; yy <= y1; yy++)
            span += rc->start[yy * cols + x1 + 1] - rc->start[yy * cols + x0];
        for (uint32_t i = rc->start[c]; i < rc->start[c + 1]; i++) {
            uint32_t w = rc->sid[i];
            float wx = rc->sx[i], wy = rc->sy[i];
            reserve(rc, len, span + 2 * LANES);
            /* (Local restrict pointers: the stores into out cannot change the inputs.) */
            uint32_t *restrict out = rc->tgt[k] + len;
            const float *restrict sx = rc->sx, *restrict sy = rc->sy;
            const uint32_t *restrict sid = rc->sid;
            size_t n = 0;
            for (uint32_t yy = y0; yy <= y1; yy++) {
                /* The cells x0..x1 of a row are contiguous: one span. */
                uint32_t from = rc->start[yy * cols + x0], to = rc->start[yy * cols + x1 + 1];
                if (avx2) {
                    __m256 vx = _mm256_set1_ps(wx), vy = _mm256_set1_ps(wy);
                    SCAN(mask16_avx2(sx, sy, j, vx, vy, vr2), PACK_AVX2)
                } else {
                    SCAN(mask16_plain(sx, sy, j, wx, wy, r2), PACK_PLAIN)
                }
            }
            /* The watcher found itself once: drop it. */
            for (size_t q = 0; q < n; q++)
                if (out[q] == w) {
                    out[q] = out[--n];
                    break;
                }
            rc->beg[k][w] = (uint32_t)len;
            rc->cnt[k][w] = (uint32_t)n;
            len += n;
        }
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

/* The set difference of one watcher: its last tick's targets stamped, this tick's checked
 * (enters), the stamps left (leaves). */
static void diff_marked(recompute *rc, uint32_t w, const uint32_t *old, uint32_t nold,
                        const uint32_t *cur, uint32_t ncur, uint64_t *h, uint64_t *in,
                        uint64_t *gone)
{
    if (++rc->stamp == 0) {
        memset(rc->mark, 0, rc->n * sizeof *rc->mark);
        rc->stamp = 1;
    }
    uint32_t s = rc->stamp;
    for (uint32_t i = 0; i < nold; i++)
        rc->mark[old[i]] = s;
    for (uint32_t i = 0; i < ncur; i++) {
        if (rc->mark[cur[i]] == s) {
            rc->mark[cur[i]] = 0;
        } else {
            *h += mix(w + 1, cur[i] + 1, 0);
            ++*in;
        }
    }
    for (uint32_t i = 0; i < nold; i++)
        if (rc->mark[old[i]] == s) {
            *h += mix(w + 1, old[i] + 1, 1);
            ++*gone;
        }
}

void rc_tick(recompute *rc, const float *x, const float *y, rc_counts *out)
{
    rc->cur ^= 1;
    sort_cells(rc, x, y);
    judge_avx2(rc, rc->avx2);
    /* (3) The set difference, watcher by watcher (in cell order, as the lists were made),
     * through a stamp array over all entities. (A small open-addressing table a watcher,
     * to stay in L1, cost 2.7x as much: 24 against 9 ms at W1 50k.) */
    int now = rc->cur, was = now ^ 1;
    uint64_t h = 0, in = 0, gone = 0;
    for (uint32_t i = 0; i < rc->n; i++) {
        uint32_t w = rc->sid[i];
        diff_marked(rc, w, rc->tgt[was] + rc->beg[was][w], rc->cnt[was][w],
                    rc->tgt[now] + rc->beg[now][w], rc->cnt[now][w], &h, &in, &gone);
    }
    out->enters = in;
    out->leaves = gone;
    out->hash = h;
}
