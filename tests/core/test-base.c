/* test-base.c: the shared pieces of core/base: the growable array's edges, the error
 * one-liner and FNV-1a against published vectors. */
#include "base/common.h"
#include "base/hash.h"
#include "base/vec.h"
#include "test.h"

#include <string.h>

TEST_IMPL(base_vec)
{
    /* Zero items on an empty vector: a place to write none, not an out-of-memory NULL. */
    sl_vec v = {0};
    ASSERT(sl_vec_extend(&v, 8, 0) != NULL);
    ASSERT_EQ(v.n, 0);
    ASSERT_EQ(sl_vec_append(&v, "", 1, 0), 0);
    sl_vec_free(&v);
    /* Appends keep what came before, and indexes count items. */
    for (uint32_t i = 0; i < 1000; i++) {
        uint32_t *p = sl_vec_push(&v, sizeof *p);
        ASSERT(p != NULL);
        *p = i;
    }
    ASSERT_EQ(sl_vec_append(&v, (uint32_t[]){7, 8}, sizeof(uint32_t), 2), 1000);
    const uint32_t *u = v.p;
    for (uint32_t i = 0; i < 1000; i++)
        ASSERT_EQ(u[i], i);
    ASSERT(u[1000] == 7 && u[1001] == 8 && v.n == 1002 && v.cap >= 1002);
    /* A count that would wrap is refused, and the vector is as it was. */
    void *before = v.p;
    ASSERT(sl_vec_extend(&v, 4, SIZE_MAX - 10) == NULL);
    ASSERT(v.p == before && v.n == 1002);
    size_t cap = v.cap;
    ASSERT_EQ(sl_grow(NULL, &v.p, &v.cap, SIZE_MAX / 2, 4), SL_ENOMEM);
    ASSERT(v.p == before && v.cap == cap);
    sl_vec_free(&v);
    ASSERT(v.p == NULL && v.n == 0 && v.cap == 0);
    return 0;
}

TEST_IMPL(base_errors_and_hash)
{
    char err[16];
    ASSERT_EQ(sl_fail(err, sizeof err, SL_ELIMIT, "at most %d %s", 3, "spaces, cut here"),
              SL_ELIMIT);
    ASSERT(!strcmp(err, "at most 3 space"));
    ASSERT(!strcmp(sl_strerror(SL_ENOENT), "no such entity"));
    ASSERT(!strcmp(sl_strerror(12345), "unknown error"));
    /* FNV-1a 64 test vectors (Fowler, Noll, Vo: "" and "a"). */
    ASSERT_U64_EQ(sl_fnv1a64(SL_FNV1A64_BASIS, "", 0), 0xcbf29ce484222325ULL);
    ASSERT_U64_EQ(sl_fnv1a64(SL_FNV1A64_BASIS, "a", 1), 0xaf63dc4c8601ec8cULL);
    ASSERT_U64_EQ(sl_fnv1a64(SL_FNV1A64_BASIS, "foobar", 6), 0x85944171f73967e8ULL);
    return 0;
}
