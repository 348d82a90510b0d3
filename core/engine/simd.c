/*
 * simd.c: the distance-filter kernels and their run-time dispatch.
 *
 * The vector kernels turn a comparison mask into output indices without a per-hit branch:
 * SSE2 and AVX2 look the mask up in a table of lane offsets and store a whole vector of
 * indices, advancing the output by the mask's population count; AVX-512 compresses the
 * index vector in a register (a compress straight to memory is microcoded and slow on
 * several AMD cores). Callers pad coordinate arrays with NaN, which compares false, so the
 * kernels never need a scalar tail.
 */
#include "simd.h"
#include "base/common.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define SL_HAVE_X86 1
#include <immintrin.h>
#else
#define SL_HAVE_X86 0
#endif

static uint32_t within_scalar(const float *xs, const float *ys, uint32_t n, float cx, float cy,
                              float r2, uint32_t *out)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        float dx = xs[i] - cx;
        float dy = ys[i] - cy;
        float d2 = dx * dx + dy * dy;
        out[k] = i;
        k += d2 <= r2;
    }
    return k;
}

/*
 * The judge's decision, on bit masks (one bit a lane) so that every kernel shares it: oin /
 * oband mark "inside r" and "inside r + h" at the last tick, nin "inside r" now, for E's
 * radius (w) and for the lane's own radius (t). keep is all ones when stable-visible pairs are
 * wanted too.
 */
static inline unsigned judge_bits(unsigned mw, unsigned mt, unsigned skip, unsigned oin_w,
                                  unsigned oband_w, unsigned nin_w, unsigned oin_t,
                                  unsigned oband_t, unsigned nin_t, unsigned keep)
{
    unsigned stable_w = (~oband_w & ~nin_w) | (~keep & oin_w & nin_w);
    unsigned stable_t = (~oband_t & ~nin_t) | (~keep & oin_t & nin_t);
    return ((mw & ~stable_w) | (mt & ~stable_t)) & ~skip;
}

static uint32_t judge1_scalar(const sl_lanes *l, const sl_judge *j, uint32_t *out)
{
    const unsigned keep = j->stay ? ~0u : 0u;
    uint32_t k = 0;
    for (uint32_t i = 0; i < l->n; i++) {
        float dx = l->x[i] - j->x, dy = l->y[i] - j->y;
        float d2n = dx * dx + dy * dy;
        float ex = l->px[i] - j->px, ey = l->py[i] - j->py;
        float d2o = ex * ex + ey * ey;
        if (j->d3) {
            float dz = sl_lanes_z(l)[i] - j->z, ez = sl_lanes_pz(l)[i] - j->pz;
            d2n += dz * dz;
            d2o += ez * ez;
        }
        unsigned mw = (j->wmask & l->lbit[i]) != 0;
        unsigned mt = (l->wmask[i] & j->lbit) != 0 &&
                      !(l->flags[i] & (SL_LANE_DIRTY | SL_LANE_BIG));
        unsigned skip = (l->flags[i] & SL_LANE_SPECIAL) != 0 || l->slot[i] == j->slot;
        unsigned need = judge_bits(mw, mt, skip, d2o <= j->r2, d2o <= j->rh2, d2n <= j->r2,
                                   d2o <= l->r2[i], d2o <= l->rh2[i], d2n <= l->r2[i], keep);
        out[k] = i;
        k += need & 1u;
    }
    return k;
}

static uint32_t find_scalar(const uint32_t *v, uint32_t n, uint32_t x)
{
    for (uint32_t i = 0; i < n; i++)
        if (v[i] == x)
            return i;
    return n;
}

#if SL_HAVE_X86
/* lut4[m][j]: the lane of the j-th set bit of the 4-bit mask m; likewise lut8 for 8 bits. */
static uint32_t lut4[16][4] __attribute__((aligned(16)));
static uint32_t lut8[256][8] __attribute__((aligned(32)));

static void build_luts(void)
{
    for (uint32_t m = 0; m < 256; m++) {
        uint32_t j = 0;
        for (uint32_t b = 0; b < 8; b++)
            if (m & (1u << b))
                lut8[m][j++] = b;
        if (m < 16)
            memcpy(lut4[m], lut8[m], sizeof lut4[m]);
    }
}

