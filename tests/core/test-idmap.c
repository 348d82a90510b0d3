/* The id map against a plain array, with ids at both ends of the uint64 range. */
#include "test.h"

#include "idmap.h"
#include "rng.h"

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
    sl__idmap m = {0};
    for (int step = 0; step < 200000; step++) {
        uint32_t i = sl_rng_below(&rng, POOL);
        if (in[i] && sl_rng_below(&rng, 2)) {
            sl__idmap_del(&m, ids[i]);
            in[i] = false;
        } else if (!in[i]) {
            val[i] = (uint32_t)step;
            ASSERT_EQ(sl__idmap_put(&m, NULL, ids[i], val[i]), 0);
            in[i] = true;
        }
        uint32_t j = sl_rng_below(&rng, POOL);
        ASSERT_EQ(sl__idmap_get(&m, ids[j]), in[j] ? val[j] : UINT32_MAX);
    }
    uint32_t count = 0;
    for (uint32_t i = 0; i < POOL; i++) {
        ASSERT_EQ(sl__idmap_get(&m, ids[i]), in[i] ? val[i] : UINT32_MAX);
        count += in[i];
    }
    ASSERT_EQ(m.n, count);
    sl__idmap_free(&m, NULL);
    return 0;
}
