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
#include "common.h"

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
#endif

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

sl_within_fn sl__simd_within = within_resolve;