__attribute__((target("sse2,popcnt")))
static uint32_t within_sse2(const float *xs, const float *ys, uint32_t n, float cx, float cy,
                            float r2, uint32_t *out)
{
    const __m128 vcx = _mm_set1_ps(cx), vcy = _mm_set1_ps(cy), vr2 = _mm_set1_ps(r2);
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i += 4) {
        __m128 dx = _mm_sub_ps(_mm_loadu_ps(xs + i), vcx);
        __m128 dy = _mm_sub_ps(_mm_loadu_ps(ys + i), vcy);
        __m128 d2 = _mm_add_ps(_mm_mul_ps(dx, dx), _mm_mul_ps(dy, dy));
        unsigned m = (unsigned)_mm_movemask_ps(_mm_cmple_ps(d2, vr2));
        __m128i idx = _mm_add_epi32(_mm_set1_epi32((int)i),
                                    _mm_load_si128((const __m128i *)lut4[m]));
        _mm_storeu_si128((__m128i *)(out + k), idx);
        k += (uint32_t)__builtin_popcount(m);
    }
    return k;
}

__attribute__((target("avx2,popcnt")))
static uint32_t within_avx2(const float *xs, const float *ys, uint32_t n, float cx, float cy,
                            float r2, uint32_t *out)
{
    const __m256 vcx = _mm256_set1_ps(cx), vcy = _mm256_set1_ps(cy), vr2 = _mm256_set1_ps(r2);
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i += 8) {
        __m256 dx = _mm256_sub_ps(_mm256_loadu_ps(xs + i), vcx);
        __m256 dy = _mm256_sub_ps(_mm256_loadu_ps(ys + i), vcy);
        __m256 d2 = _mm256_add_ps(_mm256_mul_ps(dx, dx), _mm256_mul_ps(dy, dy));
        unsigned m = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(d2, vr2, _CMP_LE_OQ));
        __m256i idx = _mm256_add_epi32(_mm256_set1_epi32((int)i),
                                       _mm256_load_si256((const __m256i *)lut8[m]));
        _mm256_storeu_si256((__m256i *)(out + k), idx);
        k += (uint32_t)__builtin_popcount(m);
    }
    return k;
}

__attribute__((target("avx512f,popcnt")))
static uint32_t within_avx512(const float *xs, const float *ys, uint32_t n, float cx, float cy,
                              float r2, uint32_t *out)
{
    const __m512 vcx = _mm512_set1_ps(cx), vcy = _mm512_set1_ps(cy), vr2 = _mm512_set1_ps(r2);
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i += 16) {
        __m512 dx = _mm512_sub_ps(_mm512_loadu_ps(xs + i), vcx);
        __m512 dy = _mm512_sub_ps(_mm512_loadu_ps(ys + i), vcy);
        __m512 d2 = _mm512_add_ps(_mm512_mul_ps(dx, dx), _mm512_mul_ps(dy, dy));
        __mmask16 m = _mm512_cmp_ps_mask(d2, vr2, _CMP_LE_OQ);
        __m512i idx = _mm512_add_epi32(_mm512_set1_epi32((int)i), iota);
        _mm512_storeu_si512((void *)(out + k), _mm512_maskz_compress_epi32(m, idx));
        k += (uint32_t)__builtin_popcount((unsigned)m);
    }
    return k;
}

/* Comparison and test helpers turning vectors into one bit a lane, per instruction set. */
#define SSE_LE(a, b) ((unsigned)_mm_movemask_ps(_mm_cmple_ps(a, b)))
#define SSE_NZ(a, b) (~(unsigned)_mm_movemask_ps(_mm_castsi128_ps(                      \
                        _mm_cmpeq_epi32(_mm_and_si128(a, b), _mm_setzero_si128()))) & 0xfu)
#define SSE_EQ(a, b) ((unsigned)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(a, b))))

