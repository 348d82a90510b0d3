/* The id map against a plain array, with ids at both ends of the uint64 range. */
#include "test.h"

#include "engine/idmap.h"
#include "base/rng.h"

#define POOL 5000

TEST_IMPL(idmap_random)
{
    static uint64_t ids[POOL];
    static uint32_t val[POOL];
    static bool in[POOL];
    sl_rng rng;
    sl_rng_seed(&rng, 7);
    for (uint32_t i = 0; i < POOL; i++) {
        switch (i % 4) {
        case 0: ids[i] = i; break;                          /* 0, 4, 8, ... */
        case 1: ids[i] = UINT64_MAX - i; break;             /* near 2^64 */
        case 2: ids[i] = (uint64_t)i << 40; break;          /* same low bits */
        default: ids[i] = sl_rng_next(&rng); break;
        }
    }
    sl_idmap m = {0};
    for (int step = 0; step < 200000; step++) {
        uint32_t i = sl_rng_below(&rng, POOL);
        if (in[i] && sl_rng_below(&rng, 2)) {
            sl_idmap_del(&m, ids[i]);
            in[i] = false;
        } else if (!in[i]) {
            val[i] = (uint32_t)step;
            ASSERT_EQ(sl_idmap_put(&m, NULL, ids[i], val[i]), 0);
            in[i] = true;
        }
        uint32_t j = sl_rng_below(&rng, POOL);
        ASSERT_EQ(sl_idmap_get(&m, ids[j]), in[j] ? val[j] : UINT32_MAX);
    }
    uint32_t count = 0;
    for (uint32_t i = 0; i < POOL; i++) {
        ASSERT_EQ(sl_idmap_get(&m, ids[i]), in[i] ? val[i] : UINT32_MAX);
        count += in[i];
    }
    ASSERT_EQ(m.n, count);
    sl_idmap_free(&m, NULL);
    return 0;
}

TEST_IMPL(idmap_dense)
{
    /* Small ids in descending order: the first ones are too far out for the array and go to
     * the table; as entries grow the array does, taking them over. Large ids mixed in stay
     * in the table. Then removals, re-adds and a renumbering, checked against a plain array. */
    enum { N = 20000 };
    static uint32_t val[N + 1], perm[2 * N + 2];
    sl_idmap m = {0};
    uint32_t next = 0;
    for (uint32_t id = N; id >= 1; id--) {
        val[id] = next++;
        ASSERT_EQ(sl_idmap_put(&m, NULL, id, val[id]), 0);
        ASSERT_EQ(sl_idmap_put(&m, NULL, UINT64_MAX - id, next++), 0);
    }
    ASSERT(m.ndense > N && m.hn == N);      /* every small id ended in the array */
    ASSERT_EQ(m.n, 2 * N);
    for (uint32_t id = 1; id <= N; id++) {
        ASSERT_EQ(sl_idmap_get(&m, id), val[id]);
        ASSERT_EQ(sl_idmap_get(&m, UINT64_MAX - id), 2 * (N - id) + 1);
    }
    ASSERT_EQ(sl_idmap_get(&m, 0), UINT32_MAX);
    ASSERT_EQ(sl_idmap_get(&m, N + 1), UINT32_MAX);
    for (uint32_t id = 1; id <= N; id += 2) {
        sl_idmap_del(&m, id);
        sl_idmap_del(&m, id);              /* absent: nothing happens */
    }
    ASSERT_EQ(m.n, 2 * N - N / 2);
    for (uint32_t i = 0; i < 2 * N + 2; i++)
        perm[i] = 2 * N + 1 - i;
    sl_idmap_remap(&m, perm);
    for (uint32_t id = 1; id <= N; id++) {
        ASSERT_EQ(sl_idmap_get(&m, id), id % 2 ? UINT32_MAX : perm[val[id]]);
        ASSERT_EQ(sl_idmap_get(&m, UINT64_MAX - id), perm[2 * (N - id) + 1]);
    }
    sl_idmap_free(&m, NULL);
    ASSERT_EQ(sl_idmap_get(&m, 5), UINT32_MAX);
    return 0;
}

TEST_IMPL(idmap_trim)
{
    /* A map that held many entries and lost most gives its memory back when trimmed,
     * keeps every entry it still holds, and keeps working; an empty one holds nothing. */
    enum { N = 200000, KEEP = 500 };
    sl_idmap m = {0};
    for (uint64_t i = 0; i < N; i++) {
        uint64_t id = i % 2 ? i : i << 33;          /* half in the array, half in the table */
        ASSERT_EQ(sl_idmap_put(&m, NULL, id, (uint32_t)i), 0);
    }
    size_t full = sl_idmap_bytes(&m);
    sl_idmap_trim(&m, NULL);
    ASSERT_EQ(sl_idmap_bytes(&m), full);            /* nothing to give back yet */
    for (uint64_t i = KEEP; i < N; i++)
        sl_idmap_del(&m, i % 2 ? i : i << 33);
    sl_idmap_trim(&m, NULL);
    ASSERT(sl_idmap_bytes(&m) * 20 < full);
    for (uint64_t i = 0; i < N; i++)
        ASSERT_EQ(sl_idmap_get(&m, i % 2 ? i : i << 33), i < KEEP ? (uint32_t)i : UINT32_MAX);
    ASSERT_EQ(sl_idmap_put(&m, NULL, 7ULL << 40, 7), 0);
    ASSERT_EQ(sl_idmap_get(&m, 7ULL << 40), 7);
    for (uint64_t i = 0; i < KEEP; i++)
        sl_idmap_del(&m, i % 2 ? i : i << 33);
    sl_idmap_del(&m, 7ULL << 40);
    sl_idmap_trim(&m, NULL);
    ASSERT_EQ(sl_idmap_bytes(&m), 0);
    ASSERT_EQ(sl_idmap_get(&m, 3), UINT32_MAX);
    ASSERT_EQ(sl_idmap_put(&m, NULL, 3, 1), 0);
    ASSERT_EQ(sl_idmap_get(&m, 3), 1);
    sl_idmap_free(&m, NULL);
    return 0;
}
