/* Both indexes against a brute-force scan, through inserts, moves, removes and crowds. */
#include "test.h"

#include "engine/index.h"
#include "base/rng.h"

#include <stdlib.h>
#include <string.h>

#define N 3000

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void check_index(sl_index_kind kind, uint64_t seed, bool crowd)
{
    static float x[N], y[N];
    static bool in[N];
    static uint32_t want[N];
    memset(in, 0, sizeof in);
    const float W = 1000, H = 700;
    sl_index *idx = sl_index_new(kind, W, H, 25, NULL);
    ASSERT(idx != NULL);
    sl_rng rng;
    sl_rng_seed(&rng, seed);
    sl_u32vec out = {0};
    for (int step = 0; step < 40000; step++) {
        uint32_t s = sl_rng_below(&rng, N);
        float nx, ny;
        if (crowd && sl_rng_below(&rng, 2)) {
            nx = 500;   /* one spot, shared by half of all inserts and moves */
            ny = 350;
        } else {
            nx = sl_rng_float(&rng) * W;
            ny = sl_rng_float(&rng) * H;
        }
        uint32_t op = sl_rng_below(&rng, 10);
        if (!in[s]) {
            ASSERT_EQ(sl_index_insert(idx, s, nx, ny), 0);
            in[s] = true;
        } else if (op < 2) {
            sl_index_remove(idx, s);
            in[s] = false;
        } else {
            if (op < 8) {   /* mostly small steps, like game movement */
                nx = x[s] + (sl_rng_float(&rng) - 0.5f) * 10;
                ny = y[s] + (sl_rng_float(&rng) - 0.5f) * 10;
                if (nx < 0 || nx >= W || ny < 0 || ny >= H)
                    continue;
            }
            ASSERT_EQ(sl_index_move(idx, s, nx, ny), 0);
        }
        x[s] = nx;
        y[s] = ny;
        if (step % 50 == 0) {
            float cx = sl_rng_float(&rng) * W, cy = sl_rng_float(&rng) * H;
            float r = step % 500 == 0 ? 5000 : sl_rng_float(&rng) * 120, r2 = r * r;
            uint32_t nw = 0;
            for (uint32_t i = 0; i < N; i++) {
                float dx = x[i] - cx, dy = y[i] - cy;
                if (in[i] && dx * dx + dy * dy <= r2)
                    want[nw++] = i;
            }
            out.n = 0;
            ASSERT_EQ(sl_index_query(idx, cx, cy, r2, &out), 0);
            ASSERT_EQ(out.n, nw);
            qsort(out.v, out.n, sizeof(uint32_t), cmp_u32);
            ASSERT(memcmp(out.v, want, nw * sizeof(uint32_t)) == 0);
        }
    }
    ASSERT(sl_index_memory(idx) > 0);
    sl__u32vec_free(&out, NULL);
    sl_index_free(idx);
}

/* A test of check_index for one kind, seed and crowding. */
#define INDEX_TEST(name, kind, seed, crowd)                                                  \
    TEST_IMPL(name)                                                                          \
    {                                                                                        \
        check_index(kind, seed, crowd);                                                      \
        return 0;                                                                            \
    }

INDEX_TEST(index_grid_random, SL_INDEX_GRID, 1, false)
INDEX_TEST(index_quadtree_random, SL_INDEX_QUADTREE, 2, false)
INDEX_TEST(index_grid_crowd, SL_INDEX_GRID, 3, true)
INDEX_TEST(index_quadtree_crowd, SL_INDEX_QUADTREE, 4, true)

TEST_IMPL(index_grid_huge_map)
{
    /* A map that would need 10^12 cells at the asked size gets coarser cells instead. */
    sl_index *idx = sl_index_new(SL_INDEX_GRID, 1e6f, 1e6f, 1.0f, NULL);
    ASSERT(idx != NULL);
    ASSERT(sl_index_cell(idx) > 1.0f);
    ASSERT_EQ(sl_index_insert(idx, 0, 999999.9f, 0.5f), 0);
    sl_u32vec out = {0};
    ASSERT_EQ(sl_index_query(idx, 999999.0f, 0, 4, &out), 0);
    ASSERT_EQ(out.n, 1);
    sl__u32vec_free(&out, NULL);
    sl_index_free(idx);
    return 0;
}