__attribute__((target("sse2,popcnt")))
static uint32_t judge1_sse2(const sl_lanes *l, const sl_judge *j, uint32_t *out)
{
    const __m128 ex = _mm_set1_ps(j->x), ey = _mm_set1_ps(j->y);
    const __m128 epx = _mm_set1_ps(j->px), epy = _mm_set1_ps(j->py);
    const __m128 ez = _mm_set1_ps(j->z), epz = _mm_set1_ps(j->pz);
    const __m128 er2 = _mm_set1_ps(j->r2), erh2 = _mm_set1_ps(j->rh2);
    const __m128i ewm = _mm_set1_epi32((int)j->wmask), elb = _mm_set1_epi32((int)j->lbit);
    const __m128i self = _mm_set1_epi32((int)j->slot);
    const __m128i fdb = _mm_set1_epi32(SL_LANE_DIRTY | SL_LANE_BIG);
    const __m128i fsp = _mm_set1_epi32(SL_LANE_SPECIAL);
    const unsigned keep = j->stay ? ~0u : 0u;
    uint32_t k = 0;
    for (uint32_t i = 0; i < l->n; i += 4) {
        __m128 dx = _mm_sub_ps(_mm_loadu_ps(l->x + i), ex);
        __m128 dy = _mm_sub_ps(_mm_loadu_ps(l->y + i), ey);
        __m128 d2n = _mm_add_ps(_mm_mul_ps(dx, dx), _mm_mul_ps(dy, dy));
        __m128 ox = _mm_sub_ps(_mm_loadu_ps(l->px + i), epx);
        __m128 oy = _mm_sub_ps(_mm_loadu_ps(l->py + i), epy);
        __m128 d2o = _mm_add_ps(_mm_mul_ps(ox, ox), _mm_mul_ps(oy, oy));
        if (j->d3) {
            __m128 dz = _mm_sub_ps(_mm_loadu_ps(sl_lanes_z(l) + i), ez);
            __m128 oz = _mm_sub_ps(_mm_loadu_ps(sl_lanes_pz(l) + i), epz);
            d2n = _mm_add_ps(d2n, _mm_mul_ps(dz, dz));
            d2o = _mm_add_ps(d2o, _mm_mul_ps(oz, oz));
        }
        __m128 r2 = _mm_loadu_ps(l->r2 + i), rh2 = _mm_loadu_ps(l->rh2 + i);
        __m128i fl = _mm_loadu_si128((const __m128i *)(l->flags + i));
        unsigned mw = SSE_NZ(_mm_loadu_si128((const __m128i *)(l->lbit + i)), ewm);
        unsigned mt = SSE_NZ(_mm_loadu_si128((const __m128i *)(l->wmask + i)), elb) &
                      ~SSE_NZ(fl, fdb);
        unsigned skip = SSE_NZ(fl, fsp) |
                        SSE_EQ(_mm_loadu_si128((const __m128i *)(l->slot + i)), self);
        unsigned m = judge_bits(mw, mt, skip, SSE_LE(d2o, er2), SSE_LE(d2o, erh2),
                                SSE_LE(d2n, er2), SSE_LE(d2o, r2), SSE_LE(d2o, rh2),
                                SSE_LE(d2n, r2), keep) & 0xfu;
        __m128i idx = _mm_add_epi32(_mm_set1_epi32((int)i),
                                    _mm_load_si128((const __m128i *)lut4[m]));
        _mm_storeu_si128((__m128i *)(out + k), idx);
        k += (uint32_t)__builtin_popcount(m);
    }
    return k;
}

/* Squared distances of eight points from (cx, cy), in the order every kernel uses; with
 * heights (zs not NULL), dz*dz added last. */
__attribute__((target("avx2"), always_inline))
static inline __m256 avx2_d2(const float *xs, const float *ys, const float *zs, __m256 cx,
                             __m256 cy, __m256 cz)
{
    __m256 dx = _mm256_sub_ps(_mm256_loadu_ps(xs), cx);
    __m256 dy = _mm256_sub_ps(_mm256_loadu_ps(ys), cy);
    __m256 d2 = _mm256_add_ps(_mm256_mul_ps(dx, dx), _mm256_mul_ps(dy, dy));
    if (zs) {
        __m256 dz = _mm256_sub_ps(_mm256_loadu_ps(zs), cz);
        d2 = _mm256_add_ps(d2, _mm256_mul_ps(dz, dz));
    }
    return d2;
}

