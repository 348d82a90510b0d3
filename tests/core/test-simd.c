/* Every SIMD kernel must return exactly what the scalar reference returns. */
#include "test.h"

#include "base/rng.h"
#include "engine/simd.h"

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

/* One round of simd_judge_agree: its lanes (padded) and what the kernels write. */
enum { M = 160 };
enum { CAP = M + SL_SIMD_PAD };
typedef struct judge_round {
    /* x, y, px, py, z, pz: columns of one block, as a bucket's (the heights right after py:
     * sl_lanes_z) */
    float pos[6 * CAP];
    float *x, *y, *px, *py, *z, *pz;
    float r2[M + SL_SIMD_PAD], rh2[M + SL_SIMD_PAD];
    uint32_t slot[M + SL_SIMD_PAD], wmask[M + SL_SIMD_PAD], lbit[M + SL_SIMD_PAD];
    uint32_t flags[M + SL_SIMD_PAD];
    uint32_t want[M + 2 * SL_SIMD_PAD], got[M + 2 * SL_SIMD_PAD];
    uint32_t many[3 * (M + 2 * SL_SIMD_PAD)];
    uint32_t tag1[M + 2 * SL_SIMD_PAD], tag2[M + 2 * SL_SIMD_PAD];
    uint32_t tags[3 * (M + 2 * SL_SIMD_PAD)];
} judge_round;

/* n random lanes on a small integer lattice; uniform ones (uni) share radius ur, see every
 * layer and are never big. The padding lanes are NaN and empty. */
static sl_lanes random_lanes(judge_round *b, sl_rng *g, uint32_t n, bool h0, bool uni,
                             float ur, bool d3)
{
    float **col[6] = {&b->x, &b->y, &b->px, &b->py, &b->z, &b->pz};
    for (int c = 0; c < 6; c++)
        *col[c] = b->pos + c * CAP;
    for (uint32_t i = 0; i < n; i++) {
        b->z[i] = d3 ? (float)sl_rng_below(g, 6) : 0;
        b->pz[i] = d3 && sl_rng_below(g, 3) == 0 ? (float)sl_rng_below(g, 6) : b->z[i];
        b->x[i] = (float)sl_rng_below(g, 12);
        b->y[i] = (float)sl_rng_below(g, 12);
        bool moved = sl_rng_below(g, 3) == 0;
        b->px[i] = moved ? (float)sl_rng_below(g, 12) : b->x[i];
        b->py[i] = moved ? (float)sl_rng_below(g, 12) : b->y[i];
        float r = (float)sl_rng_below(g, 6), h = h0 ? 0 : (float)sl_rng_below(g, 3);
        if (uni)
            r = ur;
        b->r2[i] = r * r;
        b->rh2[i] = (r + h) * (r + h);
        b->slot[i] = sl_rng_below(g, 200);
        b->wmask[i] = r > 0 ? (uint32_t)sl_rng_next(g) : 0;
        b->lbit[i] = 1u << sl_rng_below(g, 32);
        b->flags[i] = sl_rng_below(g, 8);
        if (uni) {
            b->wmask[i] = ~0u;
            b->lbit[i] = 1;
            b->flags[i] &= ~SL_LANE_BIG;
        }
    }
    for (uint32_t i = n; i < sl_simd_padded(n); i++) {
        b->x[i] = b->y[i] = b->px[i] = b->py[i] = b->z[i] = b->pz[i] = NAN;
        b->r2[i] = b->rh2[i] = 0;
        b->slot[i] = b->wmask[i] = b->lbit[i] = b->flags[i] = 0;
    }
    return (sl_lanes){b->x, b->y, b->px, b->py, b->r2, b->rh2, b->slot, b->wmask, b->lbit,
                      b->flags, n, CAP};
}

static sl_judge random_judge(sl_rng *g, bool h0, bool d3)
{
    float jr = (float)sl_rng_below(g, 6), jh = h0 ? 0 : (float)sl_rng_below(g, 3);
    sl_judge j = {
        .x = (float)sl_rng_below(g, 12), .y = (float)sl_rng_below(g, 12),
        .r2 = jr * jr, .rh2 = (jr + jh) * (jr + jh),
        .wmask = (uint32_t)sl_rng_next(g), .lbit = 1u << sl_rng_below(g, 32),
        .slot = sl_rng_below(g, 200), .stay = sl_rng_below(g, 2), .h0 = h0,
    };
    j.px = sl_rng_below(g, 2) ? j.x : (float)sl_rng_below(g, 12);
    j.py = sl_rng_below(g, 2) ? j.y : (float)sl_rng_below(g, 12);
    if (d3) {
        j.d3 = true;
        j.z = (float)sl_rng_below(g, 6);
        j.pz = sl_rng_below(g, 2) ? j.z : (float)sl_rng_below(g, 6);
    }
    return j;
}