/*
 * The AVX2 judge, deciding each group of eight lanes with one movemask. The general decision
 * is judge_bits in vector form: per role, a lane is ruled out ("out") when the pair is stable
 * or the role does not apply. The commonest case, no hysteresis and no stays (JUDGE_PLAIN),
 * is written positively instead: a lane is reported when a role applies and the pair is
 * inside r on one side of the tick only; that needs no negations and no r + h tests. In a
 * uniform neighbourhood (JUDGE_UNIFORM, see sl_judge) both roles cross together and always
 * apply, so the lane's radius, masks and slot are not even read.
 */
enum judge_mode { JUDGE_GENERAL, JUDGE_PLAIN, JUDGE_UNIFORM };

__attribute__((target("avx2,popcnt"), always_inline))
static inline uint32_t judge_avx2_body(const sl_lanes *const *lanes, uint32_t nl,
                                       const sl_judge *j, uint32_t *out, uint32_t *tag,
                                       const enum judge_mode mode, const bool d3)
{
    const __m256 ex = _mm256_set1_ps(j->x), ey = _mm256_set1_ps(j->y);
    const __m256 epx = _mm256_set1_ps(j->px), epy = _mm256_set1_ps(j->py);
    const __m256 ez = _mm256_set1_ps(j->z), epz = _mm256_set1_ps(j->pz);
    const __m256 er2 = _mm256_set1_ps(j->r2), erh2 = _mm256_set1_ps(j->rh2);
    const __m256i ewm = _mm256_set1_epi32((int)j->wmask), elb = _mm256_set1_epi32((int)j->lbit);
    const __m256i self = _mm256_set1_epi32((int)j->slot);
    const __m256i fdb = _mm256_set1_epi32(SL_LANE_DIRTY | SL_LANE_BIG);
    const __m256i fsp = _mm256_set1_epi32(SL_LANE_SPECIAL);
    const __m256 keep = _mm256_castsi256_ps(_mm256_set1_epi32(j->stay ? -1 : 0));
    const __m256 ones = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    const __m256i zero = _mm256_setzero_si256(), eight = _mm256_set1_epi32(8);
#define LE(a, b) _mm256_cmp_ps(a, b, _CMP_LE_OQ)
#define ZERO(a, b) _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(a, b), zero))
#define NOT(a) _mm256_xor_ps(a, ones)
    uint32_t k = 0;
    for (uint32_t b = 0; b < nl; b++) {
        const sl_lanes *l = lanes[b];
        const __m256i bv = _mm256_set1_epi32((int)b);
        __m256i base = zero;
        for (uint32_t i = 0; i < l->n; i += 8, base = _mm256_add_epi32(base, eight)) {
            __m256 d2n = avx2_d2(l->x + i, l->y + i, d3 ? sl_lanes_z(l) + i : NULL, ex, ey, ez);
            __m256 d2o = avx2_d2(l->px + i, l->py + i, d3 ? sl_lanes_pz(l) + i : NULL, epx, epy,
                                 epz);
            __m256 r2 = _mm256_loadu_ps(l->r2 + i);
            __m256i fl = _mm256_loadu_si256((const __m256i *)(l->flags + i));
            __m256 nz_w = ZERO(_mm256_loadu_si256((const __m256i *)(l->lbit + i)), ewm);
            __m256 nz_t = ZERO(_mm256_loadu_si256((const __m256i *)(l->wmask + i)), elb);
            __m256 is_self = _mm256_castsi256_ps(_mm256_cmpeq_epi32(
                _mm256_loadu_si256((const __m256i *)(l->slot + i)), self));
            unsigned m;
            if (mode == JUDGE_UNIFORM) {
                __m256 rep = _mm256_xor_ps(LE(d2o, er2), LE(d2n, er2));
                m = (unsigned)_mm256_movemask_ps(_mm256_and_ps(ZERO(fl, fsp), rep));
            } else if (mode == JUDGE_PLAIN) {
                /* E watching the lane: crossed E's radius, and E sees the lane's layer; the
                 * lane watching E: crossed its radius, sees E's layer, not dirty or big;
                 * never special lanes, never E's own. */
                __m256 rep = _mm256_andnot_ps(nz_w, _mm256_xor_ps(LE(d2o, er2), LE(d2n, er2)));
                __m256 rep_t = _mm256_andnot_ps(nz_t, _mm256_xor_ps(LE(d2o, r2), LE(d2n, r2)));
                rep = _mm256_or_ps(rep, _mm256_and_ps(ZERO(fl, fdb), rep_t));
                rep = _mm256_andnot_ps(is_self, _mm256_and_ps(ZERO(fl, fsp), rep));
                m = (unsigned)_mm256_movemask_ps(rep);
            } else {
                /* Stable: inside r then and now (unless stays are wanted), or beyond r + h
                 * then and beyond r now. */
                __m256 rh2 = _mm256_loadu_ps(l->rh2 + i);
                __m256 nin_w = LE(d2n, er2), nin_t = LE(d2n, r2);
                __m256 out_w = _mm256_or_ps(
                    _mm256_andnot_ps(keep, _mm256_and_ps(LE(d2o, er2), nin_w)),
                    NOT(_mm256_or_ps(LE(d2o, erh2), nin_w)));
                __m256 out_t = _mm256_or_ps(
                    _mm256_andnot_ps(keep, _mm256_and_ps(LE(d2o, r2), nin_t)),
                    NOT(_mm256_or_ps(LE(d2o, rh2), nin_t)));
                out_w = _mm256_or_ps(out_w, nz_w);
                out_t = _mm256_or_ps(_mm256_or_ps(out_t, nz_t), NOT(ZERO(fl, fdb)));
                __m256 skip = _mm256_or_ps(NOT(ZERO(fl, fsp)), is_self);
                m = ~(unsigned)_mm256_movemask_ps(
                        _mm256_or_ps(_mm256_and_ps(out_w, out_t), skip)) & 0xffu;
            }
            _mm256_storeu_si256((__m256i *)(out + k), _mm256_add_epi32(
                base, _mm256_load_si256((const __m256i *)lut8[m])));
            _mm256_storeu_si256((__m256i *)(tag + k), bv);
            k += (uint32_t)__builtin_popcount(m);
        }
    }
#undef LE
#undef ZERO
#undef NOT
    return k;
}

/* The uniform mode (sl_judge.uniform), flat or 3D. */
__attribute__((target("avx2,popcnt")))
static uint32_t judge_avx2_uniform(const sl_lanes *const *l, uint32_t nl, const sl_judge *j,
                                   uint32_t *out, uint32_t *tag)
{
    return j->d3 ? judge_avx2_body(l, nl, j, out, tag, JUDGE_UNIFORM, true)
                 : judge_avx2_body(l, nl, j, out, tag, JUDGE_UNIFORM, false);
}

__attribute__((target("avx2,popcnt")))
static uint32_t judge_avx2(const sl_lanes *const *l, uint32_t nl, const sl_judge *j,
                           uint32_t *out, uint32_t *tag)
{
    if (j->uniform)
        return judge_avx2_uniform(l, nl, j, out, tag);
    if (j->d3)
        return j->h0 && !j->stay ? judge_avx2_body(l, nl, j, out, tag, JUDGE_PLAIN, true)
                                 : judge_avx2_body(l, nl, j, out, tag, JUDGE_GENERAL, true);
    return j->h0 && !j->stay ? judge_avx2_body(l, nl, j, out, tag, JUDGE_PLAIN, false)
                             : judge_avx2_body(l, nl, j, out, tag, JUDGE_GENERAL, false);
}