/* What a uniform judge may assume: E shares the lanes' shape (r > 0), and its own lane is
 * where E is and was. */
static void make_uniform(judge_round *b, uint32_t n, sl_judge *j, float ur)
{
    ur = ur > 0 ? ur : 1;
    for (uint32_t i = 0; i < n; i++) {
        b->r2[i] = b->rh2[i] = ur * ur;
        if (b->slot[i] == j->slot) {
            b->x[i] = j->x, b->y[i] = j->y, b->px[i] = j->px, b->py[i] = j->py;
            b->z[i] = j->z, b->pz[i] = j->pz;
            b->flags[i] = SL_LANE_DIRTY;
        }
    }
    j->r2 = j->rh2 = ur * ur;
    j->wmask = ~0u;
    j->lbit = 1;
    j->h0 = j->uniform = true;
    j->stay = false;
}

/* The kernel against the reference on one bucket, then on three buckets in one call (each
 * one's lanes, bucket after bucket, tagged). Returns the lanes reported. */
static uint32_t judge_both(judge_round *b, const sl_lanes *l, const sl_judge *j,
                           sl_judge_fn ref, sl_judge_fn fn)
{
    const sl_lanes *one = l;
    uint32_t k1 = ref(&one, 1, j, b->want, b->tag1), k2 = fn(&one, 1, j, b->got, b->tag2);
    ASSERT_EQ(k1, k2);
    ASSERT(memcmp(b->want, b->got, k1 * sizeof(uint32_t)) == 0);
    for (uint32_t q = 0; q < k1; q++)
        ASSERT(b->tag1[q] == 0 && b->tag2[q] == 0);
    const sl_lanes *three[3] = {l, l, l};
    ASSERT_EQ(fn(three, 3, j, b->many, b->tags), 3 * k1);
    for (uint32_t t = 0; t < 3; t++) {
        ASSERT(memcmp(b->want, b->many + t * k1, k1 * sizeof(uint32_t)) == 0);
        for (uint32_t q = 0; q < k1; q++)
            ASSERT_EQ(b->tags[t * k1 + q], t);
    }
    return k1;
}

TEST_IMPL(simd_judge_agree)
{
    /* Random lanes on a small integer lattice (exact ties at r and r + h all the time),
     * random flags, masks and radii, a judged entity that is sometimes in the bucket. */
    static judge_round b;
    sl_rng g;
    sl_rng_seed(&g, 77);
    sl_judge_fn ref = sl_simd_judge_kernel(SL_SIMD_SCALAR);
    uint64_t reported = 0, total = 0;
    for (int level = 1; level < SL_SIMD_LEVELS; level++) {
        sl_judge_fn fn = sl_simd_judge_kernel((sl_simd_level)level);
        if (!fn)
            continue;
        for (int round = 0; round < 4000; round++) {
            uint32_t n = sl_rng_below(&g, M + 1);
            bool h0 = round % 2;    /* half the rounds without hysteresis (the h0 kernels) */
            /* A quarter of them uniform: one radius, everybody sees everybody, no big lane. */
            bool uni = round % 4 == 3;
            float ur = (float)sl_rng_below(&g, 6);
            /* Every other pair of rounds in 3D (heights: the sphere test). */
            bool d3 = round % 4 >= 2;
            sl_lanes l = random_lanes(&b, &g, n, h0, uni, ur, d3);
            sl_judge j = random_judge(&g, h0, d3);
            if (uni)
                make_uniform(&b, n, &j, ur);
            reported += judge_both(&b, &l, &j, ref, fn);
            total += n;
        }
    }
    printf("%llu of %llu lanes reported\n", (unsigned long long)reported,
           (unsigned long long)total);
    ASSERT(reported > 0 && reported < total);
    return 0;
}

TEST_IMPL(simd_find_agree)
{
    /* Every length up to 80, the key at every position, duplicates, and absent keys. */
    static uint32_t v[80];
    sl_rng g;
    sl_rng_seed(&g, 3);
    for (int level = 0; level < SL_SIMD_LEVELS; level++) {
        sl_find_fn fn = sl_simd_find_kernel((sl_simd_level)level);
        if (!fn)
            continue;
        for (uint32_t n = 0; n <= 80; n++) {
            for (uint32_t i = 0; i < n; i++)
                v[i] = sl_rng_below(&g, 1000) + 1;
            ASSERT_EQ(fn(v, n, 0), n);                  /* absent */
            for (uint32_t i = 0; i < n; i++) {
                uint32_t want = 0;
                while (v[want] != v[i])
                    want++;                             /* first occurrence */
                ASSERT_EQ(fn(v, n, v[i]), want);
            }
        }
    }
    return 0;
}