__attribute__((target("avx512f,popcnt")))
static uint32_t judge1_avx512(const sl_lanes *l, const sl_judge *j, uint32_t *out)
{
    const __m512 ex = _mm512_set1_ps(j->x), ey = _mm512_set1_ps(j->y);
    const __m512 epx = _mm512_set1_ps(j->px), epy = _mm512_set1_ps(j->py);
    const __m512 ez = _mm512_set1_ps(j->z), epz = _mm512_set1_ps(j->pz);
    const __m512 er2 = _mm512_set1_ps(j->r2), erh2 = _mm512_set1_ps(j->rh2);
    const __m512i ewm = _mm512_set1_epi32((int)j->wmask), elb = _mm512_set1_epi32((int)j->lbit);
    const __m512i self = _mm512_set1_epi32((int)j->slot);
    const __m512i fdb = _mm512_set1_epi32(SL_LANE_DIRTY | SL_LANE_BIG);
    const __m512i fsp = _mm512_set1_epi32(SL_LANE_SPECIAL);
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const unsigned keep = j->stay ? ~0u : 0u;
    uint32_t k = 0;
#define LE(a, b) ((unsigned)_mm512_cmp_ps_mask(a, b, _CMP_LE_OQ))
    for (uint32_t i = 0; i < l->n; i += 16) {
        __m512 dx = _mm512_sub_ps(_mm512_loadu_ps(l->x + i), ex);
        __m512 dy = _mm512_sub_ps(_mm512_loadu_ps(l->y + i), ey);
        __m512 d2n = _mm512_add_ps(_mm512_mul_ps(dx, dx), _mm512_mul_ps(dy, dy));
        __m512 ox = _mm512_sub_ps(_mm512_loadu_ps(l->px + i), epx);
        __m512 oy = _mm512_sub_ps(_mm512_loadu_ps(l->py + i), epy);
        __m512 d2o = _mm512_add_ps(_mm512_mul_ps(ox, ox), _mm512_mul_ps(oy, oy));
        if (j->d3) {
            __m512 dz = _mm512_sub_ps(_mm512_loadu_ps(sl_lanes_z(l) + i), ez);
            __m512 oz = _mm512_sub_ps(_mm512_loadu_ps(sl_lanes_pz(l) + i), epz);
            d2n = _mm512_add_ps(d2n, _mm512_mul_ps(dz, dz));
            d2o = _mm512_add_ps(d2o, _mm512_mul_ps(oz, oz));
        }
        __m512 r2 = _mm512_loadu_ps(l->r2 + i), rh2 = _mm512_loadu_ps(l->rh2 + i);
        __m512i fl = _mm512_loadu_si512((const void *)(l->flags + i));
        unsigned mw = _mm512_test_epi32_mask(_mm512_loadu_si512((const void *)(l->lbit + i)), ewm);
        unsigned mt = _mm512_test_epi32_mask(_mm512_loadu_si512((const void *)(l->wmask + i)), elb) &
                      _mm512_testn_epi32_mask(fl, fdb);
        unsigned skip = _mm512_test_epi32_mask(fl, fsp) |
                        _mm512_cmpeq_epi32_mask(_mm512_loadu_si512((const void *)(l->slot + i)), self);
        unsigned m = judge_bits(mw, mt, skip, LE(d2o, er2), LE(d2o, erh2), LE(d2n, er2),
                                LE(d2o, r2), LE(d2o, rh2), LE(d2n, r2), keep) & 0xffffu;
        __m512i idx = _mm512_add_epi32(_mm512_set1_epi32((int)i), iota);
        _mm512_storeu_si512((void *)(out + k), _mm512_maskz_compress_epi32((__mmask16)m, idx));
        k += (uint32_t)__builtin_popcount(m);
    }
#undef LE
    return k;
}

__attribute__((target("sse2")))
static uint32_t find_sse2(const uint32_t *v, uint32_t n, uint32_t x)
{
    const __m128i key = _mm_set1_epi32((int)x);
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i a = _mm_cmpeq_epi32(_mm_loadu_si128((const __m128i *)(v + i)), key);
        __m128i b = _mm_cmpeq_epi32(_mm_loadu_si128((const __m128i *)(v + i + 4)), key);
        int m = _mm_movemask_ps(_mm_castsi128_ps(a)) | _mm_movemask_ps(_mm_castsi128_ps(b)) << 4;
        if (m)
            return i + (uint32_t)__builtin_ctz((unsigned)m);
    }
    for (; i < n; i++)
        if (v[i] == x)
            return i;
    return n;
}

__attribute__((target("avx2,bmi")))
static uint32_t find_avx2(const uint32_t *v, uint32_t n, uint32_t x)
{
    const __m256i key = _mm256_set1_epi32((int)x);
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i eq = _mm256_cmpeq_epi32(_mm256_loadu_si256((const __m256i *)(v + i)), key);
        unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(eq));
        if (m)
            return i + (uint32_t)__builtin_ctz(m);
    }
    for (; i < n; i++)
        if (v[i] == x)
            return i;
    return n;
}

__attribute__((target("avx512f,bmi")))
static uint32_t find_avx512(const uint32_t *v, uint32_t n, uint32_t x)
{
    const __m512i key = _mm512_set1_epi32((int)x);
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        unsigned m = _mm512_cmpeq_epi32_mask(_mm512_loadu_si512((const void *)(v + i)), key);
        if (m)
            return i + (uint32_t)__builtin_ctz(m);
    }
    if (i < n) {
        /* A masked load touches only v[i..n): it cannot fault past the end. */
        __mmask16 live = (__mmask16)((1u << (n - i)) - 1);
        __m512i t = _mm512_maskz_loadu_epi32(live, v + i);
        unsigned m = _mm512_mask_cmpeq_epi32_mask(live, t, key);
        if (m)
            return i + (uint32_t)__builtin_ctz(m);
    }
    return n;
}
#endif

/* The other levels judge one bucket at a time. */
#define JUDGE_EACH(name, one)                                                              \
    static uint32_t name(const sl_lanes *const *l, uint32_t nl, const sl_judge *j,         \
                         uint32_t *out, uint32_t *tag)                                     \
    {                                                                                      \
        uint32_t k = 0;                                                                    \
        for (uint32_t b = 0; b < nl; b++) {                                                \
            uint32_t end = k + one(l[b], j, out + k);                                      \
            while (k < end)                                                                \
                tag[k++] = b;                                                              \
        }                                                                                  \
        return k;                                                                          \
    }
JUDGE_EACH(judge_scalar, judge1_scalar)
#if SL_HAVE_X86
JUDGE_EACH(judge_sse2, judge1_sse2)
JUDGE_EACH(judge_each_avx512, judge1_avx512)

/*
 * The AVX-512 level's judge: in a uniform space the AVX2 judge's uniform mode (one call a
 * neighbourhood, positions only), which measured 2.2x faster than the per-bucket AVX-512
 * judge that reads every lane column (issue 16: 0.76 against 1.67 ms a W1 50k tick on a
 * Zen 5); otherwise the per-bucket AVX-512 judge. The level's filter and find stay AVX-512.
 */
__attribute__((target("avx2,popcnt")))
static uint32_t judge_avx512(const sl_lanes *const *l, uint32_t nl, const sl_judge *j,
                             uint32_t *out, uint32_t *tag)
{
    if (j->uniform)
        return judge_avx2_uniform(l, nl, j, out, tag);
    return judge_each_avx512(l, nl, j, out, tag);
}
#endif

sl_find_fn sl_simd_find_kernel(sl_simd_level level)
{
    if (!sl_simd_supported(level))
        return NULL;
#if SL_HAVE_X86
    switch (level) {
    case SL_SIMD_SSE2: return find_sse2;
    case SL_SIMD_AVX2: return find_avx2;
    case SL_SIMD_AVX512: return find_avx512;
    default: break;
    }
#endif
    return find_scalar;
}

bool sl_simd_supported(sl_simd_level level)
{
    switch (level) {
    case SL_SIMD_SCALAR: return true;
#if SL_HAVE_X86
    case SL_SIMD_SSE2: return __builtin_cpu_supports("sse2");
    case SL_SIMD_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
    case SL_SIMD_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("popcnt");
#endif
    default: return false;
    }
}

sl_simd_level sl_simd_best(void)
{
    for (int l = SL_SIMD_LEVELS - 1; l > 0; l--)
        if (sl_simd_supported((sl_simd_level)l))
            return (sl_simd_level)l;
    return SL_SIMD_SCALAR;
}

sl_within_fn sl_simd_kernel(sl_simd_level level)
{
    if (!sl_simd_supported(level))
        return NULL;
#if SL_HAVE_X86
    static bool luts_ready;
    if (!luts_ready) {
        build_luts();
        luts_ready = true;
    }
    switch (level) {
    case SL_SIMD_SSE2: return within_sse2;
    case SL_SIMD_AVX2: return within_avx2;
    case SL_SIMD_AVX512: return within_avx512;
    default: break;
    }
#endif
    return within_scalar;
}

sl_judge_fn sl_simd_judge_kernel(sl_simd_level level)
{
    if (!sl_simd_kernel(level))     /* also builds the lookup tables */
        return NULL;
#if SL_HAVE_X86
    switch (level) {
    case SL_SIMD_SSE2: return judge_sse2;
    case SL_SIMD_AVX2: return judge_avx2;
    case SL_SIMD_AVX512: return judge_avx512;
    default: break;
    }
#endif
    return judge_scalar;
}

static const char *const level_names[SL_SIMD_LEVELS] = {"scalar", "sse2", "avx2", "avx512"};
static sl_simd_level current_level;
static bool resolved;

const char *sl_simd_name(sl_simd_level level)
{
    return (unsigned)level < SL_SIMD_LEVELS ? level_names[level] : "unknown";
}

int sl_simd_parse(const char *name, sl_simd_level *level)
{
    for (int l = 0; l < SL_SIMD_LEVELS; l++) {
        if (name && strcmp(name, level_names[l]) == 0) {
            *level = (sl_simd_level)l;
            return 0;
        }
    }
    return SL_EINVAL;
}

int sl_simd_set(sl_simd_level level)
{
    sl_within_fn fn = sl_simd_kernel(level);
    if (!fn)
        return SL_EINVAL;
    sl__simd_within = fn;
    sl__simd_judge = sl_simd_judge_kernel(level);
    sl__simd_find = sl_simd_find_kernel(level);
    current_level = level;
    resolved = true;
    return 0;
}

int sl_simd_from_env(const char **why)
{
    const char *env = getenv("SIGHTLINE_SIMD");
    sl_simd_level level;
    int rc = 0;
    if (!env || !*env) {
        level = sl_simd_best();
    } else if (sl_simd_parse(env, &level) != 0) {
        if (why)
            *why = "SIGHTLINE_SIMD must be scalar, sse2, avx2 or avx512";
        level = sl_simd_best();
        rc = SL_EINVAL;
    } else if (!sl_simd_supported(level)) {
        if (why)
            *why = "SIGHTLINE_SIMD names a level this CPU does not support";
        level = sl_simd_best();
        rc = SL_EINVAL;
    }
    sl_simd_set(level);
    return rc;
}

sl_simd_level sl_simd_get(void)
{
    if (!resolved)
        sl_simd_from_env(NULL);
    return current_level;
}

/* The first call through the pointer resolves the kernel, then forwards. */
static uint32_t within_resolve(const float *xs, const float *ys, uint32_t n, float cx, float cy,
                               float r2, uint32_t *out)
{
    sl_simd_get();
    return sl__simd_within(xs, ys, n, cx, cy, r2, out);
}

static uint32_t judge_resolve(const sl_lanes *const *l, uint32_t nl, const sl_judge *j,
                              uint32_t *out, uint32_t *tag)
{
    sl_simd_get();
    return sl__simd_judge(l, nl, j, out, tag);
}

static uint32_t find_resolve(const uint32_t *v, uint32_t n, uint32_t x)
{
    sl_simd_get();
    return sl__simd_find(v, n, x);
}

sl_within_fn sl__simd_within = within_resolve;
sl_find_fn sl__simd_find = find_resolve;
sl_judge_fn sl__simd_judge = judge_resolve;
